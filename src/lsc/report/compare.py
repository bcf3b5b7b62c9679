"""Compare schemes across several runs of the same images, SNR by SNR.

A run folder holds one configuration (a channel variant, a receiver); an ablation is several runs of the
same images. This module lines them up: per scheme, run and SNR, final LPIPS and words to threshold
(mean ± 95% CI) and the success rate (Wilson 95% interval), as markdown tables, a JSON-able list and one
figure. One scheme gives a run x SNR table (e.g. SCC on/off x word correction on/off); several schemes
give a scheme x run table (e.g. the same schemes on each of Bob's receivers), each run judged by its own
threshold.
"""

from __future__ import annotations

import math
import sqlite3
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lsc.errors import LscError, LscWarning
from lsc.report.analysis import transmissions
from lsc.report.data import RunData, load_run
from lsc.report.stats import mean_ci, wilson
from lsc.runner.folder import STORE_FILE


@dataclass
class Cell:
    """One run at one SNR (snr None = ideal channel)."""

    run: str
    snr_db: float | None
    n: int
    final_lpips: Any  # MeanCI
    words: Any  # MeanCI over the transmissions that reached the threshold
    success: tuple[float, float, float]  # rate, low, high
    bits: Any = None  # MeanCI of the bits a whole caption cost (after SCC and channel coding)
    words_with_bit_errors: float = float("nan")  # share of sent words that arrived with at least one flipped bit
    threshold: float | None = None  # the run's success threshold (drawn on the comparison plot)
    scheme: str = ""
    area: Any = None  # MeanCI of the area under LPIPS vs words (per word), report.analysis' definition
    # MeanCI of one transmission's own time (s): the loop after Alice's plan (the channel, Bob's images and their
    # LPIPS), step metrics excluded, the first transmission of each worker process (the warm-up) left out; a run
    # stored before times were split has only the whole (planning and step metrics included): `timing` says which
    seconds: Any = None
    planning: Any = None  # MeanCI of Alice's planning time (s), same transmissions
    timing: str = "transmission"  # "transmission" (the split columns) or "elapsed" (an old run's whole time)
    distance: str = "LPIPS"  # the name of the distance final_lpips and area measure (its backend's declaration)

    def as_dict(self) -> dict[str, Any]:
        def ci(m: Any) -> dict[str, float | None]:
            return {"mean": None if math.isnan(m.mean) else round(m.mean, 4), "ci95": None if math.isnan(m.half) else round(m.half, 4), "n": m.n}

        p, lo, hi = self.success
        return {"run": self.run, "scheme": self.scheme, "snr_db": self.snr_db, "n": self.n, "final_lpips": ci(self.final_lpips), "words_to_threshold": ci(self.words),
                "success_rate": round(p, 4), "success_ci95": [round(lo, 4), round(hi, 4)],
                "bits_per_caption": ci(self.bits) if self.bits is not None else None,
                "words_with_bit_errors": None if math.isnan(self.words_with_bit_errors) else round(self.words_with_bit_errors, 4),
                "area_words": ci(self.area) if self.area is not None else None,
                "seconds_per_transmission": ci(self.seconds) if self.seconds is not None else None,
                "planning_seconds": ci(self.planning) if self.planning is not None else None,
                "seconds_measure": self.timing, "distance": self.distance}

    def text(self) -> str:
        p, lo, hi = self.success
        return f"{self.final_lpips.fmt(3)} / {p:.0%} [{lo:.0%}, {hi:.0%}] / {self.words.fmt(1)}"


def _label(run_dir: Path, given: str | None) -> str:
    return given or run_dir.name


def compare_runs(run_dirs: Sequence[str | Path], scheme: str | Sequence[str] | None = None,
                 labels: Sequence[str] | None = None) -> list[Cell]:
    """Cells for every (scheme, run, condition) in which the scheme has successful transmissions.

    `scheme` None: the one scheme the runs hold; runs holding several are refused rather than guessed at."""
    schemes = [] if scheme is None else [scheme] if isinstance(scheme, str) else list(dict.fromkeys(scheme))
    if scheme is not None and not schemes:
        raise LscError("no scheme to compare")
    if labels and len(labels) != len(run_dirs):
        raise LscError(f"{len(labels)} labels for {len(run_dirs)} runs")
    runs: list[tuple[str, RunData]] = []
    for i, run_dir in enumerate(run_dirs):
        path = Path(run_dir)
        if not (path / STORE_FILE).exists():
            raise LscError(f"{path}: not a run folder (no {STORE_FILE})")
        try:
            data: RunData = load_run(path)
        except sqlite3.DatabaseError as exc:
            raise LscError(f"{path / STORE_FILE} is damaged ({exc})") from None
        runs.append((_label(path, labels[i] if labels else None), data))
    if len(runs) > 1:
        shared = set.intersection(*({img["image_id"] for img in data.images} for _, data in runs))
        if not shared:
            raise LscError("the runs share no image: a comparison needs runs of the same images "
                           "(the same images: settings)")
    if not schemes:
        held = list(dict.fromkeys(s for _, data in runs for s in data.schemes))
        if len(held) != 1:
            raise LscError(f"the runs hold {'several schemes' if held else 'no scheme'} ({', '.join(held) or 'none'}): "
                           "name the one to compare with --scheme (repeat it for a scheme x run table)")
        schemes = held
    for (_, data), run_dir in zip(runs, run_dirs):
        path = Path(run_dir)
        for name in schemes:
            if name not in data.schemes:
                raise LscError(f"{path}: no scheme {name!r} (it has {', '.join(data.schemes) or 'none'})")
    cells = [cell for name in schemes for label, data in runs for cell in _scheme_cells(label, data, name)]
    for label, _ in runs:
        if not any(c.run == label for c in cells):
            warnings.warn(LscWarning(f"{label}: no successful transmission of {', '.join(schemes)}; "
                                     "left out of the comparison"), stacklevel=2)
    return cells


def _scheme_cells(label: str, data: RunData, scheme: str) -> list[Cell]:
    """One run's cells of `scheme`, one per condition (SNR) with successful transmissions."""
    cells: list[Cell] = []
    for cond, snr in data.conds or [("", None)]:
        ok = data.ok(cond, scheme)
        if not ok:
            continue
        hits = [s["words_to_threshold"] for s in ok if s["words_to_threshold"] is not None]
        steps = [data.steps.get((cond, scheme, s["image_id"])) or [] for s in ok]
        sent = [r for rows in steps for r in rows]
        hit_share = sum(1 for r in sent if (r["bit_errors"] or 0) > 0) / len(sent) if sent else float("nan")
        areas = [t.area_words for t in transmissions(data, cond).get(scheme, {}).values()]
        seconds, planning, timing = transmission_times(ok)
        cells.append(Cell(label, snr, len(ok), mean_ci(s["final_lpips"] for s in ok),
                          mean_ci(hits), wilson(len(hits), len(ok)), mean_ci(rows[-1]["cum_bits"] for rows in steps if rows), hit_share,
                          data.threshold, scheme, mean_ci(areas), mean_ci(seconds), mean_ci(planning), timing,
                          data.distance.name))
    return cells


def transmission_times(rows: Sequence[dict[str, Any]]) -> tuple[list[float], list[float], str]:
    """(transmission seconds, planning seconds, which measure) of a scheme's successful summary rows.

    Warm transmissions only (`cold` 0: the first of each worker process pays the models' warm-up); a run
    stored before the split has only `elapsed_s`, the whole (planning and step metrics included): "elapsed".
    """
    if any(r.get("transmission_s") is not None for r in rows):
        warm = [r for r in rows if r.get("transmission_s") is not None and not r.get("cold")]
        return ([float(r["transmission_s"]) for r in warm], [float(r["planning_s"]) for r in warm
                                                             if r.get("planning_s") is not None], "transmission")
    return [float(r["elapsed_s"]) for r in rows if r.get("elapsed_s") is not None], [], "elapsed"


def distance_of(cells: Sequence[Cell]) -> str:
    """The name of the distance the compared runs measured; both names when they differ (never one "LPIPS" for two)."""
    return " / ".join(dict.fromkeys(c.distance for c in cells)) or "LPIPS"


def markdown_table(cells: Sequence[Cell]) -> str:
    """Rows = runs, columns = SNRs; each cell 'final LPIPS ± CI / success [CI] / words ± CI'."""
    runs = list(dict.fromkeys(c.run for c in cells))
    snrs = sorted({c.snr_db for c in cells}, key=lambda v: (v is None, v or 0.0))
    scheme_names = ", ".join(dict.fromkeys(c.scheme for c in cells))
    head = [f"run ({scheme_names})"] + ["ideal" if s is None else f"{s:g} dB" for s in snrs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_key = {(c.run, c.snr_db): c for c in cells}
    for run in runs:
        lines.append("| " + " | ".join([run] + [by_key[(run, s)].text() if (run, s) in by_key else "–" for s in snrs]) + " |")
    lines.append("")
    lines.append(f"Each cell: final {distance_of(cells)} (mean ± 95% CI) / success rate [Wilson 95% CI] / words to threshold "
                 "among successes (mean ± 95% CI).")
    lines.append("")
    lines.append("| run | bits per caption | words with bit errors, by SNR |")
    lines.append("|---|---|---|")
    for run in runs:
        mine = [by_key[(run, s)] for s in snrs if (run, s) in by_key]
        bits = mine[0].bits.fmt(0) if mine and mine[0].bits is not None else "–"
        shares = ", ".join("–" if math.isnan(c.words_with_bit_errors) else f"{c.words_with_bit_errors:.0%}" for c in mine)
        lines.append(f"| {run} | {bits} | {shares} |")
    return "\n".join(lines)


def scheme_run_table(cells: Sequence[Cell]) -> str:
    """Rows = schemes, columns = runs (one column per run and SNR when swept): success rate [CI] / words
    to threshold among successes ± CI / area under LPIPS vs words ± CI; then seconds per transmission.
    Each run is judged by its own threshold (receivers differ), listed under the table."""
    schemes = list(dict.fromkeys(c.scheme for c in cells))
    columns = list(dict.fromkeys((c.run, c.snr_db) for c in cells))
    name = {col: col[0] if col[1] is None else f"{col[0]} @ {col[1]:g} dB" for col in columns}
    by_key = {(c.scheme, c.run, c.snr_db): c for c in cells}

    def row(scheme: str, text: Any) -> str:
        got = [by_key.get((scheme, *col)) for col in columns]
        return "| " + " | ".join([scheme] + ["–" if c is None else text(c) for c in got]) + " |"

    head = "| scheme | " + " | ".join(name[col] for col in columns) + " |"
    rule = "|" + "---|" * (len(columns) + 1)
    lines = [head, rule]
    for scheme in schemes:
        lines.append(row(scheme, lambda c: f"{c.success[0]:.0%} [{c.success[1]:.0%}, {c.success[2]:.0%}] / {c.words.fmt(1)} / "
                         f"{c.area.fmt(2) if c.area is not None else '–'}"))
    counts = ", ".join(f"{name[col]} {max(c.n for c in cells if (c.run, c.snr_db) == col)}" for col in columns)
    threshold = {(c.run, c.snr_db): c.threshold for c in cells}
    thresholds = ", ".join(f"{name[col]} {threshold[col]:.4g}" if threshold[col] is not None else f"{name[col]} –" for col in columns)
    lines += ["", "Each cell: success rate [Wilson 95% CI] / words to threshold among successes (mean ± 95% CI) / area under "
              f"{distance_of(cells)} vs words, per word (mean ± 95% CI). Transmissions per cell: {counts}. "
              f"Thresholds: {thresholds}.",
              "", head, rule]
    def seconds(c: Cell) -> str:
        if c.seconds is None or not c.seconds.n:
            return "–"
        if c.timing != "transmission":
            return f"{c.seconds.fmt(2)} s (whole)"
        plan = f" + plan {c.planning.fmt(2)} s" if c.planning is not None and c.planning.n else ""
        return f"{c.seconds.fmt(2)} s{plan}"

    for scheme in schemes:
        lines.append(row(scheme, seconds))
    lines += ["", "Each cell: seconds per transmission (mean ± 95% CI): the loop after Alice's plan (the channel, Bob's "
              f"images and their {distance_of(cells)}), then `plan`, Alice's planning; step metrics are timed apart and not shown, and "
              "the first transmission of each worker process (the models' warm-up) is left out. `(whole)`: a run stored "
              "before times were split, planning and step metrics included."]
    return "\n".join(lines)


def common_threshold(cells: Sequence[Cell]) -> float | None:
    """The success threshold the compared runs share (None when they differ or none is recorded)."""
    found = {c.threshold for c in cells}
    return found.pop() if len(found) == 1 else None


def plot_schemes(cells: Sequence[Cell], path: Path) -> bool:
    """Success rate and area under LPIPS vs words per scheme, one bar per run, 95% error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    schemes = list(dict.fromkeys(c.scheme for c in cells))
    columns = list(dict.fromkeys((c.run, c.snr_db) for c in cells))
    if not schemes or not columns:
        return False
    by_key = {(c.scheme, c.run, c.snr_db): c for c in cells}
    x = np.arange(len(schemes))
    width = 0.8 / len(columns)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(min(16.0, 4.0 + 1.4 * len(schemes)), 4.4))
    for j, col in enumerate(columns):
        mine = [by_key.get((s, *col)) for s in schemes]
        label = col[0] if col[1] is None else f"{col[0]} @ {col[1]:g} dB"
        rate = [100 * c.success[0] if c else np.nan for c in mine]
        err = [[100 * (c.success[0] - c.success[1]) if c else 0 for c in mine], [100 * (c.success[2] - c.success[0]) if c else 0 for c in mine]]
        ax1.bar(x + j * width, rate, width, yerr=err, capsize=2, label=label)
        area = [c.area.mean if c and c.area is not None else np.nan for c in mine]
        half = [c.area.half if c and c.area is not None and not np.isnan(c.area.half) else 0 for c in mine]
        ax2.bar(x + j * width, area, width, yerr=half, capsize=2, label=label)
    for ax, title in ((ax1, "Reached the threshold (%, Wilson 95% CI)"), (ax2, f"Area under {distance_of(cells)} vs words (per word, 95% CI)")):
        ax.set_xticks(x + 0.4 - width / 2, schemes, rotation=20, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
    handles, names = ax1.get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=len(columns), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    _save(fig, path)
    return True


def plot_comparison(cells: Sequence[Cell], path: Path, threshold: float | None = None) -> bool:
    """Final LPIPS and success rate against SNR, one line per run, 95% error bars; the threshold dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lsc.report.plots import final_lpips_vs_snr
    from lsc.report.style import series_style

    swept = [c for c in cells if c.snr_db is not None]
    if not swept:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    runs = list(dict.fromkeys(c.run for c in swept))
    final_lpips_vs_snr(ax1, {run: [(c.snr_db, c.final_lpips) for c in swept if c.run == run] for run in runs},
                       name=distance_of(swept))
    for run in runs:
        mine = sorted((c for c in swept if c.run == run), key=lambda c: c.snr_db)
        ax2.errorbar([c.snr_db for c in mine], [100 * c.success[0] for c in mine],
                     yerr=[[100 * (c.success[0] - c.success[1]) for c in mine], [100 * (c.success[2] - c.success[0]) for c in mine]],
                     capsize=3, label=run, **series_style(runs.index(run)))
    if threshold is not None:
        ax1.axhline(threshold, color="grey", linestyle=":", label="success threshold")
    ax1.set_title(f"Final {distance_of(swept)} vs SNR (95% CI)")
    ax2.set(xlabel="SNR (dB)", ylabel="success rate (%)", title="Reached the threshold (Wilson 95% CI)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Scheme {', '.join(dict.fromkeys(c.scheme for c in swept))}: the runs compared")
    fig.tight_layout()
    _save(fig, path)
    return True


def _save(fig: Any, path: Path) -> None:
    """Save in the format the path's suffix names (png, pdf, svg; text kept as text in vector files)."""
    import matplotlib

    from lsc.report.style import FigureStyle

    style = FigureStyle(format=path.suffix.lower().lstrip(".") or "png")
    with matplotlib.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}):
        style.save(fig, path)
