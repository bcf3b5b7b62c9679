"""Per-transmission figures of merit and the report's tables built from them (one place for the numbers).

A *transmission* is one (image, scheme) under one condition. Everything a table or a paired test says
is computed here from the stored steps and summaries, so each number has one definition:

- reached: the threshold was crossed at some step (`words_to_threshold` is set); final under: Bob's
  image after the last word is under the threshold. They differ (lowest_lpips can pass the threshold
  on the way and end above it).
- words to threshold: the mean over successes only (what the papers report), the same with every
  failure counted as n + 1 words for an n-word caption, and the Kaplan-Meier median (failures
  censored at n).
- area under LPIPS vs words: mean LPIPS of the images after words 1..n (area per word); vs bits: mean
  LPIPS per bit on [0, the image's costliest caption] with each transmission's last image carried on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsc.report.data import RunData
from lsc.report.stats import (area_per_word, fmt_p, holm, km_median, mean_ci, mean_over_bits, paired_p, penalised, wilson,
                              words_with_failures)

LPIPS_AFTER_WORDS = 3  # the papers compare schemes early in the transmission: LPIPS after 3 words
BASELINE = "random"


@dataclass(frozen=True)
class Transmission:
    """One (image, scheme) under one condition, reduced to the numbers the report compares."""

    image_id: str
    scheme: str
    n_words: int
    words_to_threshold: int | None
    bits_to_threshold: int | None
    total_bits: float
    final_lpips: float
    final_under: bool
    area_words: float
    area_bits: float
    lpips_at_k: float
    alice_images: int | None = None  # images Alice's plan asked Bob's generator for (None: planned without it)
    # words until the attribute reader finds every attribute right (world), and whether it read this transmission
    words_to_all_right: int | None = None
    attributes_scored: bool = False

    @property
    def reached(self) -> bool:
        return self.words_to_threshold is not None

    @property
    def all_right(self) -> bool:
        """Every attribute right after some word (the world's own success criterion)."""
        return self.words_to_all_right is not None

    @property
    def words_all_right_penalised(self) -> float:
        """Words until every attribute is right, n + 1 for a transmission that never got there."""
        return words_with_failures([self.words_to_all_right], [self.n_words])[0]

    @property
    def words_penalised(self) -> float:
        """Words to threshold, n + 1 for a transmission that never reached it."""
        return words_with_failures([self.words_to_threshold], [self.n_words])[0]

    @property
    def bits_penalised(self) -> float:
        """Bits to threshold; a failure costs its whole caption plus one more word at its mean word cost."""
        extra = self.total_bits / self.n_words if self.n_words else 0.0
        return penalised([self.bits_to_threshold], [self.total_bits + extra])[0]


def transmissions(data: RunData, cond: str) -> dict[str, dict[str, Transmission]]:
    """scheme -> image_id -> Transmission, for the ok transmissions with stored steps."""
    rows_of: dict[tuple[str, str], list[dict[str, Any]]] = {}
    horizon: dict[str, float] = {}
    for scheme in data.schemes:
        for s in data.ok(cond, scheme):
            rows = data.steps.get((cond, scheme, s["image_id"])) or []
            if rows:
                rows_of[(scheme, s["image_id"])] = rows
                horizon[s["image_id"]] = max(horizon.get(s["image_id"], 0.0), float(rows[-1]["cum_bits"] or 0))
    summary = {(s["scheme"], s["image_id"]): s for s in data.summaries if s["cond"] == cond and s["status"] == "ok"}
    out: dict[str, dict[str, Transmission]] = {}
    for (scheme, image_id), rows in rows_of.items():
        s = summary[(scheme, image_id)]
        after = [r["lpips"] for r in rows if r["step"] > 0]
        curve = [r["lpips"] for r in rows]
        at_k = [r for r in rows if r["step"] <= LPIPS_AFTER_WORDS]
        final = float(s["final_lpips"]) if s["final_lpips"] is not None else float(rows[-1]["lpips"])
        out.setdefault(scheme, {})[image_id] = Transmission(
            image_id=image_id, scheme=scheme, n_words=int(s["n_words"] or len(after)),
            words_to_threshold=s["words_to_threshold"], bits_to_threshold=s["bits_to_threshold"],
            total_bits=float(rows[-1]["cum_bits"] or 0), final_lpips=final,
            final_under=data.threshold is not None and final < data.threshold,
            area_words=area_per_word(curve),
            area_bits=mean_over_bits([r["cum_bits"] or 0 for r in rows], [r["lpips"] for r in rows], horizon[image_id]),
            lpips_at_k=float(at_k[-1]["lpips"]),
            alice_images=s.get("alice_images"),
            words_to_all_right=s.get("words_to_all_right"),
            attributes_scored=any(r.get("attr_all_right") is not None for r in rows),
        )
    return out


def _rate(hits: int, n: int) -> str:
    if n == 0:
        return "–"
    p, lo, hi = wilson(hits, n)
    return f"{p:.0%} [{lo:.0%}, {hi:.0%}]"


# ---------------------------------------------------------------- table 1: success and cost
SUCCESS_HEAD = ["scheme", "images", "failed", "words per caption", "reached the threshold at some step [95% CI]",
                "final image under the threshold [95% CI]", "words to threshold, mean over successes (k/n)",
                "words to threshold, failures at n+1", "words to threshold, Kaplan-Meier median",
                "bits to threshold, mean over successes", "bits to threshold, failures at one word past the caption"]
SUCCESS_KEYS = ["scheme", "n", "failed", "words_per_caption", "success", "final_success", "words", "words_pen",
                "words_km", "bits", "bits_pen"]
# Beside "reached the threshold" where the attribute reader scored the run (world): whether the image was right.
ALL_RIGHT_HEAD = ["every attribute right at some step [95% CI]", "words to every attribute right, failures at n+1"]
ALL_RIGHT_KEYS = ["all_right", "words_all_right_pen"]


def success_columns(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The success table's (head, keys): with "every attribute right" and its words beside "reached the
    threshold" when any transmission was read by the attribute reader (a distance under the threshold can
    still be a wrong picture)."""
    if not any(r.get("all_right") not in (None, "–") for r in rows):
        return list(SUCCESS_HEAD), list(SUCCESS_KEYS)
    at = SUCCESS_KEYS.index("success") + 1
    return SUCCESS_HEAD[:at] + ALL_RIGHT_HEAD + SUCCESS_HEAD[at:], SUCCESS_KEYS[:at] + ALL_RIGHT_KEYS + SUCCESS_KEYS[at:]
AREA_HEAD = ["scheme", "images", f"LPIPS after {LPIPS_AFTER_WORDS} words", "area under LPIPS vs words (per word)",
             "area under LPIPS vs bits (per bit)", "final LPIPS"]
AREA_KEYS = ["scheme", "n", "lpips_at_3", "mean_lpips", "mean_lpips_bits", "final_lpips"]


def scheme_table(data: RunData, cond: str) -> list[dict[str, Any]]:
    """Per scheme: both success rates, words/bits to threshold three ways, areas under the curves, final LPIPS."""
    tx = transmissions(data, cond)
    rows = []
    for scheme in data.schemes:
        ts = list(tx.get(scheme, {}).values())
        failed = [s for s in data.summaries if s["cond"] == cond and s["scheme"] == scheme and s["status"] != "ok"]
        if not ts and not failed:
            continue
        hits = [t for t in ts if t.reached]
        read = [t for t in ts if t.attributes_scored]
        km = km_median([t.words_to_threshold for t in ts], [t.n_words for t in ts])
        rows.append({
            "scheme": scheme, "n": len(ts), "failed": len(failed),
            "words_per_caption": mean_ci(t.n_words for t in ts).fmt(1),
            "success": _rate(len(hits), len(ts)),
            "all_right": _rate(sum(t.all_right for t in read), len(read)),
            "words_all_right_pen": mean_ci(t.words_all_right_penalised for t in read).fmt(2) if read else "–",
            "final_success": _rate(sum(t.final_under for t in ts), len(ts)) if data.threshold is not None else "–",
            "words": f"{mean_ci(t.words_to_threshold for t in hits).fmt(2)} ({len(hits)}/{len(ts)})",
            "words_pen": mean_ci(t.words_penalised for t in ts).fmt(2),
            "words_km": "–" if not ts else (f"{km:g}" if km is not None else "not reached (under half)"),
            "bits": mean_ci(t.bits_to_threshold for t in hits).fmt(1),
            "bits_pen": mean_ci(t.bits_penalised for t in ts).fmt(1),
            "lpips_at_3": mean_ci(t.lpips_at_k for t in ts).fmt(3),
            "mean_lpips": mean_ci(t.area_words for t in ts).fmt(3),
            "mean_lpips_bits": mean_ci(t.area_bits for t in ts).fmt(3),
            "final_lpips": mean_ci(t.final_lpips for t in ts).fmt(3),
        })
    return rows


# ---------------------------------------------------------------- table 2: each scheme minus random, same images
PAIRED_METRICS = (
    ("area_words", "area under LPIPS vs words", 3),
    ("words_penalised", "words to threshold (failures at n+1)", 2),
    ("area_bits", "area under LPIPS vs bits", 3),
)


@dataclass
class PairedRow:
    """One scheme against the baseline on the images both transmitted: per metric, mean difference, p, Holm p."""

    scheme: str
    n: int
    diffs: dict[str, Any]  # metric -> MeanCI of (scheme - baseline)
    p: dict[str, float]
    p_holm: dict[str, float]
    test: str


def paired_rows(data: RunData, cond: str, baseline: str = BASELINE) -> list[PairedRow]:
    """Each scheme minus the baseline per image (negative = the scheme is better), with Holm-corrected paired tests.

    Holm's correction runs over the schemes, separately for each metric.
    """
    tx = transmissions(data, cond)
    base = tx.get(baseline)
    if not base:
        return []
    rows = []
    for scheme in data.schemes:
        if scheme == baseline or scheme not in tx:
            continue
        common = [i for i in data.image_order if i in tx[scheme] and i in base]
        if not common:
            continue
        diffs, ps, test = {}, {}, "none"
        for key, _, _ in PAIRED_METRICS:
            d = [getattr(tx[scheme][i], key) - getattr(base[i], key) for i in common]
            diffs[key] = mean_ci(d)
            ps[key], t = paired_p(d)
            test = t if t != "none" else test
        rows.append(PairedRow(scheme, len(common), diffs, ps, {}, test))
    for key, _, _ in PAIRED_METRICS:
        adjusted = holm([r.p[key] for r in rows])
        for r, q in zip(rows, adjusted):
            r.p_holm[key] = q
    return rows


def paired_table(rows: list[PairedRow], baseline: str = BASELINE) -> tuple[list[str], list[list[str]]]:
    head = ["scheme", "paired images"]
    for _, label, _ in PAIRED_METRICS:
        head += [f"Δ {label} vs {baseline}", "p", "p (Holm)"]
    body = []
    for r in rows:
        line = [r.scheme, str(r.n)]
        for key, _, digits in PAIRED_METRICS:
            line += [r.diffs[key].fmt(digits), fmt_p(r.p[key]), fmt_p(r.p_holm[key])]
        body.append(line)
    return head, body


# ---------------------------------------------------------------- table 3: against the oracle, on its images only
def oracle_area(curve: list[tuple[int, float]]) -> float:
    """The oracle's mean LPIPS over k = 1..n (its area per word), comparable with Transmission.area_words."""
    return area_per_word([v for _, v in sorted(curve)]) if len(curve) > 1 else math.nan


def oracle_images(data: RunData) -> float:
    """Mean images the exhaustive oracle generates per caption: 2^n for each n-word caption it covers."""
    counts = [2 ** sum(1 for k, _ in curve if k > 0) for curve in data.oracle.values() if curve]
    return float(np.mean(counts)) if counts else math.nan


def oracle_rows(data: RunData, cond: str) -> tuple[int, list[list[str]]]:
    """Per scheme, on the images that have an oracle curve: area per word, gap to the oracle (paired), reached rate.

    The oracle is the best k-word subset of Alice's caption prompted in caption order: it bounds
    caption-order prompts of that caption only (not heads_skd's rewritten caption, not send-order prompts).
    """
    ids = [i for i in data.image_order if data.oracle.get(i)]
    if not ids:
        return 0, []
    tx = transmissions(data, cond)
    orc = {i: oracle_area(data.oracle[i]) for i in ids}
    under = {i: data.threshold is not None and any(v < data.threshold for _, v in data.oracle[i]) for i in ids}
    body = [["oracle (caption-order bound)", str(len(ids)), mean_ci(orc.values()).fmt(3), "0", f"{oracle_images(data):.1f}",
             _rate(sum(under.values()), len(ids))]]
    for row in search_cost(data, cond):
        ts = [tx[row.scheme][i] for i in ids if i in tx.get(row.scheme, {})]
        body.append([row.scheme, str(row.images), mean_ci(t.area_words for t in ts).fmt(3), row.gap.fmt(3),
                     f"{row.alice_images:.1f}", _rate(sum(t.reached for t in ts), len(ts))])
    return len(ids), body


ORACLE_HEAD = ["scheme", "images", "area under LPIPS vs words (per word)", "gap to the oracle (paired)",
               "Alice's generated images per caption", "reached the threshold at some step"]


@dataclass(frozen=True)
class SearchCost:
    """A scheme on the oracle's images: its gap to the oracle and what planning cost Alice in Bob's images."""

    scheme: str
    images: int
    gap: Any  # MeanCI of (area - oracle's area) per word
    relative_gap: Any  # MeanCI of that gap over the oracle's area (a fraction)
    alice_images: float  # mean images per caption Alice's plan generated (0 for a plan without Bob's generator)


def search_cost(data: RunData, cond: str) -> list[SearchCost]:
    """Per scheme, on the images with an oracle curve: area gap to the oracle (absolute and relative) and the
    images Alice generated to plan; the oracle itself costs 2^n images per n-word caption."""
    ids = [i for i in data.image_order if data.oracle.get(i)]
    tx = transmissions(data, cond)
    orc = {i: oracle_area(data.oracle[i]) for i in ids}
    rows = []
    for scheme in data.schemes:
        ts = [tx[scheme][i] for i in ids if i in tx.get(scheme, {})]
        if not ts:
            continue
        rows.append(SearchCost(scheme, len(ts), mean_ci(t.area_words - orc[t.image_id] for t in ts),
                               mean_ci((t.area_words - orc[t.image_id]) / orc[t.image_id] for t in ts if orc[t.image_id] > 0),
                               float(np.mean([t.alice_images or 0 for t in ts]))))
    return rows
