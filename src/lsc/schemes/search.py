"""Search quality vs cost: how close lowest_lpips' search settings come to the exhaustive oracle, per image generated.

Why: the oracle costs 2^n generations per caption, the greedy n(n+1)/2; beam and lookahead sit between.
For each scene the oracle's 2^n caption-order subsets are generated once; each setting then plans on a
fresh context preloaded with those distances, which counts the distinct prompts the setting asks for:
exactly the images a fresh run of that setting would generate, without generating them again.

Gap of a setting on a scene at k words: LPIPS of its first k words (caption order) minus the oracle's
best k-word LPIPS (>= 0). Area gap: the gap of the areas per word (words 1..n), `lsc.report.stats.gap_to_oracle`,
the report's definition; relative area gap: that over the oracle's area per word.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from lsc.errors import ConfigError
from lsc.interfaces import Backend
from lsc.protocol.context import ImageContext, LoopSettings, make_prompt
from lsc.report.stats import area_per_word, gap_to_oracle  # the one definition of area and gap
from lsc.schemes.base import get_scheme
from lsc.schemes.oracle import MAX_ORACLE_WORDS, oracle_curve

SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("greedy", {}),
    ("beam 2", {"beam": 2}),
    ("beam 3", {"beam": 3}),
    ("beam 5", {"beam": 5}),
    ("lookahead 1", {"lookahead": 1}),
)
GAP_AT = (1, 2, 3, 4, 5)


class _Preloaded:
    """A CacheJournal that hands a new context the oracle's distances (no images)."""

    def __init__(self, ctx: ImageContext, prompts: Iterable[str]) -> None:
        self.entries = [(ctx.key(p), p, ctx.lpips_of(p), None) for p in prompts]

    def load(self, image_id: str) -> list[tuple[str, str, float, None]]:
        return list(self.entries)

    def record(self, image_id: str, entries: Sequence[Any]) -> None:
        pass


@dataclass
class SceneSearch:
    """One scene: its word count, the oracle's curve and, per setting, (curve, images a fresh run generates)."""

    image_id: str
    n_words: int
    oracle: list[float]
    runs: dict[str, tuple[list[float], int]]


def search_scene(backend: Backend, image_id: str, image: np.ndarray, caption: str, seed: int = 0,
                 settings: Sequence[tuple[str, dict[str, Any]]] = SETTINGS, max_words: int = MAX_ORACLE_WORDS) -> SceneSearch:
    """The oracle and every setting on one scene (caption-order prompts, as the oracle's)."""
    oracle_ctx = ImageContext(backend, image_id, image, caption, seed=seed)
    words = oracle_ctx.words
    oracle = [v for _, v in oracle_curve(oracle_ctx, max_words=max_words)]
    subsets = [make_prompt(words, c, "caption") for k in range(len(words) + 1) for c in combinations(range(len(words)), k)]
    journal = _Preloaded(oracle_ctx, subsets)
    loop = LoopSettings(prompt_order="caption", threshold=backend.default_threshold)
    runs: dict[str, tuple[list[float], int]] = {}
    for label, options in settings:
        ctx = ImageContext(backend, image_id, image, caption, seed=seed, journal=journal)
        with ctx.counting_prompts() as asked:
            plan = get_scheme("lowest_lpips", **options).plan(ctx, loop)
        cost = len(asked)
        curve = [ctx.lpips_of(make_prompt(words, plan.order[:k], "caption")) for k in range(len(words) + 1)]
        runs[label] = (curve, cost)
    return SceneSearch(image_id, len(words), oracle, runs)


def summarise(scenes: Sequence[SceneSearch]) -> dict[str, dict[str, Any]]:
    """Per setting (and the oracle): mean images generated, mean area gap to the oracle per word (words 1..n,
    `lsc.report.stats.gap_to_oracle`), the same relative to the oracle's area per word, mean gap at k."""
    if not scenes:
        raise ConfigError("no scene to summarise (every caption longer than the oracle's limit?)")
    labels = list(scenes[0].runs)
    out: dict[str, dict[str, Any]] = {}
    for label in labels:
        areas, rel, costs = [], [], []
        at: dict[int, list[float]] = {k: [] for k in GAP_AT}
        for s in scenes:
            curve, cost = s.runs[label]
            gaps = np.asarray(curve) - np.asarray(s.oracle)
            gap = gap_to_oracle(curve, s.oracle)  # per word, the report's area definition (lsc.report.stats)
            areas.append(gap)
            rel.append(gap / max(area_per_word(s.oracle), 1e-12))
            costs.append(cost)
            for k in GAP_AT:
                if k <= s.n_words:
                    at[k].append(float(gaps[k]))
        out[label] = {"images": float(np.mean(costs)), "area_gap": float(np.mean(areas)),
                      "relative_area_gap": float(np.mean(rel)),
                      "gap_at": {k: (float(np.mean(v)) if v else None) for k, v in at.items()}}
    out["oracle"] = {"images": float(np.mean([2 ** s.n_words for s in scenes])), "area_gap": 0.0,
                     "relative_area_gap": 0.0, "gap_at": {k: 0.0 for k in GAP_AT}}
    return out


def plot_gap_vs_calls(summary: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Relative area gap to the oracle (%) against images generated per caption (log scale), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, row in summary.items():
        x, y = row["images"], 100.0 * row["relative_area_gap"]
        ax.scatter([x], [y], marker="*" if label == "oracle" else "o", s=60)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("images generated per caption (log scale)")
    ax.set_ylabel("area gap to the oracle (% of its area)")
    ax.set_title(title or "lowest_lpips search settings vs the exhaustive oracle")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
