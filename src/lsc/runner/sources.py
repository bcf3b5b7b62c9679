"""The source images and captions a run folder's results were computed from, fingerprinted so a resume
notices when they changed.

Why: a folder study names its images by file name. Replacing `a.png` (or its caption) and resuming would
otherwise keep the old image's results beside the new one's, without a word. Each image's file is
recorded (size, modification time, SHA-256) with a hash of its captions when the runner first records
it; a resume compares. A file whose size and time are unchanged is taken as unchanged (no re-read, so a
resume of a 100 000-image study costs a stat per image); otherwise its content hash decides.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from lsc.errors import ConfigError

SOURCES_TABLE = "sources"
SCHEMA = f"""CREATE TABLE IF NOT EXISTS {SOURCES_TABLE} (
  image_id TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT, captions_sha256 TEXT NOT NULL)"""


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def captions_hash(captions: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(captions), ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


def source_file(cfg: Any, image_id: str) -> Path | None:
    """The file an image of a folder study is read from (None for the world's scenes, drawn from seeds)."""
    path = getattr(cfg.images, "path", None)
    return None if path is None else Path(path).expanduser() / image_id


def record_source(conn: Any, cfg: Any, image_id: str, captions: Sequence[str]) -> None:
    """Fingerprint an image's file and captions (once: the first run's record is what a resume checks)."""
    path = source_file(cfg, image_id)
    if path is None:
        return  # a world scene is its seed and index, both in the study's identity
    size = mtime = digest = None
    if path.is_file():
        st = path.stat()
        size, mtime, digest = st.st_size, st.st_mtime_ns, _file_hash(path)
    conn.execute(SCHEMA)
    conn.execute(f"INSERT OR IGNORE INTO {SOURCES_TABLE} VALUES (?, ?, ?, ?, ?)",
                 (image_id, size, mtime, digest, captions_hash(captions)))


def check_sources(conn: Any, cfg: Any, images: Iterable[Any]) -> None:
    """Refuse a resume whose source image or captions changed since they were recorded (one line)."""
    if source_file(cfg, "") is None:
        return  # world scenes (their captions are drawn on use: never list them here)
    conn.execute(SCHEMA)
    recorded = {r[0]: r[1:] for r in conn.execute(f"SELECT * FROM {SOURCES_TABLE}")}
    if not recorded:
        return
    for image in images:
        old = recorded.get(image.image_id)
        if old is None:
            continue
        size, mtime, digest, caps = old
        if caps != captions_hash(image.captions):
            raise ConfigError(f"the captions of {image.image_id!r} changed since this run folder recorded its results; "
                              "restore them or use another --out")
        path = source_file(cfg, image.image_id)
        if path is None or digest is None:
            continue
        if not path.is_file():
            continue  # listed but gone: the runner records it as failed, as it would any unreadable image
        st = path.stat()
        if (st.st_size, st.st_mtime_ns) == (size, mtime):
            continue
        if _file_hash(path) != digest:
            raise ConfigError(f"{path} changed since this run folder recorded its results (content hash differs); "
                              "restore it or use another --out")
        conn.execute(f"UPDATE {SOURCES_TABLE} SET size = ?, mtime_ns = ? WHERE image_id = ?",
                     (st.st_size, st.st_mtime_ns, image.image_id))  # touched, not changed
