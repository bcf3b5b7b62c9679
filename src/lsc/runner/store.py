"""The result store: one SQLite file per run, written durably as each (image, scheme) finishes.

Why SQLite: one file, transactions (a killed run never leaves half a result), readable while a study
runs (WAL), and queryable by anyone with Python. Every table is keyed so that resuming can ask "is this
done?" and re-writing the same result is idempotent.

Tables
- meta(key, value): the resolved config (YAML) and the store's schema version.
- images(seq, image_id, caption, captions_json, attributes_json, status, error)
- summary(image_id, scheme, cond, snr_db, caption, words_json, order_json, n_words,
  words_to_threshold, bits_to_threshold, final_lpips, status, error, elapsed_s)
- steps(image_id, scheme, cond, snr_db, step, word_index, word_sent, word_received, bits, cum_bits,
  bit_errors, prompt, lpips, ssim, psnr, image_key)
- oracle(image_id, k, lpips) and oracle_status(image_id, n_words, status, error)
`cond` is '' for a study without a sweep, else e.g. 'snr_db=4'.
"""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from lsc.errors import LscError

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
  seq INTEGER NOT NULL, image_id TEXT PRIMARY KEY, caption TEXT, captions_json TEXT,
  attributes_json TEXT, status TEXT NOT NULL, error TEXT);
CREATE TABLE IF NOT EXISTS summary (
  image_id TEXT NOT NULL, scheme TEXT NOT NULL, cond TEXT NOT NULL, snr_db REAL,
  caption TEXT, words_json TEXT, order_json TEXT, n_words INTEGER,
  words_to_threshold INTEGER, bits_to_threshold INTEGER, final_lpips REAL,
  status TEXT NOT NULL, error TEXT, elapsed_s REAL,
  PRIMARY KEY (image_id, scheme, cond));
CREATE TABLE IF NOT EXISTS steps (
  image_id TEXT NOT NULL, scheme TEXT NOT NULL, cond TEXT NOT NULL, snr_db REAL, step INTEGER NOT NULL,
  word_index INTEGER, word_sent TEXT, word_received TEXT, bits INTEGER, cum_bits INTEGER,
  bit_errors INTEGER, prompt TEXT, lpips REAL, ssim REAL, psnr REAL, image_key TEXT,
  PRIMARY KEY (image_id, scheme, cond, step));
CREATE TABLE IF NOT EXISTS oracle (
  image_id TEXT NOT NULL, k INTEGER NOT NULL, lpips REAL NOT NULL, PRIMARY KEY (image_id, k));
CREATE TABLE IF NOT EXISTS oracle_status (
  image_id TEXT PRIMARY KEY, n_words INTEGER, status TEXT NOT NULL, error TEXT);
"""

TABLES = ("meta", "images", "summary", "steps", "oracle", "oracle_status")


class StoreError(LscError):
    """results.sqlite is missing tables, damaged, or not a database: one line, never a traceback."""


STEP_COLUMNS = (
    "image_id", "scheme", "cond", "snr_db", "step", "word_index", "word_sent", "word_received", "bits",
    "cum_bits", "bit_errors", "prompt", "lpips", "ssim", "psnr", "image_key",
)
SUMMARY_COLUMNS = (
    "image_id", "scheme", "cond", "snr_db", "caption", "words_json", "order_json", "n_words",
    "words_to_threshold", "bits_to_threshold", "final_lpips", "status", "error", "elapsed_s",
)


class ResultStore:
    """A run's results.sqlite. Open with `ResultStore(path)`; use as a context manager to close."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            if readonly:
                # A URI built by as_uri(): '#', '?' and '%' in a folder name are escaped, not parsed.
                self.conn = sqlite3.connect(self.path.absolute().as_uri() + "?mode=ro", uri=True,
                                            isolation_level=None)
                missing = set(TABLES) - {r[0] for r in self.conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                if missing:
                    self.conn.close()
                    raise StoreError(f"{self.path} is not an lsc results store (no table {sorted(missing)[0]!r})")
            else:
                self.conn = sqlite3.connect(self.path, isolation_level=None)  # transactions are explicit
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.executescript(_SCHEMA)
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
            self.conn.execute("ROLLBACK")
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

    def record_result(self, summary: dict[str, Any], steps: Sequence[dict[str, Any]]) -> None:
        """One (image, scheme, cond): its steps and summary in a single transaction."""
        key = (summary["image_id"], summary["scheme"], summary["cond"])
        with self.transaction() as c:
            c.execute("DELETE FROM steps WHERE image_id = ? AND scheme = ? AND cond = ?", key)
            c.executemany(
                f"INSERT INTO steps VALUES ({', '.join('?' * len(STEP_COLUMNS))})",
                [tuple(_db(s.get(col)) for col in STEP_COLUMNS) for s in steps],
            )
            c.execute(
                f"INSERT OR REPLACE INTO summary VALUES ({', '.join('?' * len(SUMMARY_COLUMNS))})",
                tuple(_db(summary.get(col)) for col in SUMMARY_COLUMNS),
            )

    def record_oracle(self, image_id: str, n_words: int | None, curve: Sequence[tuple[int, float]],
                      status: str = "ok", error: str | None = None) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM oracle WHERE image_id = ?", (image_id,))
            c.executemany("INSERT INTO oracle VALUES (?, ?, ?)", [(image_id, int(k), float(v)) for k, v in curve])
            c.execute("INSERT OR REPLACE INTO oracle_status VALUES (?, ?, ?, ?)", (image_id, n_words, status, error))

    # ------------------------------------------------------------ reads
    def done_keys(self, include_failed: bool = True) -> set[tuple[str, str, str]]:
        """(image_id, scheme, cond) already recorded (failed ones too unless include_failed=False)."""
        sql = "SELECT image_id, scheme, cond FROM summary"
        if not include_failed:
            sql += " WHERE status = 'ok'"
        return {tuple(r) for r in self.conn.execute(sql)}  # type: ignore[misc]

    def oracle_done(self, include_failed: bool = True) -> set[str]:
        sql = "SELECT image_id FROM oracle_status"
        if not include_failed:
            sql += " WHERE status != 'failed'"
        return {r[0] for r in self.conn.execute(sql)}

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, params)]

    def summaries(self) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT s.* FROM summary s LEFT JOIN images i USING (image_id) ORDER BY i.seq, s.image_id, s.cond, s.scheme"
        )

    def steps(self) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT t.* FROM steps t LEFT JOIN images i USING (image_id) "
            "ORDER BY i.seq, t.image_id, t.cond, t.scheme, t.step"
        )

    def oracle_rows(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM oracle ORDER BY image_id, k")

    def images(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM images ORDER BY seq")


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


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
