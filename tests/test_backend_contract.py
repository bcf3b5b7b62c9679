"""One contract for every backend (docs/CONTRACTS.md, lsc.interfaces), run on the in-package fake, the
world backend with random weights and the hf backend on tiny random models: what the protocol relies
on, whatever the models (as diffusers' PipelineTesterMixin runs one battery on every pipeline)."""

from __future__ import annotations

import numpy as np
import pytest

from lsc import interfaces as I
from lsc.interfaces import Backend

WORDS = ["a", "red", "ball", "on", "grass"]  # one token each in the tiny hf vocabularies


def _fake(request: pytest.FixtureRequest) -> Backend:
    from lsc.protocol.testing import FakeGenerator, fake_backend

    maps = {w: np.random.default_rng(i).random((4, 4)) for i, w in enumerate(WORDS)}
    return fake_backend(" ".join(WORDS), generator=FakeGenerator(cross_maps=maps), grounding_maps=maps)


def _world(request: pytest.FixtureRequest) -> Backend:
    from lsc.backends.world.backend import load_world_backend
    from lsc.backends.world.release import write_random_weights

    folder = request.getfixturevalue("tmp_path_factory").mktemp("world") / "weights"
    return load_world_backend(str(write_random_weights(folder)), threads=1)


def _hf(request: pytest.FixtureRequest) -> Backend:
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from hf_tiny import tiny_backend

    return tiny_backend(request.getfixturevalue("tmp_path_factory").getbasetemp())


@pytest.fixture(scope="module", params=[_fake, _world, pytest.param(_hf, marks=pytest.mark.slow)], ids=["fake", "world", "hf"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param(request)


def _images(backend: Backend, n: int) -> list[np.ndarray]:
    side = backend.image_size or 40
    return [np.random.default_rng(i).random((side, side, 3)).astype(np.float32) for i in range(n)]


def test_interfaces_and_capabilities(backend: Backend) -> None:
    assert isinstance(backend.captioner, I.Captioner) and isinstance(backend.generator, I.Generator)
    assert isinstance(backend.perceptual, I.Perceptual)
    assert {I.CAP_GENERATOR, I.CAP_PERCEPTUAL} <= backend.capabilities
    for cap, encoder in ((I.CAP_BOB_ATTENTION, backend.bob_text_encoder), (I.CAP_ALICE_ATTENTION, backend.alice_text_encoder)):
        assert (cap in backend.capabilities) == (encoder is not None)
        assert encoder is None or isinstance(encoder, I.TextEncoder)
    assert backend.default_threshold > 0 and backend.default_prompt_order in ("send", "caption")


def test_captions_are_deterministic_and_batch_independent(backend: Backend) -> None:
    images = _images(backend, 3)
    caps = backend.captioner.caption(images)
    assert len(caps) == 3 and all(isinstance(c, str) for c in caps)
    assert backend.captioner.caption(images) == caps
    assert backend.captioner.caption(images[1:2]) == caps[1:2]


def test_generation_is_a_function_of_prompt_and_seed(backend: Backend) -> None:
    prompts = ["a red ball", "grass", ""]
    batch = backend.generator.generate(prompts, seed=3)
    assert batch.ndim == 4 and batch.shape[0] == 3 and batch.shape[3] == 3 and batch.dtype == np.float32
    assert float(batch.min()) >= 0.0 and float(batch.max()) <= 1.0
    alone = backend.generator.generate(prompts[1:2], seed=3)
    # batch-mates do not matter, up to one 8-bit level (a float sum on the edge of a level may round either way)
    np.testing.assert_allclose(alone[0], batch[1], rtol=0, atol=1 / 255 + 1e-6)


def test_perceptual_distances_are_batched_and_zero_for_the_reference(backend: Backend) -> None:
    images = backend.generator.generate(["a red ball", "grass on a ball"], seed=0)
    ref = backend.perceptual.reference(images[0])
    d = np.asarray(backend.perceptual.distances(ref, images))
    assert d.shape == (2,) and np.all(np.isfinite(d)) and np.all(d >= 0)
    assert d[0] < 1e-4 and d[1] > d[0]


def test_word_attention_is_word_by_word(backend: Backend) -> None:
    for encoder in (backend.bob_text_encoder, backend.alice_text_encoder):
        if encoder is None:
            continue
        att = np.asarray(encoder.word_attention(WORDS, "mean"))
        assert att.shape == (len(WORDS), len(WORDS)) and np.all(np.isfinite(att)) and np.all(att >= 0)


def test_maps_exist_exactly_with_their_capability(backend: Backend) -> None:
    image = _images(backend, 1)[0]
    if I.CAP_ALICE_GROUNDING in backend.capabilities:
        maps = np.asarray(backend.captioner.grounding(image, WORDS))
        assert maps.ndim == 3 and maps.shape[0] == len(WORDS) and np.all(maps >= 0)
    else:
        with pytest.raises(NotImplementedError):
            backend.captioner.grounding(image, WORDS)
    if I.CAP_BOB_CROSS_ATTENTION in backend.capabilities:
        maps = np.asarray(backend.generator.cross_attention(WORDS, seed=0))
        assert maps.ndim == 3 and maps.shape[0] == len(WORDS) and np.all(np.isfinite(maps))
    else:
        with pytest.raises(NotImplementedError):
            backend.generator.cross_attention(WORDS, seed=0)
