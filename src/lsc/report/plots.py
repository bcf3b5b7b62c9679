"""The report's figures (matplotlib, Agg): LPIPS vs words and bits with 95% bands, success rate,
LPIPS vs SNR and rate-perception for sweeps, and image strips like the papers' Fig. 2.

Each function takes a RunData and a destination path, writes one PNG, and returns whether it drew
anything (a partial run may not have the data for every figure).
"""

from __future__ import annotations

import math
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


def lpips_vs_words(data: RunData, cond: str, path: Path) -> bool:
    """Mean LPIPS after k words per scheme with 95% bands, and the oracle curve."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    col = colours(data.schemes)
    drew = False
    for scheme in data.schemes:
        curves = _curves(data, cond, scheme)
        if not curves:
            continue
        m = pad_forward([[r["lpips"] for r in c] for c in curves])
        mean, lo, hi = band(m)
        k = np.arange(m.shape[1])
        ax.plot(k, mean, color=col[scheme], label=f"{scheme} (n={m.shape[0]})")
        ax.fill_between(k, np.maximum(lo, 0.0), hi, color=col[scheme], alpha=0.15)
        drew = True
    om = oracle_matrix(data)
    if om.size:
        mean, _, _ = band(om)
        ax.plot(np.arange(om.shape[1]), mean, **{**ORACLE_STYLE, "label": f"oracle (best k-subset, n={om.shape[0]})"})
        drew = True
    if not drew:
        plt.close(fig)
        return False
    ax.set_xlabel("words sent")
    ax.set_ylabel("LPIPS (lower is closer)")
    _finish(fig, ax, path, data.threshold, f"LPIPS vs words sent{_cond_title(cond)}")
    return True


def lpips_vs_bits(data: RunData, cond: str, path: Path, points: int = 80) -> bool:
    """Mean LPIPS after x bits per scheme (step functions averaged on a grid), with the oracle."""
    groups = {s: _curves(data, cond, s) for s in data.schemes}
    max_bits = max((c[-1]["cum_bits"] for cs in groups.values() for c in cs), default=0)
    if max_bits <= 0:
        return False
    grid = np.linspace(0, max_bits, points)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    col = colours(data.schemes)
    for scheme, curves in groups.items():
        if not curves:
            continue
        m = np.stack([step_function_at([r["cum_bits"] for r in c], [r["lpips"] for r in c], grid) for c in curves])
        mean, lo, hi = band(m)
        ax.plot(grid, mean, color=col[scheme], label=f"{scheme} (n={m.shape[0]})")
        ax.fill_between(grid, np.maximum(lo, 0.0), hi, color=col[scheme], alpha=0.15)
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
    if oc:
        mean, _, _ = band(np.stack(oc))
        ax.plot(grid, mean, **{**ORACLE_STYLE, "label": "oracle (bits ≈ k × mean word cost)"})
    ax.set_xlabel("cumulative bits sent")
    ax.set_ylabel("LPIPS")
    _finish(fig, ax, path, data.threshold, f"LPIPS vs bits sent{_cond_title(cond)}")
    return True


def _caption_words(data: RunData, image_id: str) -> list[str]:
    import json

    for s in data.summaries:
        if s["image_id"] == image_id and s["status"] == "ok" and s["words_json"]:
            from lsc.protocol.words import clean_words

            return clean_words(s["caption"] or "") or json.loads(s["words_json"])
    return []


def success_vs_words(data: RunData, cond: str, path: Path) -> bool:
    """Fraction of images under the threshold within k words, per scheme, with Wilson 95% bands."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    col = colours(data.schemes)
    length = 1 + max((s["n_words"] or 0 for s in data.summaries if s["status"] == "ok"), default=0)
    drew = False
    for scheme in data.schemes:
        rows = data.ok(cond, scheme)
        if not rows:
            continue
        wtt = [r["words_to_threshold"] for r in rows]
        curve = success_curve(wtt, length)
        bounds = [wilson(int(round(p * len(rows))), len(rows)) for p in curve]
        k = np.arange(length)
        ax.step(k, curve, where="post", color=col[scheme], label=scheme)
        ax.fill_between(k, [b[1] for b in bounds], [b[2] for b in bounds], step="post", color=col[scheme], alpha=0.1)
        drew = True
    if data.oracle and data.threshold is not None:
        hits = []
        for curve in data.oracle.values():
            under = [k for k, v in sorted(curve) if v < data.threshold]
            hits.append(under[0] if under else None)
        if hits:
            ax.step(np.arange(length), success_curve(hits, length), where="post", **ORACLE_STYLE)
    if not drew:
        plt.close(fig)
        return False
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("words sent")
    ax.set_ylabel("success rate (LPIPS < threshold)")
    _finish(fig, ax, path, None, f"Success rate vs words sent{_cond_title(cond)}")
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


def image_strip(data: RunData, image_id: str, cond: str, path: Path) -> bool:
    """Fig. 2 style: one row per scheme; per step the word sent, Bob's image and its LPIPS."""
    from PIL import Image

    from lsc.runner.folder import image_path, original_path

    rows = [(s, data.steps.get((cond, s, image_id))) for s in data.schemes]
    rows = [(s, r) for s, r in rows if r]
    if not rows:
        return False
    ncols = 1 + max(len(r) for _, r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.05 * ncols + 0.6, 1.25 * len(rows) + 0.4), squeeze=False)
    original = original_path(data.run_dir, image_id)
    for i, (scheme, steps) in enumerate(rows):
        for j in range(ncols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j == 0:
                if original.is_file():
                    ax.imshow(np.asarray(Image.open(original).convert("RGB")))
                ax.set_ylabel(scheme, fontsize=7, rotation=0, ha="right", va="center")
                if i == 0:
                    ax.set_title("original", fontsize=7)
                continue
            if j - 1 >= len(steps):
                continue
            st = steps[j - 1]
            png = image_path(data.run_dir, st["image_key"])
            if png.is_file():
                ax.imshow(np.asarray(Image.open(png).convert("RGB")))
            word = st["word_received"] or "∅"
            if st["word_sent"] and st["word_received"] != st["word_sent"]:
                word = f"{st['word_sent']}→{st['word_received']}"
            hit = data.threshold is not None and st["lpips"] < data.threshold
            ax.set_title(word, fontsize=6)
            ax.set_xlabel(f"{st['lpips']:.3f}", fontsize=6, color="green" if hit else "black")
    caption = next((s["caption"] for s in data.summaries if s["image_id"] == image_id and s["caption"]), "")
    fig.suptitle(f"{image_id}: “{caption}”{_cond_title(cond)}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _cond_title(cond: str) -> str:
    return f" ({cond.replace('snr_db=', 'SNR ')} dB)" if cond.startswith("snr_db=") else (f" ({cond})" if cond else "")
