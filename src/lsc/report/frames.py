"""Runs as pandas DataFrames: a notebook's way in, without reading SQLite by hand.

The tables are the export's (`lsc.runner.export`: the same columns, the same order, the same
identity columns and the same rule that a step metric nobody scored is absent), so a DataFrame, a CSV
and a Parquet file of one run agree. Several runs concatenate into one frame per table, told apart by
their identity columns (label, backend, receiver, channel, prompt order, seed, distance; SNR per row).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from lsc.errors import ConfigError
from lsc.runner.export import ARROW_TYPES, IDENTITY, export_tables, identity_of, scored_columns
from lsc.runner.folder import STORE_FILE, open_store
from lsc.runner.rows import STEPS_EXPORT, SUMMARY_EXPORT

ORACLE_COLUMNS = ("image_id", "k", "lpips")

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class RunFrames:
    """One or several runs as three DataFrames, and each run's identity (label -> identity columns)."""

    steps: "pd.DataFrame"  # one row per image x scheme x step (x SNR)
    summary: "pd.DataFrame"  # one row per image x scheme (x SNR)
    oracle: "pd.DataFrame"  # the oracle's best k-word subset: image_id, k, lpips
    runs: dict[str, dict[str, Any]]


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError("runs as DataFrames need pandas: pip install pandas") from None
    return pd


_DTYPES = {"float64": "float64", "int64": "Int64"}  # Int64: pandas' integers with missing values


def _frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> "pd.DataFrame":
    """A DataFrame of `columns` with the stored column types (an all-empty SNR stays a float column, an
    integer with gaps stays an integer); empty cells are missing values."""
    pd = _pandas()
    frame = pd.DataFrame([[r.get(c) for c in columns] for r in rows], columns=list(columns))
    for c in columns:
        dtype = _DTYPES.get({**ARROW_TYPES, "k": "int64"}.get(c, ""))
        if dtype is not None:
            frame[c] = frame[c].astype(dtype)
    return frame


def load_run(run_dir: str | Path, label: str | None = None) -> RunFrames:
    """One run folder (partial runs too) as DataFrames; `label` names it (default: the folder's name)."""
    path = Path(run_dir)
    if not (path / STORE_FILE).is_file():
        raise ConfigError(f"{path}: not a run folder (no {STORE_FILE})")
    ident = identity_of(path, label)
    steps, summary = export_tables(path)
    for r in steps + summary:
        r.update(ident)
    steps_cols, summary_cols = scored_columns(steps, summary)
    with open_store(path) as store:
        oracle = [{**r, **ident} for r in store.oracle_rows()]
    return RunFrames(_frame(steps, steps_cols + IDENTITY), _frame(summary, summary_cols + IDENTITY),
                     _frame(oracle, ORACLE_COLUMNS + IDENTITY), {ident["label"]: ident})


def load_runs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> RunFrames:
    """Several runs as one DataFrame per table, rows told apart by the identity columns.

    A metric column one run scored and another did not is missing (NaN) in the other's rows; labels must
    be distinct (default: the folders' names)."""
    pd = _pandas()
    if not run_dirs:
        raise ConfigError("no run folder given")
    if labels is not None and len(labels) != len(run_dirs):
        raise ConfigError(f"{len(labels)} labels for {len(run_dirs)} runs")
    loaded = [load_run(d, labels[i] if labels else None) for i, d in enumerate(run_dirs)]
    names = [next(iter(f.runs)) for f in loaded]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"two runs are labelled {dup!r}: give each a distinct label")

    def concat(frames: list["pd.DataFrame"], order: Sequence[str]) -> "pd.DataFrame":
        """The runs' rows in order; a column any run has, in the export's column order."""
        present = {c for f in frames for c in f.columns}
        kept = [f for f in frames if len(f)] or frames[:1]
        return pd.concat(kept, ignore_index=True).reindex(columns=[c for c in order if c in present])

    return RunFrames(concat([f.steps for f in loaded], STEPS_EXPORT + IDENTITY),
                     concat([f.summary for f in loaded], SUMMARY_EXPORT + IDENTITY),
                     concat([f.oracle for f in loaded], ORACLE_COLUMNS + IDENTITY),
                     {k: v for f in loaded for k, v in f.runs.items()})
