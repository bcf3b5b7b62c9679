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


def test_bobs_text_side_normalises_case_and_punctuation(backend):
    """'Blue sky ... left.' must read as 'blue sky ... left': Bob's tokenizer lower-cases and strips
    punctuation the way a real one does, in studies and in `lsc world sample`."""
    plain = backend.generator.generate(["blue sky with a large red circle at left"], seed=1)
    written = backend.generator.generate(["Blue sky, with a large RED circle at left."], seed=1)
    assert np.array_equal(plain, written)
    unknown = backend.generator.generate(["blue sky with a large red circle at leftt"], seed=1)
    assert not np.array_equal(plain, unknown)  # a misspelt word is still a different (unknown) word
    words = "Blue sky, with a circle.".split()
    assert backend.bob_text_encoder.word_attention(words).shape == (5, 5)


def test_world_perceptual_uses_learnt_channel_weights(tmp_path):
    """With perceptual.safetensors the distance weights each channel (LPIPS' 'lin'); without, all ones."""
    import torch
    from safetensors.torch import save_file

    from lsc.backends.world.models import load_models
    from lsc.backends.world.perceptual import LinearWeights

    weights = write_random_weights(tmp_path / "w")
    images = np.stack([scenes.render(scenes.world_scene(i)) for i in range(3)])
    base = load_world_backend(str(weights)).perceptual
    d_base = base.distances(base.reference(images[0]), images)
    lin = LinearWeights((32, 64, 128, 128))
    with torch.no_grad():
        for r in lin.raw:
            r.copy_(torch.linspace(-3, 3, len(r)))
    save_file({k: v.half().contiguous() for k, v in lin.state_dict().items()}, str(weights / "perceptual.safetensors"))
    load_models.cache_clear()
    weighted = load_world_backend(str(weights)).perceptual
    d_lin = weighted.distances(weighted.reference(images[0]), images)
    assert d_lin[0] == pytest.approx(0.0, abs=1e-6) and not np.allclose(d_lin[1:], d_base[1:], rtol=1e-3)
    w = torch.cat(weighted.channel_weights)
    assert float(w.mean()) == pytest.approx(1.0, rel=1e-3) and float(w.min()) >= 0
    load_models.cache_clear()


def test_derived_threshold_keeps_precision_and_excludes_missing_objects():
    """By hand: the cut sits under the first image missing an object, where at least 85% are right."""
    from lsc.backends.world.evaluate import derive_threshold

    d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    right = np.array([1, 1, 1, 0, 1, 1, 1, 0], dtype=bool)
    missing = np.array([0, 0, 0, 0, 0, 0, 1, 0], dtype=bool)
    out = derive_threshold(d, right, missing, precision=0.8)
    assert out["threshold"] == pytest.approx(0.65) and out["missing_under"] == 0  # 5 of 6 right under it
    assert out["precision"] == pytest.approx(5 / 6) and out["recall"] == pytest.approx(5 / 6)
    strict = derive_threshold(d, right, missing)  # 85%: 5 of 6 is too few, 4 of 5 too; 3 of 3
    assert strict["threshold"] == pytest.approx(0.35) and strict["precision"] == 1.0
    loose = derive_threshold(d, right, missing, precision=0.5)
    assert loose["threshold"] == pytest.approx(0.65)  # never past the first image missing an object


def test_judge_checks_what_the_words_state_and_every_object():
    from lsc.backends.world.evaluate import judge, statement

    scene = scenes.Scene("grass", (scenes.WorldObject("circle", "red", "small", "left"), scenes.WorldObject("square", "blue", "large", "right")))
    words, roles = scenes.bob_caption_roles(scene)
    seen = scene.attributes()
    wrong_colour = {**seen, "objects": [{**seen["objects"][0], "color": "white"}, seen["objects"][1]]}
    said_bg = statement(scene, words, roles, range(2))  # "green grass": only the background is stated
    assert judge(scene, said_bg, wrong_colour).right  # an unstated colour may be anything
    said_all = statement(scene, words, roles, range(len(words)))
    assert not judge(scene, said_all, wrong_colour).right
    missing = {**seen, "objects": seen["objects"][:1], "count": 1}
    verdict = judge(scene, said_bg, missing)
    assert verdict.missing_object and not verdict.right


def test_alice_unmarked_size_is_stated_by_the_object_words():
    """Alice says "a blue box" for a large box: once its colour arrives the size is stated too."""
    from lsc.backends.world.evaluate import judge, statement

    scene = scenes.Scene("sky", (scenes.WorldObject("circle", "red", "small", "left"), scenes.WorldObject("square", "blue", "large", "right")))
    words, roles = scenes.alice_caption_roles(scene)  # a small red ball and a blue box in the sky
    seen = scene.attributes()
    small_box = {**seen, "objects": [seen["objects"][0], {**seen["objects"][1], "size": "small"}]}
    said = statement(scene, words, roles, range(len(words)))
    assert said.object_attributes[1] == {"color", "shape", "size"}
    assert not judge(scene, said, small_box).right
    only_first = statement(scene, words, roles, range(4))  # "a small red ball": the box says nothing yet
    assert only_first.object_attributes == (frozenset({"size", "color", "shape"}), frozenset())


def test_alice_plural_noun_states_the_shape_of_each_object_it_names():
    from lsc.backends.world.evaluate import statement

    scene = scenes.Scene("sky", tuple(scenes.WorldObject("circle", c, z, s) for c, z, s in zip(("red", "white"), ("small", "large"), ("left", "right"))))
    words, roles = scenes.alice_caption_roles(scene)  # small red and white balls in the sky
    noun = words.index("balls")
    said = statement(scene, words, roles, [noun])
    assert said.object_attributes == (frozenset({"shape"}), frozenset({"shape", "size"}))  # the white one's size is unmarked
    said = statement(scene, words, roles, range(len(words)))
    assert said.object_attributes == (frozenset({"size", "color", "shape"}),) * 2
