"""The report's figures (matplotlib, Agg): LPIPS vs words and bits with 95% bands, success rate,
LPIPS vs SNR and rate-perception for sweeps, and image strips like the papers' Fig. 2.

Each function takes a RunData and a destination path, writes one PNG, and returns whether it drew
anything (a partial run may not have the data for every figure).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lsc.report.data import RunData  # noqa: E402
from lsc.report.stats import MeanCI, band, mean_ci, pad_forward, step_function_at, success_curve, wilson  # noqa: E402

ORACLE_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.6, "label": "oracle (best k-subset)"}


def colours(schemes: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab20" if len(schemes) > 10 else "tab10")
    return {s: cmap(i % cmap.N) for i, s in enumerate(schemes)}


def _curves(data: RunData, cond: str, scheme: str) -> list[list[dict[str, Any]]]:
    return [data.steps[(cond, scheme, s["image_id"])] for s in data.ok(cond, scheme)
            if (cond, scheme, s["image_id"]) in data.steps]


def oracle_matrix(data: RunData, image_ids: list[str] | None = None) -> np.ndarray:
    ids = [i for i in (image_ids or list(data.oracle)) if data.oracle.get(i)]
    return pad_forward([[v for _, v in sorted(data.oracle[i])] for i in ids])


def _finish(fig: Any, ax: Any, path: Path, threshold: float | None, title: str) -> None:
    if threshold is not None:
        ax.axhline(threshold, color="grey", linewidth=0.8, linestyle=":", label=f"threshold {threshold:g}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- small multiples: one panel per scheme family
# Families by registered scheme name; every panel also shows the random baseline (grey) and the oracle.
FAMILIES: list[tuple[str, list[str]]] = [
    ("Bob's whole model", ["lowest_lpips", "crossattention_match"]),
    ("Bob's language-model attention", ["most_attentive", "least_attentive"]),
    ("Alice's attention and grounding", ["alice_attention", "attention_contribution", "attention_combination"]),
    ("Parts of speech", ["nouns", "nouns_verbs"]),
    ("Dependency heads (semantic source coding)", ["heads", "heads_attentive", "heads_random", "heads_skd"]),
]
# Okabe-Ito colours (distinguishable with colour-blindness), each with its own line style and marker.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D"]
BASELINE_STYLE = {"color": "0.45", "linewidth": 1.4, "linestyle": "-"}


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


def _style(i: int) -> dict[str, Any]:
    return {"color": PALETTE[i % len(PALETTE)], "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "marker": MARKERS[i % len(MARKERS)], "markersize": 3.5, "linewidth": 1.6}


def _grid(n: int) -> tuple[Any, Any]:
    ncols = min(3, max(1, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.3 * nrows + 0.6), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def _small_multiples(data: RunData, path: Path, title: str, xlabel: str, ylabel: str,
                     series: Any, extra: Any = None, threshold: bool = True, baseline: str = "random") -> bool:
    """Draw one panel per family; `series(scheme)` gives (x, mean, lo, hi, label) or None."""
    panels = scheme_panels(data, baseline)
    base = series(baseline) if baseline in data.schemes else None
    if not panels or (base is None and not any(series(s) for _, labels in panels for s in labels)):
        return False
    fig, axes = _grid(len(panels))
    for ax, (panel_title, labels) in zip(axes.flat, panels):
        if base is not None:
            x, mean, lo, hi, lab = base
            ax.plot(x, mean, label=lab, **BASELINE_STYLE)
            ax.fill_between(x, lo, hi, color="0.6", alpha=0.18, linewidth=0)
        for i, scheme in enumerate(labels):
            got = series(scheme)
            if got is None:
                continue
            x, mean, lo, hi, lab = got
            st = _style(i)
            ax.plot(x, mean, label=lab, markevery=max(1, len(x) // 12), **st)
            ax.fill_between(x, lo, hi, color=st["color"], alpha=0.14, linewidth=0)
        if extra is not None:
            extra(ax, labels)
        if threshold and data.threshold is not None:
            ax.axhline(data.threshold, color="grey", linewidth=0.8, linestyle=":", label=f"threshold {data.threshold:g}")
        ax.set_title(panel_title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6.5, loc="best")
    fig.supxlabel(xlabel, fontsize=9)
    fig.supylabel(ylabel, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _oracle_label(data: RunData, n: int) -> str:
    return f"oracle: caption-order bound (its {n} images only)"


def lpips_vs_words(data: RunData, cond: str, path: Path) -> bool:
    """Mean LPIPS after k words with 95% bands, one panel per scheme family, random and the oracle on each."""
    def series(scheme: str) -> Any:
        curves = _curves(data, cond, scheme)
        if not curves:
            return None
        m = pad_forward([[r["lpips"] for r in c] for c in curves])
        mean, lo, hi = band(m)
        return np.arange(m.shape[1]), mean, np.maximum(lo, 0.0), hi, f"{scheme} (n={m.shape[0]})"

    om = oracle_matrix(data)

    def oracle(ax: Any, _labels: list[str]) -> None:
        if om.size:
            mean, _, _ = band(om)
            ax.plot(np.arange(om.shape[1]), mean, **{**ORACLE_STYLE, "linestyle": (0, (4, 2)),
                                                       "label": _oracle_label(data, om.shape[0])})

    return _small_multiples(data, path, f"Mean LPIPS vs words sent, 95% CI bands{_cond_title(cond)}",
                            "words sent", "LPIPS (lower is closer)", series, oracle)


def lpips_vs_bits(data: RunData, cond: str, path: Path, points: int = 80) -> bool:
    """Mean LPIPS after x bits (step functions averaged on a grid), one panel per family, with the oracle."""
    groups = {s: _curves(data, cond, s) for s in data.schemes}
    max_bits = max((c[-1]["cum_bits"] or 0 for cs in groups.values() for c in cs), default=0)
    if max_bits <= 0:
        return False
    grid = np.linspace(0, max_bits, points)

    def series(scheme: str) -> Any:
        curves = groups.get(scheme)
        if not curves:
            return None
        m = np.stack([step_function_at([r["cum_bits"] for r in c], [r["lpips"] for r in c], grid) for c in curves])
        mean, lo, hi = band(m)
        return grid, mean, np.maximum(lo, 0.0), hi, f"{scheme} (n={m.shape[0]})"

    # The oracle's subsets have no recorded bit cost: place its k-th point at k x the image's mean
    # cost per word (ideal channel, 8 bits per character + separator).
    oc = []
    for image_id, curve in data.oracle.items():
        words = _caption_words(data, image_id)
        if not curve or not words:
            continue
        per_word = float(np.mean([8 * len(w) + 8 for w in words]))
        xs = [k * per_word for k, _ in sorted(curve)]
        oc.append(step_function_at(xs, [v for _, v in sorted(curve)], grid))

    def oracle(ax: Any, _labels: list[str]) -> None:
        if oc:
            mean, _, _ = band(np.stack(oc))
            ax.plot(grid, mean, **{**ORACLE_STYLE, "linestyle": (0, (4, 2)),
                                   "label": _oracle_label(data, len(oc)) + ", bits ≈ k × word cost"})

    return _small_multiples(data, path, f"Mean LPIPS vs bits sent, 95% CI bands{_cond_title(cond)}",
                            "cumulative bits sent", "LPIPS", series, oracle)


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


def success_vs_words(data: RunData, cond: str, path: Path) -> bool:
    """Per family: share that reached the threshold within k words (solid, Wilson band) and share whose
    image after k words is under it (thin, dashed); at the last word the second is 'final image under'."""
    if data.threshold is None:
        return False
    length = 1 + max((s["n_words"] or 0 for s in data.summaries if s["status"] == "ok"), default=0)
    k = np.arange(length)
    now: dict[str, np.ndarray] = {}

    def series(scheme: str) -> Any:
        rows = data.ok(cond, scheme)
        curves = _curves(data, cond, scheme)
        if not rows or not curves:
            return None
        curve = success_curve([r["words_to_threshold"] for r in rows], length)
        bounds = [wilson(int(round(p * len(rows))), len(rows)) for p in curve]
        now[scheme] = under_curve([[r["lpips"] for r in c] for c in curves], data.threshold, length)
        return k, curve, np.array([b[1] for b in bounds]), np.array([b[2] for b in bounds]), scheme

    def instantaneous(ax: Any, labels: list[str]) -> None:
        for i, scheme in enumerate(["random"] + labels):
            if scheme in now:
                colour = BASELINE_STYLE["color"] if i == 0 else PALETTE[(i - 1) % len(PALETTE)]
                ax.plot(k, now[scheme], color=colour, linewidth=0.9, linestyle=(0, (2, 1.5)), label="_nolegend_")

    ok = _small_multiples(data, path, f"Success vs words sent: reached the threshold within k words (solid, Wilson 95% band)\n"
                          f"and Bob's image after k words under it (dashed; at the last word: final image under){_cond_title(cond)}",
                          "words sent", f"share of images (threshold {data.threshold:g})", series, instantaneous,
                          threshold=False)
    return ok


def paired_difference(rows: list[Any], path: Path, metrics: Any, baseline: str = "random") -> bool:
    """Forest plot: each scheme minus the baseline on the same images, mean and 95% CI per metric;
    filled markers where the Holm-corrected paired test gives p < 0.05."""
    rows = [r for r in rows if r.n]
    if not rows:
        return False
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics) + 1.2, 0.32 * len(rows) + 1.6),
                             sharey=True, squeeze=False, layout="constrained")
    y = np.arange(len(rows))[::-1]
    for ax, (key, label, _) in zip(axes[0], metrics):
        for yi, r in zip(y, rows):
            ci = r.diffs[key]
            sig = not math.isnan(r.p_holm.get(key, math.nan)) and r.p_holm[key] < 0.05
            half = 0.0 if math.isnan(ci.half) else ci.half
            colour = PALETTE[0] if ci.mean < 0 else (PALETTE[1] if ci.mean > 0 else "0.4")
            ax.errorbar([ci.mean], [yi], xerr=[[half], [half]], fmt="o", color=colour, capsize=2.5,
                        markerfacecolor=colour if sig else "white", markersize=5)
        ax.axvline(0.0, color="0.3", linewidth=0.9)
        ax.set_title(f"Δ {label}", fontsize=8.5)
        ax.grid(alpha=0.3, axis="x")
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(y, [f"{r.scheme} (n={r.n})" for r in rows], fontsize=7.5)
    fig.suptitle(f"Each scheme minus {baseline} on the same images (mean, 95% CI; < 0 is better; "
                 "filled: Holm-corrected p < 0.05)", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def final_lpips_vs_snr(ax: Any, series: dict[str, list[tuple[float, MeanCI]]], colour: dict[str, Any] | None = None) -> bool:
    """Mean final LPIPS against SNR, one line with 95% error bars per series (report: per scheme; compare: per run).

    Points with no transmissions are left out; returns whether any line was drawn.
    """
    drew = False
    for label, points in series.items():
        pts = sorted(((snr, ci) for snr, ci in points if ci.n), key=lambda p: p[0])
        if not pts:
            continue
        ax.errorbar([snr for snr, _ in pts], [ci.mean for _, ci in pts],
                    yerr=[0.0 if math.isnan(ci.half) else ci.half for _, ci in pts],
                    color=(colour or {}).get(label), marker="o", capsize=3, label=label)
        drew = True
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("final LPIPS")
    return drew


def lpips_vs_snr(data: RunData, path: Path) -> bool:
    """Final LPIPS per scheme against SNR (a sweep), 95% error bars; oracle's full-caption level dashed."""
    snr_conds = [(c, v) for c, v in data.conds if v is not None]
    if len(snr_conds) < 2:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = {scheme: [(float(snr), mean_ci(r["final_lpips"] for r in data.ok(cond, scheme))) for cond, snr in snr_conds]
              for scheme in data.schemes}
    final_lpips_vs_snr(ax, series, colours(data.schemes))
    om = oracle_matrix(data)
    if om.size:
        ax.axhline(float(np.mean(om[:, -1])), **{**ORACLE_STYLE, "label": "oracle, ideal channel (full caption)"})
    _finish(fig, ax, path, data.threshold, "Final LPIPS vs SNR")
    return True


def rate_perception(data: RunData, path: Path) -> bool:
    """Per scheme: mean LPIPS after k words against mean cumulative bits after k words, one curve per SNR."""
    snr_conds = [(c, v) for c, v in data.conds if v is not None]
    if len(snr_conds) < 2:
        return False
    schemes = [s for s in data.schemes if any(data.ok(c, s) for c, _ in snr_conds)]
    if not schemes:
        return False
    ncols = min(4, len(schemes))
    nrows = math.ceil(len(schemes) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.8 * nrows), squeeze=False, sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, scheme in zip(axes.flat, schemes):
        for j, (cond, snr) in enumerate(snr_conds):
            curves = _curves(data, cond, scheme)
            if not curves:
                continue
            lp = pad_forward([[r["lpips"] for r in c] for c in curves]).mean(axis=0)
            bits = pad_forward([[r["cum_bits"] for r in c] for c in curves]).mean(axis=0)
            ax.plot(bits, lp, marker=".", color=cmap(j / max(1, len(snr_conds) - 1)), label=f"{snr:g} dB")
        if data.threshold is not None:
            ax.axhline(data.threshold, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(scheme, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(schemes):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("mean cumulative bits")
    fig.supylabel("mean LPIPS")
    fig.suptitle("Rate-perception per scheme and SNR")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


STRIP_CELL = 96  # pixels per image in a strip (small images are enlarged, large ones reduced)
_STRIP_TOP, _STRIP_BOTTOM, _STRIP_GAP = 30, 16, 6  # pixels for the word above, the LPIPS below, between cells


def _strip_cell(path: Path) -> np.ndarray | None:
    """An image as one STRIP_CELL x STRIP_CELL uint8 cell of a strip (None when it is missing)."""
    from PIL import Image

    if not path.is_file():
        return None
    im = Image.open(path).convert("RGB")
    resample = Image.Resampling.NEAREST if im.width <= STRIP_CELL else Image.Resampling.LANCZOS
    return np.asarray(im.resize((STRIP_CELL, STRIP_CELL), resample))


def image_strip(data: RunData, image_id: str, cond: str, path: Path) -> bool:
    """Fig. 2 style: one row per scheme; per step the word sent, Bob's image and its LPIPS.

    Drawn as one mosaic with text around it rather than an axes per image: with 14 schemes x 12 steps
    the axes and their layout took ~11 s per strip, the mosaic well under one."""
    from lsc.runner.folder import image_path, original_path

    rows = [(s, data.steps.get((cond, s, image_id))) for s in data.schemes]
    rows = [(s, r) for s, r in rows if r]
    if not rows:
        return False
    ncols = 1 + max(len(r) for _, r in rows)
    cell_w, row_h = STRIP_CELL + _STRIP_GAP, _STRIP_TOP + STRIP_CELL + _STRIP_BOTTOM
    width, height = ncols * cell_w, len(rows) * row_h
    mosaic = np.full((height, width, 3), 255, np.uint8)
    texts: list[tuple[float, float, str, dict[str, Any]]] = []
    original = _strip_cell(original_path(data.run_dir, image_id))
    for i, (scheme, steps) in enumerate(rows):
        top = i * row_h + _STRIP_TOP
        cells = [original] + [_strip_cell(image_path(data.run_dir, st["image_key"])) for st in steps]
        for j, cell in enumerate(cells):
            if cell is not None:
                mosaic[top : top + STRIP_CELL, j * cell_w : j * cell_w + STRIP_CELL] = cell
        texts.append((-8, top + STRIP_CELL / 2, scheme, {"ha": "right", "va": "center", "fontsize": 7}))
        if i == 0:
            texts.append((STRIP_CELL / 2, top - 4, "original", {"ha": "center", "va": "bottom", "fontsize": 7}))
        for j, st in enumerate(steps, start=1):
            word = _short(st["word_received"] or "∅")
            if st["word_sent"] and st["word_received"] != st["word_sent"]:
                word = f"{_short(st['word_sent'])}→\n{_short(st['word_received'] or '∅')}"
            hit = data.threshold is not None and st["lpips"] < data.threshold
            x = j * cell_w + STRIP_CELL / 2
            texts.append((x, top - 4, word, {"ha": "center", "va": "bottom", "fontsize": 6}))
            texts.append((x, top + STRIP_CELL + 3, f"{st['lpips']:.3f}",
                          {"ha": "center", "va": "top", "fontsize": 6, "color": "green" if hit else "black"}))
    dpi, left, head = 110, 150, 40  # pixels for the scheme names and the title
    fig = plt.figure(figsize=((width + left) / dpi, (height + head) / dpi), dpi=dpi)
    ax = fig.add_axes((left / (width + left), 0, width / (width + left), height / (height + head)))
    ax.imshow(mosaic, interpolation="nearest", aspect="equal")
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.axis("off")
    for x, y, text, style in texts:
        ax.text(x, y, text, clip_on=False, **style)
    caption = next((s["caption"] for s in data.summaries if s["image_id"] == image_id and s["caption"]), "")
    fig.suptitle(textwrap.fill(f"{image_id}: “{caption}”{_cond_title(cond)}", 140), fontsize=8, y=1 - 6 / (height + head), va="top")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return True


def _short(word: str, width: int = 11) -> str:
    """A word shortened to fit its strip column (titles of neighbouring columns must not overlap)."""
    return word if len(word) <= width else word[: width - 1] + "…"


def _cond_title(cond: str) -> str:
    return f" ({cond.replace('snr_db=', 'SNR ')} dB)" if cond.startswith("snr_db=") else (f" ({cond})" if cond else "")


def step_metric_vs_words(data: RunData, values: dict[tuple[str, str], list[dict[str, float]]], column: str,
                         path: Path, title: str, ylabel: str) -> bool:
    """Mean of a step metric (attribute accuracy, BLEU-4, ...) after k words, one panel per scheme family.

    A metric scored at every k-th step and the last is drawn through the steps every transmission has a
    value at (a shorter caption's last value carried on, as for LPIPS)."""
    def series(scheme: str) -> Any:
        curves = [[v.get(column, math.nan) for v in values[(scheme, i)]] for i in data.image_order if (scheme, i) in values]
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

    return _small_multiples(data, path, title, "words sent", ylabel, series, threshold=False)


UNIT_RANGE = {"attr_mean", "attr_all_right", "bleu4", "rouge_l", "meteor", "itm"}


def gap_vs_images(rows: list[Any], oracle_images: float, path: Path) -> bool:
    """Each scheme's area gap to the oracle (% of the oracle's area, 95% CI) against the images Alice generated
    per caption to plan (symmetric log scale: 0 is a plan without Bob's generator); the oracle at 2^n."""
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    colour = colours([r.scheme for r in rows])
    free = [r.scheme for r in rows if r.alice_images == 0]  # spread apart around 0 (symlog is linear there)
    for r in rows:
        x = r.alice_images if r.alice_images else (free.index(r.scheme) - (len(free) - 1) / 2) * 0.6 / max(1, len(free))
        half = 0.0 if math.isnan(r.relative_gap.half) else 100 * r.relative_gap.half
        ax.errorbar([x], [100 * r.relative_gap.mean], yerr=[half], marker="o", capsize=3, color=colour[r.scheme], label=r.scheme)
    ax.scatter([oracle_images], [0.0], marker="*", s=90, color="black", label="oracle (2^n)")
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=-0.5)
    ticks = [0.0] + [10.0**k for k in range(0, int(math.log10(max(oracle_images, 1.0))) + 1)]
    ax.set_xticks(ticks, ["0\n(no image)"] + [f"{t:g}" for t in ticks[1:]])
    ax.set_xlabel("images Alice generated per caption to plan (symmetric log scale)")
    ax.set_ylabel("area gap to the oracle (% of its area)")
    ax.set_title("Gap to the oracle vs Alice's planning cost (oracle's images only)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
