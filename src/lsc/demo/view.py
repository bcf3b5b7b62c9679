"""What the page shows of a run folder: per scheme, side by side, the words sent and received up to a
step (bit errors highlighted), Bob's image and LPIPS at that step, and the LPIPS curves.

Why read the folder: the page then shows exactly what results.sqlite and images/ hold, the numbers
`lsc report` and `lsc export` give for the same run.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsc.runner.folder import image_path


@dataclass
class SchemeView:
    """One scheme's transmission as stored: summary fields and its step rows in order."""

    label: str
    status: str
    error: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    words_to_threshold: int | None = None
    final_lpips: float | None = None


@dataclass
class RunView:
    """A demo run folder read back: its image, threshold and one SchemeView per stored scheme."""

    run_dir: Path
    image_id: str | None
    caption: str | None
    threshold: float | None
    schemes: list[SchemeView]
    image_error: str | None = None
    distance: str = "LPIPS"  # the distance's name as the backend declared it (LPIPS-world, LPIPS (AlexNet))

    @property
    def max_step(self) -> int:
        return max((len(s.steps) - 1 for s in self.schemes if s.steps), default=0)


def load_view(run_dir: str | Path) -> RunView:
    """Read a run folder (possibly still being written) through the report's own reader."""
    from lsc.report.data import load_run

    data = load_run(run_dir)
    image = data.images[0] if data.images else {}
    cond = data.conds[0][0] if data.conds else ""
    image_id = image.get("image_id")
    by_label = {s["scheme"]: s for s in data.summaries if s["image_id"] == image_id and s["cond"] == cond}
    schemes = []
    for label in data.schemes:
        if label not in by_label:
            continue
        summary = by_label[label]
        schemes.append(SchemeView(label=label, status=summary["status"], error=summary.get("error"),
                                  steps=list(data.steps.get((cond, label, image_id), [])),
                                  words_to_threshold=summary.get("words_to_threshold"),
                                  final_lpips=summary.get("final_lpips")))
    return RunView(Path(run_dir), image_id, image.get("caption"), data.threshold, schemes,
                   image_error=image.get("error") if image.get("status") == "failed" else None,
                   distance=data.distance.name)


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _word_cell(row: dict[str, Any]) -> str:
    sent, got, errors = row["word_sent"] or "", row["word_received"] or "", int(row["bit_errors"] or 0)
    if errors or got != sent:
        title = f"{errors} bit error{'s' if errors != 1 else ''}: sent {sent!r}, received {got!r}"
        return (f'{html.escape(sent)} &rarr; <span class="biterr" title="{html.escape(title)}">'
                f"{html.escape(got)}</span>")
    return html.escape(sent)


def panel_html(view: RunView | None, step: int, pending: list[str] | tuple[str, ...] = ()) -> str:
    """The side-by-side panel at `step` (each scheme shows its last step if it has fewer)."""
    if view is None:
        return '<div class="lsc-panel lsc-empty">Pick a scene or upload an image, then press Send.</div>'
    if view.image_error:
        return f'<div class="lsc-panel lsc-error">image failed: {html.escape(view.image_error)}</div>'
    cols = [_scheme_column(view, s, step) for s in view.schemes]
    cols += [f'<div class="lsc-col lsc-pending"><h4>{html.escape(p)}</h4><p>running&hellip;</p></div>' for p in pending]
    return f'<div class="lsc-panel" data-step="{int(step)}">{"".join(cols)}</div>'


def _scheme_column(view: RunView, s: SchemeView, step: int) -> str:
    label = html.escape(s.label)
    if s.status != "ok" or not s.steps:
        return (f'<div class="lsc-col" data-scheme="{label}"><h4>{label}</h4>'
                f'<p class="lsc-error">failed: {html.escape(s.error or "no steps")}</p></div>')
    k = max(0, min(int(step), len(s.steps) - 1))
    row = s.steps[k]
    img_path = image_path(view.run_dir, row["image_key"])
    img = (f'<img class="lsc-bob" alt="Bob\'s image at step {k}" src="{_png_data_uri(img_path)}">'
           if img_path.is_file() else '<p class="lsc-error">image not saved</p>')
    lines = []
    for r in s.steps[1 : k + 1]:
        lines.append(f'<li data-step="{r["step"]}">{_word_cell(r)}</li>')
    lpips = float(row["lpips"])
    hit = outcome_text(s, view.threshold, view.distance, final=False)
    under = view.threshold is not None and lpips < view.threshold
    return (
        f'<div class="lsc-col" data-scheme="{label}"><h4>{label}</h4>{img}'
        f'<p>step {k} of {len(s.steps) - 1} &middot; {html.escape(view.distance)} <span class="lsc-lpips{" lsc-under" if under else ""}" '
        f'data-scheme="{label}" data-step="{k}" data-lpips="{lpips!r}">{lpips:.4f}</span> &middot; '
        f'{int(row["cum_bits"] or 0)} bits</p>'
        f'<p class="lsc-prompt">Bob\'s prompt: &ldquo;{html.escape(row["prompt"] or "")}&rdquo;</p>'
        f'<ol class="lsc-words">{"".join(lines)}</ol>'
        f'<p class="lsc-final">final {html.escape(view.distance)} <span class="lsc-final-lpips" data-scheme="{label}" '
        f'data-lpips="{float(s.final_lpips or 0.0)!r}">{float(s.final_lpips or 0.0):.4f}</span>'
        f'{" &middot; " + html.escape(hit) if hit else ""}</p></div>'
    )


def outcome_text(s: SchemeView, threshold: float | None, distance: str, final: bool = True) -> str:
    """What a stored transmission did, truthfully: its final distance, and when it was first under the
    threshold, saying so when the last image is above it again (the loop runs on after success)."""
    if s.status != "ok":
        return f"failed ({s.error})"
    value = float(s.final_lpips or 0.0)
    head = f"final {distance} {value:.4f}; " if final else ""
    if threshold is None:
        return head.rstrip("; ")
    if s.words_to_threshold is None:
        return head + "never under the threshold"
    first = f"first under the threshold at step {s.words_to_threshold}"
    return head + first + ("" if value < threshold else ", above it again at the last step")


def curve_image(view: RunView | None, step: int, width_px: int = 640, height_px: int = 300) -> np.ndarray | None:
    """LPIPS vs words sent, one line per scheme, the threshold dashed, a marker line at `step`."""
    if view is None or not any(s.steps for s in view.schemes):
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)  # no pyplot: page callbacks run in threads
    ax = fig.add_subplot(1, 1, 1)
    for s in view.schemes:
        if s.status == "ok" and s.steps:
            ax.plot([r["step"] for r in s.steps], [r["lpips"] for r in s.steps], marker="o", ms=3, label=s.label)
    if view.threshold is not None:
        ax.axhline(view.threshold, color="grey", ls="--", lw=1, label="threshold")
    ax.axvline(step, color="black", lw=0.8, alpha=0.5)
    ax.set_xlabel("words sent")
    ax.set_ylabel(f"{view.distance} to the original")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


PAGE_CSS = """
.lsc-panel {display: flex; gap: 12px; flex-wrap: wrap; align-items: flex-start}
.lsc-col {flex: 1 1 200px; min-width: 180px; border: 1px solid #ddd; border-radius: 6px; padding: 8px}
.lsc-col h4 {margin: 0 0 6px 0}
.lsc-bob {width: 128px; height: 128px; image-rendering: pixelated; display: block}
.lsc-words {font-family: monospace; font-size: 0.9em; margin: 4px 0; padding-left: 1.6em}
.biterr {background: #fdd; color: #b00; font-weight: bold; border-radius: 3px; padding: 0 2px}
.lsc-under {color: #070; font-weight: bold}
.lsc-error {color: #b00}
.lsc-prompt {font-size: 0.85em; color: #555}
"""
