"""Does Bob read meaning? The `lsc world eval` measures of how his receiver reacts to words.

Stable Diffusion reads its prompt through CLIP's text encoder, close to a bag of words: the
content words carry the picture and articles, conjunctions and prepositions weigh little. These
measures check that the world's receiver behaves that way, so that a scheme sending content words
first is judged on meaning, not on when the function words arrive:

- `bob_reads_content`: Alice's caption without its function words against the full caption.
- `count_from_noun`: a singular noun alone is one object, a plural noun several.
- `partial_stated_accuracy`: random subsets of a caption (caption order), every size: what the received
  words state is right in the image; what no received word states is free.
- `function_word_share`: in random-order transmissions, how much of the distance drop function words bring.
- `bob_unordered`: a whole caption shuffled (the research code's send order), judged with and without
  binding (which object a colour lands on).

Each scene is generated with its own noise seed, as `evaluate.evaluate_world` does.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np

from lsc.backends.world import scenes

Generate = Callable[[list[str], int], np.ndarray]  # prompts, noise seed -> images
Read = Callable[[np.ndarray], list[dict[str, Any]]]  # images -> what the attribute reader sees
Distances = Callable[[np.ndarray, np.ndarray], np.ndarray]  # reference image, images -> distances

_ATTRS = ("shape", "color", "size")
_KIND = {
    **{w: "color" for w in scenes.COLORS},
    **{w: "shape" for w in scenes.ALICE_SHAPE.values()},
    **{w: "size" for w in scenes.ALICE_SIZE.values() if w},
}


def _share(values: Sequence[bool]) -> float:
    return round(float(np.mean(values)), 4) if len(values) else 0.0


# ------------------------------------------------------------------------------- what words state
@dataclasses.dataclass(frozen=True)
class Stated:
    """What some of Alice's words state about her scene: per object named, the attributes stated (and
    the slot, when a position word places it); the background when a background word came."""

    objects: tuple[dict[str, str], ...]
    background: str | None

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def attribute_count(self) -> int:
        return int(self.background is not None) + sum(len(o) for o in self.objects)


def stated_by(scene: scenes.Scene, received: Sequence[int]) -> Stated:
    """The attributes Alice's received word indices state about `scene`.

    A shape word states its object's shape, a size word its size, a colour word its colour only with
    its object's noun (alone it floats: "red" may be any red thing); an object's phrase without a size
    word states the unmarked size only when it arrived whole (else a size word may be what is missing).
    A plural noun states the shape of every object of its group. A position word ("left", "right") states the slots Alice's layout rule
    gives the objects named; with none, positions are free. Background words state the background.
    """
    words, roles = scenes.alice_caption_roles(scene)
    got = set(received)
    group = scenes.alice_group(scene)
    sized = {roles[i] for i, w in enumerate(words) if roles[i] >= 0 and _KIND.get(w) == "size"}
    # The unmarked size is stated by the absence of a size word: only a phrase received whole says it.
    phrase_of = {j: {i for i, r in enumerate(roles) if r == j or (r == scenes.ROLE_GROUP and j in group)} for j in range(len(scene.objects))}
    whole = {j for j, idx in phrase_of.items() if idx <= got}
    nouned: set[int] = set()
    for i in got:
        if roles[i] == scenes.ROLE_GROUP:
            nouned |= set(group)
        elif roles[i] >= 0 and _KIND.get(words[i]) == "shape":
            nouned.add(roles[i])
    per_object: dict[int, dict[str, str]] = {}
    for i in sorted(got):
        r, w = roles[i], words[i]
        targets = list(group) if r == scenes.ROLE_GROUP else [r] if r >= 0 and w in _KIND else []
        for j in targets:
            o = scene.objects[j]
            kind = "shape" if r == scenes.ROLE_GROUP else _KIND[w]
            if kind == "color" and j not in nouned:
                continue
            attrs = per_object.setdefault(j, {})
            attrs[kind] = getattr(o, kind)
            if kind == "shape" and j not in sized and j in whole:
                attrs["size"] = o.size
    background = scene.background if any(roles[i] == scenes.ROLE_BACKGROUND for i in got) else None
    said = " ".join(words[i] for i in got if roles[i] == scenes.ROLE_LAYOUT)
    named = sorted(per_object)
    if ("left" in said.split() or "right" in said.split()) and named:
        placed = scenes.place_by_layout(tuple(scene.objects[j] for j in named), said)
        for j, o in zip(named, placed):
            per_object[j]["slot"] = o.slot
    return Stated(tuple(per_object[j] for j in named), background)


def stated_hits(stated: Stated, seen: dict[str, Any], binding: bool = True) -> int:
    """How many stated attributes Bob's image (as the reader sees it) gets right.

    With `binding`, each named object is matched to one object of the image (the assignment that gets
    most right), so a colour on the wrong object is wrong. Without it, attributes are compared as
    multisets per kind (shapes, colours, sizes, slots), as a bag-of-words reader would be judged."""
    hits = int(stated.background is not None and seen["background"] == stated.background)
    seen_objects = seen["objects"]
    if not binding:
        for key in (*_ATTRS, "slot"):
            want = Counter(o[key] for o in stated.objects if key in o)
            hits += sum((want & Counter(o[key] for o in seen_objects)).values())
        return hits
    best = 0
    padded = list(seen_objects) + [None] * max(0, len(stated.objects) - len(seen_objects))
    for perm in itertools.permutations(range(len(padded)), len(stated.objects)):
        score = sum(
            sum(padded[p] is not None and padded[p][k] == v for k, v in want.items())
            for want, p in zip(stated.objects, perm)
        )
        best = max(best, score)
    return hits + best


# ---------------------------------------------------------------------------------------- measures
def bob_reads_content(scene_list: list[scenes.Scene], captions: list[str], generate: Generate, distance_to: Callable[[int, np.ndarray], np.ndarray],
                      threshold: float, seed: int) -> dict[str, float]:
    """Alice's caption (as her captioner wrote it) and its content words alone, each scene with its
    own noise: success rates under the threshold and mean distances."""
    full, content = [], []
    for i, caption in enumerate(captions):
        words = caption.split()
        imgs = generate([caption, " ".join(scenes.content_words(words))], seed + i)
        d = distance_to(i, imgs)
        full.append(float(d[0]))
        content.append(float(d[1]))
    full_rate, content_rate = _share([d < threshold for d in full]), _share([d < threshold for d in content])
    return {
        "success_rate": content_rate,
        "mean_lpips": round(float(np.mean(content)), 4),
        "full_success_rate": full_rate,
        "full_mean_lpips": round(float(np.mean(full)), 4),
        "ratio": round(content_rate / full_rate, 4) if full_rate else 0.0,
    }


def _one_object_scene(rng: np.random.Generator) -> scenes.Scene:
    return scenes.sample_scene(rng, (1.0, 0.0, 0.0))


def _group_scene(rng: np.random.Generator) -> scenes.Scene:
    """Two or three neighbours of one shape and different colours: Alice names them with a plural noun."""
    base = scenes.sample_scene(rng, (0.0, 0.6, 0.4))
    shape = base.objects[0].shape
    colors = rng.choice(len(scenes.COLORS), size=len(base.objects), replace=False)
    objects = tuple(dataclasses.replace(o, shape=shape, color=scenes.COLORS[int(c)]) for o, c in zip(base.objects, colors))
    return dataclasses.replace(base, objects=objects)


def count_from_noun(generate: Generate, read: Read, n: int, seed: int) -> dict[str, Any]:
    """Singular noun, no article or count word ("small orange box grass"): exactly one object; plural
    noun ("red white balls grass"): at least two; each with and without position words. And Alice's
    one-object caption with its article ("a yellow box on grass"): one object."""
    rng = np.random.default_rng([seed, 5151])
    singular, plural, article = [], [], []
    for i in range(n):
        one, many = _one_object_scene(rng), _group_scene(rng)
        words_one, roles_one = scenes.alice_caption_roles(one)
        words_many, roles_many = scenes.alice_caption_roles(many)
        prompts = []
        for words, roles in ((words_one, roles_one), (words_many, roles_many)):
            content = [w for w in scenes.content_words(words)]
            unplaced = [w for w, r in zip(words, roles) if w not in scenes.FUNCTION_WORDS and r != scenes.ROLE_LAYOUT]
            prompts += [" ".join(content), " ".join(unplaced)]
        prompts.append(" ".join(words_one))
        seen = read(generate(prompts, seed + i))
        singular += [seen[0]["count"] == 1, seen[1]["count"] == 1]
        plural += [seen[2]["count"] >= 2, seen[3]["count"] >= 2]
        article.append(seen[4]["count"] == 1)
    return {
        "singular_one": _share(singular),
        "plural_several": _share(plural),
        "article_one": _share(article),
        "prompts": 5 * n,
    }


def partial_stated_accuracy(scene_list: list[scenes.Scene], generate: Generate, read: Read, seed: int) -> dict[str, Any]:
    """For each scene and each size k = 1 .. n-1, one random k-subset of Alice's (true) caption in
    caption order: the share of stated attributes Bob's image gets right, overall and by k."""
    rng = np.random.default_rng([seed, 6161])
    by_size: dict[int, list[int]] = {}
    for i, scene in enumerate(scene_list):
        words, _ = scenes.alice_caption_roles(scene)
        n = len(words)
        subsets = [sorted(rng.choice(n, size=k, replace=False).tolist()) for k in range(1, n)]
        if not subsets:
            continue
        imgs = generate([" ".join(words[j] for j in s) for s in subsets], seed + i)
        for s, seen in zip(subsets, read(imgs)):
            said = stated_by(scene, s)
            tally = by_size.setdefault(len(s), [0, 0])
            tally[0] += stated_hits(said, seen)
            tally[1] += said.attribute_count
    right, total = sum(v[0] for v in by_size.values()), sum(v[1] for v in by_size.values())
    return {
        "accuracy": round(right / max(1, total), 4),
        "stated_attributes": total,
        "by_size": {str(k): round(v[0] / v[1], 4) if v[1] else None for k, v in sorted(by_size.items())},
    }


def function_word_share(scene_list: list[scenes.Scene], generate: Generate, distance_to: Callable[[int, np.ndarray], np.ndarray],
                        seed: int) -> dict[str, float]:
    """Random-order transmissions of Alice's (true) captions, Bob's prompt in caption order after each
    word: the share of the total distance drop that arrives with function words, and the mean drop
    per content word and per function word."""
    rng = np.random.default_rng([seed, 7171])
    drop_function = drop_total = 0.0
    per_content, per_function = [], []
    for i, scene in enumerate(scene_list):
        words, _ = scenes.alice_caption_roles(scene)
        order = rng.permutation(len(words)).tolist()
        prompts = [" ".join(words[j] for j in sorted(order[:k])) for k in range(len(words) + 1)]
        d = distance_to(i, generate(prompts, seed + i))
        drop_total += float(d[0] - d[-1])
        for k, j in enumerate(order):
            drop = float(d[k] - d[k + 1])
            if words[j] in scenes.FUNCTION_WORDS:
                drop_function += drop
                per_function.append(drop)
            else:
                per_content.append(drop)
    return {
        "share": round(drop_function / drop_total, 4) if drop_total else 0.0,
        "drop_per_content_word": round(float(np.mean(per_content)), 4) if per_content else 0.0,
        "drop_per_function_word": round(float(np.mean(per_function)), 4) if per_function else 0.0,
    }


def bob_unordered(scene_list: list[scenes.Scene], generate: Generate, read: Read, distance_to: Callable[[int, np.ndarray], np.ndarray],
                  threshold: float, seed: int) -> dict[str, float]:
    """Alice's whole (true) caption in a random order: stated-attribute accuracy without binding (a
    colour may sit on the other object, positions free) and with it, images with every attribute
    right without binding, and the success rate under the threshold. The object count is one of the
    stated attributes: drawing objects no word names is wrong."""
    rng = np.random.default_rng([seed, 8181])
    unbound = bound = total = 0
    all_right, under = [], []
    for i, scene in enumerate(scene_list):
        words, _ = scenes.alice_caption_roles(scene)
        prompt = " ".join(words[j] for j in rng.permutation(len(words)))
        imgs = generate([prompt], seed + i)
        seen = read(imgs)[0]
        said = stated_by(scene, range(len(words)))
        said = Stated(tuple({k: v for k, v in o.items() if k != "slot"} for o in said.objects), said.background)
        count_right = int(seen["count"] == said.count)  # the caption's nouns state how many objects there are
        u = stated_hits(said, seen, binding=False) + count_right
        unbound += u
        bound += stated_hits(said, seen, binding=True) + count_right
        total += said.attribute_count + 1
        all_right.append(u == said.attribute_count + 1)
        under.append(float(distance_to(i, imgs)[0]) < threshold)
    return {
        "stated_accuracy_unbound": round(unbound / max(1, total), 4),
        "stated_accuracy_bound": round(bound / max(1, total), 4),
        "all_right_unbound": _share(all_right),
        "success_rate": _share(under),
    }
