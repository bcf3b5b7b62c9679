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
- generated(image_id, key, prompt, lpips, pixels): the journal of Bob's images (see `GenerationJournal`),
  written as each generator call returns, so a kill inside a transmission loses at most that call.
  Pixels are dropped once an image's work is done; distances stay (a few bytes per prompt).
`cond` is '' for a study without a sweep, else e.g. 'snr_db=4'.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

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
CREATE TABLE IF NOT EXISTS generated (
  image_id TEXT NOT NULL, key TEXT NOT NULL, prompt TEXT NOT NULL, lpips REAL NOT NULL, pixels BLOB,
  PRIMARY KEY (image_id, key));
"""

# The tables every store has; `generated` is left out so stores written before it existed still read.
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
                # Takes effect on a new file only: the journal's dropped images give their pages back.
                self.conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
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


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
