"""Build a run's report: PNG figures, report.md, and one self-contained report.html (images inline).

Rebuilt from the store alone, so it works on partial runs and can be re-run at any time.
"""

from __future__ import annotations

import base64
import html
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Union

import numpy as np

import lsc.report.plots as plots
from lsc.report.analysis import (AREA_HEAD, AREA_KEYS, BASELINE, ORACLE_HEAD, PAIRED_METRICS, oracle_images, oracle_rows,
                                 paired_rows, paired_table, scheme_table, search_cost, success_columns)
from lsc.report.data import RunData, load_run
from lsc.report.figures import STEP_FIGURES, gap_floors, step_title
from lsc.report.stats import mean_ci, words_with_failures
from lsc.errors import ConfigError
from lsc.runner.folder import IMAGES_DIR, REPORT_DIR, refuse_links, safe_name, write_atomic

STRIP_IMAGES = 3

__all__ = ["build_report", "scheme_table", "sweep_table", "lpips_after"]


@dataclass
class Figure:
    """A drawn PNG of the report and its title (alt text and caption)."""

    title: str
    path: Path



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


def sweep_table(data: RunData) -> tuple[list[str], list[list[str]]]:
    """Per scheme and SNR: final LPIPS, words to threshold over successes and with failures at n+1 (mean ± 95% CI)."""
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
            pen = words_with_failures([s["words_to_threshold"] for s in ok], [s["n_words"] or 0 for s in ok])
            row.append(f"LPIPS {mean_ci(s['final_lpips'] for s in ok).fmt(3)}; words over successes "
                       f"{mean_ci(hits).fmt(1)} ({len(hits)}/{len(ok)} reached), failures at n+1 {mean_ci(pen).fmt(1)}")
        body.append(row)
    return head, body


def build_report(run_dir: str | Path, strips: int = STRIP_IMAGES, strip_images: list[str] | None = None,
                 embeddings: bool = False, step_metrics: list[str] | None = None,
                 progress: Callable[[str], None] | None = None, out_dir: str | Path | None = None) -> Path:
    """(Re)build RUN_DIR/report/ from the store; returns the path of report.html.

    `strips`: how many image strips (the first images in study order); `strip_images`: these image ids
    instead (an id the run does not hold is refused with one line). `embeddings`: add the PCA / t-SNE maps
    of Bob's prompt and image embeddings (world runs; needs scikit-learn). `step_metrics`: names from
    lsc.metrics.registry, read from the store where the study scored them, else computed on the stored
    images (None: the study's `metrics:`, else the backend's defaults: attributes and recaption on the world).
    `progress` receives a line as each part starts, with the seconds so far (a 100-scene report takes a minute).
    `out_dir`: another folder for the report (a run folder on read-only storage); new, empty or an earlier report.
    """
    say = _stopwatch(progress)
    data = load_run(run_dir)
    ids = _strip_ids(data, strips, strip_images)
    from lsc.metrics.registry import select
    from lsc.report.step_metrics import default_metrics

    names = default_metrics(data.config) if step_metrics is None else step_metrics
    metrics = select(names, str(data.config.get("backend", "world")))  # refuse a bad name before drawing
    if out_dir is None:
        out = Path(run_dir) / REPORT_DIR
        refuse_links(Path(run_dir), (REPORT_DIR,), "report of")
    else:
        out = _own_report_dir(Path(out_dir))
    try:
        out.mkdir(parents=out_dir is not None, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the report folder {out} ({exc.strerror}); pass a writable --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"the report folder {out} is not writable; pass a writable --out")
    for old in [*out.glob("*.png"), *out.glob("step_metrics*.csv")]:
        old.unlink()
    if embeddings:
        from lsc.report.embeddings import _require_sklearn

        _require_sklearn()  # refuse before drawing anything
    blocks = report_blocks(data, out, ids, metrics, say)
    if embeddings:
        say("embedding maps")
        blocks += _embedding_blocks(data, out)
    say("writing report.md and report.html")
    write_atomic(out / "report.md", to_markdown(blocks))  # a link planted there is replaced, not written through
    html_path = out / "report.html"
    write_atomic(html_path, to_html(blocks, f"lsc report: {data.run_dir.name}"))
    return html_path


def _own_report_dir(out: Path) -> Path:
    """A report folder the user named: lsc clears old figures there, so it must be new, empty or a report."""
    if not str(out).strip():
        raise ConfigError("--out is empty; name a folder")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.md").is_file():
        raise ConfigError(f"--out {out}: the folder holds other files and no earlier report; use an empty or new folder")
    return out


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


def _stopwatch(progress: Callable[[str], None] | None) -> Callable[[str], None]:
    """A `say(what)` that passes 'report: [12.3 s] what' to `progress` (nothing without one)."""
    start = time.perf_counter()

    def say(what: str) -> None:
        if progress is not None:
            progress(f"report: [{time.perf_counter() - start:5.1f} s] {what}")
    return say


def _cond_note(cond: str) -> str:
    return f" ({cond})" if cond else ""


def report_blocks(data: RunData, out: Path, strip_ids: list[str] | None = None, metrics: list[Any] | None = None,
                  say: Callable[[str], None] = lambda _: None) -> list[Block]:
    """Draw the figures into `out` and lay out the report once; the markdown and HTML renderers only format it."""
    blocks: list[Block] = [Heading(f"lsc report: {data.run_dir.name}", level=1), Bullets(_intro(data))]
    if not data.summaries:
        blocks.append(Paragraph("No results yet."))
    for cond, _snr in data.conds or [("", None)]:
        tag = _tag(cond)
        blocks.append(Heading("Condition " + cond if cond else "Results"))
        blocks += _result_tables(data, cond)
        for fn, name, title in (
            (plots.lpips_vs_words, "lpips_vs_words", "Mean LPIPS vs words sent (95% CI bands), one panel per scheme family"),
            (plots.lpips_vs_bits, "lpips_vs_bits", "Mean LPIPS vs bits sent (95% CI bands), one panel per scheme family"),
            (plots.success_vs_words, "success_vs_words", "Success vs words sent: reached within k words, and image after k words under the threshold"),
        ):
            say(f"{name}{_cond_note(cond)}")
            path = fn(plots.one(data, cond), out / f"{name}{tag}.png")
            if path is not None:
                blocks.append(Figure(title, path))
        say(f"paired differences and the oracle's gap{_cond_note(cond)}")
        blocks += _paired_blocks(data, cond, out / f"paired_difference{tag}.png")
        blocks += _oracle_blocks(data, cond, out / f"gap_vs_images{tag}.png")
        say(f"distribution metrics{_cond_note(cond)}")
        blocks += _distribution_blocks(data, cond)
        if metrics:
            say(f"step metrics ({', '.join(m.name for m in metrics)}){_cond_note(cond)}")
            blocks += _step_metric_blocks(data, cond, metrics, out, tag)
    if data.swept:
        head, body = sweep_table(data)
        blocks += [Heading("SNR sweep"),
                   Paragraph("Final LPIPS and words to the threshold per scheme and SNR (mean ± 95% CI)."),
                   Table(head, body)]
        for fn, name, title in ((plots.lpips_vs_snr, "lpips_vs_snr", "Final LPIPS vs SNR"),
                                (plots.rate_perception, "rate_perception", "Rate-perception (LPIPS vs cumulative bits)")):
            say(name)
            path = fn([plots.View(data.run_dir.name, data, "")], out / f"{name}.png")
            if path is not None:
                blocks.append(Figure(title, path))
    ids = _strip_ids(data, STRIP_IMAGES, None) if strip_ids is None else strip_ids
    if ids:
        say(f"{len(ids)} image strip{'s' if len(ids) != 1 else ''}")
    strips = _strips(data, out, ids)
    if strips:
        blocks += [Heading("Image strips"),
                   Paragraph("Per step: the word received (sent→received when the channel changed it), "
                             "Bob's image, its LPIPS (green: under the threshold; vermillion with ✗ and a frame: "
                             "under the threshold, yet the attribute reader finds the image wrong).")]
        blocks += strips
    failed = data.failed()
    if failed:
        blocks += [Heading("Failures"),
                   Paragraph(f"{len(failed)} transmissions failed; by reason (an image that could not be used fails "
                             "each of its transmissions with the image's reason):"),
                   Table(["reason", "transmissions"], [[r, str(n)] for r, n in _by_reason(failed).items()]),
                   Paragraph("Each failure" + (" (the first 50)" if len(failed) > 50 else "") + ":"),
                   Table(["image", "scheme", "condition", "reason"],
                         [[s["image_id"], s["scheme"], s["cond"], str(s["error"])] for s in failed[:50]],
                         left_align_last=True)]
    blocks = [_named(b, data.distance) for b in blocks]  # "LPIPS" above is the run's distance, by its own name
    blocks[1] = Bullets([data.distance.line(data.threshold), *blocks[1].items])  # type: ignore[union-attr]
    return blocks


def _named(block: Block, distance: Any) -> Block:
    """A block with the generic word "LPIPS" replaced by the distance's declared name (lsc.interfaces.Distance)."""
    if isinstance(block, Heading):
        return Heading(distance.named(block.text), block.level)
    if isinstance(block, Paragraph):
        return Paragraph(distance.named(block.text))
    if isinstance(block, Bullets):
        return Bullets([distance.named(t) for t in block.items])
    if isinstance(block, Table):
        return Table([distance.named(h) for h in block.head], [[distance.named(c) for c in r] for r in block.rows],
                     block.left_align_last)
    return Figure(distance.named(block.title), block.path)


def _strip_ids(data: RunData, count: int, chosen: list[str] | None) -> list[str]:
    """The images to draw strips of: `chosen` (checked against the run), else the first `count` usable ones."""
    ok_ids = [i for i in data.image_order if any(s["image_id"] == i and s["status"] == "ok" for s in data.summaries)]
    if chosen:
        missing = [i for i in chosen if i not in ok_ids]
        if missing:
            raise ConfigError(f"--strip-image {missing[0]!r}: no transmitted image of that id in {data.run_dir} "
                              f"(ids: {', '.join(ok_ids[:5]) or 'none'}{', ...' if len(ok_ids) > 5 else ''})")
        return list(dict.fromkeys(chosen))
    if count < 0:
        raise ConfigError(f"--strips must be 0 or more, not {count}")
    return ok_ids[:count]


def _strips(data: RunData, out: Path, ids: list[str]) -> list[Block]:
    strips: list[Block] = []
    strip_cond = data.conds[-1][0] if data.conds else ""
    for image_id in ids:
        path = out / f"strip_{safe_name(image_id)}.png"  # safe_name keeps distinct ids distinct
        if plots.image_strip(plots.one(data, strip_cond), image_id, path):
            strips.append(Figure(f"Image strip: {image_id}", path))
    return strips


def _result_tables(data: RunData, cond: str) -> list[Block]:
    rows = scheme_table(data, cond)
    head, keys = success_columns(rows)
    return [
        Paragraph("Success and cost. 'Reached' counts a transmission whose image was under the threshold after some "
                  "word; 'final image under' counts those whose image after the last word is. Words to threshold: "
                  "the mean over successes only (k of n reached), the mean with every failure counted as n+1 words "
                  "for an n-word caption, and the Kaplan-Meier median (failures censored at n words). Bits to "
                  "threshold likewise, a failure costing its whole caption plus one word at its mean word cost." +
                  (" Every attribute right: the attribute reader finds every object in its slot and every attribute "
                   "the received words state right (the world's own success criterion; a distance under the threshold "
                   "can still be a wrong picture); its words count a failure as n+1 too." if "all_right" in keys else "")),
        Table(head, [[str(r[k]) for k in keys] for r in rows]),
        Paragraph("LPIPS along the transmission (mean ± 95% CI over images). Area under LPIPS vs words: the mean "
                  "LPIPS of Bob's images after words 1..n; vs bits: the mean LPIPS per bit up to the costliest "
                  "caption of that image, each transmission's last image carried on. Lower is better."),
        Table(AREA_HEAD, [[str(r[k]) for k in AREA_KEYS] for r in rows]),
    ]


def _paired_blocks(data: RunData, cond: str, path: Path) -> list[Block]:
    rows = paired_rows(data, cond)
    if not rows:
        return []
    head, body = paired_table(rows)
    tests = sorted({r.test for r in rows if r.test != "none"}) or ["none (every difference is 0)"]
    blocks: list[Block] = [
        Heading(f"Paired comparison with {BASELINE} (same images)", level=3),
        Paragraph(f"Each scheme minus {BASELINE} per image, then mean ± 95% CI over the images both transmitted "
                  f"(negative: the scheme is better). p: two-sided paired test ({', '.join(tests)}); "
                  f"p (Holm): Holm-corrected over the {len(rows)} schemes, per column."),
        Table(head, body),
    ]
    if plots.paired_difference([(data.run_dir.name, rows)], path, PAIRED_METRICS, distance=data.distance.name):
        blocks.append(Figure(f"Each scheme minus {BASELINE} on the same images (95% CI)", path))
    return blocks


def _step_metric_blocks(data: RunData, cond: str, metrics: list[Any], out: Path, tag: str) -> list[Block]:
    from lsc.metrics import registry
    from lsc.report import step_metrics

    counts: dict[str, int] = {}
    values = step_metrics.compute(data, cond, metrics, counts)
    blocks: list[Block] = [Heading("Beyond LPIPS: " + ", ".join(m.name for m in metrics), level=3)]
    if not values:
        return blocks + [Paragraph("Not computed: the store lacks them and no transmission has all its images stored.")]
    every = int(data.config.get("metrics_every") or registry.EVERY)
    sparse = [m.name for m in metrics if not m.every_step]
    blocks.append(Paragraph(
        f"Scored per step by the study and read from its store ({counts.get('stored', 0)} values); what the store "
        f"lacked was computed on the stored images when this report was built ({counts.get('computed', 0)} values; "
        "lsc.metrics.registry). " +
        (f"{', '.join(sparse)}: scored every {every} words (from the empty prompt) and after the last word; the "
         "mean over the words is over the scored ones. " if sparse else "") +
        " ".join(f"{m.name}: needs {m.needs}; cost: {m.cost}." for m in metrics) +
        " Attributes: the attribute classifier reads Bob's image and is compared with the scene's truth; 'every "
        "attribute right' is the world's own success criterion, beside the LPIPS threshold. Re-caption scores "
        "compare Alice's caption of Bob's image with her caption of the original (higher is better)."))
    head, body = step_metrics.table(data, values)
    blocks.append(Table(head, body))
    csv_path = step_metrics.write_csv(data, cond, values, out / f"step_metrics{tag}.csv")
    blocks.append(Paragraph(f"Every value per step: {csv_path.name} beside this report (image_id, scheme, cond, step, "
                            "metric, value)."))
    present = {c for curves in values.values() for v in curves for c in v}
    for column, _ in STEP_FIGURES:
        if column in present:
            path = plots.step_metric_vs_words(plots.one(data, cond), [values], column, out / f"{column}_vs_words{tag}.png",
                                              step_title(column), f"{column} (mean, 95% CI band)")
            if path is not None:
                blocks.append(Figure(f"{step_title(column)} (95% CI bands)", path))
    return blocks


def _embedding_blocks(data: RunData, out: Path) -> list[Block]:
    from lsc.report import embeddings

    drawn = embeddings.draw(data, out, data.conds[0][0] if data.conds else "")
    blocks: list[Block] = [Heading("Embedding maps"),
                           Paragraph("Every step of every transmission (first condition) as one point: Bob's "
                                     "text-encoder embedding of his partial prompt (mean over its tokens), and his "
                                     "image's attribute-classifier features, mapped to 2-d by PCA and by t-SNE "
                                     "(scikit-learn, seeded). Stars: after the last word. t-SNE distances between "
                                     "clusters do not mean much; PCA's do.")]
    if not drawn:
        blocks.append(Paragraph("Too few steps to map."))
    blocks += [Figure(title, path) for title, path in drawn]
    return blocks


def _why_no_images(data: RunData) -> str:
    """Why stored images are missing, truthfully: the study kept none, or files were removed from the folder."""
    if not data.config.get("save_images", True):
        return "the study ran with save_images: false, which keeps none"
    folder = data.run_dir / IMAGES_DIR
    if folder.is_dir() and any(folder.glob("*.png")):
        return "the others lack a stored image"
    return (f"the study saved its images, but {folder} is {'empty' if folder.is_dir() else 'missing'}: they were "
            "removed after the run; run the study again into a new --out to regenerate them")


def _distribution_blocks(data: RunData, cond: str) -> list[Block]:
    from lsc.report import distribution

    extractor, why = distribution.extractor_for(data.config)
    heading = Heading("Distribution metrics of Bob's images (FID, KID, IS)", level=3)
    if extractor is None:
        return [heading, Paragraph(why)]
    cells, note = distribution.run_cells(data, cond, extractor)
    if not cells:
        return [heading, Paragraph(f"Not computed: fewer than two images with every image stored ({_why_no_images(data)}).")]
    head, body = distribution.table(cells, extractor.name)
    what = ("On the world backend these are FID-world, KID-world and IS-world: computed on the attribute "
            "classifier's features (128-d, last conv stage averaged over space) and scene-class posteriors "
            "(background x shape in each slot, 320 classes), not on Inception, so they are not comparable to "
            "published FID/KID/IS numbers." if extractor.name == "world" else
            "Inception v3 features (2048-d) and logits, torchmetrics' FID feature extractor.")
    return [heading,
            Paragraph(f"Bob's images after k words (his last image for shorter captions) against the originals of the "
                      f"same images, per scheme. {what} Lower FID/KID is closer; higher IS is more confident and more "
                      f"varied classes. Brackets: jackknife 95% interval over images (leave one image out; a bootstrap "
                      f"would repeat images, which biases these set statistics)." + (" " + note if note else "")),
            Table(head, body)]


def _oracle_blocks(data: RunData, cond: str, figure: Path) -> list[Block]:
    n, body = oracle_rows(data, cond)
    if not n:
        return []
    limit = data.config.get("oracle_max_words", "?")
    drawn = plots.gap_vs_images([(data.run_dir.name, search_cost(data, cond), gap_floors(data, cond))], oracle_images(data), figure)
    return [Heading("Against the oracle, on its images only", level=3),
            Paragraph(f"The oracle is the best k-word subset of Alice's caption, prompted in caption order: a bound "
                      f"for caption-order prompts of that caption only (not for send-order prompts, nor for a "
                      f"rewritten caption such as heads_skd's). It exists for the {n} images whose captions have at "
                      f"most {limit} words, so every scheme is shown here on those {n} images alone; gap: the "
                      f"scheme's area minus the oracle's, per image (mean ± 95% CI). Alice's generated images: what "
                      f"her plan asked Bob's generator for per caption (lowest_lpips' search; the oracle's 2^n)."),
            Table(ORACLE_HEAD, body)] + ([Figure("Gap to the oracle vs images Alice generated to plan", figure)] if drawn else [])


def _tag(cond: str) -> str:
    return "" if not cond else "_" + cond.replace("=", "").replace(".", "p").replace("-", "m")


def _intro(data: RunData) -> list[str]:
    cfg = data.config
    n_images = len(data.images)
    failed_images = _by_reason(i for i in data.images if i["status"] != "ok")
    n_failed_images = sum(failed_images.values())
    why = "; ".join(f"{reason} ({n})" for reason, n in list(failed_images.items())[:3])
    more = f"; {len(failed_images) - 3} other reasons" if len(failed_images) > 3 else ""
    unused = f"{n_failed_images} not used: {why}{more}" if n_failed_images else "all used"
    done = sum(1 for s in data.summaries if s["status"] == "ok")
    lines = [
        f"backend: {cfg.get('backend', '?')}; images: {n_images} ({unused}); "
        f"schemes: {len(data.schemes)}; conditions: {', '.join(c or 'ideal channel' for c, _ in data.conds) or '–'}",
        f"threshold: {data.threshold}; prompt order: {cfg.get('prompt_order', '?')}; seed: {cfg.get('seed', '?')}; "
        f"transmissions recorded: {done} ok, {len(data.failed())} failed",
        _oracle_line(data),
        "Curves of captions of different lengths are aligned by carrying each image's last LPIPS forward; "
        f"figures show one panel per scheme family (a plugin's scheme in a panel of its own){_panel_extras(data)}. "
        "Bands and ± are 95% t-intervals over images; success rates use Wilson intervals.",
    ]
    return lines


def _panel_extras(data: RunData) -> str:
    """What every panel also draws, naming only curves that are there: random and the oracle when the study has them."""
    extras = (["random (grey)"] if "random" in data.schemes else []) + (
        ["the oracle (black, dashed, over its own images)"] if data.oracle else [])
    return f", each with {' and '.join(extras)}" if extras else ""


def _by_reason(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Failed rows counted by their recorded reason, most common first."""
    counts = Counter(str(r.get("error") or "no reason recorded") for r in rows)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _oracle_line(data: RunData) -> str:
    counts = data.oracle_status
    if not counts:
        return "oracle bound: not computed"
    limit = data.config.get("oracle_max_words", "?")
    return (f"oracle bound (best k-word subset, 2^n generations): {counts.get('ok', 0)} images; "
            f"{counts.get('skipped', 0)} skipped (captions over {limit} words), {counts.get('failed', 0)} failed. "
            "It bounds caption-order prompts only and is averaged over its own images; the table "
            "'Against the oracle' compares every scheme with it on those images.")


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
