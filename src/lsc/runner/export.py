"""Export a run's store as flat tables (CSV or Parquet) for pandas, R or a spreadsheet.

steps: one row per image x scheme x step (x SNR); summary: one row per image x scheme (x SNR), with
words/bits to threshold left empty where the threshold was never reached. Works on partial runs.

Every row ends with the run's identity (IDENTITY: label, backend, receiver, channel, prompt order, seed,
distance: the name its backend declared for the lpips columns),
so tables of several runs concatenate without tagging rows by hand; a step metric the study never scored
(a column empty in every row) is left out rather than exported empty. `lsc.api.load_run` reads the same
tables as DataFrames.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Literal

import yaml

from lsc.errors import ConfigError
from lsc.runner.folder import ensure_writable_folder, open_store, scheme_labels, stored_distance, write_atomic
from lsc.runner.rows import STEP_COLUMNS, STEPS_EXPORT, SUMMARY_COLUMNS, SUMMARY_EXPORT

# The run's identity, one column each after the row's own (what tells rows of several runs apart).
IDENTITY = ("label", "backend", "receiver", "channel", "prompt_order", "seed", "distance")
_IDENTITY_ARROW = {"label": "string", "backend": "string", "receiver": "string", "channel": "string",
                   "prompt_order": "string", "seed": "int64", "distance": "string"}
# The columns holding the perceptual distance: their Parquet description names it (the backend's declaration).
DISTANCE_COLUMNS = ("lpips", "final_lpips")


def run_identity(config: dict[str, Any], label: str) -> dict[str, Any]:
    """The IDENTITY columns of a run from its stored config; `label` names the run (default: its folder).

    receiver: `backend_options.receiver`, else the backend's own default (world: flow, hf: sd; empty for
    a backend of another module); channel: the channel model ('none': ideal), its SNR is each row's snr_db;
    distance: the name of what the lpips columns measure (LPIPS-world, LPIPS (AlexNet); `identity_of` reads the
    run's record, this the registered backend's declaration).
    """
    from lsc.backends import declared_distance

    backend = str(config.get("backend", ""))
    options = config.get("backend_options") or {}
    receiver = options.get("receiver") if isinstance(options, dict) else None
    if receiver is None and backend in ("world", "hf"):
        receiver = _default_receiver(backend)
    channel = config.get("channel") or {}
    seed = config.get("seed")
    return {"label": label, "backend": backend, "receiver": receiver,
            "channel": str(channel.get("model", "none")) if isinstance(channel, dict) else "none",
            "prompt_order": config.get("prompt_order"), "seed": int(seed) if isinstance(seed, int) else None,
            "distance": getattr(declared_distance(backend, options if isinstance(options, dict) else None), "name", None)}


def _default_receiver(backend: str) -> str | None:
    """The receiver a backend uses when the study names none (its options' default; no torch imported)."""
    if backend == "world":
        from lsc.backends.world.options import WorldBackendOptions as options
    else:
        from lsc.backends.hf.options import HFBackendOptions as options  # type: ignore[assignment]
    return options.model_fields["receiver"].default


def metric_columns() -> set[str]:
    """The step metric columns (lsc.metrics.registry): left out of an export where no row has a value."""
    from lsc.metrics.registry import stored_columns

    return {name for name, _ in stored_columns()}


def scored_columns(steps: list[dict[str, Any]], summary: list[dict[str, Any]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The export's columns of steps and summary, without the metric columns no step row fills (and without
    the summary's words_to_all_right where the attributes were never scored: empty would read 'never')."""
    metrics = metric_columns()
    empty = {c for c in metrics if all(r.get(c) is None for r in steps)}
    steps_cols = tuple(c for c in STEPS_EXPORT if c not in empty)
    summary_cols = tuple(c for c in SUMMARY_EXPORT if not (c == "words_to_all_right" and "attr_all_right" in empty))
    return steps_cols, summary_cols


def identity_of(run_dir: str | Path, label: str | None = None) -> dict[str, Any]:
    """A run folder's IDENTITY columns, read from its stored config (label: the folder's name unless given)."""
    with open_store(run_dir) as store:
        text = store.get_meta("config")
        distance = stored_distance(store)
    config = yaml.safe_load(text) if text else {}
    ident = run_identity(config if isinstance(config, dict) else {}, label or Path(run_dir).resolve().name)
    return {**ident, "distance": distance.name}


def export_tables(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(steps rows, summary rows) with every column of STEPS_EXPORT / SUMMARY_EXPORT (empty ones too:
    `scored_columns` picks), in image then scheme order."""
    with open_store(run_dir) as store:
        rank = {label: i for i, label in enumerate(scheme_labels(store))}
        seq = {r["image_id"]: r["seq"] for r in store.images()}

        def key(r: dict[str, Any]) -> tuple[Any, ...]:
            return (seq.get(r["image_id"], 1 << 30), r["image_id"], r["snr_db"] is not None, r["snr_db"] or 0.0,
                    rank.get(r["scheme"], len(rank)), r["scheme"], r.get("step", 0))

        steps = [{c: r.get(c) for c in STEPS_EXPORT} for r in sorted(store.steps(), key=key)]
        summary = [{c: r.get(c) for c in SUMMARY_EXPORT} for r in sorted(store.summaries(), key=key)]
    return steps, summary


def export_run(run_dir: str | Path, fmt: Literal["csv", "parquet"] = "csv", out_dir: str | Path | None = None) -> list[Path]:
    """Write steps.<fmt> and summary.<fmt> into `out_dir` (default: the run folder); returns the paths."""
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--format must be csv or parquet, not {fmt!r}")
    steps, summary = export_tables(run_dir)
    ident = identity_of(run_dir)
    for r in steps + summary:
        r.update(ident)
    steps_cols, summary_cols = scored_columns(steps, summary)
    dest = Path(out_dir) if out_dir is not None else Path(run_dir)
    _check_dest(dest, fmt)
    paths = []
    with open_store(run_dir) as store:
        distance = stored_distance(store)
    described = {c: f"{distance.name}: {distance.scale}" for c in DISTANCE_COLUMNS}
    for name, rows, cols in (("steps", steps, steps_cols + IDENTITY), ("summary", summary, summary_cols + IDENTITY)):
        path = dest / f"{name}.{fmt}"
        if fmt == "csv":
            _write_csv(path, rows, cols)
        else:
            _write_parquet(path, rows, cols, described)
        paths.append(path)
    return paths


def _check_dest(dest: Path, fmt: str) -> None:
    """The export folder must be (or become) a writable folder: one line, never a traceback."""
    ensure_writable_folder(dest)


# A text cell a spreadsheet would run as a formula (or a DDE command) starts with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP's list


def neutralise(text: str) -> str:
    """A text cell made inert for spreadsheets: a leading apostrophe before a formula character (OWASP)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, str):
        return neutralise(value)
    return value


def _write_csv(path: Path, rows: list[dict[str, Any]], cols: tuple[str, ...]) -> None:
    """Written in memory, then to a temporary name and renamed: a full disk never leaves a truncated file."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(cols)
    for r in rows:
        writer.writerow([_cell(r[c]) for c in cols])
    _replace(path, buf.getvalue().encode("utf-8"))


def _replace(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}; nothing was changed") from None


# Every exported column's type (Arrow's names): the Parquet schema, and the DataFrames' dtypes (lsc.report.frames).
ARROW_TYPES = {**{c.name: c.arrow for c in STEP_COLUMNS + SUMMARY_COLUMNS}, **_IDENTITY_ARROW}


def _write_parquet(path: Path, rows: list[dict[str, Any]], cols: tuple[str, ...],
                   described: dict[str, str] | None = None) -> None:
    """A Parquet file of `cols`; `described` columns carry a description in their field metadata."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet export needs pyarrow: pip install 'lsc[parquet]'") from None
    notes = described or {}
    schema = pa.schema([pa.field(c, pa.type_for_alias(ARROW_TYPES[c]),
                                 metadata={"description": notes[c]} if c in notes else None) for c in cols])
    table = pa.table({c: [r[c] for r in rows] for c in cols}, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    _replace(path, buf.getvalue())
