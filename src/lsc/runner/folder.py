"""A run folder's layout, in one place: its file names, how files are written into it, and how it is
opened, prepared and locked. The runner writes it; report, export and compare read it through here.

RUN_DIR/
  config.resolved.yaml   the study's identity (also stored in the store's meta table)
  results.sqlite         the result store (lsc.runner.store)
  .lsc-run.lock          held by the `lsc run` writing the folder
  images/<key>.png       Bob's images by image key, shared by schemes
  originals/<id>.png     the original images, named by `safe_name(image_id)`
  report/                the report (lsc.report)
  inputs/                a demo run's upload and its captions file (lsc.demo)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from lsc.errors import ConfigError
from lsc.runner.store import ResultStore

if TYPE_CHECKING:
    from lsc.interfaces import Distance

RESOLVED_CONFIG = "config.resolved.yaml"
STORE_FILE = "results.sqlite"
LOCK_FILE = ".lsc-run.lock"
IMAGES_DIR = "images"
ORIGINALS_DIR = "originals"
REPORT_DIR = "report"
SCHEMES_META = "schemes"  # meta key: the study's scheme labels in config order, JSON
DISTANCE_META = "distance"  # meta key: the backend's perceptual distance (lsc.interfaces.Distance), JSON

# Backend options that decide how fast a study runs, never its numbers: not part of a study's identity,
# so a study started with one thread count resumes with another.
EXECUTION_OPTIONS = ("threads",)


def image_path(run_dir: Path, key: str) -> Path:
    """Where Bob's image of an image key lives."""
    return Path(run_dir) / IMAGES_DIR / f"{key}.png"


def original_path(run_dir: Path, image_id: str) -> Path:
    """Where the original of an image lives."""
    path = Path(run_dir) / ORIGINALS_DIR / f"{safe_name(image_id)}.png"
    if not path.exists():  # a run written before names dropped the id's extension ('cat.jpg.png') keeps its originals
        legacy = Path(run_dir) / ORIGINALS_DIR / f"{_hashed_if_changed(image_id, image_id)}.png"
        if legacy.exists():
            return legacy
    return path


def open_store(run_dir: str | Path) -> ResultStore:
    """Open a run folder's store read-only, with a one-line error if it is not a run folder."""
    path = Path(run_dir) / STORE_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no {STORE_FILE})")
    return ResultStore(path, readonly=True)


def scheme_labels(store: ResultStore) -> list[str]:
    """The study's scheme labels in config order, as stored when the run started.

    A store written before labels were stored gets them from its stored config (an entry that no
    longer parses is left out: the order of labels is cosmetic).
    """
    text = store.get_meta(SCHEMES_META)
    if text is not None:
        return [str(x) for x in json.loads(text)]
    from lsc.config import SchemeSpec

    try:
        raw = (yaml.safe_load(store.get_meta("config") or "") or {}).get("schemes") or []
    except (yaml.YAMLError, AttributeError):
        return []
    labels = []
    for item in raw:
        try:
            labels.append(SchemeSpec.from_raw(item).label)
        except Exception:  # noqa: BLE001 - an odd entry just falls back to store order
            continue
    return labels


def stored_distance(store: ResultStore) -> "Distance":
    """The perceptual distance a run measured, as its backend declared it (recorded when the run started); a
    run from before that record: its registered backend's declaration, else a plain "LPIPS" of undeclared scale."""
    from lsc.interfaces import UNDECLARED_DISTANCE, Distance

    text = store.get_meta(DISTANCE_META)
    if text:
        try:
            data = json.loads(text)
            return Distance(str(data["name"]), str(data["scale"]), str(data["calibration"]))
        except (ValueError, KeyError, TypeError):
            pass
    from lsc.backends import declared_distance

    try:
        config = yaml.safe_load(store.get_meta("config") or "") or {}
    except yaml.YAMLError:
        config = {}
    config = config if isinstance(config, dict) else {}
    options = config.get("backend_options")
    declared = declared_distance(str(config.get("backend", "")), options if isinstance(options, dict) else None)
    return declared or UNDECLARED_DISTANCE


def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            d = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if d:
                return d
        return None
    return None if a == b else prefix.rstrip(".") or "config"


# What lsc writes inside a run folder: none of these may be a symbolic link (lsc would write through it
# into another file), and a folder holding none of the markers but other things is not lsc's to adopt.
OWN_ENTRIES = (LOCK_FILE, RESOLVED_CONFIG, STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm",
               f"{STORE_FILE}-journal", IMAGES_DIR, ORIGINALS_DIR, REPORT_DIR)
_MARKERS = (LOCK_FILE, RESOLVED_CONFIG, STORE_FILE)
DEMO_INPUTS_DIR = "inputs"  # the demo writes its upload here before the run starts (lsc.demo.session)


def refuse_links(folder: Path, names: tuple[str, ...] = OWN_ENTRIES, what: str = "--out") -> None:
    """A symbolic link where lsc writes is refused: writing would change a file lsc did not create."""
    for name in names:
        if (Path(folder) / name).is_symlink():
            raise ConfigError(f"{what} {folder}: {name} is a symbolic link; lsc writes only files it created "
                              "(remove the link or use another folder)")


def check_out_dir(out_dir: Path) -> None:
    """--out must be (or be creatable as) a writable folder that is empty or lsc's own run folder:
    checked before any model loads, so lsc never adopts (and overwrites) a folder of someone else's files."""
    if not str(out_dir).strip():
        raise ConfigError("--out is empty; name a run folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a folder")
    probe = out_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--out {out_dir}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out_dir}: folder {probe} is not writable")
    if not out_dir.is_dir():
        return
    refuse_links(out_dir)
    entries = {p.name for p in out_dir.iterdir()}
    if entries and not entries & set(_MARKERS) and entries != {DEMO_INPUTS_DIR}:
        raise ConfigError(f"--out {out_dir}: the folder holds other files and is not an lsc run folder "
                          f"(no {STORE_FILE} or {RESOLVED_CONFIG}); use an empty or new folder")
    store = out_dir / STORE_FILE
    if store.exists() and not (store.is_file() and os.access(store, os.R_OK | os.W_OK)):
        raise ConfigError(f"--out {out_dir}: {STORE_FILE} is not a writable file")
    if store.exists():
        check_own_store(store)


def check_own_store(path: Path) -> None:
    """A results.sqlite that another program wrote is refused before lsc opens it for writing (which would
    add lsc's tables beside its own and change its journal mode)."""
    import sqlite3

    from lsc.runner.sources import SOURCES_TABLE
    from lsc.runner.store import TABLES, GENERATED_TABLE

    if path.stat().st_size == 0:
        return  # created by a run killed at once: SQLite reads it as an empty database
    try:
        conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = (conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                       if "meta" in tables else None)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path} is not a readable lsc results store ({exc}); use another --out") from None
    foreign = sorted(t for t in tables - set(TABLES) - {GENERATED_TABLE, SOURCES_TABLE} if not t.startswith("sqlite_"))
    if version is None or foreign:
        why = f"it has table {foreign[0]!r}" if foreign else "it has no lsc schema version"
        raise ConfigError(f"{path} was not written by lsc ({why}); lsc will not change it: use another --out")


class RunLock:
    """An exclusive lock on a run folder (flock on a lock file) held while `lsc run` writes to it.

    Why: two runs writing one folder would interleave results and race on files. Readers (report,
    export) take no lock: SQLite's WAL lets them read a store while it is written. The kernel drops
    the lock when the process dies, so a kill -9 never leaves a folder locked.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        import fcntl

        if self.fd is not None:
            return self
        path = self.out_dir / LOCK_FILE
        try:
            # O_NOFOLLOW: a lock file planted as a link to a user's file is refused, never truncated.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if path.is_symlink():
                raise ConfigError(f"--out {self.out_dir}: {LOCK_FILE} is a symbolic link; lsc writes only files "
                                  "it created (remove the link or use another folder)") from None
            raise ConfigError(f"--out {self.out_dir}: cannot create {LOCK_FILE}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise ConfigError(f"{self.out_dir} is in use by another `lsc run`{who}; wait for it or use another "
                              "--out (report and export work meanwhile)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def _stored_config(store_path: Path) -> dict[str, Any] | None:
    """The configuration a store recorded (None for a store without one)."""
    with ResultStore(store_path) as store:
        text = store.get_meta("config")
    if text is None:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _identity(data: Any) -> Any:
    """A config dict without execution options (so configs written before they were split still match)."""
    if isinstance(data, dict) and "executor" in data:
        data = {k: v for k, v in data.items() if k != "executor"}
    if isinstance(data, dict) and ("metrics" in data or "metrics_every" in data):
        # Which step metrics a study scores adds columns, never changes another number: a folder resumes
        # with another selection (done transmissions keep what they scored; the report computes the rest).
        data = {k: v for k, v in data.items() if k not in ("metrics", "metrics_every")}
    if isinstance(data, dict) and isinstance(data.get("plugins"), dict):
        # A step metric plugin, like the metric selection, adds columns and changes no other number.
        plugins = {k: v for k, v in data["plugins"].items() if not str(k).startswith("metric:")}
        data = {k: v for k, v in data.items() if k != "plugins"} | ({"plugins": plugins} if plugins else {})
    if isinstance(data, dict) and isinstance(data.get("backend_options"), dict):
        data = {**data, "backend_options": {k: v for k, v in data["backend_options"].items()
                                            if k not in EXECUTION_OPTIONS}}
    return data


def prepare_run_dir(out_dir: Path, config: dict[str, Any], config_yaml: str) -> None:
    """Create the folder and its image folders, or check that an existing one holds the same study (else refuse).

    Both records are checked: config.resolved.yaml and the store's own copy, so deleting (or editing)
    the YAML file cannot make a folder adopt results of another study.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    refuse_links(out_dir)
    path = out_dir / RESOLVED_CONFIG
    new = _identity(config)
    records: list[tuple[str, Any]] = []
    if path.exists():
        try:
            records.append((RESOLVED_CONFIG, yaml.safe_load(path.read_text(encoding="utf-8"))))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            records.append((RESOLVED_CONFIG, None))
    if (out_dir / STORE_FILE).exists():
        stored = _stored_config(out_dir / STORE_FILE)
        if stored is not None:
            records.append((f"{STORE_FILE}'s stored config", stored))
    for what, old in records:
        old = _identity(old)
        this = new
        if isinstance(old, dict) and isinstance(new, dict):
            if "models" not in old:  # written before model files were recorded: their weights are unknown
                this = {k: v for k, v in new.items() if k != "models"}
            elif old.get("models") != new.get("models"):
                from lsc.runner.models import changed_model

                change = changed_model(old.get("models") or {}, new.get("models") or {})
                raise ConfigError(f"{out_dir} was run on other model files ({what}): {change}; "
                                  "use another --out or the recorded weights")
        if old != this:
            where = _first_difference(old, this) if isinstance(old, dict) else "config"
            if where.startswith("plugins."):
                raise ConfigError(_plugin_difference(out_dir, old.get("plugins") or {}, this.get("plugins") or {}))
            raise ConfigError(
                f"{out_dir} holds a different study ({what} differs at {where!r}); "
                "use another --out or the same config"
            )
    if not path.exists():
        write_atomic(path, config_yaml)
    (out_dir / IMAGES_DIR).mkdir(exist_ok=True)
    (out_dir / ORIGINALS_DIR).mkdir(exist_ok=True)


def _plugin_difference(out_dir: Path, old: dict[str, Any], new: dict[str, Any]) -> str:
    """One line saying which plugin differs between a folder's study and this one (version, import path)."""

    def said(record: Any) -> str:
        if not isinstance(record, dict):
            return "not at all"
        dist = f"{record.get('distribution')} {record.get('version', '')}".strip() if record.get("distribution") else ""
        return f"{record.get('target')}" + (f" from {dist}" if dist else "")

    key = next(k for k in list(old) + list(new) if old.get(k) != new.get(k))
    kind, _, name = str(key).partition(":")
    return (f"{out_dir} was run with {kind} {name!r} as {said(old.get(key))}, this study uses {said(new.get(key))}; "
            "install the version it was run with or use another --out")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write a file via a temporary of this process's own name, then rename it into place: a killed or
    out-of-space write never leaves a truncated file under the final name, and a symbolic link at
    `path` is replaced, never written through."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: no two writers share one
    try:
        with open_new(tmp) as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def open_new(path: Path) -> Any:
    """A new file opened for binary writing; a stale file or link of that name is removed first, and
    O_EXCL | O_NOFOLLOW make sure the file written is the one just created."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return os.fdopen(fd, "wb")


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Extensions an image id may carry (a folder study's ids are its file names): dropped from file names, which
# get their own `.png`, so no file is ever named `cat.jpg.png`.
_IMAGE_EXTENSION = re.compile(r"\.(png|jpe?g|webp|bmp|gif|tiff?)$", re.IGNORECASE)


def safe_name(image_id: str) -> str:
    """A file name stem for an image id (ids may hold '/', spaces, non-ASCII letters or an image extension).

    An id that needs changing (an extension dropped, a character replaced) gets a short hash of itself
    appended, so 'a b.png', 'a_b.png', 'a_b.jpg' and 'a_b' never share an original or a strip.
    """
    return _hashed_if_changed(image_id, _IMAGE_EXTENSION.sub("", image_id))


def _hashed_if_changed(image_id: str, stem: str) -> str:
    safe = _SAFE.sub("_", stem).strip("._") or "image"
    if safe != image_id:
        safe = f"{safe}-{hashlib.sha256(image_id.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return safe


def encode_png(pixels: np.ndarray) -> bytes:
    """An image in [0, 1] as PNG bytes: how a remote worker ships Bob's images (the same bytes the
    driver would write from the pixels, and 8x smaller than float32)."""
    import io

    from PIL import Image

    arr = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    buf = io.BytesIO()
    Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def stored_pixels(pixels: np.ndarray) -> np.ndarray:
    """An image as its PNG (`encode_png`) reads back: 8-bit levels as float32 in [0, 1]. The world's images
    are 8-bit already and come back bit for bit; step metrics are scored on this, so the runner and a
    report reading the PNG score the same picture."""
    levels = (np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return levels.astype(np.float32) / 255.0


def save_png(path: Path, pixels: np.ndarray | bytes) -> None:
    """Write a PNG (pixels, or PNG bytes from a worker) atomically: a killed run never leaves a
    truncated file under the final name."""
    if path.exists() and not path.is_symlink():
        return
    write_atomic(path, pixels if isinstance(pixels, bytes) else encode_png(pixels))


def ensure_writable_folder(dest: Path, flag: str = "--out") -> None:
    """`dest` must be (or become) a folder lsc can write: an empty name, a file, a place that cannot be
    created or a read-only folder is one line naming `flag`, never a traceback."""
    if not str(dest).strip():
        raise ConfigError(f"{flag} is empty; name a folder")
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{flag} {dest}: exists and is not a folder")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag} {dest}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(dest, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {dest}: folder is not writable; pass a writable {flag}")
