"""`lsc plot` and `lsc table`: a report's figure or headline table from one run or several, for a paper."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def _names(text: Optional[str]) -> Optional[List[str]]:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def register(app: typer.Typer, panel: str | None = None) -> None:
    """Add `plot` and `table` to the main `lsc` app."""

    @app.command("plot", rich_help_panel=panel)
    def plot_cmd(
        run_dirs: List[Path] = typer.Argument(..., help="one run folder, or several (one panel or series each)"),
        figure: str = typer.Option(..., "--figure", help="lpips_vs_words, lpips_vs_bits, success_vs_words, paired_difference, "
                                   "gap_vs_images, lpips_vs_snr, rate_perception, <step metric>_vs_words (e.g. attr_mean_vs_words), strip"),
        schemes: Optional[str] = typer.Option(None, "--schemes", help="comma-separated scheme labels, in legend order (default: all, by family)"),
        format: str = typer.Option("pdf", "--format", help="pdf, svg (vector) or png"),
        width_in: Optional[float] = typer.Option(None, "--width-in", help="figure width in inches (paper default: at most 7)"),
        font_size: Optional[float] = typer.Option(None, "--font-size", help="base font size in points (paper 8, screen 9)"),
        style: str = typer.Option("paper", "--style", help="paper (no title, text width, 300 dpi PNG) or screen (the report's)"),
        out: Optional[Path] = typer.Option(None, "--out", help="output file (default: FIGURE.FORMAT here)"),
        label: List[str] = typer.Option([], "--label", help="a name per run, in order (default: folder names)"),
        snr: Optional[float] = typer.Option(None, "--snr", help="the SNR condition to draw (default: each run's highest)"),
        image: Optional[str] = typer.Option(None, "--image", help="strip: the image id (default: the first transmitted)"),
    ) -> None:
        """Draw one of the report's figures from one or several runs, styled for a paper (vector PDF/SVG)."""
        from lsc import api

        path = api.plot(run_dirs, figure, out, schemes=_names(schemes), format=format, width_in=width_in,
                        font_size=font_size, style=style, labels=label or None, snr_db=snr, image=image)
        typer.echo(str(path))

    @app.command("table", rich_help_panel=panel)
    def table_cmd(
        run_dirs: List[Path] = typer.Argument(..., help="one run folder, or several (one column group each)"),
        format: str = typer.Option("latex", "--format", help="latex (booktabs), markdown or csv (long form, numbers)"),
        metrics: Optional[str] = typer.Option(None, "--metrics", help="comma-separated: success, final_success, words, words_ok, "
                                              "all_right, words_all_right (world: every attribute right), area, area_bits, final_lpips, delta_area, "
                                              "delta_words, delta_area_bits "
                                              "(default: success,words,area,delta_area)"),
        schemes: Optional[str] = typer.Option(None, "--schemes", help="comma-separated scheme labels, in row order (default: all)"),
        label: List[str] = typer.Option([], "--label", help="a name per run, in order (default: folder names)"),
        snr: Optional[float] = typer.Option(None, "--snr", help="the SNR condition (default: each run's highest)"),
        baseline: str = typer.Option("random", "--baseline", help="the scheme the Δ columns subtract"),
    ) -> None:
        """Print the report's headline table per scheme (CIs, Wilson, Holm p), one column group per run, best in bold."""
        from lsc import api

        typer.echo(api.table(run_dirs, format=format, metrics=_names(metrics), schemes=_names(schemes),
                             labels=label or None, snr_db=snr, baseline=baseline))
