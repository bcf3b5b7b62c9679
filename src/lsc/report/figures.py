"""The report's figures by name, from one run or several: what `lsc plot` and `lsc.api.plot` draw.

Each named figure gathers what it needs from the runs (paired differences, gaps to the oracle, step
metrics: the report's own numbers from lsc.report.analysis and lsc.report.step_metrics) and hands it to the
drawing function in lsc.report.plots that the report calls too, so a paper figure is the report's figure
in another style.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

from lsc.errors import ConfigError
from lsc.report import plots
from lsc.report.analysis import PAIRED_METRICS, oracle_area, paired_rows, search_cost, transmissions
from lsc.report.data import RunData, load_run
from lsc.report.plots import View
from lsc.report.style import FigureStyle
from lsc.runner.folder import STORE_FILE

# Step metrics drawn against words: (column, what it is); the figure is named "<column>_vs_words".
STEP_FIGURES = [("attr_mean", "attribute accuracy (mean of background, count, position, colour, shape, size)"),
                ("attr_all_right", "share of images with every attribute right"),
                ("bleu4", "BLEU-4 of Alice's re-caption"), ("rouge_l", "ROUGE-L of Alice's re-caption"),
                ("meteor", "METEOR of Alice's re-caption"), ("cider_d", "CIDEr-D of Alice's re-caption"),
                ("itm", "Alice's image-text match of Bob's image and her caption"),
                ("bertscore_f1", "BERTScore F1 of Alice's re-caption"), ("clip_score", "CLIPScore of Bob's image and the caption")]


def step_title(column: str) -> str:
    """'Attribute accuracy (...) vs words sent': the title of a step metric's figure."""
    label = dict(STEP_FIGURES)[column]
    return f"{label[0].upper()}{label[1:]} vs words sent"


def gap_floors(data: RunData, cond: str) -> dict[str, float]:
    """Per scheme, the smallest per-image gap to the oracle relative to its area (where a gap bar may end)."""
    tx = transmissions(data, cond)
    floors: dict[str, float] = {}
    for image_id, curve in data.oracle.items():
        area = oracle_area(curve) if curve else math.nan
        if not area > 0:
            continue
        for scheme, mine in tx.items():
            if image_id in mine:
                gap = (mine[image_id].area_words - area) / area
                floors[scheme] = min(floors.get(scheme, math.inf), gap)
    return floors


def paired(views: Sequence[View], path: Path, style: FigureStyle, schemes: Sequence[str] | None = None) -> Path | None:
    return plots.paired_difference([(v.label, paired_rows(v.data, v.cond)) for v in views], path, PAIRED_METRICS, style,
                                   schemes=schemes, distance=plots.distance_name(views))


def gap(views: Sequence[View], path: Path, style: FigureStyle, schemes: Sequence[str] | None = None) -> Path | None:
    from lsc.report.analysis import oracle_images

    images = [oracle_images(v.data) for v in views if v.data.oracle]
    if not images:
        return None
    return plots.gap_vs_images([(v.label, search_cost(v.data, v.cond), gap_floors(v.data, v.cond)) for v in views],
                               max(images), path, style, schemes)


def step_metric(column: str) -> Callable[..., Path | None]:
    """The drawer of one step metric's figure: the run's stored values (and what the store lacks, computed)."""
    def draw(views: Sequence[View], path: Path, style: FigureStyle, schemes: Sequence[str] | None = None) -> Path | None:
        from lsc.metrics.registry import select
        from lsc.report import step_metrics

        values = []
        for v in views:
            names = step_metrics.default_metrics(v.data.config)
            values.append(step_metrics.compute(v.data, v.cond, select(names, str(v.data.config.get("backend", "world")))))
        return plots.step_metric_vs_words(views, values, column, path, step_title(column), f"{column} (mean, 95% CI band)",
                                          style, schemes)
    return draw


FIGURES: dict[str, Callable[..., Path | None]] = {
    "lpips_vs_words": plots.lpips_vs_words,
    "lpips_vs_bits": plots.lpips_vs_bits,
    "success_vs_words": plots.success_vs_words,
    "paired_difference": paired,
    "gap_vs_images": gap,
    "lpips_vs_snr": plots.lpips_vs_snr,
    "rate_perception": plots.rate_perception,
    **{f"{column}_vs_words": step_metric(column) for column, _ in STEP_FIGURES},
    "strip": plots.image_strip,  # takes an image id besides: see draw()
}


def load_views(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None, snr_db: float | None = None) -> list[View]:
    """The runs' data under one condition each: the SNR asked for (a run on the ideal channel has only its
    own), else the run's last (highest SNR) one."""
    if not run_dirs:
        raise ConfigError("no run folder given")
    if labels and len(labels) != len(run_dirs):
        raise ConfigError(f"{len(labels)} labels for {len(run_dirs)} runs")
    views = []
    for i, run_dir in enumerate(run_dirs):
        path = Path(run_dir)
        if not (path / STORE_FILE).is_file():
            raise ConfigError(f"{path}: not a run folder (no {STORE_FILE})")
        data = load_run(path)
        conds = data.conds or [("", None)]
        if snr_db is None or all(v is None for _, v in conds):  # an ideal-channel run has its one condition
            cond = conds[-1][0]
        else:
            found = [c for c, v in conds if v is not None and math.isclose(v, snr_db)]
            if not found:
                have = ", ".join(f"{v:g}" for _, v in conds if v is not None) or "none (ideal channel)"
                raise ConfigError(f"--snr {snr_db:g}: {path} has no such condition (its SNRs: {have})")
            cond = found[0]
        views.append(View(labels[i] if labels else path.name, data, cond))
    names = [v.label for v in views]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"two runs are labelled {dup!r}: give each a distinct --label")
    return views


def check_schemes(views: Sequence[View], schemes: Sequence[str] | None) -> list[str] | None:
    """The schemes asked for, each checked against every run (one line naming the run and what it has)."""
    if schemes is None:
        return None
    chosen = list(dict.fromkeys(s for s in schemes if s))
    if not chosen:
        raise ConfigError("--schemes names no scheme")
    for v in views:
        missing = [s for s in chosen if s not in v.data.schemes]
        if missing:
            raise ConfigError(f"--schemes {missing[0]!r}: {v.data.run_dir} has no such scheme "
                              f"(it has {', '.join(v.data.schemes) or 'none'})")
    return chosen


def draw(name: str, run_dirs: Sequence[str | Path], out: str | Path, style: FigureStyle = FigureStyle(),
         schemes: Sequence[str] | None = None, labels: Sequence[str] | None = None, snr_db: float | None = None,
         image: str | None = None) -> Path:
    """Draw the figure `name` from the runs into `out` (its suffix follows the style's format); returns the path.

    A figure the runs hold no data for (an SNR figure of an unswept run, a gap of a run without the oracle)
    is refused with one line, never an empty file."""
    if name not in FIGURES:
        raise ConfigError(f"--figure {name!r}: unknown (figures: {', '.join(FIGURES)})")
    views = load_views(run_dirs, labels, snr_db)
    chosen = check_schemes(views, schemes)
    if name == "strip":
        ids = [i for i in views[0].data.image_order
               if any(s["image_id"] == i and s["status"] == "ok" for s in views[0].data.summaries)]
        image = image or (ids[0] if ids else None)
        if image is None or image not in ids:
            raise ConfigError(f"--image {image!r}: no transmitted image of that id in {views[0].data.run_dir} "
                              f"(ids: {', '.join(ids[:5]) or 'none'}{', ...' if len(ids) > 5 else ''})")
        path = plots.image_strip(views, image, Path(out), style, chosen)
    else:
        path = FIGURES[name](views, Path(out), style, schemes=chosen)
    if path is None:
        raise ConfigError(f"--figure {name}: nothing to draw from {', '.join(str(d) for d in run_dirs)} "
                          + _why_empty(name))
    return path


def _why_empty(name: str) -> str:
    if name in ("lpips_vs_snr", "rate_perception"):
        return "(it needs a run swept over at least two SNRs)"
    if name == "gap_vs_images":
        return "(it needs the oracle: oracle: true)"
    if name == "success_vs_words":
        return "(it needs a threshold)"
    if name.endswith("_vs_words") and name != "lpips_vs_words":
        return "(the runs hold no values of that metric, nor the images to compute them)"
    return "(no successful transmission of those schemes)"


def figure_names() -> list[str]:
    """Every figure `lsc plot --figure` draws."""
    return list(FIGURES)


__all__ = ["FIGURES", "STEP_FIGURES", "draw", "load_views", "figure_names", "gap_floors", "step_title"]
