"""Build a run's report: PNG figures, report.md, and one self-contained report.html (images inline).

Rebuilt from the store alone, so it works on partial runs and can be re-run at any time.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

import lsc.report.plots as plots
from lsc.report.data import RunData, load_run
from lsc.report.stats import mean_ci, wilson
from lsc.runner.folder import REPORT_DIR, safe_name
STRIP_IMAGES = 3


@dataclass
class Figure:
    """A drawn PNG of the report and its title (alt text and caption)."""

    title: str
    path: Path


LPIPS_AFTER_WORDS = 3  # the papers compare schemes early in the transmission: LPIPS after 3 words


def lpips_after(data: RunData, cond: str, scheme: str, image_id: str, k: int) -> float | None:
    """LPIPS of Bob's image after k words (the last step if the caption is shorter)."""
    rows = data.steps.get((cond, scheme, image_id)) or []
    if not rows:
        return None
    at = [r for r in rows if r["step"] <= k]
    return float(at[-1]["lpips"]) if at else None


def mean_transmission_lpips(data: RunData, cond: str, scheme: str, image_id: str) -> float | None:
    """Mean LPIPS over the steps after each word (the area under the LPIPS-vs-words curve per word):
    one number for how fast meaning arrived, comparable across schemes that end at the same caption."""
    rows = [r for r in data.steps.get((cond, scheme, image_id)) or [] if r["step"] > 0]
    return float(np.mean([r["lpips"] for r in rows])) if rows else None


def scheme_table(data: RunData, cond: str) -> list[dict[str, Any]]:
    """Per scheme: images, failures, success rate, mean words/bits to threshold and final LPIPS with 95% CIs."""
    rows = []
    for scheme in data.schemes:
        ok = data.ok(cond, scheme)
        failed = [s for s in data.summaries if s["cond"] == cond and s["scheme"] == scheme and s["status"] != "ok"]
        if not ok and not failed:
            continue
        hits = [s for s in ok if s["words_to_threshold"] is not None]
        p, lo, hi = wilson(len(hits), len(ok))
        rows.append({
            "scheme": scheme, "n": len(ok), "failed": len(failed),
            "success": "–" if not ok else f"{p:.0%} [{lo:.0%}, {hi:.0%}]",
            "words": mean_ci(s["words_to_threshold"] for s in hits).fmt(2),
            "bits": mean_ci(s["bits_to_threshold"] for s in hits).fmt(1),
            "lpips_at_3": mean_ci(lpips_after(data, cond, scheme, s["image_id"], LPIPS_AFTER_WORDS) for s in ok).fmt(3),
            "mean_lpips": mean_ci(mean_transmission_lpips(data, cond, scheme, s["image_id"]) for s in ok).fmt(3),
            "final_lpips": mean_ci(s["final_lpips"] for s in ok).fmt(3),
        })
    if data.oracle and data.threshold is not None:
        firsts = []
        finals = []
        for curve in data.oracle.values():
            if not curve:
                continue
            under = [k for k, v in sorted(curve) if v < data.threshold]
            firsts.append(under[0] if under else None)
            finals.append(sorted(curve)[-1][1])
        if firsts:
            hits = [f for f in firsts if f is not None]
            p, lo, hi = wilson(len(hits), len(firsts))
            rows.append({"scheme": "oracle (bound)", "n": len(firsts), "failed": 0,
                         "success": f"{p:.0%} [{lo:.0%}, {hi:.0%}]", "words": mean_ci(hits).fmt(2),
                         "bits": "–", "lpips_at_3": "–", "mean_lpips": "–", "final_lpips": mean_ci(finals).fmt(3)})
    return rows


def sweep_table(data: RunData) -> tuple[list[str], list[list[str]]]:
    """Per scheme and SNR: final LPIPS and words to threshold (mean ± 95% CI) and success rate."""
    snrs = [(c, v) for c, v in data.conds if v is not None]
    head = ["scheme"] + [f"{v:g} dB" for _, v in snrs]
    body = []
    for scheme in data.schemes:
        row = [scheme]
        for cond, _ in snrs:
            ok = data.ok(cond, scheme)
            hits = [s["words_to_threshold"] for s in ok if s["words_to_threshold"] is not None]
            if not ok:
                row.append("–")
                continue
            row.append(f"LPIPS {mean_ci(s['final_lpips'] for s in ok).fmt(3)}; words {mean_ci(hits).fmt(1)} "
                       f"({len(hits)}/{len(ok)} reached)")
        body.append(row)
    return head, body


TABLE_HEAD = ["scheme", "images", "failed", "success rate [95% CI]", "words to threshold", "bits to threshold",
              "LPIPS after 3 words", "mean LPIPS over the words", "final LPIPS"]
TABLE_KEYS = ["scheme", "n", "failed", "success", "words", "bits", "lpips_at_3", "mean_lpips", "final_lpips"]


def build_report(run_dir: str | Path) -> Path:
    """(Re)build RUN_DIR/report/ from the store; returns the path of report.html."""
    data = load_run(run_dir)
    out = Path(run_dir) / REPORT_DIR
    out.mkdir(exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    blocks = report_blocks(data, out)
    (out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(to_html(blocks, f"lsc report: {data.run_dir.name}"), encoding="utf-8")
    return html_path


# ---------------------------------------------------------------- the report as a list of blocks
@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    head: list[str]
    rows: list[list[str]]
    left_align_last: bool = False  # free text (failure reasons) reads better left-aligned


Block = Union[Heading, Paragraph, Bullets, Table, Figure]


def report_blocks(data: RunData, out: Path) -> list[Block]:
    """Draw the figures into `out` and lay out the report once; the markdown and HTML renderers only format it."""
    blocks: list[Block] = [Heading(f"lsc report: {data.run_dir.name}", level=1), Bullets(_intro(data))]
    if not data.summaries:
        blocks.append(Paragraph("No results yet."))
    for cond, _snr in data.conds or [("", None)]:
        tag = _tag(cond)
        blocks.append(Heading("Condition " + cond if cond else "Results"))
        blocks.append(Table(TABLE_HEAD, [[str(r[k]) for k in TABLE_KEYS] for r in scheme_table(data, cond)]))
        for fn, name, title in (
            (plots.lpips_vs_words, "lpips_vs_words", "Mean LPIPS vs words sent (95% CI bands)"),
            (plots.lpips_vs_bits, "lpips_vs_bits", "Mean LPIPS vs bits sent (95% CI bands)"),
            (plots.success_vs_words, "success_vs_words", "Success rate vs words sent"),
        ):
            path = out / f"{name}{tag}.png"
            if fn(data, cond, path):
                blocks.append(Figure(title, path))
    if data.swept:
        head, body = sweep_table(data)
        blocks += [Heading("SNR sweep"),
                   Paragraph("Final LPIPS and words to the threshold per scheme and SNR (mean ± 95% CI)."),
                   Table(head, body)]
        for fn, name, title in ((plots.lpips_vs_snr, "lpips_vs_snr", "Final LPIPS vs SNR"),
                                (plots.rate_perception, "rate_perception", "Rate-perception (LPIPS vs cumulative bits)")):
            path = out / f"{name}.png"
            if fn(data, path):
                blocks.append(Figure(title, path))
    strips = _strips(data, out)
    if strips:
        blocks += [Heading("Image strips"),
                   Paragraph("Per step: the word received (sent→received when the channel changed it), "
                             "Bob's image, its LPIPS (green: under the threshold).")]
        blocks += strips
    failed = data.failed()
    if failed:
        blocks += [Heading("Failures"),
                   Table(["image", "scheme", "condition", "reason"],
                         [[s["image_id"], s["scheme"], s["cond"], str(s["error"])] for s in failed[:50]],
                         left_align_last=True)]
    return blocks


def _strips(data: RunData, out: Path) -> list[Block]:
    strips: list[Block] = []
    strip_cond = data.conds[-1][0] if data.conds else ""
    ok_ids = [i for i in data.image_order if any(s["image_id"] == i and s["status"] == "ok" for s in data.summaries)]
    for image_id in ok_ids[:STRIP_IMAGES]:
        path = out / f"strip_{safe_name(image_id)}.png"  # safe_name keeps distinct ids distinct
        if plots.image_strip(data, image_id, strip_cond, path):
            strips.append(Figure(f"Image strip: {image_id}", path))
    return strips


def _tag(cond: str) -> str:
    return "" if not cond else "_" + cond.replace("=", "").replace(".", "p").replace("-", "m")


def _intro(data: RunData) -> list[str]:
    cfg = data.config
    n_images = len(data.images)
    n_failed_images = sum(1 for i in data.images if i["status"] != "ok")
    done = sum(1 for s in data.summaries if s["status"] == "ok")
    lines = [
        f"backend: {cfg.get('backend', '?')}; images: {n_images} ({n_failed_images} unreadable); "
        f"schemes: {len(data.schemes)}; conditions: {', '.join(c or 'ideal channel' for c, _ in data.conds) or '–'}",
        f"threshold: {data.threshold}; prompt order: {cfg.get('prompt_order', '?')}; seed: {cfg.get('seed', '?')}; "
        f"transmissions recorded: {done} ok, {len(data.failed())} failed",
        _oracle_line(data),
        "Curves of captions of different lengths are aligned by carrying each image's last LPIPS forward. "
        "Bands and ± are 95% t-intervals over images; success rates use Wilson intervals.",
    ]
    return lines


def _oracle_line(data: RunData) -> str:
    counts = data.oracle_status
    if not counts:
        return "oracle bound: not computed"
    limit = data.config.get("oracle_max_words", "?")
    return (f"oracle bound (best k-word subset, 2^n generations): {counts.get('ok', 0)} images; "
            f"{counts.get('skipped', 0)} skipped (captions over {limit} words), {counts.get('failed', 0)} failed. "
            "It is averaged over its own images only.")


# ---------------------------------------------------------------- the two renderers
def to_markdown(blocks: list[Block]) -> str:
    """report.md: figures by file name (they sit beside it)."""
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines.append("#" * b.level + " " + b.text)
        elif isinstance(b, Paragraph):
            lines.append(b.text)
        elif isinstance(b, Bullets):
            lines += [f"- {x}" for x in b.items]
        elif isinstance(b, Table):
            lines += ["| " + " | ".join(b.head) + " |", "|" + "---|" * len(b.head)]
            lines += ["| " + " | ".join(r) + " |" for r in b.rows]
        else:
            lines.append(f"![{b.title}]({b.path.name})")
        lines.append("")
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}figure{margin:1em 0}img{max-width:100%}
figcaption{font-size:13px;color:#555}code{background:#f5f5f5;padding:1px 4px}"""


def to_html(blocks: list[Block], title: str) -> str:
    """report.html: one self-contained page, every figure inlined as base64 PNG."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            parts.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Bullets):
            parts.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in b.items) + "</ul>")
        elif isinstance(b, Table):
            last = " style='text-align:left'" if b.left_align_last else ""
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td{last if j == len(r) - 1 else ''}>{e(c)}</td>" for j, c in enumerate(r)) + "</tr>"
                      for r in b.rows]
            parts.append("</table>")
        else:
            parts.append(_img(b.path, b.title))
    parts.append("</body></html>")
    return "\n".join(parts)


def _img(path: Path, alt: str) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"><figcaption>{html.escape(alt)}</figcaption></figure>'
