"""lsc's public Python API: everything the `lsc` command does, callable from a script or notebook.

    import lsc.api as lsc
    cfg = lsc.load_config("study.yaml", ["channel.snr_db=[0,4,8]", "channel.model=analytic"])
    lsc.run(cfg, "runs/snr")          # resumable: call again to continue
    lsc.report("runs/snr")            # runs/snr/report/report.html
    lsc.export("runs/snr", "parquet")
    lsc.compare(["runs/scc_on", "runs/scc_off"], "heads", plot="cmp.png")
    runs = lsc.load_runs(["runs/scc_on", "runs/scc_off"])   # pandas: runs.steps, runs.summary, runs.oracle
    lsc.plot(["runs/snr"], "lpips_vs_words", "fig.pdf")       # a report figure, styled for a paper
    print(lsc.table(["runs/scc_on", "runs/scc_off"]))         # LaTeX (booktabs), one column group per run
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

from lsc.config import StudyConfig, load_config, validate_config

__all__ = ["StudyConfig", "load_config", "validate_config", "resolved_config", "run", "report", "export", "compare", "schemes",
           "default_out_dir", "load_run", "load_runs", "plot", "table"]


def default_out_dir(config_path: str | Path | None) -> Path:
    """runs/<config name>, or runs/default for the packaged default study: re-running resumes."""
    return Path("runs") / (Path(config_path).stem if config_path is not None else "default")


def resolved_config(cfg: StudyConfig, notify: Callable[[str], None] | None = None) -> StudyConfig:
    """The configuration a run of `cfg` records in config.resolved.yaml (what `lsc run --dry-run` prints).

    Loads the backend in this process (not the images): its threshold, prompt order and model files are part
    of the study, and only the loaded backend knows them, so the dry run and the run share one resolution.
    """
    from lsc.runner.worker import get_backend, resolve

    return resolve(cfg, get_backend(cfg.backend, cfg.backend_options, notify=notify))


def run(cfg: StudyConfig | str | Path | None = None, out_dir: str | Path | None = None, overrides: Sequence[str] = (),
        progress: bool = True, retry_failed: bool = False, report: bool = True,
        notify: Callable[[str], None] | None = None) -> Any:
    """Run or resume a study, then build its report; returns a StudySummary.

    `cfg` is a StudyConfig, a YAML path, or None for the default world study. `notify` receives
    one-line notices, e.g. which function a 'module:function' backend imported.
    """
    from lsc.runner.study import run_study

    config_path = None
    if not isinstance(cfg, StudyConfig):
        config_path = cfg
        cfg = load_config(cfg, list(overrides))
    elif overrides:
        raise ValueError("overrides apply to a config file; pass an already-overridden StudyConfig instead")
    out = Path(out_dir) if out_dir is not None else default_out_dir(config_path)
    summary = run_study(cfg, out, progress=progress, retry_failed=retry_failed, notify=notify)
    if report:
        from lsc.report import build_report

        with _store_errors(out):
            build_report(out, progress=notify if progress else None)
    return summary


def report(run_dir: str | Path, strips: int = 3, strip_images: Sequence[str] | None = None,
           embeddings: bool = False, step_metrics: Sequence[str] | None = None,
           progress: Callable[[str], None] | None = None, out_dir: str | Path | None = None) -> Path:
    """Rebuild a run's report from its store (also for partial runs); returns report.html.

    `strips` image strips of the first images, or of `strip_images` (ids) when given; `embeddings` adds
    PCA / t-SNE maps of Bob's prompt and image embeddings (world runs, scikit-learn); `step_metrics`: names
    from lsc.metrics.registry, read from the store where the study scored them, else computed on the stored
    images (None: the study's `metrics:`, else the backend's defaults: attributes and recaption on the world).
    `progress` receives one line as each part of the report starts (what, and the seconds so far).
    `out_dir`: write the report there instead of RUN_DIR/report (a run folder on read-only storage).
    """
    from lsc.report import build_report

    with _store_errors(run_dir):
        return build_report(run_dir, strips, list(strip_images) if strip_images else None, embeddings,
                            None if step_metrics is None else list(step_metrics), progress, out_dir)


def export(run_dir: str | Path, fmt: Literal["csv", "parquet"] = "csv", out_dir: str | Path | None = None) -> list[Path]:
    """Write steps.<fmt> and summary.<fmt> for a run; returns their paths."""
    from lsc.runner.export import export_run

    with _store_errors(run_dir):
        return export_run(run_dir, fmt, out_dir)


def load_run(run_dir: str | Path, label: str | None = None) -> Any:
    """A run folder as pandas DataFrames (`.steps`, `.summary`, `.oracle`; the export's columns) with the
    run's identity as columns (label, backend, receiver, channel, prompt_order, seed; snr_db per row).
    A step metric the study never scored is absent, not an empty column. Needs pandas."""
    from lsc.report.frames import load_run as _load

    with _store_errors(run_dir):
        return _load(run_dir, label)


def load_runs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> Any:
    """Several run folders as one DataFrame per table (rows told apart by the identity columns)."""
    from lsc.report.frames import load_runs as _load

    with _store_errors(run_dirs[0] if run_dirs else "."):
        return _load(run_dirs, labels)


def plot(run_dirs: Sequence[str | Path], figure: str, out: str | Path | None = None, schemes: Sequence[str] | None = None,
         format: str = "pdf", width_in: float | None = None, font_size: float | None = None, style: str = "paper",
         labels: Sequence[str] | None = None, snr_db: float | None = None, image: str | None = None) -> Path:
    """Draw one of the report's figures (lsc.report.figures.FIGURES) from one or several runs; returns its path.

    The report's own drawing code in another style: `format` pdf/svg (vector) or png, `style` paper (no title,
    at most 7 in wide, 8 pt) or screen; `schemes` picks and orders the series; several runs give one panel
    (or series) each; `snr_db` picks the condition (default: each run's highest); `image`: the strip's image."""
    from lsc.report.figures import draw
    from lsc.report.style import FigureStyle

    fig_style = FigureStyle(format, width_in, font_size, style)
    target = Path(out) if out is not None else Path(f"{figure}.{format}")
    with _store_errors(run_dirs[0] if run_dirs else "."):
        return draw(figure, run_dirs, target, fig_style, schemes, labels, snr_db, image)


def table(run_dirs: Sequence[str | Path], format: str = "latex", metrics: Sequence[str] | None = None,
          schemes: Sequence[str] | None = None, labels: Sequence[str] | None = None, snr_db: float | None = None,
          baseline: str = "random") -> str:
    """The report's headline numbers per scheme as LaTeX (booktabs), Markdown or CSV, one column group per run,
    the best of each column in bold (lsc.report.tables.METRICS: success, words, area, delta_area, ...)."""
    from lsc.report.figures import check_schemes, load_views
    from lsc.report.tables import build

    with _store_errors(run_dirs[0] if run_dirs else "."):
        views = load_views(run_dirs, labels, snr_db)
        return build(views, metrics, format, check_schemes(views, schemes), baseline)


@contextmanager
def _store_errors(run_dir: str | Path) -> Iterator[None]:
    """A store damaged mid-file fails on some query, not on opening: still one line, never a traceback."""
    import sqlite3

    from lsc.errors import ConfigError
    from lsc.runner.folder import STORE_FILE

    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{Path(run_dir) / STORE_FILE} is damaged ({exc})") from None


def compare(run_dirs: Sequence[str | Path], scheme: str | Sequence[str] | None = None, labels: Sequence[str] | None = None,
            plot: str | Path | None = None) -> list[Any]:
    """Schemes across runs of the same images, SNR by SNR; returns report.compare Cells.

    `scheme` None: the one scheme the runs hold (runs of several schemes are refused: name it).

    With `plot`: for one scheme, final LPIPS and success rate vs SNR, with the runs' shared threshold; for
    several, success rate and area under LPIPS vs words per scheme, one bar per run.
    """
    from lsc.limits import check_output_file
    from lsc.report.compare import common_threshold, compare_runs, plot_comparison, plot_schemes

    if plot is not None:
        plot = check_output_file(plot, (".png", ".pdf", ".svg"), "--plot")  # before reading any run
    cells = compare_runs(run_dirs, scheme, labels)
    if plot is not None:
        if scheme is None or isinstance(scheme, str) or len(set(scheme)) == 1:
            plot_comparison(cells, Path(plot), common_threshold(cells))
        else:
            plot_schemes(cells, Path(plot))
    return cells


def schemes() -> list[Any]:
    """Every registered scheme: name, description, what Alice must hold, capabilities needed."""
    from lsc.schemes import list_schemes

    return list_schemes()
