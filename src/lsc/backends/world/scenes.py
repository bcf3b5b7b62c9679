"""The embedded scene world: seeded scenes, their pixels, and captions in Alice's and Bob's styles.

A scene is a background and 1 to 3 objects, each in one of three horizontal slots (left, middle,
right) with a shape, a colour and a size. Pixels are rendered at 4x and box-downsampled, so edges are
anti-aliased the way a camera would see them; textures and small position jitter vary with the seed.

The two caption styles differ the way BLIP captions and CLIP prompts do. Alice writes short ordinary
English, salient things first, and leaves out what a caption would: the size of an ordinary (large)
object, which English leaves unmarked ("a red ball", "a small blue box"), and positions when the
layout is the usual one (one object in the middle, two apart, three in a row): "a red ball and a
small blue box on grass". Neighbouring objects of one shape and different colours share a plural
noun, as BLIP says "red and white flowers": "yellow, small white and red balls at night" (the
tokenizer drops the comma). Bob's prompts are tag-like inventories with other words
for some concepts ("green grass with a large red circle at left and a small blue square at right").
Bob's generator learns both styles (Stable Diffusion reads BLIP's English), but renders his own,
complete phrasing better: that gap is what semantic knowledge distillation can close.

This module is the world's ground truth. Bob's generator never calls the renderer and nothing parses
captions by hand at run time; the caption parser (caption_parser) exists only to score captions in `lsc world eval`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lsc.backends.world import pixels
from lsc.interfaces import SceneSample

IMAGE_SIZE = 32
_SUPERSAMPLE = 4

BACKGROUNDS = ("sky", "grass", "sand", "night", "brick")
COLORS = ("red", "blue", "yellow", "purple", "white", "orange")
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
SLOTS = ("left", "middle", "right")

COLOR_RGB = {
    "red": (0.86, 0.10, 0.10),
    "blue": (0.12, 0.25, 0.90),
    "yellow": (0.97, 0.88, 0.12),
    "purple": (0.55, 0.15, 0.70),
    "white": (0.97, 0.97, 0.97),
    "orange": (0.98, 0.55, 0.08),
}

# Alice's (BLIP-like) and Bob's (CLIP-prompt-like) words for each concept.
ALICE_SHAPE = {"circle": "ball", "square": "box", "triangle": "triangle"}
ALICE_PLURAL = {"ball": "balls", "box": "boxes", "triangle": "triangles"}
BOB_SHAPE = {"circle": "circle", "square": "square", "triangle": "triangle"}
ALICE_SIZE = {"small": "small", "large": ""}  # "large" is unmarked: "a red ball" is a large one
BOB_SIZE = {"small": "small", "large": "large"}
# Where Alice states positions: only when the layout is not the usual one for that many objects.
ALICE_LAYOUT = {
    ("middle",): "",
    ("left",): "on the left",
    ("right",): "on the right",
    ("left", "right"): "",
    ("left", "middle"): "on the left",
    ("middle", "right"): "on the right",
    ("left", "middle", "right"): "",
}
BOB_SLOT = {"left": "at left", "middle": "at center", "right": "at right"}
BOB_SLOT_WORDS = frozenset(w for phrase in BOB_SLOT.values() for w in phrase.split() if w != "at")  # "left", "center", "right"
ALICE_BACKGROUND = {
    "sky": "in the sky",
    "grass": "on grass",
    "sand": "on the beach",
    "night": "at night",
    "brick": "by a wall",
}
BOB_BACKGROUND = {
    "sky": "blue sky",
    "grass": "green grass",
    "sand": "sandy desert",
    "night": "night sky",
    "brick": "brick wall",
}

# Bob's prompts also use longer synonyms for some words, as CLIP prompts vary their wording. They are
# the dominant-sense WordNet synonyms of the base words, so semantic channel coding (SCC, which looks
# synonyms up in WordNet and keeps those Bob knows) finds them. Each occurrence in a training prompt
# becomes a synonym with probability BOB_SYNONYM_RATE; reference captions use the base words.
BOB_SYNONYMS = {
    "red": ("crimson", "scarlet"),
    "blue": ("bluish",),
    "yellow": ("yellowish",),
    "purple": ("purplish",),
    "orange": ("orangish",),
    "triangle": ("trilateral",),
    "night": ("nighttime",),
}
BOB_SYNONYM_RATE = 0.4
SYNONYM_BASE = {syn: base for base, syns in BOB_SYNONYMS.items() for syn in syns}

_SLOT_X = {"left": 5.5, "middle": 16.0, "right": 26.5}
_RADIUS = {"small": 3.6, "large": 5.2}


@dataclass(frozen=True)
class WorldObject:
    shape: str
    color: str
    size: str
    slot: str


@dataclass(frozen=True)
class Scene:
    """Ground truth of one image: what is where. `seed` fixes textures and jitter."""

    background: str
    objects: tuple[WorldObject, ...]
    seed: int = 0

    def attributes(self) -> dict[str, Any]:
        return {
            "background": self.background,
            "count": len(self.objects),
            "objects": [o.__dict__.copy() for o in self.objects],
        }


# Half the pictures show one salient thing, as photos of a captioning data set often do.
COUNT_PROBABILITIES = (0.5, 0.35, 0.15)


def sample_scene(rng: np.random.Generator, count_p: tuple[float, float, float] = COUNT_PROBABILITIES) -> Scene:
    """A random scene: 1 object (50%), 2 (35%) or 3 (15%) by default, in distinct slots, left to right."""
    count = int(rng.choice([1, 2, 3], p=list(count_p)))
    slots = sorted(rng.choice(3, size=count, replace=False).tolist())
    objects = tuple(
        WorldObject(
            shape=SHAPES[rng.integers(len(SHAPES))],
            color=COLORS[rng.integers(len(COLORS))],
            size=SIZES[rng.integers(len(SIZES))],
            slot=SLOTS[s],
        )
        for s in slots
    )
    return Scene(BACKGROUNDS[rng.integers(len(BACKGROUNDS))], objects, int(rng.integers(2**31)))


# ----------------------------------------------------------------------------------------- rendering
def render(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """Pixels (size, size, 3) float32 in [0, 1] of a scene; the same scene gives the same pixels."""
    rng = np.random.default_rng(scene.seed)
    n = size * _SUPERSAMPLE
    img = pixels.background(scene.background, rng, n)
    scale = n / IMAGE_SIZE
    for obj in scene.objects:
        cx = (_SLOT_X[obj.slot] + rng.uniform(-0.8, 0.8)) * scale
        cy = (16.0 + rng.uniform(-3.0, 3.0)) * scale
        r = _RADIUS[obj.size] * scale
        mask = pixels.shape_mask(obj.shape, cx, cy, r, n)
        shade = np.array(COLOR_RGB[obj.color], np.float32) * rng.uniform(0.92, 1.05)
        img[mask] = np.clip(shade, 0, 1)
    img = img.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    return img.astype(np.float32)


# ------------------------------------------------------------------------------------------ captions
ROLE_BACKGROUND, ROLE_LINK, ROLE_LAYOUT, ROLE_GROUP = -1, -2, -3, -4


def alice_object_groups(scene: Scene) -> list[tuple[int, ...]]:
    """How Alice names the objects, left to right: one tuple of object indices per noun phrase.

    Neighbours of one shape and pairwise different colours share a plural noun ("red and white
    balls"); any other object has a phrase of its own. With at most three objects a caption has at
    most one such group, so ROLE_GROUP (its plural noun) is unambiguous.
    """
    objects = scene.objects
    groups: list[tuple[int, ...]] = []
    i = 0
    while i < len(objects):
        j = i
        while j + 1 < len(objects) and objects[j + 1].shape == objects[i].shape:
            j += 1
        run = tuple(range(i, j + 1))
        if len(run) > 1 and len({objects[k].color for k in run}) == len(run):
            groups.append(run)
            i = j + 1
        else:
            groups.append((i,))
            i += 1
    return groups


def alice_group(scene: Scene) -> tuple[int, ...]:
    """The objects Alice's plural noun (ROLE_GROUP) names; () when her caption has none."""
    return next((g for g in alice_object_groups(scene) if len(g) > 1), ())


def alice_caption_roles(scene: Scene) -> tuple[list[str], list[int]]:
    """Alice's caption as words, and what each word describes: object index, ROLE_BACKGROUND,
    ROLE_LINK ("and"), ROLE_LAYOUT (a position phrase that places the objects as a group) or
    ROLE_GROUP (the plural noun shared by `alice_group(scene)`)."""
    pairs: list[tuple[str, int]] = []
    groups = alice_object_groups(scene)
    for g, group in enumerate(groups):
        if g and g == len(groups) - 1:
            pairs.append(("and", ROLE_LINK))
        if len(group) == 1:
            o = scene.objects[group[0]]
            words = [w for w in (ALICE_SIZE[o.size], o.color, ALICE_SHAPE[o.shape]) if w]
            words.insert(0, "an" if words[0][0] in "aeiou" else "a")
            pairs.extend((w, group[0]) for w in words)
            continue
        for n, j in enumerate(group):
            if n and n == len(group) - 1:
                pairs.append(("and", ROLE_LINK))
            o = scene.objects[j]
            pairs.extend((w, j) for w in (ALICE_SIZE[o.size], o.color) if w)
        pairs.append((ALICE_PLURAL[ALICE_SHAPE[scene.objects[group[0]].shape]], ROLE_GROUP))
    layout = ALICE_LAYOUT[tuple(o.slot for o in scene.objects)]
    pairs.extend((w, ROLE_LAYOUT) for w in layout.split())
    pairs.extend((w, ROLE_BACKGROUND) for w in ALICE_BACKGROUND[scene.background].split())
    return [w for w, _ in pairs], [r for _, r in pairs]


def place_by_layout(objects: tuple[WorldObject, ...], said: str) -> tuple[WorldObject, ...]:
    """Objects (left to right) moved to the slots Alice's layout rule gives that many objects with the
    position words `said` ("", "on the left", "on the right", or fragments of them); unchanged when the
    rule has no such layout."""
    phrase = "on the left" if "left" in said.split() else "on the right" if "right" in said.split() else ""
    slots = next((k for k, p in ALICE_LAYOUT.items() if len(k) == len(objects) and p == phrase), None)
    if slots is None:
        return objects
    return tuple(dataclasses.replace(o, slot=s) for o, s in zip(objects, slots))


def alice_caption(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """Alice's (BLIP-like) caption: objects left to right, then where (if unusual), then the background.

    "a small red ball on the left on grass", "a red ball and a blue box in the sky", "a red ball a
    small blue box and a white triangle at night", "red and small white balls and a blue box by a wall". `rng` is accepted for symmetry with `bob_caption`; Alice,
    like BLIP decoding greedily, always says the same thing about the same scene.
    """
    return " ".join(alice_caption_roles(scene)[0])


def bob_caption_roles(
    scene: Scene, rng: np.random.Generator | None = None, synonyms: bool = True, shuffle_objects: bool = False
) -> tuple[list[str], list[int]]:
    """Bob's prompt as words, and what each word describes: object index, ROLE_BACKGROUND or ROLE_LINK.

    The roles label the training prompts for the text encoder's binding objective (train.py); they
    come from how the prompt was written, never from parsing it. With `shuffle_objects` (and an rng)
    the object phrases come in a random order: each phrase names its own slot, so Bob must place an
    object by what its phrase says, not by where the phrase stands.
    """
    order = list(range(len(scene.objects)))
    if shuffle_objects and rng is not None:
        order = [order[i] for i in rng.permutation(len(order))]
    objects: list[tuple[str, int]] = []
    for n, j in enumerate(order):
        o = scene.objects[j]
        if n:
            objects.append(("and", ROLE_LINK))
        phrase = f"a {BOB_SIZE[o.size]} {o.color} {BOB_SHAPE[o.shape]} {BOB_SLOT[o.slot]}"
        objects.extend((w, j) for w in phrase.split())
    background = [(w, ROLE_BACKGROUND) for w in BOB_BACKGROUND[scene.background].split()]
    variant = 0 if rng is None else int(rng.integers(2))
    if variant == 1:
        pairs = objects + [("with", ROLE_LINK)] + background
    else:
        pairs = background + [("with", ROLE_LINK)] + objects
    words = [w for w, _ in pairs]
    if rng is not None and synonyms:
        for i, w in enumerate(words):
            if w in BOB_SYNONYMS and rng.random() < BOB_SYNONYM_RATE:
                choices = BOB_SYNONYMS[w]
                words[i] = choices[int(rng.integers(len(choices)))]
    return words, [r for _, r in pairs]


def bob_caption(scene: Scene, rng: np.random.Generator | None = None, synonyms: bool = True) -> str:
    """Bob's (CLIP-prompt-like) phrasing: background first or last, tag-like words.

    With an rng, the phrasing is drawn and (with `synonyms`) some words become their synonyms.
    """
    return " ".join(bob_caption_roles(scene, rng, synonyms)[0])


def _vocabulary(captions: list[str]) -> list[str]:
    return sorted({w for c in captions for w in c.split()})


def _all_phrases(table: dict[str, str]) -> list[str]:
    return list(table.values())


ALICE_WORDS: list[str] = _vocabulary(
    ["a an and", *COLORS]
    + _all_phrases(ALICE_SHAPE)
    + _all_phrases(ALICE_PLURAL)
    + _all_phrases(ALICE_SIZE)
    + [p for p in ALICE_LAYOUT.values() if p]
    + _all_phrases(ALICE_BACKGROUND)
)
BOB_OWN_WORDS: list[str] = _vocabulary(
    ["a and with", *COLORS]
    + _all_phrases(BOB_SHAPE)
    + _all_phrases(BOB_SIZE)
    + _all_phrases(BOB_SLOT)
    + _all_phrases(BOB_BACKGROUND)
    + list(SYNONYM_BASE)
)
# Bob reads ordinary English too (as Stable Diffusion reads BLIP's captions): he learns Alice's words.
BOB_WORDS: list[str] = sorted(set(BOB_OWN_WORDS) | set(ALICE_WORDS))

# The Bob word each of Alice's words means, where he has one: her words start from his when Bob's
# text encoder is fine-tuned to read her captions.
ALICE_TO_BOB = {"an": "a", "ball": "circle", "box": "square", "beach": "desert", "balls": "circle", "boxes": "square",
                "triangles": "triangle"}

# Words that name an object (a colour, a shape or a size, in either style or as Bob's synonym).
OBJECT_WORDS = frozenset(w for w in [*COLORS, *ALICE_SHAPE.values(), *ALICE_PLURAL.values(), *BOB_SHAPE.values(), *ALICE_SIZE.values(), *BOB_SIZE.values(), *SYNONYM_BASE] if w)

# Function words: articles, conjunctions and prepositions of either style. They carry no attribute of
# their own; a text-to-image model reading its prompt nearly as a bag of words (CLIP) draws the same
# picture without them, and so must Bob (a singular noun alone is one object, a plural noun several).
FUNCTION_WORDS = frozenset({"a", "an", "the", "and", "with", "on", "in", "at", "by"})


def content_words(words: list[str]) -> list[str]:
    """The caption's words without its function words, in caption order."""
    return [w for w in words if w not in FUNCTION_WORDS]


# --------------------------------------------------------------------------------------------- data
@dataclass
class WorldBatch:
    images: np.ndarray  # (B, H, W, 3)
    scenes: list[Scene] = field(default_factory=list)


def sample_batch(rng: np.random.Generator, batch_size: int, count_p: tuple[float, float, float] = COUNT_PROBABILITIES) -> WorldBatch:
    scenes = [sample_scene(rng, count_p) for _ in range(batch_size)]
    return WorldBatch(np.stack([render(s) for s in scenes]), scenes)


def world_scene(index: int, seed: int = 0) -> Scene:
    """The index-th scene of a study seed: stable whatever the study's size."""
    rng = np.random.default_rng([seed, index, 7919])
    return sample_scene(rng)


def world_samples(n: int, seed: int = 0) -> list[SceneSample]:
    """The default study's images: `n` scenes with Alice- and Bob-style captions and ground truth.

    Held out from training: training scenes come from seeds >= 10**6 (see train.py).
    """
    samples = []
    for i in range(n):
        scene = world_scene(i, seed)
        samples.append(
            SceneSample(
                image_id=f"world-{seed}-{i:05d}",
                image=render(scene),
                captions=[alice_caption(scene), bob_caption(scene)],
                attributes=scene.attributes(),
            )
        )
    return samples


def skd_example_pairs(n: int = 32, seed: int = 123) -> list[tuple[str, str]]:
    """(Alice-style, Bob-style) captions of the same scenes: SKD's in-context examples."""
    rng = np.random.default_rng([seed, 31337])
    pairs = []
    for _ in range(n):
        scene = sample_scene(rng)
        pairs.append((alice_caption(scene, rng), bob_caption(scene, rng, synonyms=False)))
    return pairs
