"""The run report: figures, tables and image strips rebuilt from a run's result store."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def build_report(run_dir: str | Path, strips: int = 3, strip_images: list[str] | None = None,
                 embeddings: bool = False, step_metrics: list[str] | None = None,
                 progress: Callable[[str], None] | None = None, out_dir: str | Path | None = None) -> Path:
    """(Re)build RUN_DIR/report/ (PNGs, report.md, self-contained report.html); returns report.html.
    `progress` receives one line per part as it starts; `out_dir` puts the report elsewhere (read-only runs)."""
    from lsc.report.build import build_report as _build

    return _build(run_dir, strips, strip_images, embeddings, step_metrics, progress, out_dir)


__all__ = ["build_report"]
