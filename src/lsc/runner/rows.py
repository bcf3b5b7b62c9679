"""One definition of a result row: the store's tables, the export's columns and the Parquet types are
derived from the dataclasses here and `lsc.protocol.loop.StepRecord`.

A step row is a `ResultKey` (which transmission) followed by a `StepRecord` (what one step did); a
summary row is a `ResultKey` followed by a `ResultSummary`. Adding a per-step value is one field on
StepRecord (with a default, e.g. `bleu: float | None = None`, filled in by the loop): the store adds
the column (also to an existing results.sqlite), and export and Parquet carry it. Field types map to
SQLite and Arrow as in `_TYPES` (int, float, str, each optionally `| None`); field metadata
`{"column": name}` names the column differently from the field, `{"export": False}` keeps a column out
of the export, and `{"columns": function}` makes a dict field several columns, [(name, type)] from the
function: StepRecord.metrics is the step metrics', whose columns `lsc.metrics.registry` defines (a
registered metric is a column with no change here). Column names are the store's contract: renaming
one orphans old run folders.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from lsc.protocol.loop import StepRecord


@dataclass(frozen=True)
class ResultKey:
    """Which transmission a row belongs to: image x scheme label x condition ('' or e.g. 'snr_db=4')."""

    image_id: str
    scheme: str
    cond: str = field(default="", metadata={"export": False})
    snr_db: float | None = None


@dataclass
class ResultSummary:
    """One transmission's outcome; a failed one has only `status` 'failed' and its `error`."""

    words_to_threshold: int | None = None
    # words until every attribute is right (the first step whose attr_all_right is 1), beside words to the
    # LPIPS threshold; empty when never, or when the attributes metric was not scored
    words_to_all_right: int | None = None
    bits_to_threshold: int | None = None
    final_lpips: float | None = None
    n_words: int | None = None
    caption: str | None = None
    # images Alice's plan asked Bob's generator for (what a fresh run generates): lowest_lpips' search
    # cost; empty for a scheme that plans without Bob's generator
    alice_images: int | None = None
    status: str = "ok"
    error: str | None = None
    words_json: str | None = field(default=None, metadata={"export": False})
    order_json: str | None = field(default=None, metadata={"export": False})
    # Wall times (not exported: they vary from run to run). elapsed_s: all of it (planning, the loop and the
    # step metrics; runs written before the split have only this). planning_s: Alice's planning;
    # transmission_s: the loop after it (the channel, Bob's images and their LPIPS); metrics_s: the step
    # metrics. cold: 1 for the first transmission of its worker process, which pays the models' warm-up
    # (lsc compare leaves it out of time means).
    elapsed_s: float | None = field(default=None, metadata={"export": False})
    planning_s: float | None = field(default=None, metadata={"export": False})
    transmission_s: float | None = field(default=None, metadata={"export": False})
    metrics_s: float | None = field(default=None, metadata={"export": False})
    cold: int | None = field(default=None, metadata={"export": False})


# The summary's wall-time fields above: they vary from run to run, so a resumed run matches an
# uninterrupted one on every other column.
WALL_TIME_FIELDS = ("elapsed_s", "planning_s", "transmission_s", "metrics_s", "cold")


@dataclass(frozen=True)
class Column:
    """A stored column: its name, the dataclass field it comes from (and the key in it, for a dict field
    of several columns), SQLite and Arrow types."""

    name: str
    field: str
    sql: str
    arrow: str
    export: bool
    key: str | None = None


_TYPES = {int: ("INTEGER", "int64"), float: ("REAL", "float64"), str: ("TEXT", "string")}


def columns_of(cls: type) -> tuple[Column, ...]:
    """The columns of a row dataclass, in field order (a type outside int/float/str is a TypeError)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "columns" in f.metadata:  # a dict field: one column per (name, type) its function gives
            for name, kind in f.metadata["columns"]():
                if kind not in _TYPES:
                    raise TypeError(f"{cls.__name__}.{f.name}[{name!r}]: a stored column must be int, float or str, not {kind}")
                sql, arrow = _TYPES[kind]
                out.append(Column(name, f.name, sql, arrow, f.metadata.get("export", True), key=name))
            continue
        kind = hints[f.name]
        if typing.get_origin(kind) in (Union, types.UnionType):
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            kind = args[0] if len(args) == 1 else kind
        if kind not in _TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: a stored column must be int, float or str (or None), not {kind}")
        sql, arrow = _TYPES[kind]
        out.append(Column(f.metadata.get("column", f.name), f.name, sql, arrow, f.metadata.get("export", True)))
    return tuple(out)


KEY_COLUMNS = columns_of(ResultKey)
STEP_COLUMNS = KEY_COLUMNS + columns_of(StepRecord)
SUMMARY_COLUMNS = KEY_COLUMNS + columns_of(ResultSummary)
STEP_KEY = ("image_id", "scheme", "cond", "step")
SUMMARY_KEY = ("image_id", "scheme", "cond")


def export_columns(columns: tuple[Column, ...]) -> tuple[str, ...]:
    """Exported column names: image and scheme first, then the row's values, the SNR last."""
    lead, last = ("image_id", "scheme"), ("snr_db",)
    middle = tuple(c.name for c in columns if c.export and c.name not in lead + last)
    return lead + middle + last


STEPS_EXPORT = export_columns(STEP_COLUMNS)
SUMMARY_EXPORT = export_columns(SUMMARY_COLUMNS)


def create_table(name: str, columns: tuple[Column, ...], key: tuple[str, ...]) -> str:
    """CREATE TABLE for a row dataclass's columns (NOT NULL on the primary key's columns)."""
    cols = [f"{c.name} {c.sql}{' NOT NULL' if c.name in key else ''}" for c in columns]
    return f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(cols)}, PRIMARY KEY ({', '.join(key)}))"


def values(columns: tuple[Column, ...], *parts: Any) -> tuple[Any, ...]:
    """A row's values in column order, read from the dataclasses that make it up (key first)."""
    fields: dict[str, Any] = {}
    for part in parts:
        fields.update((f.name, getattr(part, f.name)) for f in dataclasses.fields(part))
    return tuple(fields[c.field] if c.key is None else (fields[c.field] or {}).get(c.key) for c in columns)
