"""Semantic knowledge distillation measured on the world (`lsc world eval`'s "skd" entry).

SKD is worth doing only if a rewrite keeps what Alice's caption says and reads more like Bob's own
phrasing, so that Bob draws it better. The world knows both: its caption parser says what a caption
states, and its grammar says what Bob's phrasing of a scene is. For each SKD engine on the held-out
scenes this reports

- skd_meaning_kept: the share of the engine's rewrites (before the meaning check) stating every
  attribute Alice's caption states, and nothing else (the same objects in the same places);
- skd_bob_style: the share of the captions SKD sends (the rewrite, or Alice's caption when refused)
  that Bob's grammar produces (his phrasing of the scene they state, either background placement,
  objects in any order, his synonyms read as their base words);
- skd_refused: how many rewrites the meaning check refused (a head noun lost; the caption is sent);
- Bob's success on what SKD sends against his success on Alice's caption and on his own phrasing of
  the true scene, each image generated with the scene's own seed (paired), and the share of the style
  gap (Bob's success on his phrasing minus on Alice's) the engine closes.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import numpy as np

from lsc.backends.world import caption_parser, scenes
from lsc.interfaces import Backend


def meaning_kept(caption: str, rewrite: str) -> bool | None:
    """Does `rewrite` state every attribute `caption` states, and no other object? None when the
    caption itself is outside the world's grammar (nothing to check)."""
    said = caption_parser.parse_caption(caption)
    if said is None:
        return None
    got = caption_parser.parse_caption(rewrite) if rewrite else None
    if got is None or got["background"] != said["background"]:
        return False
    by_slot = {o["slot"]: o for o in got["objects"]}
    if set(by_slot) != {o["slot"] for o in said["objects"]}:
        return False
    return all(o[k] is None or by_slot[o["slot"]][k] == o[k] for o in said["objects"] for k in ("shape", "color", "size"))


def bob_style(caption: str) -> bool:
    """Is `caption` a phrasing Bob's grammar produces (scenes.bob_caption_roles) of the scene it states?"""
    parsed = caption_parser.parse_caption(caption)
    if parsed is None or any(o["size"] is None for o in parsed["objects"]):
        return False
    words = [scenes.SYNONYM_BASE.get(w, w) for w in caption.split()]
    phrases = [f"a {scenes.BOB_SIZE[o['size']]} {o['color']} {scenes.BOB_SHAPE[o['shape']]} {scenes.BOB_SLOT[o['slot']]}"
               for o in parsed["objects"]]
    background = scenes.BOB_BACKGROUND[parsed["background"]]
    for order in itertools.permutations(phrases):
        objects = " and ".join(order)
        if words in (f"{background} with {objects}".split(), f"{objects} with {background}".split()):
            return True
    return False


def _share(values: Sequence[bool]) -> float:
    return round(float(np.mean(values)), 4) if len(values) else 0.0


def skd_report(
    backend: Backend,
    samples: Sequence[scenes.Scene],
    captions: Sequence[str],
    generate: Callable[[list[str], int], np.ndarray],
    distance_to: Callable[[int, np.ndarray], np.ndarray],
    threshold: float,
    seed: int,
) -> dict[str, Any]:
    """Per SKD engine (the lexicon, and the backend's style translator when it ships one): meaning kept,
    Bob's style, refusals and Bob's success on what SKD sends, paired with Alice's caption and Bob's phrasing.

    `captions` are Alice's captions of `samples`; scene i is generated with seed + i, as in evaluate_world."""
    from lsc.language.skd import make_skd

    engines = ["lexicon"] + (["seq2seq"] if backend.skd_translator else [])
    results = {}
    for name in engines:
        engine = make_skd({"engine": name}, translator=backend.skd_translator)
        results[name] = [engine.rewrite(c, list(backend.skd_examples)) for c in captions]
    success: dict[str, list[bool]] = {k: [] for k in ("alice", "bob", *engines)}
    lpips: dict[str, list[float]] = {k: [] for k in success}
    for i, scene in enumerate(samples):
        prompts = [captions[i], scenes.bob_caption(scene), *(results[name][i].text for name in engines)]
        d = distance_to(i, generate(prompts, seed + i))
        for key, value in zip(success, d):
            success[key].append(bool(value < threshold))
            lpips[key].append(float(value))
    gap = float(np.mean(success["bob"]) - np.mean(success["alice"]))
    report: dict[str, Any] = {
        "scenes": len(samples),
        "bob_success_on_alice": _share(success["alice"]),
        "bob_success_on_bob": _share(success["bob"]),
        "mean_lpips_alice": round(float(np.mean(lpips["alice"])), 4),
        "mean_lpips_bob": round(float(np.mean(lpips["bob"])), 4),
    }
    for name in engines:
        kept = [meaning_kept(c, r.proposed) for c, r in zip(captions, results[name])]
        scored = [k for k in kept if k is not None]
        better = sum(s and not a for s, a in zip(success[name], success["alice"]))
        worse = sum(a and not s for s, a in zip(success[name], success["alice"]))
        rate = float(np.mean(success[name]))
        report[name] = {
            "skd_meaning_kept": _share(scored),
            "skd_meaning_scored": len(scored),
            "skd_bob_style": _share([bob_style(r.text) for r in results[name]]),
            "skd_refused": sum(not r.kept for r in results[name]),
            "bob_success": _share(success[name]),
            "mean_lpips": round(float(np.mean(lpips[name])), 4),
            "scenes_won_vs_alice": int(better),
            "scenes_lost_vs_alice": int(worse),
            "style_gap_closed": round((rate - float(np.mean(success["alice"]))) / gap, 3) if gap > 0 else None,
            "examples": [[c, r.text] for c, r in list(zip(captions, results[name]))[:3]],
        }
    return report
