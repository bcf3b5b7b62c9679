"""What the world's models learn from: training prompts and their target scenes, binding prompts and
targets, the classifier's targets, and the perturbed scenes the perceptual metric learns to tell apart.

Every function draws from the `rng` it is given, in a fixed order: a part's data stream is a function
of (seed, part, step) only (see loop.train_loop).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from lsc.backends.world import CONTENT_ONLY_RATE, nets, scenes

BOB_VOCAB = nets.WordVocab(scenes.BOB_WORDS)
ALICE_VOCAB = nets.WordVocab(scenes.ALICE_WORDS)


def partial_prompt_indices(n: int, rng: np.random.Generator, shuffled_rate: float = 0.0) -> list[int | None]:
    """What Bob may receive mid-transmission, as indices into the caption's n words (None = a word
    Bob does not know): the mix that teaches him partial and shuffled prompts.

    10% empty (also the unconditional branch of classifier-free guidance), 10% a prefix, 25% a random
    subset in caption order, 15% a random subset in random order (half of them the whole caption),
    40% the full caption; and 10% of prompts get one word unknown to Bob, so that words he never learnt
    are ignored. `shuffled_rate` first sets aside that share of prompts as the whole caption in random
    order (the research code's send order, read as a bag of words); at 0 the mix and its random draws
    are exactly the base mix's.
    """
    if shuffled_rate and rng.random() < shuffled_rate:
        return [int(i) for i in rng.permutation(n)]
    u = rng.random()
    if u < 0.10:
        out: list[int | None] = []
    elif u < 0.20:
        out = list(range(int(rng.integers(1, n + 1))))
    elif u < 0.45:
        keep = rng.random(n) < rng.uniform(0.2, 0.9)
        out = [i for i in range(n) if keep[i]]
    elif u < 0.60:  # half of them every word: the research code's send order is a whole caption shuffled
        keep = rng.random(n) < (rng.uniform(0.2, 0.9) if rng.random() < 0.5 else 1.0)
        out = [i for i in range(n) if keep[i]]
        out = [out[i] for i in rng.permutation(len(out))]
    else:
        out = list(range(n))
    if out and rng.random() < 0.10:
        out.insert(int(rng.integers(len(out) + 1)), None)
    return out


def partial_prompt(words: list[str], rng: np.random.Generator) -> list[str]:
    """`partial_prompt_indices` applied to words ([UNK] for the unknown word)."""
    return ["[UNK]" if i is None else words[i] for i in partial_prompt_indices(len(words), rng)]


ALICE_STYLE_RATE = 0.5  # share of training prompts in Alice's style; the rest are Bob's own
SHUFFLE_OBJECTS_RATE = 0.5  # share of Bob-style prompts whose object phrases come in random order


def without_function_words(words: list[str], roles: list[int]) -> tuple[list[str], list[int]]:
    """A caption and its roles with the function words (scenes.FUNCTION_WORDS) dropped."""
    kept = [i for i, w in enumerate(words) if w not in scenes.FUNCTION_WORDS]
    return [words[i] for i in kept], [roles[i] for i in kept]


@dataclasses.dataclass(frozen=True)
class PromptMix:
    """How training prompts depart from Alice's and Bob's phrasing beyond the base partial-prompt mix.

    `content_only_rate` of captions lose their function words first; a further `shuffled_rate` of
    prompts is the whole caption in random order. One value travels through every part that draws
    training prompts (the generator, flow_fast's teacher pairs, the prior's code cache) and writes
    itself into their caches and states (`record`), so that a resumed cache is one of the same mix.
    """

    content_only_rate: float = CONTENT_ONLY_RATE
    shuffled_rate: float = 0.0

    def record(self) -> dict[str, float]:
        """The mix as caches and training states record it: `shuffled_rate` only when used, so that
        records written before it existed still describe the same mix."""
        return {"content_only_rate": self.content_only_rate, **({"shuffled_rate": self.shuffled_rate} if self.shuffled_rate else {})}


def training_prompt(scene: scenes.Scene, rng: np.random.Generator, mix: PromptMix = PromptMix()) -> tuple[list[str], scenes.Scene]:
    """One training prompt for a scene and the image it should produce.

    The prompt is Alice's caption or Bob's own phrasing (object phrases sometimes reordered), cut to
    a partial prompt. The target shows only the objects the prompt mentions by a colour, shape or size
    word: a prompt that names fewer objects must not make Bob invent the others, and words that name
    no object leave the scene empty, as a text-to-image model draws what it is told. Objects a partial
    Alice-style prompt names stand where her layout rule puts that many objects given the position
    words received ("a red ball on grass" is one ball in the middle, whatever the full scene held, also
    when "on the left" is what did not arrive): otherwise the same words would mean every slot, and
    Bob would hedge by drawing several. Bob's own phrasing names each object's slot ("at left"); when no
    slot word arrived, its objects stand in that usual layout too (measured before this rule: "red
    ball" gave one object in 20% of seeds, two or three in the rest).
    A share of captions (`mix.content_only_rate`) lose their function words first, with the same target:
    the meaning is in the content words, so "small orange box grass" is one box, as "a small orange box
    on grass" is, and no scheme has to wait for an article before Bob draws what was said. A further
    share (`mix.shuffled_rate`) is the whole caption in random order, with the same target as the caption.
    """
    alice = rng.random() < ALICE_STYLE_RATE
    if alice:
        words, roles = scenes.alice_caption_roles(scene)
    else:
        words, roles = scenes.bob_caption_roles(scene, rng, shuffle_objects=rng.random() < SHUFFLE_OBJECTS_RATE)
    if rng.random() < mix.content_only_rate:
        words, roles = without_function_words(words, roles)
    picked = partial_prompt_indices(len(words), rng, mix.shuffled_rate)
    prompt = ["[UNK]" if i is None else words[i] for i in picked]
    mentioned = {roles[i] for i in picked if i is not None and roles[i] >= 0 and words[i] in scenes.OBJECT_WORDS}
    if any(i is not None and roles[i] == scenes.ROLE_GROUP for i in picked):  # "balls" names every ball of its group
        mentioned |= set(scenes.alice_group(scene))
    kept = tuple(o for j, o in enumerate(scene.objects) if j in mentioned)
    if alice and kept:  # Alice's words place objects by her layout rule: draw them where they say
        said = " ".join(words[i] for i in picked if i is not None and roles[i] == scenes.ROLE_LAYOUT)
        kept = scenes.place_by_layout(kept, said)
    elif kept and not any(i is not None and words[i] in scenes.BOB_SLOT_WORDS for i in picked):
        kept = scenes.place_by_layout(kept, "")  # Bob's phrasing with no slot word received: the usual layout
    if kept != scene.objects:
        scene = dataclasses.replace(scene, objects=kept)
    return prompt, scene


def records_differ(old: dict, record: dict) -> bool:
    """Whether a cache's stored record describes other data than `record` (a missing shuffled_rate is 0)."""
    return any(old.get(k) != record.get(k) for k in {*record, "shuffled_rate"})


FINETUNE_COUNT_P = (0.25, 0.4, 0.35)  # fine-tuning sees more 2- and 3-object scenes: binding is the hard part



def binding_prompt(scene: scenes.Scene, rng: np.random.Generator, content_only_rate: float = CONTENT_ONLY_RATE) -> tuple[list[str], list[int]]:
    """A full prompt for the binding objective, in either style, with its roles. Alice places objects by her layout rule rather than slot words, so her captions need the
    objective as much as Bob's reordered phrases do: each object word must carry its object's slot."""
    if rng.random() < ALICE_STYLE_RATE:
        words, roles = scenes.alice_caption_roles(scene)
    else:
        words, roles = scenes.bob_caption_roles(scene, rng, shuffle_objects=True)
    if rng.random() < content_only_rate:  # without its function words each word must still carry its object
        words, roles = without_function_words(words, roles)
    return words, roles


def binding_targets(
    batch_scenes: list[scenes.Scene], roles: list[list[int]], width: int
) -> dict[str, torch.Tensor]:
    """Per-token targets (B, width) for BindingHead; -100 where a word says nothing about the key.
    Token 0 is [BOS]; word i of a prompt is token i + 1."""
    b = len(batch_scenes)
    out = {k: torch.full((b, width), -100, dtype=torch.long) for k in ("color", "shape", "size", "slot", "background")}
    for i, (scene, rs) in enumerate(zip(batch_scenes, roles)):
        for w, r in enumerate(rs[: width - 1]):
            if r == scenes.ROLE_BACKGROUND:
                out["background"][i, w + 1] = scenes.BACKGROUNDS.index(scene.background)
            elif r == scenes.ROLE_GROUP:  # a plural noun: the shape its objects share, not one object's slot
                out["shape"][i, w + 1] = scenes.SHAPES.index(scene.objects[scenes.alice_group(scene)[0]].shape)
            elif r >= 0:
                o = scene.objects[r]
                out["color"][i, w + 1] = scenes.COLORS.index(o.color)
                out["shape"][i, w + 1] = scenes.SHAPES.index(o.shape)
                out["size"][i, w + 1] = scenes.SIZES.index(o.size)
                out["slot"][i, w + 1] = scenes.SLOTS.index(o.slot)
    return out


def attribute_targets(batch_scenes: list[scenes.Scene]) -> dict[str, torch.Tensor]:
    """Classifier targets: background; per slot shape (0 = empty), colour and size (-100 = ignore)."""
    b = len(batch_scenes)
    bg = torch.tensor([scenes.BACKGROUNDS.index(s.background) for s in batch_scenes])
    shape = torch.zeros(b, 3, dtype=torch.long)
    color = torch.full((b, 3), -100, dtype=torch.long)
    size = torch.full((b, 3), -100, dtype=torch.long)
    for i, s in enumerate(batch_scenes):
        for o in s.objects:
            j = scenes.SLOTS.index(o.slot)
            shape[i, j] = 1 + scenes.SHAPES.index(o.shape)
            color[i, j] = scenes.COLORS.index(o.color)
            size[i, j] = scenes.SIZES.index(o.size)
    return {"background": bg, "shape": shape, "color": color, "size": size}


def perturb_scene(scene: scenes.Scene, rng: np.random.Generator) -> scenes.Scene:
    """The scene with one thing changed, as a person would notice it: an object's colour, shape, size
    or slot, an object removed or added, or the background; the seed (textures, jitter) is redrawn."""
    objects = list(scene.objects)
    free = [s for s in scenes.SLOTS if s not in {o.slot for o in objects}]
    kinds = ["color", "shape", "size", "remove", "background"] + (["move", "add"] if free else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    j = int(rng.integers(len(objects)))
    o = objects[j]
    if kind == "background":
        background = [b for b in scenes.BACKGROUNDS if b != scene.background][int(rng.integers(len(scenes.BACKGROUNDS) - 1))]
        scene = dataclasses.replace(scene, background=background)
    elif kind == "remove":
        objects.pop(j)
    elif kind == "add":
        objects.append(scenes.WorldObject(scenes.SHAPES[int(rng.integers(3))], scenes.COLORS[int(rng.integers(6))], scenes.SIZES[int(rng.integers(2))], free[int(rng.integers(len(free)))]))
    elif kind == "move":
        objects[j] = dataclasses.replace(o, slot=free[int(rng.integers(len(free)))])
    else:
        values = {"color": scenes.COLORS, "shape": scenes.SHAPES, "size": scenes.SIZES}[kind]
        other = [v for v in values if v != getattr(o, kind)]
        objects[j] = dataclasses.replace(o, **{kind: other[int(rng.integers(len(other)))]})
    objects.sort(key=lambda x: scenes.SLOTS.index(x.slot))
    return dataclasses.replace(scene, objects=tuple(objects), seed=int(rng.integers(2**31)))


def remove_object(scene: scenes.Scene, rng: np.random.Generator) -> scenes.Scene:
    """The scene with one of its objects taken away (the background alone for a one-object scene); new seed."""
    objects = list(scene.objects)
    objects.pop(int(rng.integers(len(objects))))
    return dataclasses.replace(scene, objects=tuple(objects), seed=int(rng.integers(2**31)))
