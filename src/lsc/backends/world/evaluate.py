"""`lsc world eval`: how good the shipped world models are, measured on held-out scenes.

The world knows the truth of every scene, so fidelity is measured exactly: Alice's captions are
checked attribute by attribute, and Bob's images are read back by the attribute classifier (trained on
rendered scenes only). The same pass calibrates the success threshold of the perceptual metric: the
distance that best separates Bob's images whose attributes are all right from those that are not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lsc.backends.world import scenes
from lsc.interfaces import Backend


@torch.inference_mode()
def read_attributes(classifier: torch.nn.Module, images: np.ndarray) -> list[dict[str, Any]]:
    """What the attribute classifier sees in each image, in the format of Scene.attributes()."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2) * 2 - 1
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


def calibrate_threshold(distances: np.ndarray, correct: np.ndarray) -> float:
    """The distance that best separates correct from wrong images (maximum of Youden's J)."""
    order = np.sort(np.unique(distances))
    if correct.all() or not correct.any():
        return float(np.median(distances))
    best, best_j = float(order[0]), -1.0
    for cut in (order[:-1] + order[1:]) / 2:
        j = (distances[correct] < cut).mean() - (distances[~correct] < cut).mean()
        if j > best_j:
            best, best_j = float(cut), float(j)
    return best


def evaluate_world(backend: Backend, classifier: torch.nn.Module, n_scenes: int = 200, seed: int = 2024, batch: int = 32) -> dict[str, Any]:
    """The JSON object of `lsc world eval` (see the issue's targets)."""
    samples = [scenes.world_scene(i, seed) for i in range(n_scenes)]
    images = np.stack([scenes.render(s) for s in samples])
    truths = [s.attributes() for s in samples]

    # Alice: whole caption right (every attribute of every object, the background, the count).
    captions: list[str] = []
    for i in range(0, n_scenes, batch):
        captions.extend(backend.captioner.caption(list(images[i : i + batch])))
    parsed = [scenes.parse_caption(c) for c in captions]
    captioner_exact = float(np.mean([p is not None and p == t for p, t in zip(parsed, truths)]))

    # The reader itself on real renders: how far its readings of Bob's images can be trusted.
    reader_exact = float(np.mean([_all_right(t, s) for t, s in zip(truths, read_attributes(classifier, images))]))

    # Bob: full Bob-style captions -> images -> attributes read back.
    bob_prompts = [scenes.bob_caption(s) for s in samples]
    hits: list[dict[str, float]] = []
    gen_images = []
    for i in range(0, n_scenes, batch):
        gen_images.append(_generate_each_seed(backend, bob_prompts[i : i + batch], seed))
    gen = np.concatenate(gen_images)
    readings = read_attributes(classifier, gen)
    hits = [_attribute_hits(t, r) for t, r in zip(truths, readings)]
    accuracy = {k: float(np.mean([h[k] for h in hits])) for k in ("background", "color", "shape", "size", "position", "count")}

    # Perceptual distance by words given (first k words of Bob's caption), for a subset of scenes.
    # A caption shorter than k keeps its full-caption distance at k, so every scene counts at every k.
    n_curve = min(n_scenes, 48)
    curves: list[list[float]] = []
    all_d, all_ok = [], []
    for i in range(n_curve):
        words = bob_prompts[i].split()
        prompts = [" ".join(words[:k]) for k in range(len(words) + 1)]
        imgs = backend.generator.generate(prompts, seed + i)
        ref = backend.perceptual.reference(images[i])
        d = backend.perceptual.distances(ref, imgs)
        ok = [_all_right(truths[i], r) for r in read_attributes(classifier, imgs)]
        curves.append([float(v) for v in d])
        all_d.extend(d.tolist())
        all_ok.extend(ok)
    longest = max(len(c) for c in curves)
    lpips_by_words = [round(float(np.mean([c[min(k, len(c) - 1)] for c in curves])), 4) for k in range(longest)]
    threshold = calibrate_threshold(np.array(all_d), np.array(all_ok, dtype=bool))
    return {
        "scenes": n_scenes,
        "captioner_exact": round(captioner_exact, 4),
        "generator_accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        "generator_exact": round(float(np.mean([_all_right(t, r) for t, r in zip(truths, readings)])), 4),
        "reader_exact_on_renders": round(reader_exact, 4),
        "lpips_by_words": lpips_by_words,
        "calibrated_threshold": round(threshold, 4),
        "threshold_in_use": backend.default_threshold,
        "example_captions": captions[:3],
    }


def _generate_each_seed(backend: Backend, prompts: list[str], seed: int) -> np.ndarray:
    """One seed for a whole batch (as studies do per image): images depend on (prompt, seed) only."""
    return backend.generator.generate(prompts, seed)
