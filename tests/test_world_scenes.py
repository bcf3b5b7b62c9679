"""The scene world's ground truth: rendering, captions in both styles, held-out study scenes."""

import numpy as np
import pytest

from lsc.backends.world import caption_parser, scenes


def test_render_is_deterministic_and_in_range():
    scene = scenes.world_scene(3, seed=0)
    a, b = scenes.render(scene), scenes.render(scene)
    assert a.shape == (32, 32, 3) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_objects_are_drawn_in_their_slot_with_their_colour():
    obj = scenes.WorldObject(shape="square", color="red", size="large", slot="left")
    img = scenes.render(scenes.Scene("night", (obj,), seed=1))
    left, right = img[10:22, 1:10], img[10:22, 22:31]
    red = np.array(scenes.COLOR_RGB["red"])
    assert np.abs(left - red).sum(-1).min() < 0.15  # some pixel of the left slot is red
    assert np.abs(right - red).sum(-1).min() > 0.5  # the right slot is night sky


def test_caption_styles_differ_and_parse_back_to_the_truth():
    rng = np.random.default_rng(5)
    for _ in range(50):
        scene = scenes.sample_scene(rng)
        alice, bob = scenes.alice_caption(scene, rng), scenes.bob_caption(scene, rng)
        assert caption_parser.parse_caption(alice) == scene.attributes()  # positions by her layout rule
        assert caption_parser.parse_caption(bob) == scene.attributes()
        assert set(bob.split()) <= set(scenes.BOB_WORDS)
        assert set(alice.split()) <= set(scenes.ALICE_WORDS)


def test_hand_made_captions():
    scene = scenes.Scene(
        "grass",
        (
            scenes.WorldObject("circle", "red", "small", "left"),
            scenes.WorldObject("square", "blue", "large", "middle"),
        ),
    )
    assert scenes.alice_caption(scene) == "a small red ball and a blue box on the left on grass"
    assert scenes.bob_caption(scene) == "green grass with a small red circle at left and a large blue square at center"
    one = scenes.Scene("night", (scenes.WorldObject("circle", "orange", "large", "middle"),))
    assert scenes.alice_caption(one) == "an orange ball at night"  # the usual place and size go unsaid
    three = scenes.Scene("brick", tuple(scenes.WorldObject("triangle", c, "small", s) for c, s in zip(("orange", "red", "white"), scenes.SLOTS)))
    assert scenes.alice_caption(three) == "small orange small red and small white triangles by a wall"  # one plural noun
    assert caption_parser.parse_caption(scenes.alice_caption(three)) == three.attributes()
    same = scenes.Scene("brick", tuple(scenes.WorldObject("triangle", "red", z, s) for z, s in zip(("small", "large"), ("left", "right"))))
    assert scenes.alice_caption(same) == "a small red triangle and a red triangle by a wall"  # one colour twice: a phrase each
    mixed = scenes.Scene("sand", (scenes.WorldObject("square", "red", "large", "left"), scenes.WorldObject("circle", "blue", "large", "middle"),
                                  scenes.WorldObject("circle", "white", "small", "right")))
    assert scenes.alice_caption(mixed) == "a red box and blue and small white balls on the beach"
    assert caption_parser.parse_caption(scenes.alice_caption(mixed)) == mixed.attributes()
    pair = scenes.Scene("sky", (scenes.WorldObject("circle", "red", "small", "left"), scenes.WorldObject("square", "blue", "large", "right")))
    assert scenes.alice_caption(pair) == "a small red ball and a blue box in the sky"
    assert caption_parser.parse_caption("a small red ball and a blue box in the sky") == pair.attributes()
    # Alice's unmarked size is large; a Bob-style phrase without a size states none.
    assert caption_parser.parse_caption("a red ball and a blue box in the sky")["objects"][1] == {"shape": "square", "color": "blue", "size": "large", "slot": "right"}
    assert caption_parser.parse_caption("blue sky with a red circle at left")["objects"][0]["size"] is None


def test_alice_speaks_like_blip_and_bob_reads_her():
    """Short captions (8-12 words on average, 95th percentile at most 16, half of them at most 10 so
    the exact oracle covers them), in words Bob's vocabulary also holds."""
    lengths = np.array([len(scenes.alice_caption(scenes.world_scene(i, 99)).split()) for i in range(400)])
    assert 8 <= lengths.mean() <= 12 and lengths.max() <= 16 and np.percentile(lengths, 95) <= 16 and np.mean(lengths <= 10) >= 0.5
    assert set(scenes.ALICE_WORDS) <= set(scenes.BOB_WORDS)
    assert "big" not in scenes.ALICE_WORDS  # large is unmarked in her English
    assert {"ball", "box", "beach"} <= set(scenes.ALICE_WORDS) - set(scenes.BOB_OWN_WORDS)  # what SKD translates


def test_study_scenes_are_stable_and_carry_truth():
    a = scenes.world_samples(3, seed=7)
    b = scenes.world_samples(5, seed=7)
    assert [s.image_id for s in a] == [s.image_id for s in b[:3]]
    assert np.array_equal(a[2].image, b[2].image)
    assert a[0].attributes["count"] == len(a[0].attributes["objects"])
    assert caption_parser.parse_caption(a[0].captions[1]) == a[0].attributes  # Bob's phrasing states everything


def test_unparseable_caption_is_none():
    assert caption_parser.parse_caption("a dog running in the park") is None


def test_bob_training_prompts_use_synonyms_and_reference_captions_do_not():
    rng = np.random.default_rng(11)
    seen_synonyms = set()
    for _ in range(200):
        scene = scenes.sample_scene(rng)
        words, roles = scenes.bob_caption_roles(scene, rng)
        assert len(words) == len(roles)
        seen_synonyms |= set(words) & set(scenes.SYNONYM_BASE)
        assert {r for r in roles if r >= 0} == set(range(len(scene.objects)))  # every object is described
        assert caption_parser.parse_caption(" ".join(words)) == scene.attributes()
        assert not set(scenes.bob_caption(scene).split()) & set(scenes.SYNONYM_BASE)  # reference: base words
    assert seen_synonyms == set(scenes.SYNONYM_BASE)


def test_reordered_object_phrases_keep_their_meaning():
    rng = np.random.default_rng(3)
    orders = set()
    for i in range(60):
        scene = scenes.world_scene(i, 5)
        words, roles = scenes.bob_caption_roles(scene, rng, shuffle_objects=True)
        assert caption_parser.parse_caption(" ".join(words)) == scene.attributes()
        orders.add(tuple(dict.fromkeys(r for r in roles if r >= 0)))
    assert (1, 0) in orders or (2, 1, 0) in orders or (1, 0, 2) in orders  # not always left to right


def test_alice_roles_label_objects_layout_and_background():
    scene = scenes.Scene("grass", (scenes.WorldObject("circle", "red", "small", "left"), scenes.WorldObject("square", "blue", "large", "middle")))
    words, roles = scenes.alice_caption_roles(scene)
    b, link, lay = scenes.ROLE_BACKGROUND, scenes.ROLE_LINK, scenes.ROLE_LAYOUT
    assert words == "a small red ball and a blue box on the left on grass".split()
    assert roles == [0, 0, 0, 0, link, 1, 1, 1, lay, lay, lay, b, b]
    three = scenes.Scene("night", tuple(scenes.WorldObject("circle", c, z, s) for c, z, s in zip(("yellow", "white", "red"), ("large", "small", "large"), scenes.SLOTS)))
    words, roles = scenes.alice_caption_roles(three)
    assert words == "yellow small white and red balls at night".split()
    assert roles == [0, 1, 1, link, 2, scenes.ROLE_GROUP, b, b]
    assert scenes.alice_group(three) == (0, 1, 2) and scenes.alice_group(scene) == ()


def test_roles_label_each_word_with_what_it_describes():
    scene = scenes.Scene("night", (scenes.WorldObject("circle", "red", "small", "left"), scenes.WorldObject("square", "blue", "large", "right")))
    words, roles = scenes.bob_caption_roles(scene)
    assert " ".join(words) == "night sky with a small red circle at left and a large blue square at right"
    b, link = scenes.ROLE_BACKGROUND, scenes.ROLE_LINK
    assert roles == [b, b, link, 0, 0, 0, 0, 0, 0, link, 1, 1, 1, 1, 1, 1]


def test_bob_synonyms_are_the_ones_semantic_channel_coding_finds():
    """SCC looks up longer dominant-sense WordNet synonyms that Bob knows: the world's must be among them."""
    from lsc.language.synonyms import longer_synonyms, wordnet_available

    if not wordnet_available():
        pytest.skip("WordNet is not installed (scripts/install_wordnet.sh)")
    for base, synonyms in scenes.BOB_SYNONYMS.items():
        pos = "ADJ" if base in scenes.COLORS else "NOUN"
        found = longer_synonyms(base, pos, 1, None)
        assert set(synonyms) <= set(found), (base, found)
