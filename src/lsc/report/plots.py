"""The report's figures (matplotlib, Agg): LPIPS vs words and bits with 95% bands, success rate, paired
differences, the gap to the oracle, LPIPS vs SNR and rate-perception for sweeps, step metrics, and image
strips like the papers' Fig. 2.

One function per figure draws from one run or several (`View`: a run's data under one condition, and its
label) in a `FigureStyle` (lsc.report.style: screen PNG for the report, vector PDF/SVG for a paper), so
`lsc report` and `lsc plot` draw the same figure with the same code. Each returns the path it wrote, or None
when it had nothing to draw (a partial run may not have the data for every figure).
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lsc.report.data import RunData  # noqa: E402
from lsc.report.stats import MeanCI, band, mean_ci, pad_forward, step_function_at, success_curve, wilson  # noqa: E402
from lsc.report.style import BASELINE_COLOUR, MARKERS, PALETTE, SCREEN, FigureStyle, series_style  # noqa: E402

__all__ = ["View", "one", "lpips_vs_words", "lpips_vs_bits", "success_vs_words", "paired_difference", "gap_vs_images",
           "lpips_vs_snr", "rate_perception", "step_metric_vs_words", "image_strip", "scheme_panels", "PALETTE",
           "MARKERS", "BASELINE_STYLE"]

ORACLE_STYLE = {"color": "black", "linestyle": (0, (4, 2)), "linewidth": 1.6}
BASELINE_STYLE = {"color": BASELINE_COLOUR, "linewidth": 1.4, "linestyle": "-"}


@dataclass(frozen=True)
class View:
    """One run's data under one condition ('' or e.g. 'snr_db=4'), and the name it goes by on a figure."""

    label: str
    data: RunData
    cond: str


def one(data: RunData, cond: str) -> list[View]:
    """The report's case: one run, one condition."""
    return [View(data.run_dir.name, data, cond)]


def _curves(data: RunData, cond: str, scheme: str) -> list[list[dict[str, Any]]]:
    return [data.steps[(cond, scheme, s["image_id"])] for s in data.ok(cond, scheme)
            if (cond, scheme, s["image_id"]) in data.steps]


def oracle_matrix(data: RunData, image_ids: list[str] | None = None) -> np.ndarray:
    ids = [i for i in (image_ids or list(data.oracle)) if data.oracle.get(i)]
    return pad_forward([[v for _, v in sorted(data.oracle[i])] for i in ids])


# ---------------------------------------------------------------- small multiples: one panel per scheme family
# Families by registered scheme name; every panel also shows the random baseline (grey) and the oracle.
FAMILIES: list[tuple[str, list[str]]] = [
    ("Bob's whole model", ["lowest_lpips", "crossattention_match"]),
    ("Bob's language-model attention", ["most_attentive", "least_attentive"]),
    ("Alice's attention and grounding", ["alice_attention", "attention_contribution", "attention_combination"]),
    ("Parts of speech", ["nouns", "nouns_verbs"]),
    ("Dependency heads (semantic source coding)", ["heads", "heads_attentive", "heads_random", "heads_skd"]),
]


def scheme_panels(data: RunData, baseline: str = "random") -> list[tuple[str, list[str]]]:
    """(panel title, scheme labels) for the small multiples: the families present, then one panel per other
    scheme (a plugin's, by its registered name or import path, with every label it runs under)."""
    by_name: dict[str, list[str]] = {}
    for label in data.schemes:
        by_name.setdefault(data.scheme_names.get(label, label), []).append(label)
    placed = {baseline}
    panels = []
    for title, names in FAMILIES:
        labels = [lab for n in names for lab in by_name.get(n, []) if lab != baseline]
        if labels:
            panels.append((title, labels))
            placed.update(labels)
    rest: dict[str, list[str]] = {}
    for lab in data.schemes:
        if lab not in placed:
            rest.setdefault(data.scheme_names.get(lab, lab), []).append(lab)
    panels.extend((_panel_title(name), labels) for name, labels in rest.items())
    if not panels and baseline in data.schemes:
        panels.append((baseline, []))
    return panels


def _panel_title(name: str) -> str:
    """A panel's title for a scheme outside the families: its name, or `Class (package.module)` for an import path."""
    module, sep, attr = name.partition(":")
    return f"{attr} ({module})" if sep else name


@dataclass
class Panel:
    """One axes of a small-multiples figure: a run's view, the schemes drawn (colour i for scheme i of
    `order`), and the baseline drawn grey on it (None: none)."""

    title: str
    view: View
    schemes: list[str]
    baseline: str | None
    order: list[str] = field(default_factory=list)

    def style(self, scheme: str, solid: bool = False) -> dict[str, Any]:
        return series_style((self.order or self.schemes).index(scheme), solid)


def panels_for(views: Sequence[View], schemes: Sequence[str] | None = None, baseline: str = "random") -> list[Panel]:
    """The panels of a figure: one run and no scheme chosen, one per scheme family (the report's); one run
    with chosen schemes, one panel of exactly those; several runs, one panel per run (same colour per scheme)."""
    if len(views) == 1 and schemes is None:
        v = views[0]
        base = baseline if baseline in v.data.schemes else None
        return [Panel(title, v, labels, base) for title, labels in scheme_panels(v.data, baseline)]
    if len(views) == 1:
        return [Panel("", views[0], list(schemes or []), None)]
    order = list(schemes) if schemes is not None else list(dict.fromkeys(
        s for v in views for s in v.data.schemes if s != baseline))
    panels = []
    for v in views:
        mine = [s for s in order if s in v.data.schemes]
        base = baseline if schemes is None and baseline in v.data.schemes else None
        panels.append(Panel(f"{v.label}{_cond_title(v.cond)}", v, mine, base, order))
    return panels


def _grid(n: int, style: FigureStyle) -> tuple[Any, Any]:
    ncols = min(3, max(1, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=style.size(4.3 * ncols, 3.3 * nrows + 0.6), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


Series = Callable[[Panel, str], Any]  # (panel, scheme) -> (x, mean, lo, hi, legend label) or None


def _small_multiples(panels: list[Panel], path: Path, style: FigureStyle, title: str, xlabel: str, ylabel: str,
                     series: Series, extra: Callable[[Any, Panel], None] | None = None, threshold: bool = True,
                     solid: bool = False, explain: list[Any] | None = None) -> Path | None:
    """Draw one axes per panel: the baseline grey, each scheme in its style with its 95% band, then `extra`
    (e.g. the oracle) and the run's threshold; `explain`: legend entries saying what line styles mean."""
    drawn = [(p, {s: series(p, s) for s in ([p.baseline] if p.baseline else []) + p.schemes}) for p in panels]
    if not any(got for _, lines in drawn for got in lines.values()):
        return None
    with style.context():
        fig, axes = _grid(len(panels), style)
        for ax, (panel, lines) in zip(axes.flat, drawn):
            for scheme, got in lines.items():
                if got is None:
                    continue
                x, mean, lo, hi, lab = got
                st = {**BASELINE_STYLE} if scheme == panel.baseline else {
                    **panel.style(scheme, solid), "markevery": max(1, len(x) // 12)}
                ax.plot(x, mean, label=lab, **st)
                ax.fill_between(x, lo, hi, color=st["color"], alpha=0.16 if scheme == panel.baseline else 0.14, linewidth=0)
            if extra is not None:
                extra(ax, panel)
            data = panel.view.data
            if threshold and data.threshold is not None:
                ax.axhline(data.threshold, color="0.5", linewidth=0.8, linestyle=":", label=f"threshold {data.threshold:g}")
            if panel.title:
                ax.set_title(panel.title, fontsize="small")
            ax.grid(alpha=0.3)
            handles, labels = ax.get_legend_handles_labels()
            ax.legend(handles + (explain or []), labels + [h.get_label() for h in explain or []], loc="best")
        fig.supxlabel(xlabel, fontsize="small")
        fig.supylabel(ylabel, fontsize="small")
        style.title(fig, title)
        return style.save(fig, path)


def _oracle_label(n: int) -> str:
    return f"oracle: caption-order bound (its {n} images only)"


def lpips_vs_words(views: Sequence[View], path: Path, style: FigureStyle = SCREEN,
                   schemes: Sequence[str] | None = None) -> Path | None:
    """Mean LPIPS after k words with 95% bands, one panel per scheme family (or per run), the oracle on each."""
    def series(panel: Panel, scheme: str) -> Any:
        curves = _curves(panel.view.data, panel.view.cond, scheme)
        if not curves:
            return None
        m = pad_forward([[r["lpips"] for r in c] for c in curves])
        mean, lo, hi = band(m)
        return np.arange(m.shape[1]), mean, np.maximum(lo, 0.0), hi, f"{scheme} (n={m.shape[0]})"

    def oracle(ax: Any, panel: Panel) -> None:
        om = oracle_matrix(panel.view.data)
        if om.size:
            mean, _, _ = band(om)
            ax.plot(np.arange(om.shape[1]), mean, label=_oracle_label(om.shape[0]), **ORACLE_STYLE)

    name = distance_name(views)
    return _small_multiples(panels_for(views, schemes), path, style, f"Mean {name} vs words sent, 95% CI bands{_views_title(views)}",
                            "words sent", f"{name} (lower is closer)", series, oracle)


def lpips_vs_bits(views: Sequence[View], path: Path, style: FigureStyle = SCREEN,
                  schemes: Sequence[str] | None = None, points: int = 80) -> Path | None:
    """Mean LPIPS after x bits (step functions averaged on a grid), one panel per family (or run), with the oracle."""
    max_bits = max((c[-1]["cum_bits"] or 0 for v in views for s in v.data.schemes for c in _curves(v.data, v.cond, s)), default=0)
    if max_bits <= 0:
        return None
    grid = np.linspace(0, max_bits, points)

    def series(panel: Panel, scheme: str) -> Any:
        curves = _curves(panel.view.data, panel.view.cond, scheme)
        if not curves:
            return None
        m = np.stack([step_function_at([r["cum_bits"] for r in c], [r["lpips"] for r in c], grid) for c in curves])
        mean, lo, hi = band(m)
        return grid, mean, np.maximum(lo, 0.0), hi, f"{scheme} (n={m.shape[0]})"

    # The oracle's subsets have no recorded bit cost: place its k-th point at k x the image's mean
    # cost per word (ideal channel, 8 bits per character + separator).
    def oracle(ax: Any, panel: Panel) -> None:
        data = panel.view.data
        oc = []
        for image_id, curve in data.oracle.items():
            words = _caption_words(data, image_id)
            if not curve or not words:
                continue
            per_word = float(np.mean([8 * len(w) + 8 for w in words]))
            xs = [k * per_word for k, _ in sorted(curve)]
            oc.append(step_function_at(xs, [v for _, v in sorted(curve)], grid))
        if oc:
            mean, _, _ = band(np.stack(oc))
            ax.plot(grid, mean, label=_oracle_label(len(oc)) + ", bits ≈ k × word cost", **ORACLE_STYLE)

    name = distance_name(views)
    return _small_multiples(panels_for(views, schemes), path, style, f"Mean {name} vs bits sent, 95% CI bands{_views_title(views)}",
                            "cumulative bits sent", name, series, oracle)


def _caption_words(data: RunData, image_id: str) -> list[str]:
    import json

    for s in data.summaries:
        if s["image_id"] == image_id and s["status"] == "ok" and s["words_json"]:
            from lsc.protocol.words import clean_words

            return clean_words(s["caption"] or "") or json.loads(s["words_json"])
    return []


def under_curve(curves: list[list[float]], threshold: float, length: int) -> np.ndarray:
    """Share of images whose image after k words (the last one carried on) is under the threshold."""
    m = pad_forward(curves, length)
    return (m < threshold).mean(axis=0)


def success_vs_words(views: Sequence[View], path: Path, style: FigureStyle = SCREEN,
                     schemes: Sequence[str] | None = None) -> Path | None:
    """Per family (or run): share that reached the threshold within k words (solid, Wilson band) and share
    whose image after k words is under it (dashed, same colour); at the last word the second is 'final image
    under'. Schemes differ by colour and marker here, never by line style, which the legend explains."""
    if all(v.data.threshold is None for v in views):
        return None
    now: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}

    def length(data: RunData) -> int:
        return 1 + max((s["n_words"] or 0 for s in data.summaries if s["status"] == "ok"), default=0)

    def series(panel: Panel, scheme: str) -> Any:
        data, cond = panel.view.data, panel.view.cond
        rows = data.ok(cond, scheme)
        curves = _curves(data, cond, scheme)
        if data.threshold is None or not rows or not curves:
            return None
        n = length(data)
        k = np.arange(n)
        curve = success_curve([r["words_to_threshold"] for r in rows], n)
        bounds = [wilson(int(round(p * len(rows))), len(rows)) for p in curve]
        now[(id(panel), scheme)] = k, under_curve([[r["lpips"] for r in c] for c in curves], data.threshold, n)
        return k, curve, np.array([b[1] for b in bounds]), np.array([b[2] for b in bounds]), scheme

    def instantaneous(ax: Any, panel: Panel) -> None:
        for scheme in ([panel.baseline] if panel.baseline else []) + panel.schemes:
            if (id(panel), scheme) in now:
                colour = BASELINE_STYLE["color"] if scheme == panel.baseline else panel.style(scheme)["color"]
                ax.plot(*now[(id(panel), scheme)], color=colour, linewidth=0.9, linestyle=(0, (3, 1.5)), label="_nolegend_")

    thresholds = sorted({v.data.threshold for v in views if v.data.threshold is not None})
    explain = [Line2D([], [], color="black", linewidth=1.5, label="solid: reached within k words (Wilson 95% band)"),
               Line2D([], [], color="black", linewidth=0.9, linestyle=(0, (3, 1.5)),
                      label="dashed: image after k words under the threshold")]
    return _small_multiples(panels_for(views, schemes), path, style,
                            f"Success vs words sent: reached the threshold within k words (solid, Wilson 95% band)\n"
                            f"and Bob's image after k words under it (dashed; at the last word: final image under){_views_title(views)}",
                            "words sent", f"share of images (threshold {', '.join(f'{t:g}' for t in thresholds)})", series,
                            instantaneous, threshold=False, solid=True, explain=explain)


def paired_difference(series: Sequence[tuple[str, list[Any]]], path: Path, metrics: Any, style: FigureStyle = SCREEN,
                      baseline: str = "random", schemes: Sequence[str] | None = None,
                      distance: str = "LPIPS") -> Path | None:
    """Forest plot: each scheme minus the baseline on the same images, mean and 95% CI per metric; filled
    markers where the Holm-corrected paired test gives p < 0.05. `series`: (run label, analysis.PairedRow
    list) per run; several runs sit side by side on each scheme's line, one colour and marker per run. `distance`:
    the name the runs' backend declared for the distance (titles say "LPIPS" generically)."""
    series = [(label, [r for r in rows if r.n and (schemes is None or r.scheme in schemes)]) for label, rows in series]
    series = [(label, rows) for label, rows in series if rows]
    if not series:
        return None
    names = list(schemes) if schemes is not None else list(dict.fromkeys(r.scheme for _, rows in series for r in rows))
    names = [n for n in names if any(r.scheme == n for _, rows in series for r in rows)]
    several = len(series) > 1
    y_of = {n: len(names) - 1 - i for i, n in enumerate(names)}
    offset = {label: ((len(series) - 1) / 2 - j) * 0.7 / max(1, len(series)) for j, (label, _) in enumerate(series)}
    with style.context():
        fig, axes = plt.subplots(1, len(metrics), figsize=style.size(3.6 * len(metrics) + 1.2, 0.32 * len(names) * (1 + 0.4 * several) + 1.6),
                                 sharey=True, squeeze=False, layout="constrained")
        for ax, (key, label, _) in zip(axes[0], metrics):
            for j, (run, rows) in enumerate(series):
                for r in rows:
                    ci = r.diffs[key]
                    sig = not math.isnan(r.p_holm.get(key, math.nan)) and r.p_holm[key] < 0.05
                    half = 0.0 if math.isnan(ci.half) else ci.half
                    if several:
                        colour, marker = PALETTE[j % len(PALETTE)], MARKERS[j % len(MARKERS)]
                    else:
                        colour, marker = (PALETTE[0] if ci.mean < 0 else (PALETTE[1] if ci.mean > 0 else "0.4")), "o"
                    ax.errorbar([ci.mean], [y_of[r.scheme] + offset[run]], xerr=[[half], [half]], fmt=marker, color=colour,
                                capsize=2.5, markerfacecolor=colour if sig else "white", markersize=5,
                                label=run if several and r is rows[0] else "_nolegend_")
            ax.axvline(0.0, color="0.3", linewidth=0.9)
            ax.set_title(f"Δ {label.replace('LPIPS', distance)}", fontsize="small")
            ax.grid(alpha=0.3, axis="x")
            ax.xaxis.set_major_locator(MaxNLocator(4))
        axes[0][0].set_yticks([y_of[n] for n in names], [n if several else f"{n} (n={_n_of(series, n)})" for n in names])
        explain = [Line2D([], [], color="0.3", marker="o", linestyle="none", label="filled: Holm p < 0.05"),
                   Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="none", label="open: not significant")]
        handles, labels = axes[0][-1].get_legend_handles_labels()
        fig.legend(handles + explain, labels + [h.get_label() for h in explain], loc="outside lower center",
                   ncol=len(handles) + len(explain))
        style.title(fig, f"Each scheme minus {baseline} on the same images (mean, 95% CI; < 0 is better; "
                         "filled: Holm-corrected p < 0.05)")
        return style.save(fig, path)


def _n_of(series: Sequence[tuple[str, list[Any]]], scheme: str) -> int:
    return next(r.n for _, rows in series for r in rows if r.scheme == scheme)


def final_lpips_vs_snr(ax: Any, series: dict[str, list[tuple[float, MeanCI]]], colour: dict[str, Any] | None = None,
                       name: str = "LPIPS") -> bool:
    """Mean final LPIPS against SNR, one line with 95% error bars per series (report: per scheme; compare: per run).

    Points with no transmissions are left out; returns whether any line was drawn.
    """
    drew = False
    for i, (label, points) in enumerate(series.items()):
        pts = sorted(((snr, ci) for snr, ci in points if ci.n), key=lambda p: p[0])
        if not pts:
            continue
        st = series_style(i)
        if colour and label in colour:
            st["color"] = colour[label]
        ax.errorbar([snr for snr, _ in pts], [ci.mean for _, ci in pts],
                    yerr=[0.0 if math.isnan(ci.half) else ci.half for _, ci in pts], capsize=3, label=label, **st)
        drew = True
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel(f"final {name}")
    return drew


def _swept(data: RunData) -> list[tuple[str, float]]:
    return [(c, v) for c, v in data.conds if v is not None]


def lpips_vs_snr(views: Sequence[View], path: Path, style: FigureStyle = SCREEN,
                 schemes: Sequence[str] | None = None) -> Path | None:
    """Final LPIPS per scheme (and run) against SNR (a sweep), 95% error bars; the oracle's full-caption level dashed."""
    views = [v for v in views if len(_swept(v.data)) >= 2]
    if not views:
        return None
    several = len(views) > 1
    series: dict[str, list[tuple[float, MeanCI]]] = {}
    for v in views:
        for scheme in (schemes if schemes is not None else v.data.schemes):
            if scheme in v.data.schemes:
                series[f"{v.label}: {scheme}" if several else scheme] = [
                    (float(snr), mean_ci(r["final_lpips"] for r in v.data.ok(cond, scheme))) for cond, snr in _swept(v.data)]
    with style.context():
        fig, ax = plt.subplots(figsize=style.size(7, 4.5), layout="constrained")
        final_lpips_vs_snr(ax, series, name=distance_name(views))
        if not several:
            om = oracle_matrix(views[0].data)
            if om.size:
                ax.axhline(float(np.mean(om[:, -1])), label="oracle, ideal channel (full caption)", **ORACLE_STYLE)
        _threshold_line(ax, views)
        style.title(fig, f"Final {distance_name(views)} vs SNR")
        ax.grid(alpha=0.3)
        ax.legend(ncol=2, loc="best")
        return style.save(fig, path)


def _threshold_line(ax: Any, views: Sequence[View]) -> None:
    found = {v.data.threshold for v in views}
    if len(found) == 1 and None not in found:
        t = found.pop()
        ax.axhline(t, color="0.5", linewidth=0.8, linestyle=":", label=f"threshold {t:g}")


def rate_perception(views: Sequence[View], path: Path, style: FigureStyle = SCREEN,
                    schemes: Sequence[str] | None = None) -> Path | None:
    """Per scheme (and run): mean LPIPS after k words against mean cumulative bits after k words, one curve per SNR."""
    views = [v for v in views if len(_swept(v.data)) >= 2]
    several = len(views) > 1
    cells = [(v, s) for v in views for s in (schemes if schemes is not None else v.data.schemes)
             if s in v.data.schemes and any(v.data.ok(c, s) for c, _ in _swept(v.data))]
    if not cells:
        return None
    ncols = min(4, len(cells))
    nrows = math.ceil(len(cells) / ncols)
    cmap = plt.get_cmap("viridis")  # perceptually uniform, readable in grey and with colour-vision deficiencies
    with style.context():
        fig, axes = plt.subplots(nrows, ncols, figsize=style.size(3.4 * ncols, 2.8 * nrows + 0.4), squeeze=False,
                                 sharey=True, layout="constrained")
        for ax, (v, scheme) in zip(axes.flat, cells):
            conds = _swept(v.data)
            for j, (cond, snr) in enumerate(conds):
                curves = _curves(v.data, cond, scheme)
                if not curves:
                    continue
                lp = pad_forward([[r["lpips"] for r in c] for c in curves]).mean(axis=0)
                bits = pad_forward([[r["cum_bits"] for r in c] for c in curves]).mean(axis=0)
                ax.plot(bits, lp, marker=MARKERS[j % len(MARKERS)], markersize=3, color=cmap(j / max(1, len(conds) - 1)),
                        label=f"{snr:g} dB")
            if v.data.threshold is not None:
                ax.axhline(v.data.threshold, color="0.5", linewidth=0.8, linestyle=":", label=f"threshold {v.data.threshold:g}")
            ax.set_title(f"{v.label}: {scheme}" if several else scheme, fontsize="small")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(cells):]:
            ax.axis("off")
        axes.flat[0].legend()
        fig.supxlabel("mean cumulative bits", fontsize="small")
        fig.supylabel(f"mean {distance_name(views)}", fontsize="small")
        style.title(fig, "Rate-perception per scheme and SNR")
        return style.save(fig, path)


STRIP_CELL = 96  # pixels per image in a strip (small images are enlarged, large ones reduced)
STRIP_COLUMNS = 12  # steps per strip row: a longer caption continues on the next row
_STRIP_TOP, _STRIP_BOTTOM, _STRIP_GAP = 30, 16, 6  # pixels for the word above, the LPIPS below, between cells
# A strip's distance under each image: green and bold under the threshold; vermillion with a cross and a
# frame when under the threshold while the attribute reader finds the image wrong (world: attr_all_right 0).
UNDER_COLOUR, WRONG_COLOUR, WRONG_MARK = "#009E73", "#D55E00", "✗"
WRONG_RGB = (0xD5, 0x5E, 0x00)


def _strip_cell(path: Path) -> np.ndarray | None:
    """An image as one STRIP_CELL x STRIP_CELL uint8 cell of a strip (None when it is missing)."""
    from PIL import Image

    if not path.is_file():
        return None
    im = Image.open(path).convert("RGB")
    resample = Image.Resampling.NEAREST if im.width <= STRIP_CELL else Image.Resampling.LANCZOS
    return np.asarray(im.resize((STRIP_CELL, STRIP_CELL), resample))


def strip_rows(views: Sequence[View], image_id: str, schemes: Sequence[str] | None = None,
               columns: int = STRIP_COLUMNS) -> list[tuple[str, View, list[dict[str, Any]], bool]]:
    """The strip's rows: (row label, view, its steps, whether it is a scheme's first row); a transmission of
    more than `columns` steps continues on rows of its own (labelled '... cont.') so cells stay readable."""
    rows = []
    for v in views:
        for s in (schemes if schemes is not None else v.data.schemes):
            steps = v.data.steps.get((v.cond, s, image_id))
            if not steps:
                continue
            label = f"{v.label}: {s}" if len(views) > 1 else s
            for start in range(0, len(steps), max(1, columns)):
                rows.append((label if start == 0 else f"{label} (cont.)", v, steps[start : start + columns], start == 0))
    return rows


def image_strip(views: Sequence[View], image_id: str, path: Path, style: FigureStyle = SCREEN,
                schemes: Sequence[str] | None = None, columns: int = STRIP_COLUMNS) -> Path | None:
    """Fig. 2 style: one row per scheme (and run); per step the word sent, Bob's image and its LPIPS; the
    original first. At most `columns` steps per row (a longer caption wraps), the caption wrapped to the width.

    Drawn as one mosaic with text around it rather than an axes per image: with 14 schemes x 12 steps
    the axes and their layout took ~11 s per strip, the mosaic well under one."""
    from lsc.runner.folder import image_path, original_path

    rows = strip_rows(views, image_id, schemes, columns)
    if not rows:
        return None
    ncols = 1 + max(len(r) for _, _, r, _ in rows)
    cell_w, row_h = STRIP_CELL + _STRIP_GAP, _STRIP_TOP + STRIP_CELL + _STRIP_BOTTOM
    width, height = ncols * cell_w, len(rows) * row_h
    mosaic = np.full((height, width, 3), 255, np.uint8)
    texts: list[tuple[float, float, str, dict[str, Any]]] = []
    originals = {id(v): _strip_cell(original_path(v.data.run_dir, image_id)) for _, v, _, _ in rows}
    for i, (label, v, steps, first) in enumerate(rows):
        top = i * row_h + _STRIP_TOP
        cells = [originals[id(v)] if first else None] + [_strip_cell(image_path(v.data.run_dir, st["image_key"])) for st in steps]
        for j, cell in enumerate(cells):
            if cell is not None:
                mosaic[top : top + STRIP_CELL, j * cell_w : j * cell_w + STRIP_CELL] = cell
        texts.append((-8, top + STRIP_CELL / 2, label, {"ha": "right", "va": "center", "fontsize": 7}))
        if i == 0:
            texts.append((STRIP_CELL / 2, top - 4, "original", {"ha": "center", "va": "bottom", "fontsize": 7}))
        for j, st in enumerate(steps, start=1):
            word = _short(st["word_received"] or "∅")
            if st["word_sent"] and st["word_received"] != st["word_sent"]:
                word = f"{_short(st['word_sent'])}→\n{_short(st['word_received'] or '∅')}"
            hit = v.data.threshold is not None and st["lpips"] < v.data.threshold
            wrong = hit and st.get("attr_all_right") == 0  # under the threshold, yet an attribute is wrong
            x = j * cell_w + STRIP_CELL / 2
            texts.append((x, top - 4, word, {"ha": "center", "va": "bottom", "fontsize": 6}))
            texts.append((x, top + STRIP_CELL + 3, f"{st['lpips']:.3f}" + (f" {WRONG_MARK}" if wrong else ""),
                          {"ha": "center", "va": "top", "fontsize": 6,
                           "color": WRONG_COLOUR if wrong else UNDER_COLOUR if hit else "black",
                           "fontweight": "bold" if hit else "normal"}))
            if wrong:  # a frame too, so the mark survives a grey print
                x0, y0 = j * cell_w, top
                mosaic[y0 : y0 + 2, x0 : x0 + STRIP_CELL] = WRONG_RGB
                mosaic[y0 + STRIP_CELL - 2 : y0 + STRIP_CELL, x0 : x0 + STRIP_CELL] = WRONG_RGB
                mosaic[y0 : y0 + STRIP_CELL, x0 : x0 + 2] = WRONG_RGB
                mosaic[y0 : y0 + STRIP_CELL, x0 + STRIP_CELL - 2 : x0 + STRIP_CELL] = WRONG_RGB
    dpi, left = 110, 150 + 40 * (len(views) > 1)  # pixels for the row labels
    data = views[0].data
    caption = next((s["caption"] for s in data.summaries if s["image_id"] == image_id and s["caption"]), "")
    natural_w = (width + left) / dpi
    fig_w, _ = style.size(natural_w, 1.0)
    scale = fig_w / natural_w  # text shrinks with the figure (unless a font size is asked for)
    font = style.font_size / 7 if style.font_size is not None else scale
    # the caption wrapped to the strip's width: an 8 pt character is about 6.7 px at 110 dpi (unscaled)
    char_px, line_px = 6.7 * font / scale, 15.3 * font / scale
    title = textwrap.fill(f"{image_id}: “{caption}”{_views_title(views)}; {distance_name(views)} under each image",
                          max(30, int((width + left) / char_px)))
    head = 8 + line_px * (1 + title.count("\n")) + 6 if not style.paper else 8
    with style.context():
        fig = plt.figure(figsize=(fig_w, (height + head) / dpi * scale))
        ax = fig.add_axes((left / (width + left), 0, width / (width + left), height / (height + head)))
        ax.imshow(mosaic, interpolation="nearest", aspect="auto")
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.axis("off")
        for x, y, text, st in texts:
            ax.text(x, y, text, clip_on=False, **{**st, "fontsize": st["fontsize"] * font})
        if not style.paper:
            fig.suptitle(title, fontsize=8 * font, y=1 - 6 / (height + head), va="top")
        return style.save(fig, path)


def _short(word: str, width: int = 11) -> str:
    """A word shortened to fit its strip column (titles of neighbouring columns must not overlap)."""
    return word if len(word) <= width else word[: width - 1] + "…"


def _cond_title(cond: str) -> str:
    return f" ({cond.replace('snr_db=', 'SNR ')} dB)" if cond.startswith("snr_db=") else (f" ({cond})" if cond else "")


def distance_name(views: Sequence[View]) -> str:
    """The name of the distance the views measured (their backends' declaration), both names when they differ."""
    return " / ".join(dict.fromkeys(v.data.distance.name for v in views)) or "LPIPS"


def _views_title(views: Sequence[View]) -> str:
    """The condition in a figure's title when every view shares it (else each panel names its own)."""
    conds = {v.cond for v in views}
    return _cond_title(conds.pop()) if len(conds) == 1 else ""


def step_metric_vs_words(views: Sequence[View], values: Sequence[dict[tuple[str, str], list[dict[str, float]]]], column: str,
                         path: Path, title: str, ylabel: str, style: FigureStyle = SCREEN,
                         schemes: Sequence[str] | None = None) -> Path | None:
    """Mean of a step metric (attribute accuracy, BLEU-4, ...) after k words, one panel per scheme family (or
    run); `values[i]`: report.step_metrics.compute of views[i].

    A metric scored at every k-th step and the last is drawn through the steps every transmission has a
    value at (a shorter caption's last value carried on, as for LPIPS)."""
    of = {id(v): vals for v, vals in zip(views, values)}

    def series(panel: Panel, scheme: str) -> Any:
        vals = of[id(panel.view)]
        curves = [[v.get(column, math.nan) for v in vals[(scheme, i)]] for i in panel.view.data.image_order if (scheme, i) in vals]
        curves = [c for c in curves if c and not math.isnan(c[-1])]
        if not curves:
            return None
        m = pad_forward(curves)
        steps = np.flatnonzero(~np.isnan(m).any(axis=0))
        if steps.size == 0:
            return None
        mean, lo, hi = band(m[:, steps])
        lo = np.maximum(lo, 0.0)  # every step metric here is non-negative; shares and text scores end at 1
        hi = np.minimum(hi, 1.0) if column in UNIT_RANGE else hi
        return steps, mean, lo, hi, f"{scheme} (n={m.shape[0]})"

    return _small_multiples(panels_for(views, schemes), path, style, title, "words sent", ylabel, series, threshold=False)


UNIT_RANGE = {"attr_mean", "attr_all_right", "bleu4", "rouge_l", "meteor", "itm"}


def gap_vs_images(series: Sequence[tuple[str, list[Any], dict[str, float]]], oracle_images: float, path: Path,
                  style: FigureStyle = SCREEN, schemes: Sequence[str] | None = None) -> Path | None:
    """Each scheme's area gap to the oracle (% of the oracle's area, 95% CI) against the images Alice generated
    per caption to plan (symmetric log scale: 0 is a plan without Bob's generator); the oracle at 2^n.

    `series`: (run label, analysis.SearchCost rows, scheme -> the smallest per-image relative gap) per run.
    A t-interval of a skewed quantity bounded below can reach past every value observed: a bar ends at the
    smallest observed gap (0 and below only where some image was at or under the oracle)."""
    series = [(label, [r for r in rows if schemes is None or r.scheme in schemes], floor) for label, rows, floor in series]
    series = [s for s in series if s[1]]
    if not series:
        return None
    names = list(dict.fromkeys(r.scheme for _, rows, _ in series for r in rows))
    several = len(series) > 1
    with style.context():
        fig, ax = plt.subplots(figsize=style.size(8.5, 4.2), layout="constrained")
        free = [n for n in names if any(r.scheme == n and r.alice_images == 0 for _, rows, _ in series for r in rows)]
        for j, (run, rows, floor) in enumerate(series):
            for r in rows:
                i = names.index(r.scheme)
                spread = (free.index(r.scheme) - (len(free) - 1) / 2) * 0.6 / max(1, len(free)) if r.scheme in free else 0.0
                x = r.alice_images if r.alice_images else spread
                mean = 100 * r.relative_gap.mean
                half = 0.0 if math.isnan(r.relative_gap.half) else 100 * r.relative_gap.half
                low = max(mean - half, 100 * floor.get(r.scheme, -math.inf))
                st = series_style(i)
                marker = MARKERS[j % len(MARKERS)] if several else st["marker"]
                ax.errorbar([x], [mean], yerr=[[max(0.0, mean - low)], [half]], marker=marker, linestyle="none", capsize=3,
                            color=st["color"], markersize=5, label=f"{run}: {r.scheme}" if several else r.scheme)
        ax.scatter([oracle_images], [0.0], marker="*", s=90, color="black", label="oracle (2^n)", zorder=3)
        ax.axhline(0.0, color="0.5", linestyle=":", linewidth=1)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(left=-0.5)
        ticks = [0.0] + [10.0**k for k in range(0, int(math.log10(max(oracle_images, 1.0))) + 1)]
        ax.set_xticks(ticks, ["0\n(no image)"] + [f"{t:g}" for t in ticks[1:]])
        ax.set_xlabel("images Alice generated per caption to plan (symmetric log scale)")
        ax.set_ylabel("area gap to the oracle (% of its area)")
        style.title(fig, "Gap to the oracle vs Alice's planning cost (oracle's images only)")
        ax.grid(alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
        return style.save(fig, path)
