"""How a figure looks and is saved: one FigureStyle for the report's PNGs and for `lsc plot`'s paper figures.

The drawing code (lsc.report.plots) sizes its text relative to the style's font size ('small',
'x-small') and asks the style for its figure size, colours and line styles, so one function draws the
report's screen PNG and a paper's vector PDF. Colours are Okabe and Ito's palette, distinguishable with
the common colour-vision deficiencies; beyond its seven colours a series differs by line style and marker too.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lsc.errors import ConfigError
from lsc.runner.folder import write_atomic

FORMATS = ("png", "pdf", "svg")
STYLES = ("screen", "paper")

# Okabe-Ito (without black, kept for the oracle; grey is the random baseline's).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]
LINESTYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
BASELINE_COLOUR = "0.45"
PAPER_WIDTH_IN = 7.0  # a two-column paper's text width; one column is about 3.4 in


def series_style(i: int, solid: bool = False) -> dict[str, Any]:
    """The i-th series' colour, marker and (unless `solid`) line style: no two of the first 28 alike."""
    colour = PALETTE[i % len(PALETTE)]
    lap = i // len(PALETTE)
    return {"color": colour, "linestyle": "-" if solid else LINESTYLES[lap % len(LINESTYLES)],
            "marker": MARKERS[(i + lap) % len(MARKERS)], "markersize": 3.5, "linewidth": 1.5}


@dataclass(frozen=True)
class FigureStyle:
    """Format (png, pdf, svg), width in inches (None: the figure's own), base font size, and screen or paper.

    paper: no figure title (the caption says it in LaTeX), a text-width figure, 8 pt text, 300 dpi PNG;
    PDF and SVG are vector either way, with their text kept as text (fonts embedded as TrueType in PDF).
    """

    format: str = "png"
    width_in: float | None = None
    font_size: float | None = None
    style: str = "screen"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.style not in STYLES:
            raise ConfigError(f"--style must be paper or screen, not {self.style!r}")
        if self.width_in is not None and not 0.5 <= self.width_in <= 40:
            raise ConfigError(f"--width-in must be between 0.5 and 40 inches, not {self.width_in:g}")
        if self.font_size is not None and not 3 <= self.font_size <= 40:
            raise ConfigError(f"--font-size must be between 3 and 40 points, not {self.font_size:g}")

    @property
    def paper(self) -> bool:
        return self.style == "paper"

    @property
    def base_font(self) -> float:
        return self.font_size if self.font_size is not None else (8.0 if self.paper else 9.0)

    @property
    def dpi(self) -> int:
        return 300 if self.paper else 110

    def size(self, width: float, height: float) -> tuple[float, float]:
        """The figure's natural size (inches) scaled to the style's width, aspect kept."""
        target = self.width_in if self.width_in is not None else (min(PAPER_WIDTH_IN, width) if self.paper else width)
        return target, height * target / width

    def title(self, fig: Any, text: str) -> None:
        """A figure title on screen; none on paper (the LaTeX caption carries it)."""
        if not self.paper:
            fig.suptitle(text, fontsize="medium")

    @contextmanager
    def context(self) -> Iterator[None]:
        """matplotlib settings while a figure is drawn (text sizes follow the base font size)."""
        import matplotlib

        rc = {"font.size": self.base_font, "axes.titlesize": "medium", "axes.labelsize": "medium",
              "xtick.labelsize": "small", "ytick.labelsize": "small", "legend.fontsize": "x-small",
              "figure.titlesize": "medium", "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",
              "axes.spines.top": not self.paper, "axes.spines.right": not self.paper,
              "savefig.dpi": self.dpi}
        with matplotlib.rc_context(rc):
            yield

    def save(self, fig: Any, path: Path) -> Path:
        """Write the figure in the style's format; returns the path (its suffix is the format's)."""
        import matplotlib.pyplot as plt

        path = Path(path)
        if path.suffix.lower() != f".{self.format}":
            path = path.with_name(path.name + f".{self.format}")
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()  # drawn in memory, then renamed into place: a link at `path` is replaced, not written through
        fig.savefig(buf, format=self.format, dpi=self.dpi, metadata=_metadata(self.format))
        plt.close(fig)
        write_atomic(path, buf.getvalue())
        return path


def _metadata(fmt: str) -> dict[str, Any]:
    """No creation date in PDF / SVG: the same run draws byte-identical files."""
    if fmt == "pdf":
        return {"CreationDate": None}
    if fmt == "svg":
        return {"Date": None}
    return {}


SCREEN = FigureStyle()
