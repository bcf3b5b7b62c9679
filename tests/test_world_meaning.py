"""The measures of whether Bob reads meaning (lsc.backends.world.meaning), on worked examples and fakes."""

import numpy as np

from lsc.backends.world import meaning, scenes
from lsc.backends.world.scenes import Scene, WorldObject

TWO = Scene("grass", (WorldObject("circle", "red", "large", "left"), WorldObject("square", "blue", "small", "right")))
GROUP = Scene("night", (WorldObject("circle", "red", "large", "left"), WorldObject("circle", "white", "small", "right")))
LEFT = Scene("sky", (WorldObject("triangle", "yellow", "large", "left"),))


def _indices(scene: Scene, said: str) -> list[int]:
    words, _ = scenes.alice_caption_roles(scene)
    return [words.index(w) for w in said.split()]


def test_content_words_drop_articles_conjunctions_and_prepositions():
    assert scenes.content_words("a red ball and a small blue box on the left on grass".split()) == "red ball small blue box left grass".split()


def test_a_colour_is_stated_only_with_its_noun_and_a_bare_noun_states_the_unmarked_size():
    assert scenes.alice_caption(TWO) == "a red ball and a small blue box on grass"
    said = meaning.stated_by(TWO, _indices(TWO, "red box"))  # the red belongs to the ball, which did not come
    assert said.objects == ({"shape": "square"},) and said.background is None  # the box's size has its own word
    said = meaning.stated_by(TWO, _indices(TWO, "a red ball grass"))  # the ball's whole phrase: no size word means large
    assert said.objects == ({"color": "red", "shape": "circle", "size": "large"},) and said.background == "grass"
    assert said.attribute_count == 4
    said = meaning.stated_by(TWO, _indices(TWO, "red ball"))  # without its article, "small" may be what is missing
    assert said.objects == ({"color": "red", "shape": "circle"},)


def test_a_plural_noun_states_every_object_of_its_group_and_position_words_place_them():
    assert scenes.alice_caption(GROUP) == "red and small white balls at night"
    said = meaning.stated_by(GROUP, _indices(GROUP, "balls"))
    assert said.objects == ({"shape": "circle"}, {"shape": "circle"})
    said = meaning.stated_by(GROUP, _indices(GROUP, "red and small white balls"))
    assert said.objects == ({"color": "red", "shape": "circle", "size": "large"}, {"color": "white", "shape": "circle", "size": "small"})
    assert scenes.alice_caption(LEFT) == "a yellow triangle on the left in the sky"
    said = meaning.stated_by(LEFT, _indices(LEFT, "triangle left"))
    assert said.objects == ({"shape": "triangle", "slot": "left"},)
    assert meaning.stated_by(LEFT, _indices(LEFT, "a yellow triangle")).objects == ({"color": "yellow", "shape": "triangle", "size": "large"},)


def test_binding_decides_whether_a_colour_on_the_other_object_counts():
    said = meaning.Stated(({"color": "red", "shape": "circle"}, {"color": "blue", "shape": "square"}), "grass")
    seen = {"background": "grass", "count": 2, "objects": [
        {"shape": "circle", "color": "blue", "size": "large", "slot": "left"},
        {"shape": "square", "color": "red", "size": "small", "slot": "right"}]}
    assert meaning.stated_hits(said, seen, binding=False) == 5  # background, both shapes, both colours
    assert meaning.stated_hits(said, seen, binding=True) == 3  # background and one attribute per object
    seen_one = {"background": "sky", "count": 1, "objects": [seen["objects"][0]]}
    assert meaning.stated_hits(said, seen_one, binding=True) == 1  # the missing object gets nothing right


class _Fake:
    """A generator whose 'image' is the prompt's index, and a distance that falls by one per content word
    of the scene's caption present in the prompt (function words change nothing)."""

    def __init__(self, scene_list):
        self.prompts: list[str] = []
        self.scene_list = scene_list

    def generate(self, prompts, seed):
        start = len(self.prompts)
        self.prompts += prompts
        return np.arange(start, start + len(prompts), dtype=np.float32)

    def distance_to(self, i, imgs):
        content = scenes.content_words(scenes.alice_caption(self.scene_list[i]).split())
        return np.array([len(content) - sum(w in self.prompts[int(k)].split() for w in set(content)) for k in imgs], float)


def test_function_word_share_is_zero_when_only_content_words_move_the_distance():
    scene_list = [TWO, GROUP, LEFT]
    fake = _Fake(scene_list)
    r = meaning.function_word_share(scene_list, fake.generate, fake.distance_to, seed=1)
    assert r["share"] == 0.0 and r["drop_per_function_word"] == 0.0 and r["drop_per_content_word"] == 1.0


def test_bob_reads_content_compares_the_content_words_with_the_full_caption():
    scene_list = [TWO, GROUP, LEFT]
    fake = _Fake(scene_list)
    captions = [scenes.alice_caption(s) for s in scene_list]
    r = meaning.bob_reads_content(scene_list, captions, fake.generate, fake.distance_to, threshold=0.5, seed=1)
    assert r["success_rate"] == r["full_success_rate"] == 1.0 and r["ratio"] == 1.0
    assert fake.prompts[1] == "red ball small blue box grass"
