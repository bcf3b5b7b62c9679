"""The report's headline numbers per scheme as a table for a paper: LaTeX (booktabs), Markdown or CSV.

One column group per run, one row per scheme, the best value of each column in bold. Every number is
the report's own (lsc.report.analysis: the Transmission figures of merit, Wilson intervals, paired
differences with Holm-corrected p), so the table and the report never disagree.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from lsc.errors import ConfigError
from lsc.report.analysis import BASELINE, PairedRow, Transmission, paired_rows, transmissions
from lsc.report.plots import View, distance_name
from lsc.report.stats import MeanCI, fmt_p, mean_ci, wilson


@dataclass(frozen=True)
class Metric:
    """A table column: its key, header (LaTeX, plain), whether lower is better, and how it is computed."""

    key: str
    latex: str
    plain: str
    lower_is_better: bool
    kind: str  # "rate" (Wilson), "mean" (t-interval), "paired" (difference to the baseline, Holm p)
    value: Callable[[Transmission], Any] | None = None
    digits: int = 3


METRICS: dict[str, Metric] = {m.key: m for m in [
    Metric("success", r"reached (\%)", "reached (%)", False, "rate", lambda t: t.reached),
    Metric("final_success", r"final under (\%)", "final image under (%)", False, "rate", lambda t: t.final_under),
    Metric("all_right", r"all attr.\ right (\%)", "every attribute right (%)", False, "rate", lambda t: t.all_right),
    Metric("words_all_right", r"words to all right", "words to every attribute right (failures at n+1)", True, "mean",
           lambda t: t.words_all_right_penalised, 2),
    Metric("words", r"words to thr.", "words to threshold (failures at n+1)", True, "mean", lambda t: t.words_penalised, 2),
    Metric("words_ok", r"words (successes)", "words to threshold (successes only)", True, "mean", lambda t: t.words_to_threshold, 2),
    Metric("area", r"AUC words", "area under LPIPS vs words", True, "mean", lambda t: t.area_words),
    Metric("area_bits", r"AUC bits", "area under LPIPS vs bits", True, "mean", lambda t: t.area_bits),
    Metric("final_lpips", r"final LPIPS", "final LPIPS", True, "mean", lambda t: t.final_lpips),
    Metric("delta_area", r"$\Delta$ AUC", "Δ area vs baseline", True, "paired", None),
    Metric("delta_words", r"$\Delta$ words", "Δ words vs baseline", True, "paired", None, 2),
    Metric("delta_area_bits", r"$\Delta$ AUC bits", "Δ area (bits) vs baseline", True, "paired", None),
]}
DEFAULT_METRICS = ("success", "words", "area", "delta_area")
ATTRIBUTE_METRICS = ("all_right", "words_all_right")  # over the transmissions the attribute reader read (world)
_PAIRED_KEY = {"delta_area": "area_words", "delta_words": "words_penalised", "delta_area_bits": "area_bits"}
FORMATS = ("latex", "markdown", "csv")


@dataclass
class Cell:
    """One (run, scheme, metric): the estimate, its 95% interval, n, and for a paired metric the Holm p."""

    mean: float
    lo: float
    hi: float
    n: int
    p_holm: float = math.nan

    @property
    def empty(self) -> bool:
        return self.n == 0 or math.isnan(self.mean)


def _ci_cell(ci: MeanCI) -> Cell:
    half = 0.0 if math.isnan(ci.half) else ci.half
    return Cell(ci.mean, ci.mean - half if ci.n > 1 else math.nan, ci.mean + half if ci.n > 1 else math.nan, ci.n)


def cells(view: View, metrics: Sequence[Metric], baseline: str = BASELINE) -> dict[tuple[str, str], Cell]:
    """(scheme, metric key) -> Cell for one run's view."""
    tx = transmissions(view.data, view.cond)
    paired: dict[str, PairedRow] = {r.scheme: r for r in paired_rows(view.data, view.cond, baseline)} \
        if any(m.kind == "paired" for m in metrics) else {}
    out: dict[tuple[str, str], Cell] = {}
    for scheme in view.data.schemes:
        ts = list(tx.get(scheme, {}).values())
        read = [t for t in ts if t.attributes_scored]  # the attribute reader's columns: only what it read
        for m in metrics:
            ts_m = read if m.key in ATTRIBUTE_METRICS else ts
            if m.kind == "rate":
                hits = sum(bool(m.value(t)) for t in ts_m) if m.value else 0
                p, lo, hi = wilson(hits, len(ts_m)) if ts_m else (math.nan, math.nan, math.nan)
                out[(scheme, m.key)] = Cell(p, lo, hi, len(ts_m))
            elif m.kind == "mean":
                out[(scheme, m.key)] = _ci_cell(mean_ci(m.value(t) for t in ts_m) if m.value else mean_ci([]))
            elif scheme in paired:
                r = paired[scheme]
                c = _ci_cell(r.diffs[_PAIRED_KEY[m.key]])
                c.p_holm = r.p_holm.get(_PAIRED_KEY[m.key], math.nan)
                out[(scheme, m.key)] = c
            else:
                out[(scheme, m.key)] = Cell(math.nan, math.nan, math.nan, 0)
    return out


def select_metrics(keys: Sequence[str] | None) -> list[Metric]:
    """The metrics asked for (default: success, words, area, delta_area), unknown keys refused in one line."""
    chosen = list(dict.fromkeys(k.strip() for k in (keys or DEFAULT_METRICS) if k.strip()))
    bad = [k for k in chosen if k not in METRICS]
    if bad or not chosen:
        raise ConfigError(f"--metrics {bad[0] if bad else ''!r}: unknown (metrics: {', '.join(METRICS)})")
    return [METRICS[k] for k in chosen]


def _shown(m: Metric, c: Cell) -> float:
    """The value as the table prints it (a percent for rates): ties are judged on what the reader sees."""
    return round(100 * c.mean) if m.kind == "rate" else round(c.mean, m.digits)


def _best(m: Metric, values: list[Cell]) -> float | None:
    """The best printed value of a column, None when fewer than two cells or all of them tie (nothing stands out)."""
    got = [_shown(m, c) for c in values if not c.empty]
    if len(got) < 2 or len(set(got)) == 1:
        return None
    return min(got) if m.lower_is_better else max(got)


def _text(m: Metric, c: Cell, latex: bool) -> str:
    """A cell as text: 'mean ± half' (means), 'p% [lo, hi]' (rates), '± ... (p)' with the Holm p (paired)."""
    if c.empty:
        return "–"
    if m.kind == "rate":
        pct = r"\%" if latex else "%"
        return f"{100 * c.mean:.0f}{pct} [{100 * c.lo:.0f}, {100 * c.hi:.0f}]"
    pm = r" \pm " if latex else " ± "
    text = f"{c.mean:.{m.digits}f}" + ("" if math.isnan(c.lo) else f"{pm}{(c.hi - c.mean):.{m.digits}f}")
    if latex:
        text = f"${text}$"
    if m.kind == "paired" and not math.isnan(c.p_holm):
        p = fmt_p(c.p_holm)
        rel = "" if p.startswith("<") else "="
        text += f" ($p{rel}{p}$)" if latex else f" (p{rel}{p})"
    return text


def _bold(text: str, latex: bool) -> str:
    """Bold text; in LaTeX the math too (\\boldmath: \\textbf alone leaves $0.42 \\pm 0.03$ regular)."""
    if text == "–":
        return text
    return "{\\bfseries\\boldmath " + text + "}" if latex else f"**{text}**"


def _latex_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "&%$#_{}" else ch for ch in text)


def build(views: Sequence[View], metric_keys: Sequence[str] | None = None, fmt: str = "latex",
          schemes: Sequence[str] | None = None, baseline: str = BASELINE) -> str:
    """The table as text in `fmt` (latex, markdown or csv); rows: the schemes (all, or `schemes` in order)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    metrics = select_metrics(metric_keys)
    per_run = [cells(v, metrics, baseline) for v in views]
    rows = list(schemes) if schemes is not None else list(dict.fromkeys(s for v in views for s in v.data.schemes))
    if fmt == "csv":
        return _csv(views, metrics, per_run, rows)
    latex = fmt == "latex"
    best = {(j, m.key): _best(m, [got.get((s, m.key), Cell(math.nan, 0, 0, 0)) for s in rows])
            for j, got in enumerate(per_run) for m in metrics}
    body = []
    for s in rows:
        line = [_latex_escape(s) if latex else s]
        for j, got in enumerate(per_run):
            for m in metrics:
                c = got.get((s, m.key), Cell(math.nan, 0, 0, 0))
                text = _text(m, c, latex)
                b = best[(j, m.key)]
                text = _bold(text, latex) if b is not None and not c.empty and _shown(m, c) == b else text
                line.append("--" if latex and text == "–" else text)
        body.append(line)
    return _latex(views, metrics, body, baseline) if latex else _markdown(views, metrics, body, baseline)


def _named(views: Sequence[View], text: str) -> str:
    """A column head naming the distance the runs measured (their backends' declaration, e.g. LPIPS-world)."""
    return text.replace("LPIPS", distance_name(views))


def _note(metrics: Sequence[Metric], baseline: str, views: Sequence[View] = ()) -> str:
    parts = ["mean ± 95% CI over images", "rates with Wilson 95% intervals", "bold: best per column"]
    parts += [f"{d.name}: {d.scale}" for d in dict.fromkeys(v.data.distance for v in views)]
    if any(m.kind == "paired" for m in metrics):
        parts.append(f"Δ: scheme minus {baseline} on the same images, p Holm-corrected over the schemes")
    return "; ".join(parts) + "."


def _latex(views: Sequence[View], metrics: Sequence[Metric], body: list[list[str]], baseline: str) -> str:
    k = len(metrics)
    lines = [f"% lsc table: {_note(metrics, baseline, views)}", r"% needs \usepackage{booktabs}",
             r"\begin{tabular}{l" + ("r" * k) * len(views) + "}", r"\toprule"]
    if len(views) > 1:
        lines.append(" & ".join([""] + [rf"\multicolumn{{{k}}}{{c}}{{{_latex_escape(v.label)}}}" for v in views]) + r" \\")
        lines.append(" ".join(rf"\cmidrule(lr){{{2 + j * k}-{1 + (j + 1) * k}}}" for j in range(len(views))))
    lines.append(" & ".join(["scheme"] + [_named(views, m.latex) for _ in views for m in metrics]) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _markdown(views: Sequence[View], metrics: Sequence[Metric], body: list[list[str]], baseline: str) -> str:
    several = len(views) > 1
    head = ["scheme"] + [_named(views, f"{v.label}: {m.plain}" if several else m.plain) for v in views for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines + ["", _note(metrics, baseline, views)])


def _csv(views: Sequence[View], metrics: Sequence[Metric], per_run: list[dict[tuple[str, str], Cell]], rows: list[str]) -> str:
    """Long form, one line per (run, scheme, metric): numbers, not text, for pandas or a spreadsheet."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["run", "snr_db", "scheme", "metric", "value", "ci_low", "ci_high", "n", "p_holm"])

    def num(x: float) -> str:
        return "" if math.isnan(x) else f"{x:.6g}"

    for v, got in zip(views, per_run):
        snr = dict(v.data.conds).get(v.cond) if v.data.conds else None
        for s in rows:
            for m in metrics:
                c = got.get((s, m.key))
                if c is None or c.empty:
                    continue
                w.writerow([v.label, "" if snr is None else f"{snr:g}", s, m.key, num(c.mean), num(c.lo), num(c.hi), c.n,
                            num(c.p_holm)])
    return out.getvalue().rstrip("\n")
