"""`lsc run`, `lsc report`, `lsc export`, `lsc compare`, `lsc schemes`: thin wrappers over lsc.api."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def out_path(text: Optional[str], option: str = "--out") -> Optional[Path]:
    """A path option as given: an empty one is refused (typer would read '' as the current folder)."""
    if text is None:
        return None
    if not text.strip():
        from lsc.errors import ConfigError

        raise ConfigError(f"{option} is empty; name a folder")
    return Path(text)


def register(app: typer.Typer, panel: str | None = None) -> None:
    """Add the runner's commands to the main `lsc` app."""

    @app.command("run", rich_help_panel=panel)
    def run_cmd(
        config: Optional[Path] = typer.Argument(None, help="study YAML; omitted = the default world study"),
        set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="override a config key (repeatable): --set channel.snr_db=[0,4,8]"),
        out_text: Optional[str] = typer.Option(None, "--out", help="run folder (default runs/<config name>)"),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="redo transmissions recorded as failed"),
        no_report: bool = typer.Option(False, "--no-report", help="skip building the report at the end"),
        no_progress: bool = typer.Option(False, "--no-progress", help="no progress bars (the main one counts transmissions; long steps show their own)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="load the backend, print the configuration config.resolved.yaml will hold, and exit"),
    ) -> None:
        """Run a study (or resume it: the same command on the same folder skips what is done).

        Exits 1 when no transmission of the study succeeded (the count and the most common reason are
        printed; the report lists every failure's reason), 2 on a bad config or option."""
        from lsc import api

        out = out_path(out_text)
        cfg = api.load_config(config, set_)
        if dry_run:
            typer.echo(api.resolved_config(cfg, notify=lambda line: typer.echo(line, err=True)).to_yaml(), nl=False)
            return
        out_dir = out if out is not None else api.default_out_dir(config)
        summary = api.run(cfg, out_dir, progress=not no_progress, retry_failed=retry_failed, report=not no_report,
                          notify=lambda line: typer.echo(line, err=True))
        typer.echo(summary.line())
        if not no_report:
            from lsc.runner.folder import REPORT_DIR

            typer.echo(f"report: {out_dir / REPORT_DIR / 'report.html'}")
        if summary.nothing_succeeded:
            typer.echo(f"error: {summary.failure_line()}", err=True)
            raise typer.Exit(1)

    @app.command("report", rich_help_panel=panel)
    def report_cmd(
        run_dir: Path = typer.Argument(..., help="a run folder"),
        strips: int = typer.Option(3, "--strips", help="image strips of the first N images"),
        strip_image: List[str] = typer.Option([], "--strip-image", metavar="ID", help="draw the strip of this image id (repeatable; replaces --strips)"),
        embeddings: bool = typer.Option(False, "--embeddings", help="add PCA / t-SNE maps of Bob's prompt and image embeddings (world)"),
        step_metrics: Optional[str] = typer.Option(None, "--step-metrics", metavar="NAMES", help="comma-separated: attributes, recaption, itm, bertscore, clip_score ('' for none; default: the study's metrics); read from the store, computed where it lacks them"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress lines on stderr"),
        out_text: Optional[str] = typer.Option(None, "--out", help="report folder (default RUN_DIR/report; e.g. for a read-only run folder)"),
    ) -> None:
        """(Re)build a run's report from its store; works on partial runs. Progress goes to stderr."""
        from lsc import api

        names = None if step_metrics is None else [n.strip() for n in step_metrics.split(",") if n.strip()]
        progress = None if quiet else (lambda line: typer.echo(line, err=True))
        typer.echo(str(api.report(run_dir, strips, strip_image or None, embeddings, names, progress, out_path(out_text))))

    @app.command("export", rich_help_panel=panel)
    def export_cmd(
        run_dir: Path = typer.Argument(..., help="a run folder"),
        format: str = typer.Option("csv", "--format", help="csv or parquet (parquet needs pyarrow: pip install 'lsc[parquet]')"),
        out_text: Optional[str] = typer.Option(None, "--out", help="destination folder (default: the run folder)"),
    ) -> None:
        """Write steps.csv and summary.csv (or .parquet) of a run."""
        from lsc import api

        for path in api.export(run_dir, format, out_path(out_text)):  # type: ignore[arg-type]
            typer.echo(str(path))

    @app.command("compare", rich_help_panel=panel)
    def compare_cmd(
        run_dirs: List[Path] = typer.Argument(..., help="run folders of the same images (e.g. one per channel variant or receiver)"),
        scheme: List[str] = typer.Option([], "--scheme", help="the scheme to compare across the runs (repeat for a scheme x run table; "
                                         "required when the runs hold several)"),
        label: List[str] = typer.Option([], "--label", help="a name per run, in order (default: folder names)"),
        plot: Optional[Path] = typer.Option(None, "--plot", help="also draw final LPIPS and success rate vs SNR (several schemes: bars per run) to this PNG"),
        as_json: bool = typer.Option(False, "--json", help="print a JSON list instead of a markdown table"),
    ) -> None:
        """Schemes across runs of the same images, SNR by SNR: final LPIPS, success rate, words to threshold.

        With one --scheme: a run x SNR table; with several: a scheme x run table with the area under LPIPS vs
        words and the time per transmission. 95% confidence intervals throughout."""
        import json

        from lsc import api
        from lsc.report.compare import markdown_table, scheme_run_table

        schemes = list(dict.fromkeys(scheme))
        cells = api.compare(run_dirs, None if not schemes else schemes[0] if len(schemes) == 1 else schemes, label or None, plot)
        if as_json:
            typer.echo(json.dumps([c.as_dict() for c in cells], indent=1))
        else:
            typer.echo(markdown_table(cells) if len(schemes) <= 1 else scheme_run_table(cells))

    @app.command("schemes", rich_help_panel=panel)
    def schemes_cmd() -> None:
        """List the ordering schemes: name, what Alice must hold, the package it comes from, what it does."""
        from lsc import api

        infos = api.schemes()
        w_name = max(len(i.name) for i in infos)
        w_hold = max(len(i.alice_holds) for i in infos)
        w_pkg = max(len(i.package) for i in infos)
        typer.echo(f"{'name':<{w_name}}  {'Alice holds':<{w_hold}}  {'from':<{w_pkg}}  description")
        for i in infos:
            typer.echo(f"{i.name:<{w_name}}  {i.alice_holds:<{w_hold}}  {i.package:<{w_pkg}}  {i.description}")
