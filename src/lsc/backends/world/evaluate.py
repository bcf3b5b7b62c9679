"""`lsc world eval`: how good the world's models are, measured on held-out scenes.

The world knows the truth of every scene, so fidelity is measured exactly: Alice's captions are
compared with the caption her style gives the true scene, and Bob's images are read back by the
attribute classifier (trained on rendered scenes only). The same pass derives the success threshold
of the perceptual metric from what success means: an image under it shows every object of the scene
in its place and every attribute the received words state right.

Every scene is generated with its own noise seed (`seed + index`), as a study does per image, so
noise-dependent failures are counted rather than hidden behind one shared noise tensor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from lsc.backends.world import caption_parser, meaning, nets, scenes, skd_eval
from lsc.interfaces import Backend

log = logging.getLogger("lsc.world.eval")

TARGET_PRECISION = 0.85  # share of images under the threshold that must be right


@torch.inference_mode()
def read_attributes(classifier: torch.nn.Module, images: np.ndarray) -> list[dict[str, Any]]:
    """What the attribute classifier sees in each image, in the format of Scene.attributes()."""
    x = nets.to_tensor(images)
    out = {k: v.argmax(-1) for k, v in classifier(x).items()}
    result = []
    for i in range(len(images)):
        objects = []
        for j, slot in enumerate(scenes.SLOTS):
            shape = int(out["shape"][i, j])
            if shape == 0:
                continue
            objects.append(
                {
                    "shape": scenes.SHAPES[shape - 1],
                    "color": scenes.COLORS[int(out["color"][i, j])],
                    "size": scenes.SIZES[int(out["size"][i, j])],
                    "slot": slot,
                }
            )
        result.append({"background": scenes.BACKGROUNDS[int(out["background"][i])], "count": len(objects), "objects": objects})
    return result


def _attribute_hits(truth: dict[str, Any], seen: dict[str, Any]) -> dict[str, float]:
    by_slot = {o["slot"]: o for o in seen["objects"]}
    objs = truth["objects"]
    return {
        "background": float(truth["background"] == seen["background"]),
        "count": float(truth["count"] == seen["count"]),
        "position": float({o["slot"] for o in objs} == set(by_slot)),
        "color": float(np.mean([by_slot.get(o["slot"], {}).get("color") == o["color"] for o in objs])),
        "shape": float(np.mean([by_slot.get(o["slot"], {}).get("shape") == o["shape"] for o in objs])),
        "size": float(np.mean([by_slot.get(o["slot"], {}).get("size") == o["size"] for o in objs])),
    }


def _all_right(truth: dict[str, Any], seen: dict[str, Any]) -> bool:
    return all(v == 1.0 for v in _attribute_hits(truth, seen).values())


# ------------------------------------------------------------------------------------ the judge
_KIND = {
    **{w: "color" for w in scenes.COLORS},
    **{w: "color" for w, base in scenes.SYNONYM_BASE.items() if base in scenes.COLORS},
    **{w: "shape" for w in (*scenes.ALICE_SHAPE.values(), *scenes.BOB_SHAPE.values())},
    **{w: "shape" for w, base in scenes.SYNONYM_BASE.items() if base in scenes.SHAPES},
    **{w: "size" for w in (*scenes.ALICE_SIZE.values(), *scenes.BOB_SIZE.values()) if w},
}


@dataclass(frozen=True)
class Statement:
    """What some received words of a caption state about its scene."""

    background: bool
    object_attributes: tuple[frozenset[str], ...]  # per object of the scene: colour / shape / size stated

    @property
    def attribute_count(self) -> int:
        return int(self.background) + sum(len(a) for a in self.object_attributes)


def statement(scene: scenes.Scene, words: Sequence[str], roles: Sequence[int], received: Sequence[int]) -> Statement:
    """The attributes the received word indices state: a colour, shape or size word of object j states
    that attribute of object j (a plural noun, every object of Alice's group); a background word states the background. An object whose phrase has
    no size word (Alice leaves the large size unmarked) has its size stated by any of its words."""
    per_object: list[set[str]] = [set() for _ in scene.objects]
    sized = {roles[i] for i, w in enumerate(words) if roles[i] >= 0 and _KIND.get(w) == "size"}
    background = False
    group = scenes.alice_group(scene) if scenes.ROLE_GROUP in roles else ()
    for i in received:
        if roles[i] == scenes.ROLE_BACKGROUND:
            background = True
        elif roles[i] == scenes.ROLE_GROUP:  # a plural noun states the shape of each object it names
            for j in group:
                per_object[j].add("shape")
                if j not in sized:
                    per_object[j].add("size")
        elif roles[i] >= 0 and words[i] in _KIND:
            per_object[roles[i]].add(_KIND[words[i]])
            if roles[i] not in sized:
                per_object[roles[i]].add("size")
    return Statement(background, tuple(frozenset(a) for a in per_object))


@dataclass(frozen=True)
class Verdict:
    right: bool  # every object in its place, nothing extra, every stated attribute right
    missing_object: bool  # a slot of the scene is empty in the image
    stated_right: int  # stated attributes the image gets right
    stated: int


def judge(scene: scenes.Scene, said: Statement, seen: dict[str, Any]) -> Verdict:
    """Does Bob's image (as the reader sees it) show what success means for these received words?"""
    truth_slots = {o.slot for o in scene.objects}
    by_slot = {o["slot"]: o for o in seen["objects"]}
    missing = bool(truth_slots - set(by_slot))
    extra = bool(set(by_slot) - truth_slots)
    hits = total = 0
    if said.background:
        total += 1
        hits += seen["background"] == scene.background
    for o, attrs in zip(scene.objects, said.object_attributes):
        for a in attrs:
            total += 1
            hits += by_slot.get(o.slot, {}).get(a) == getattr(o, a)
    return Verdict(not missing and not extra and hits == total, missing, hits, total)


def derive_threshold(distances: np.ndarray, right: np.ndarray, missing: np.ndarray, precision: float = TARGET_PRECISION) -> dict[str, float]:
    """The largest distance under which at least `precision` of the images are right and none misses
    an object; with its precision and recall (share of right images under it)."""
    order = np.argsort(distances, kind="stable")
    d, r, m = distances[order], right[order].astype(float), missing[order]
    best = float(d[0]) / 2 if len(d) else 0.0
    first_missing = int(np.argmax(m)) if m.any() else len(d)
    hits = np.cumsum(r)
    for k in range(1, first_missing + 1):  # cut between image k-1 and image k
        if hits[k - 1] / k >= precision and (k == len(d) or d[k] > d[k - 1]):
            best = float(d[k - 1] + d[k]) / 2 if k < len(d) else float(d[k - 1]) + 1e-6
    under = distances < best
    prec = float(right[under].mean()) if under.any() else 1.0
    recall = float(under[right].mean()) if right.any() else 0.0
    return {"threshold": best, "precision": prec, "recall": recall, "missing_under": int((under & missing).sum())}


def calibrate_threshold(distances: np.ndarray, correct: np.ndarray) -> float:
    """The distance that best separates correct from wrong images (maximum of Youden's J); kept for
    comparison with the derived threshold."""
    order = np.sort(np.unique(distances))
    if correct.all() or not correct.any():
        return float(np.median(distances))
    best, best_j = float(order[0]), -1.0
    for cut in (order[:-1] + order[1:]) / 2:
        j = (distances[correct] < cut).mean() - (distances[~correct] < cut).mean()
        if j > best_j:
            best, best_j = float(cut), float(j)
    return best


# ------------------------------------------------------------------------------------ evaluation
def _share(values: Sequence[bool]) -> float:
    return round(float(np.mean(values)), 4) if len(values) else 0.0


def _phrase_reordered(scene: scenes.Scene, rng: np.random.Generator) -> list[str]:
    """Bob's phrasing with the object phrases in an order other than left to right (same meaning)."""
    for _ in range(10):
        words, _ = scenes.bob_caption_roles(scene, rng, synonyms=False, shuffle_objects=True)
        if len(scene.objects) == 1 or words != scenes.bob_caption(scene).split():
            break
    return words


def _fewer_objects(scene: scenes.Scene, rng: np.random.Generator) -> tuple[str, scenes.Scene]:
    """A Bob-style prompt naming a strict subset of the scene's objects (at least one), and that subset."""
    keep = sorted(rng.choice(len(scene.objects), size=int(rng.integers(1, len(scene.objects))), replace=False).tolist())
    sub = scenes.Scene(scene.background, tuple(scene.objects[j] for j in keep), scene.seed)
    return scenes.bob_caption(sub), sub


def evaluate_world(
    backend: Backend, classifier: torch.nn.Module, n_scenes: int = 200, seed: int = 2024, n_curve: int = 60,
    threshold: float | None = None, progress: bool = False, meaning_measures: bool = True, meaning_scenes: int | None = None,
) -> dict[str, Any]:
    """The JSON object of `lsc world eval`: caption length and fidelity, Bob's fidelity reading Alice's
    and his own phrasing, order robustness, the perceptual curve and the derived threshold.

    Success rates use `threshold` (the backend's own when the CLI evaluates shipped weights); None
    uses the threshold this evaluation derives (when weights are exported). `meaning_measures` adds
    the measures of lsc.backends.world.meaning on the first `meaning_scenes` scenes (default: all of
    them; on 60 scenes the unordered and count measures moved by 3 points from sample to sample)."""
    say = log.info if progress else log.debug
    import time

    clock = {"s": 0.0, "images": 0}
    evaluations_before = getattr(backend.generator, "evaluations", None)

    def generate(prompts: list[str], image_seed: int) -> np.ndarray:
        t0 = time.perf_counter()
        out = backend.generator.generate(prompts, image_seed)
        clock["s"] += time.perf_counter() - t0
        clock["images"] += len(prompts)
        return out

    samples = [scenes.world_scene(i, seed) for i in range(n_scenes)]
    images = np.stack([scenes.render(s) for s in samples])
    truths = [s.attributes() for s in samples]
    rng = np.random.default_rng([seed, 4242])

    say("world eval: Alice captions %d scenes", n_scenes)
    captions: list[str] = []
    for i in range(0, n_scenes, 32):
        captions.extend(backend.captioner.caption(list(images[i : i + 32])))
    lengths = np.array([len(c.split()) for c in captions])
    captioner_exact = _share([c == scenes.alice_caption(s) for c, s in zip(captions, samples)])
    reader_exact = _share([_all_right(t, s) for t, s in zip(truths, read_attributes(classifier, images))])

    # Every prefix of Alice's and Bob's captions for the first n_curve scenes, judged: the threshold.
    say("world eval: prefix curves of %d scenes", min(n_curve, n_scenes))
    all_d, all_right, all_missing = [], [], []
    curves: list[list[float]] = []
    for i, scene in enumerate(samples[: min(n_curve, n_scenes)]):
        if progress and i and i % 10 == 0:
            say("world eval: prefix curves, scene %d/%d", i, min(n_curve, n_scenes))
        ref = backend.perceptual.reference(images[i])
        for style, (words, roles) in (("alice", scenes.alice_caption_roles(scene)), ("bob", scenes.bob_caption_roles(scene))):
            prompts = [" ".join(words[:k]) for k in range(len(words) + 1)]
            imgs = generate(prompts, seed + i)
            d = backend.perceptual.distances(ref, imgs)
            for k, seen in enumerate(read_attributes(classifier, imgs)):
                v = judge(scene, statement(scene, words, roles, range(k)), seen)
                all_d.append(float(d[k]))
                all_right.append(v.right)
                all_missing.append(v.missing_object)
            if style == "alice":
                curves.append([float(x) for x in d])
    longest = max(len(c) for c in curves)
    lpips_by_words = [round(float(np.mean([c[min(k, len(c) - 1)] for c in curves])), 4) for k in range(longest)]
    derived = derive_threshold(np.array(all_d), np.array(all_right, dtype=bool), np.array(all_missing, dtype=bool))
    in_use = derived["threshold"] if threshold is None else threshold
    d_arr, r_arr = np.array(all_d), np.array(all_right, dtype=bool)
    under = d_arr < in_use

    # Per scene, one generator call with the scene's own seed: Bob's phrasing, Alice's caption in
    # caption order and shuffled, Bob's phrasing with reordered object phrases, and (2-3 objects)
    # a prompt naming fewer objects.
    rows: dict[str, list[Any]] = {k: [] for k in ("bob", "alice", "shuffled", "reordered", "fewer")}
    for i, scene in enumerate(samples):
        if progress and i % 25 == 0:
            say("world eval: Bob's images, scene %d/%d", i, n_scenes)
        alice_words = captions[i].split()
        shuffled = [alice_words[k] for k in rng.permutation(len(alice_words))]
        prompts = [scenes.bob_caption(scene), captions[i], " ".join(shuffled), " ".join(_phrase_reordered(scene, rng))]
        fewer = _fewer_objects(scene, rng) if len(scene.objects) > 1 else None
        if fewer:
            prompts.append(fewer[0])
        imgs = generate(prompts, seed + i)
        d = backend.perceptual.distances(backend.perceptual.reference(images[i]), imgs)
        seen = read_attributes(classifier, imgs)
        rows["bob"].append((float(d[0]), seen[0]))
        rows["alice"].append((float(d[1]), seen[1]))
        rows["shuffled"].append((float(d[2]), seen[2]))
        rows["reordered"].append((float(d[3]), seen[3]))
        if fewer:
            rows["fewer"].append(({o.slot for o in fewer[1].objects}, seen[4]))

    accuracy = {k: round(float(np.mean([_attribute_hits(t, r)[k] for t, (_, r) in zip(truths, rows["bob"])])), 4)
                for k in ("background", "color", "shape", "size", "position", "count")}
    stated_hits = stated_total = 0
    for caption, (_, seen) in zip(captions, rows["alice"]):
        said = caption_parser.parse_caption(caption)
        if said is None:  # a caption outside the grammar states nothing the reader can check
            continue
        by_slot = {o["slot"]: o for o in seen["objects"]}
        stated_total += 1
        stated_hits += seen["background"] == said["background"]
        for o in said["objects"]:
            for key in ("shape", "color", "size"):
                if o[key] is not None:
                    stated_total += 1
                    stated_hits += by_slot.get(o["slot"], {}).get(key) == o[key]

    def success(key: str) -> float:
        return _share([d < in_use for d, _ in rows[key]])

    def mean_lpips(key: str) -> float:
        return round(float(np.mean([d for d, _ in rows[key]])), 4)

    references: dict[int, Any] = {}

    def distance_to(i: int, imgs: np.ndarray) -> np.ndarray:
        if i not in references:
            references[i] = backend.perceptual.reference(images[i])
        return backend.perceptual.distances(references[i], imgs)

    reads_meaning: dict[str, Any] = {}
    if meaning_measures:
        judged = samples[: n_scenes if meaning_scenes is None else min(meaning_scenes, n_scenes)]

        def read(imgs: np.ndarray) -> list[dict[str, Any]]:
            return read_attributes(classifier, imgs)

        measures: dict[str, tuple[int, Callable[[], Any]]] = {  # name: (scenes it judges, the measure)
            "bob_reads_content": (len(samples), lambda: meaning.bob_reads_content(samples, captions, generate, distance_to, in_use, seed)),
            "count_from_noun": (len(judged), lambda: meaning.count_from_noun(generate, read, len(judged), seed)),
            "partial_stated_accuracy": (len(judged), lambda: meaning.partial_stated_accuracy(judged, generate, read, seed)),
            "function_word_share": (len(judged), lambda: meaning.function_word_share(judged, generate, distance_to, seed)),
            "bob_unordered": (len(judged), lambda: meaning.bob_unordered(judged, generate, read, distance_to, in_use, seed)),
        }
        for name, (n_judged, measure) in measures.items():
            say("world eval: %s (%d scenes)", name, n_judged)
            reads_meaning[name] = measure()

    evaluations = getattr(backend.generator, "evaluations", None)
    images_made = max(1, clock["images"])
    return {
        "scenes": n_scenes,
        "receiver": getattr(backend.generator, "receiver", None),
        "unet_evaluations_per_image": None if evaluations is None or evaluations_before is None
        else round((evaluations - evaluations_before) / images_made, 3),
        "generator_s_per_image": round(clock["s"] / images_made, 5),
        "alice_caption_words": {
            "mean": round(float(lengths.mean()), 3),
            "p95": float(np.percentile(lengths, 95)),
            "share_le_10": _share(list(lengths <= 10)),
        },
        "captioner_exact": captioner_exact,
        "generator_accuracy": accuracy,
        "generator_exact": _share([_all_right(t, r) for t, (_, r) in zip(truths, rows["bob"])]),
        "reader_exact_on_renders": reader_exact,
        "bob_reads_alice": {
            "success_rate": success("alice"),
            "stated_attribute_accuracy": round(stated_hits / max(1, stated_total), 4),
            "mean_lpips": mean_lpips("alice"),
        },
        "style_gap": {
            "alice": {"success_rate": success("alice"), "mean_lpips": mean_lpips("alice")},
            "bob": {"success_rate": success("bob"), "mean_lpips": mean_lpips("bob")},
        },
        "bob_shuffled": {"success_rate": success("shuffled"), "mean_lpips": mean_lpips("shuffled")},
        "bob_phrase_reorder": {
            "all_right": _share([_all_right(t, r) for t, (_, r) in zip(truths, rows["reordered"])]),
            "in_order_all_right": _share([_all_right(t, r) for t, (_, r) in zip(truths, rows["bob"])]),
            "fewer_objects_invented": _share([bool({o["slot"] for o in seen["objects"]} - slots) for slots, seen in rows["fewer"]]),
            "fewer_objects_prompts": len(rows["fewer"]),
        },
        **reads_meaning,
        "skd": skd_eval.skd_report(backend, samples, captions, generate, distance_to, in_use, seed),
        "lpips_by_words": lpips_by_words,
        "derived_threshold": round(derived["threshold"], 4),
        "threshold_in_use": in_use,
        "threshold_precision": round(float(r_arr[under].mean()) if under.any() else 1.0, 4),
        "threshold_recall": round(float(under[r_arr].mean()) if r_arr.any() else 0.0, 4),
        "threshold_missing_object_under": int((under & np.array(all_missing, dtype=bool)).sum()),
        "judged_prefix_images": len(all_d),
        "youden_threshold": round(calibrate_threshold(d_arr, r_arr), 4),
        "example_captions": captions[:3],
    }
