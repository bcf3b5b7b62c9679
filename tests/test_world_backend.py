"""The world backend's plumbing on untrained weights in the shipped format (fast, no quality claims)."""

import numpy as np
import pytest

from lsc.backends.world import scenes
from lsc.backends.world.backend import load_world_backend
from lsc.backends.world.release import write_random_weights
from lsc.errors import ModelUnavailableError
from lsc.interfaces import Captioner, Generator, Perceptual, TextEncoder


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return load_world_backend(str(write_random_weights(tmp_path_factory.mktemp("world") / "weights")))


def test_backend_implements_the_interfaces(backend):
    assert isinstance(backend.captioner, Captioner)
    assert isinstance(backend.generator, Generator)
    assert isinstance(backend.perceptual, Perceptual)
    assert isinstance(backend.bob_text_encoder, TextEncoder)
    assert isinstance(backend.alice_text_encoder, TextEncoder)
    assert backend.missing({"bob_text_attention", "alice_grounding", "bob_cross_attention"}) == []
    assert backend.bob_vocabulary <= frozenset(scenes.BOB_WORDS)
    assert len(backend.skd_examples) >= 8


def test_generation_depends_only_on_prompt_and_seed(backend):
    prompts = ["green grass with a large red circle at left", "", "blue sky"]
    batch = backend.generator.generate(prompts, seed=3)
    assert batch.shape == (3, 32, 32, 3) and batch.dtype == np.float32
    alone = backend.generator.generate([prompts[0]], seed=3)
    np.testing.assert_allclose(batch[0], alone[0], atol=1 / 255 + 1e-6)
    assert np.array_equal(alone, backend.generator.generate([prompts[0]], seed=3))
    assert not np.array_equal(alone, backend.generator.generate([prompts[0]], seed=4))
    # 8-bit images
    assert np.allclose(batch * 255, np.round(batch * 255), atol=1e-4)


def test_attention_shapes(backend):
    words = "a small red ball on the left".split()
    for enc in (backend.bob_text_encoder, backend.alice_text_encoder):
        for variant in ("mean", "layer_sum_head0"):
            a = enc.word_attention(words, variant)
            assert a.shape == (7, 7) and np.all(a >= 0)
    mean = backend.bob_text_encoder.word_attention(words, "mean")
    # Rows are attention distributions over [BOS] + words; dropping [BOS] leaves at most 1 per row.
    assert np.all(mean.sum(1) <= 1 + 1e-5)
    maps = backend.generator.cross_attention(words, seed=0)
    assert maps.shape == (7, 32, 32) and np.all(maps >= 0) and maps.sum() > 0
    grounding = backend.captioner.grounding(scenes.render(scenes.world_scene(0)), words)
    assert grounding.shape == (7, 32, 32) and np.all(grounding >= 0)


def test_captioner_and_perceptual(backend):
    images = [scenes.render(scenes.world_scene(i)) for i in range(3)]
    captions = backend.captioner.caption(images)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    ref = backend.perceptual.reference(images[0])
    d = backend.perceptual.distances(ref, np.stack(images))
    assert d.shape == (3,) and d[0] == pytest.approx(0.0, abs=1e-6) and d[1] > 0 and d[2] > 0


def test_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailableError, match="lsc world train"):
        load_world_backend(str(tmp_path / "nowhere"))
