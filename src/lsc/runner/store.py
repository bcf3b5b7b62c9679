"""The result store: one SQLite file per run, written durably as each (image, scheme) finishes.

Why SQLite: one file, transactions (a killed run never leaves half a result), readable while a study
runs (WAL), and queryable by anyone with Python. Every table is keyed so that resuming can ask "is this
done?" and re-writing the same result is idempotent.

Tables
- meta(key, value): the resolved config (YAML), the scheme labels in config order and the schema version.
- images(seq, image_id, caption, captions_json, attributes_json, status, error)
- summary and steps: the columns of `lsc.runner.rows` (ResultKey + ResultSummary, ResultKey + StepRecord);
  a column added there is added to an existing store when it is next opened for writing.
- oracle(image_id, k, lpips) and oracle_status(image_id, n_words, status, error)
- generated(image_id, key, prompt, lpips, pixels): the journal of Bob's images (see `GenerationJournal`),
  written as each generator call returns, so a kill inside a transmission loses at most that call.
  Pixels are dropped once an image's work is done; distances stay (a few bytes per prompt).
`cond` is '' for a study without a sweep, else e.g. 'snr_db=4'.
"""

from __future__ import annotations

import io
import json
import sqlite3
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from lsc.errors import LscError
from lsc.protocol.loop import StepRecord
from lsc.runner.rows import (STEP_COLUMNS, STEP_KEY, SUMMARY_COLUMNS, SUMMARY_KEY, Column, ResultKey, ResultSummary,
                             create_table, values)

SCHEMA_VERSION = "1"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
  seq INTEGER NOT NULL, image_id TEXT PRIMARY KEY, caption TEXT, captions_json TEXT,
  attributes_json TEXT, status TEXT NOT NULL, error TEXT);
{create_table("summary", SUMMARY_COLUMNS, SUMMARY_KEY)};
{create_table("steps", STEP_COLUMNS, STEP_KEY)};
CREATE TABLE IF NOT EXISTS oracle (
  image_id TEXT NOT NULL, k INTEGER NOT NULL, lpips REAL NOT NULL, PRIMARY KEY (image_id, k));
CREATE TABLE IF NOT EXISTS oracle_status (
  image_id TEXT PRIMARY KEY, n_words INTEGER, status TEXT NOT NULL, error TEXT);
CREATE TABLE IF NOT EXISTS generated (
  image_id TEXT NOT NULL, key TEXT NOT NULL, prompt TEXT NOT NULL, lpips REAL NOT NULL, pixels BLOB,
  PRIMARY KEY (image_id, key));
"""

# The tables every store has; `generated` is left out so stores written before it existed still read.
TABLES = ("meta", "images", "summary", "steps", "oracle", "oracle_status")
GENERATED_TABLE = "generated"


class StoreError(LscError):
    """results.sqlite is missing tables, damaged, or not a database: one line, never a traceback."""


def _readonly_query(path: Path) -> str:
    """How to open a store for reading: on read-only storage a WAL database whose log was checkpointed
    cannot be opened with mode=ro (SQLite must create its -shm file), so it is opened as immutable."""
    import os

    wal = path.with_name(path.name + "-wal")
    if not os.access(path.parent, os.W_OK) and not wal.exists():
        return "?mode=ro&immutable=1"
    return "?mode=ro"


class ResultStore:
    """A run's results.sqlite. Open with `ResultStore(path)`; use as a context manager to close."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            if readonly:
                # A URI built by as_uri(): '#', '?' and '%' in a folder name are escaped, not parsed.
                self.conn = sqlite3.connect(self.path.absolute().as_uri() + _readonly_query(self.path), uri=True,
                                            isolation_level=None)
                missing = set(TABLES) - {r[0] for r in self.conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                if missing:
                    self.conn.close()
                    raise StoreError(f"{self.path} is not an lsc results store (no table {sorted(missing)[0]!r})")
            else:
                self.conn = sqlite3.connect(self.path, isolation_level=None)  # transactions are explicit
                # Takes effect on a new file only: the journal's dropped images give their pages back.
                self.conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.executescript(_SCHEMA)
                _add_missing_columns(self.conn, "summary", SUMMARY_COLUMNS)
                _add_missing_columns(self.conn, "steps", STEP_COLUMNS)
                self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a readable lsc results store ({exc})") from None
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together or not at all (a kill -9 loses at most this block)."""
        try:
            self.conn.execute("BEGIN")
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back after some errors (a full disk): a second ROLLBACK would raise
            # 'no transaction is active' and hide the real cause.
            if self.conn.in_transaction:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise

    # ------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------ writes
    def record_image(
        self, seq: int, image_id: str, caption: str | None, captions: Sequence[str],
        attributes: dict[str, Any] | None, status: str, error: str | None,
    ) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, image_id, caption, json.dumps(list(captions)), _json_or_none(attributes), status, error),
            )

    def record_result(self, key: ResultKey, summary: ResultSummary, steps: Sequence[StepRecord]) -> None:
        """One (image, scheme, cond): its steps and summary in a single transaction."""
        with self.transaction() as c:
            c.execute("DELETE FROM steps WHERE image_id = ? AND scheme = ? AND cond = ?",
                      (key.image_id, key.scheme, key.cond))
            c.executemany(_insert("steps", STEP_COLUMNS), [tuple(map(_db, values(STEP_COLUMNS, key, s))) for s in steps])
            c.execute(_insert("summary", SUMMARY_COLUMNS, replace=True), tuple(map(_db, values(SUMMARY_COLUMNS, key, summary))))

    def set_step_values(self, updates: Sequence[tuple[tuple[str, str, str, int], dict[str, Any]]]) -> None:
        """Set some columns of stored steps, keyed (image_id, scheme, cond, step), in one transaction (the
        corpus-level step metrics, filled once a study's transmissions are stored)."""
        known = {c.name for c in STEP_COLUMNS} - set(STEP_KEY)
        with self.transaction() as c:
            for (image_id, scheme, cond, step), vals in updates:
                bad = [k for k in vals if k not in known]
                if bad:
                    raise ValueError(f"steps has no column {bad[0]!r}")
                c.execute(f"UPDATE steps SET {', '.join(f'{k} = ?' for k in vals)} "
                          "WHERE image_id = ? AND scheme = ? AND cond = ? AND step = ?",
                          (*map(_db, vals.values()), image_id, scheme, cond, step))

    def record_oracle(self, image_id: str, n_words: int | None, curve: Sequence[tuple[int, float]],
                      status: str = "ok", error: str | None = None) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM oracle WHERE image_id = ?", (image_id,))
            c.executemany("INSERT INTO oracle VALUES (?, ?, ?)", [(image_id, int(k), float(v)) for k, v in curve])
            c.execute("INSERT OR REPLACE INTO oracle_status VALUES (?, ?, ?, ?)", (image_id, n_words, status, error))

    # ------------------------------------------------------------ reads
    def done_keys(self, include_failed: bool = True) -> set[tuple[str, str, str]]:
        """(image_id, scheme, cond) already recorded (failed ones too unless include_failed=False; never a
        failure the environment caused, which the next run retries)."""
        from lsc.runner.environment import ENVIRONMENT_PREFIX

        sql = "SELECT image_id, scheme, cond FROM summary WHERE status = 'ok'"
        if include_failed:
            sql += " OR substr(coalesce(error, ''), 1, ?) != ?"
            return {tuple(r) for r in self.conn.execute(sql, (len(ENVIRONMENT_PREFIX), ENVIRONMENT_PREFIX))}  # type: ignore[misc]
        return {tuple(r) for r in self.conn.execute(sql)}  # type: ignore[misc]

    def failed_count(self) -> tuple[int, int]:
        """(failed transmissions a resume keeps, failed ones the environment caused, which it retries)."""
        from lsc.runner.environment import ENVIRONMENT_PREFIX

        rows = self.conn.execute("SELECT coalesce(error, '') FROM summary WHERE status != 'ok'").fetchall()
        env = sum(1 for (e,) in rows if e.startswith(ENVIRONMENT_PREFIX))
        return len(rows) - env, env

    def oracle_done(self, include_failed: bool = True) -> set[str]:
        from lsc.runner.environment import ENVIRONMENT_PREFIX

        sql = "SELECT image_id FROM oracle_status WHERE status != 'failed'"
        if include_failed:
            sql += " OR substr(coalesce(error, ''), 1, ?) != ?"
            return {r[0] for r in self.conn.execute(sql, (len(ENVIRONMENT_PREFIX), ENVIRONMENT_PREFIX))}
        return {r[0] for r in self.conn.execute(sql)}

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, params)]

    def summaries(self) -> list[dict[str, Any]]:
        """Summary rows in image order, every column of ResultSummary present (None where an older store has none)."""
        return _complete(SUMMARY_COLUMNS, self.rows(
            "SELECT s.* FROM summary s LEFT JOIN images i USING (image_id) ORDER BY i.seq, s.image_id, s.cond, s.scheme"
        ))

    def steps(self) -> list[dict[str, Any]]:
        """Step rows in image order, every column of StepRecord present (None where an older store has none)."""
        return _complete(STEP_COLUMNS, self.rows(
            "SELECT t.* FROM steps t LEFT JOIN images i USING (image_id) "
            "ORDER BY i.seq, t.image_id, t.cond, t.scheme, t.step"
        ))

    def oracle_rows(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM oracle ORDER BY image_id, k")

    def images(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM images ORDER BY seq")


class GenerationJournal:
    """An `lsc.protocol.context.CacheJournal` in a run's store: Bob's images and their distances.

    Written by the image worker, in this process, after every generator call (one transaction each);
    read when a context for the same image is made again, i.e. when a killed run resumes. Images come
    back bit for bit (`encode_pixels`), so the resumed run gives the numbers of an uninterrupted one.
    """

    def __init__(self, store: ResultStore) -> None:
        self.store = store

    def load(self, image_id: str) -> list[tuple[str, str, float, np.ndarray | None]]:
        rows = self.store.conn.execute(
            "SELECT key, prompt, lpips, pixels FROM generated WHERE image_id = ? ORDER BY rowid", (image_id,))
        return [(r[0], r[1], float(r[2]), None if r[3] is None else decode_pixels(r[3])) for r in rows]

    def record(self, image_id: str, entries: Sequence[tuple[str, str, float, np.ndarray | None]]) -> None:
        with self.store.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO generated VALUES (?, ?, ?, ?, ?)",
                [(image_id, key, prompt, float(lpips), None if img is None else encode_pixels(img))
                 for key, prompt, lpips, img in entries],
            )

    def drop_pixels(self, keep: Iterable[str] = ()) -> None:
        """Forget the images (not the distances) of every image id but `keep`: done work needs none."""
        held = {r[0] for r in self.store.conn.execute("SELECT DISTINCT image_id FROM generated WHERE pixels IS NOT NULL")}
        for image_id in sorted(held - set(keep)):
            self.drop_pixels_of(image_id)

    def drop_pixels_of(self, image_id: str) -> None:
        with self.store.transaction() as c:
            c.execute("UPDATE generated SET pixels = NULL WHERE image_id = ? AND pixels IS NOT NULL", (image_id,))
        self.store.conn.executescript("PRAGMA incremental_vacuum;")  # to the end: execute() frees one page


def encode_pixels(image: np.ndarray) -> bytes:
    """An image as compressed .npy bytes, exactly: as 8-bit levels when that loses nothing (the world's
    images are 8-bit pictures: a quarter of the size), else as float32."""
    arr = np.ascontiguousarray(image, dtype=np.float32)
    with np.errstate(invalid="ignore"):  # a NaN pixel fails the check below and is kept as float32
        levels = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    if np.array_equal((levels.astype(np.float32) / np.float32(255.0)).view(np.uint32), arr.view(np.uint32)):
        arr = levels  # type: ignore[assignment]
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return zlib.compress(buf.getvalue(), 1)


def decode_pixels(blob: bytes) -> np.ndarray:
    """The float32 image `encode_pixels` was given, bit for bit."""
    arr = np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    return arr.astype(np.float32, copy=False)


def _json_or_none(obj: Any) -> str | None:
    return None if obj is None else json.dumps(obj, sort_keys=True, default=str)


def _db(value: Any) -> Any:
    """numpy scalars and friends to plain Python values SQLite accepts."""
    if value is None or isinstance(value, (str, int, float, bytes)):
        return value
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, bool):
        return int(value)
    return value


def _complete(columns: tuple[Column, ...], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**{c.name: None for c in columns}, **r} for r in rows]


def _insert(table: str, columns: tuple[Column, ...], replace: bool = False) -> str:
    """INSERT naming its columns, so a store whose columns were added later in another order works."""
    names = ", ".join(c.name for c in columns)
    return f"INSERT {'OR REPLACE ' if replace else ''}INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"


def _add_missing_columns(conn: sqlite3.Connection, table: str, columns: tuple[Column, ...]) -> None:
    """A column added to a row dataclass since this store was written is added to its table (empty in old rows)."""
    have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    for c in columns:
        if c.name not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {c.name} {c.sql}")
