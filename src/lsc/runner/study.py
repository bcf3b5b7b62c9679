"""The study runner: every image x scheme (x SNR) of a config, durably, resumably, with progress.

A run folder holds config.resolved.yaml, results.sqlite (see store.py), images/ (Bob's PNGs named by
image key, shared by schemes), originals/ and report/. Each (image, scheme, condition) is one SQLite
transaction written as soon as it finishes; the same command on the same folder skips what is done.
Results depend only on the config (seeds are derived from ids, never from processing order), so a
run killed with SIGKILL and resumed gives the numbers of an uninterrupted run. Inside a transmission,
every generator call is journaled in the store as it returns (`GenerationJournal`), so a kill in a long
one (lowest_lpips: n(n+1)/2 images) loses at most the call in flight, not the whole transmission.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import yaml

from lsc.config import Condition, SchemeSpec, StudyConfig
from lsc.errors import ConfigError, LscError
from lsc.interfaces import Backend
from lsc.runner.executor import Executor, ImageTask, InProcessExecutor, Outcome
from lsc.runner.images import ImageReadError, StudyImage, list_images
from lsc.runner.store import GenerationJournal, ResultStore

RESOLVED_CONFIG = "config.resolved.yaml"
STORE_FILE = "results.sqlite"
LOCK_FILE = ".lsc-run.lock"
IMAGES_DIR = "images"
ORIGINALS_DIR = "originals"

_BACKENDS: dict[str, Backend] = {}


@dataclass
class StudySummary:
    """What a run did: counts for the closing line of `lsc run`."""

    out_dir: Path
    total: int
    skipped: int
    ok: int
    failed: int
    elapsed_s: float

    def line(self) -> str:
        return (
            f"{self.ok} ok, {self.failed} failed, {self.skipped} already done, of {self.total} transmissions "
            f"in {self.elapsed_s:.1f} s -> {self.out_dir}"
        )


# ---------------------------------------------------------------- backend loading (once per process)
# Backend options that decide how fast a study runs, never its numbers: not part of a study's identity,
# so a study started with one thread count resumes with another.
EXECUTION_OPTIONS = ("threads",)


def default_threads(workers: int = 1) -> int:
    """A sensible thread count: the idle cores per worker, 1 on a loaded machine, at most 4.

    Oversubscribing cores is far worse than leaving one idle (2 threads on a loaded 2-core machine
    ran 5-6x slower than 1), so the count is taken from the load average, not the core count.
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    idle = int(cores - load + 0.5)
    return max(1, min(4, idle // max(1, workers)))


def get_backend(name: str, options: dict[str, Any], notify: Callable[[str], None] | None = None) -> Backend:
    """Load a backend once per process; 'package.module:function' loads a user's own backend.

    A loader taking `threads` gets `default_threads()` unless the options set it. `notify` hears which
    function a 'module:function' backend imported (that function runs with the user's rights).
    """
    from lsc.backends import backend_loader

    loader = backend_loader(name)
    options = dict(options)
    if "threads" not in options and _takes(loader, "threads"):
        options["threads"] = default_threads()
    key = f"{name}\x1f{json.dumps(options, sort_keys=True, default=str)}"
    if key not in _BACKENDS:
        if ":" in name and notify is not None:
            notify(f"backend: calling {getattr(loader, '__module__', '?')}.{getattr(loader, '__qualname__', '?')} "
                   f"from {_source_of(loader)} (a custom backend is code; it runs with your rights)")
        _check_options(name, loader, options)
        _BACKENDS[key] = loader(**options)
    return _BACKENDS[key]


def _takes(loader: Callable[..., Any], param: str) -> bool:
    import inspect

    try:
        return param in inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return False


def _source_of(func: Callable[..., Any]) -> str:
    import inspect

    try:
        return str(inspect.getsourcefile(func) or "?")
    except TypeError:
        return "?"


def _check_options(name: str, loader: Callable[..., Any], options: dict[str, Any]) -> None:
    """An option the backend's loader does not take is a one-line error naming it (not a TypeError)."""
    import inspect

    try:
        params = inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # the loader validates its own options
    allowed = [p for p, v in params.items() if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)]
    for key in options:
        if key not in allowed:
            raise ConfigError(f"backend_options.{key}: unknown option of backend {name!r}; "
                              f"its options are {', '.join(allowed) or 'none'}")


def resolve(cfg: StudyConfig, backend: Backend) -> StudyConfig:
    """The study's identity: what the backend decides (threshold, prompt order) filled in, execution
    options (threads) left out, so the resolved config fixes every number."""
    update: dict[str, Any] = {}
    if cfg.threshold is None:
        update["threshold"] = float(backend.default_threshold)
    if cfg.prompt_order is None:
        update["prompt_order"] = backend.default_prompt_order
    if any(k in cfg.backend_options for k in EXECUTION_OPTIONS):
        update["backend_options"] = {k: v for k, v in cfg.backend_options.items() if k not in EXECUTION_OPTIONS}
    return cfg.model_copy(update=update) if update else cfg


# ---------------------------------------------------------------- the worker
class ImageWorker:
    """Runs the pending schemes (and the oracle) of one image; holds the loaded backend.

    With a `journal`, each image's context starts from what an earlier process generated for it and
    records what it generates; the image's pixels are dropped from the journal once its work is done.
    """

    def __init__(self, cfg: StudyConfig, backend: Backend, journal: GenerationJournal | None = None) -> None:
        from lsc.protocol.loop import LoopSettings
        from lsc.schemes import get_scheme

        self.cfg = cfg
        self.backend = backend
        self.journal = journal
        assert cfg.threshold is not None and cfg.prompt_order is not None
        self.settings = LoopSettings(
            prompt_order=cfg.prompt_order, threshold=cfg.threshold, stop_at_success=cfg.stop_at_success, seed=cfg.seed
        )
        self.schemes = {spec.label: get_scheme(spec.name, **self._options(spec)) for spec in cfg.schemes}

    def _options(self, spec: SchemeSpec) -> dict[str, Any]:
        """The scheme's options, plus the study's SKD settings (its `skd` option) for a scheme that needs SKD."""
        from lsc.interfaces import CAP_SKD
        from lsc.schemes import scheme_class

        if CAP_SKD in scheme_class(spec.name).requires and "skd" not in spec.options:
            return {**spec.options, "skd": self.cfg.skd}
        return dict(spec.options)

    def caption_for(self, image: StudyImage, pixels: np.ndarray) -> str:
        if self.cfg.caption_source == "dataset":
            if not image.captions:
                raise ImageReadError("no dataset caption for this image")
            return image.captions[0]
        return str(self.backend.captioner.caption([pixels])[0])

    def _check_size(self, pixels: np.ndarray) -> None:
        """A backend with a fixed image size refuses others with what to set (not a tensor-shape error)."""
        size = getattr(self.backend, "image_size", None)
        h, w = pixels.shape[:2]
        if size is not None and (h, w) != (size, size):
            raise ImageReadError(f"image is {w}x{h} but the {self.backend.name!r} backend takes {size}x{size} "
                                 f"images; set images.resize: {size}")

    def run(self, task: ImageTask) -> Iterator[Outcome]:
        from lsc.protocol.loop import ImageContext

        image = task.image
        base = {"seq": task.seq, "image_id": image.image_id, "captions": image.captions, "attributes": image.attributes}
        try:
            pixels = image.load()
            self._check_size(pixels)
            caption = self.caption_for(image, pixels)
            ctx = ImageContext(self.backend, image.image_id, pixels, caption, seed=self.cfg.seed, journal=self.journal)
        except Exception as exc:  # noqa: BLE001 - any unreadable image is recorded and the study goes on
            reason = one_line(exc)
            yield Outcome("image", {**base, "caption": None, "status": "failed", "error": reason})
            for cond, specs in task.jobs:
                for spec in specs:
                    yield Outcome("result", failed_summary(image.image_id, spec, cond, reason))
            if task.oracle:
                yield Outcome("oracle", {"image_id": image.image_id, "n_words": None, "curve": [],
                                         "status": "failed", "error": reason})
            return
        yield Outcome("image", {**base, "caption": caption, "status": "ok", "error": None}, original=pixels)
        for cond, specs in task.jobs:
            for spec in specs:
                yield self._transmit(ctx, spec, cond)
        if task.oracle:
            yield self._oracle(ctx)
        if self.journal is not None:  # every outcome above is stored by now: its images are not needed
            self.journal.drop_pixels_of(image.image_id)

    def _transmit(self, ctx: Any, spec: SchemeSpec, cond: Condition) -> Outcome:
        from lsc.protocol.loop import transmit

        t0 = time.perf_counter()
        try:
            link = self._link(ctx.image_id, spec, cond)
            result = transmit(ctx, self.schemes[spec.label], self.settings, link)
        except Exception as exc:  # noqa: BLE001 - recorded as failed, the study goes on
            return Outcome("result", failed_summary(ctx.image_id, spec, cond, one_line(exc)))
        summary = {
            "image_id": ctx.image_id, "scheme": spec.label, "cond": cond.key, "snr_db": cond.snr_db,
            "caption": result.caption, "words_json": json.dumps(result.words), "order_json": json.dumps(result.order),
            "n_words": len(result.words), "words_to_threshold": result.words_to_threshold,
            "bits_to_threshold": result.bits_to_threshold, "final_lpips": float(result.final_lpips),
            "status": "ok", "error": None, "elapsed_s": time.perf_counter() - t0,
        }
        steps = [
            {
                "image_id": ctx.image_id, "scheme": spec.label, "cond": cond.key, "snr_db": cond.snr_db,
                "step": s.step, "word_index": s.index, "word_sent": s.word_sent, "word_received": s.word_received,
                "bits": int(s.bits), "cum_bits": int(s.cum_bits), "bit_errors": int(s.bit_errors), "prompt": s.prompt,
                "lpips": float(s.lpips), "ssim": float(s.ssim), "psnr": float(s.psnr), "image_key": s.image_key,
            }
            for s in result.steps
        ]
        images = {s.image_key: ctx.image_for(s.image_key) for s in result.steps} if self.cfg.save_images else {}
        return Outcome("result", summary, steps, images)

    def _link(self, image_id: str, spec: SchemeSpec, cond: Condition) -> Any:
        from lsc.channel.link import WordLink
        from lsc.protocol.words import stable_seed

        seed = stable_seed(self.cfg.seed, image_id, spec.label, cond.key, "channel")
        return WordLink(cond.channel, seed=seed, vocabulary=self.backend.bob_vocabulary)

    def _oracle(self, ctx: Any) -> Outcome:
        from lsc.protocol.words import clean_words

        words = clean_words(ctx.caption)
        data: dict[str, Any] = {"image_id": ctx.image_id, "n_words": len(words), "curve": []}
        if len(words) > self.cfg.oracle_max_words:
            return Outcome("oracle", {**data, "status": "skipped",
                                      "error": f"caption has {len(words)} words > oracle_max_words={self.cfg.oracle_max_words}"})
        try:
            from lsc.schemes.oracle import oracle_curve

            curve = [(int(k), float(v)) for k, v in oracle_curve(ctx, words)]
        except Exception as exc:  # noqa: BLE001
            return Outcome("oracle", {**data, "status": "failed", "error": one_line(exc)})
        return Outcome("oracle", {**data, "curve": curve, "status": "ok", "error": None})


def failed_summary(image_id: str, spec: SchemeSpec, cond: Condition, reason: str) -> dict[str, Any]:
    return {"image_id": image_id, "scheme": spec.label, "cond": cond.key, "snr_db": cond.snr_db,
            "status": "failed", "error": reason}


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, (LscError, ImageReadError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------- the run folder
def _first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            d = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if d:
                return d
        return None
    return None if a == b else prefix.rstrip(".") or "config"


def check_out_dir(out_dir: Path) -> None:
    """--out must be (or be creatable as) a writable folder: checked before any model loads."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a folder")
    probe = out_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"--out {out_dir}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out_dir}: folder {probe} is not writable")
    store = out_dir / STORE_FILE
    if store.exists() and not (store.is_file() and os.access(store, os.R_OK | os.W_OK)):
        raise ConfigError(f"--out {out_dir}: {STORE_FILE} is not a writable file")


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
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
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
    if isinstance(data, dict) and isinstance(data.get("backend_options"), dict):
        data = {**data, "backend_options": {k: v for k, v in data["backend_options"].items()
                                            if k not in EXECUTION_OPTIONS}}
    if isinstance(data, dict) and "metrics" in data:  # report-time metrics never change a study's numbers
        data = {k: v for k, v in data.items() if k != "metrics"}
    return data


def prepare_run_dir(out_dir: Path, resolved: StudyConfig) -> None:
    """Create the folder, or check that an existing one holds the same study (else refuse).

    Both records are checked: config.resolved.yaml and the store's own copy, so deleting (or editing)
    the YAML file cannot make a folder adopt results of another study.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESOLVED_CONFIG
    new = _identity(resolved.to_dict())
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
        if old != new:
            where = _first_difference(old, new) if isinstance(old, dict) else "config"
            raise ConfigError(
                f"{out_dir} holds a different study ({what} differs at {where!r}); "
                "use another --out or the same config"
            )
    if not path.exists():
        write_atomic(path, resolved.to_yaml())


def write_atomic(path: Path, text: str) -> None:
    """Write a file via a temporary of this process's own name, then rename it into place."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(image_id: str) -> str:
    """A file name for an image id (ids may contain '/' or spaces).

    An id that needs changing gets a short hash of itself appended, so 'a b.png' and 'a_b.png' never
    share an original or a strip.
    """
    safe = _SAFE.sub("_", image_id).strip("._") or "image"
    if safe != image_id:
        import hashlib

        safe = f"{safe}-{hashlib.sha256(image_id.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return safe


def save_png(path: Path, pixels: np.ndarray) -> None:
    """Write a PNG atomically (a killed run never leaves a truncated file under the final name)."""
    from PIL import Image

    if path.exists():
        return
    arr = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: no two writers share one
    try:
        Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8)).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- entry point
def run_study(
    cfg: StudyConfig,
    out_dir: str | Path,
    progress: bool = True,
    retry_failed: bool = False,
    executor_factory: Callable[[ImageWorker], Executor] = InProcessExecutor,
    notify: Callable[[str], None] | None = None,
) -> StudySummary:
    """Run (or resume) a study into `out_dir`; returns counts. Raises LscError on a user error.

    The folder is locked for the run's duration; `notify` receives one-line notices (e.g. which
    function a custom backend imported).
    """

    t0 = time.perf_counter()
    out = Path(out_dir)
    check_out_dir(out)
    lock = RunLock(out)
    if out.is_dir():
        lock.acquire()  # a second run on a busy folder stops here, before loading any model
    try:
        return _run_locked(cfg, out, lock, progress, retry_failed, executor_factory, notify, t0)
    finally:
        lock.release()


def _run_locked(cfg: StudyConfig, out: Path, lock: RunLock, progress: bool, retry_failed: bool,
                executor_factory: Callable[[ImageWorker], Executor], notify: Callable[[str], None] | None,
                t0: float) -> StudySummary:
    from lsc.schemes import check_capabilities

    # Models first: a missing model is the first thing a user on a fresh machine must hear about.
    backend = get_backend(cfg.backend, cfg.backend_options, notify=notify)
    images = list_images(cfg)
    check_capabilities(backend, [spec.name for spec in cfg.schemes])
    if cfg.channel.word_correction and backend.bob_vocabulary is None:
        raise ConfigError(f"channel.word_correction needs Bob's vocabulary, and the {backend.name!r} backend has none")
    size = getattr(backend, "image_size", None)
    resize = getattr(cfg.images, "resize", None)
    if size is not None and resize is not None and resize != size:
        raise ConfigError(f"images.resize: the {backend.name!r} backend takes {size}x{size} images; "
                          f"set images.resize: {size} (got {resize})")
    resolved = resolve(cfg, backend)
    out.mkdir(parents=True, exist_ok=True)
    lock.acquire()
    prepare_run_dir(out, resolved)
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    (out / ORIGINALS_DIR).mkdir(exist_ok=True)

    conditions = resolved.conditions()
    total = len(images) * len(conditions) * len(resolved.schemes)
    with ResultStore(out / STORE_FILE) as store:
        store.set_meta("config", resolved.to_yaml())
        done = store.done_keys(include_failed=not retry_failed)
        oracle_done = store.oracle_done(include_failed=not retry_failed)
        tasks: list[ImageTask] = []
        for seq, image in enumerate(images):
            jobs = []
            for cond in conditions:
                pending = [s for s in resolved.schemes if (image.image_id, s.label, cond.key) not in done]
                if pending:
                    jobs.append((cond, pending))
            want_oracle = resolved.oracle and image.image_id not in oracle_done
            if jobs or want_oracle:
                tasks.append(ImageTask(seq, image, jobs, want_oracle))
        n_pending = sum(len(specs) for t in tasks for _, specs in t.jobs)
        skipped = total - n_pending
        n_oracle = sum(1 for t in tasks if t.oracle)

        journal = GenerationJournal(store)
        journal.drop_pixels(keep=[t.image.image_id for t in tasks])  # left by a run killed after its last result
        worker = ImageWorker(resolved, backend, journal)
        executor = executor_factory(worker)
        ok = failed = 0
        bar = _progress(n_pending + n_oracle, progress)
        try:
            for outcome in executor.run(tasks):
                if outcome.kind == "image":
                    d = outcome.data
                    store.record_image(d["seq"], d["image_id"], d["caption"], d["captions"], d["attributes"],
                                       d["status"], d["error"])
                    if outcome.original is not None and resolved.save_images:
                        save_png(out / ORIGINALS_DIR / f"{safe_name(d['image_id'])}.png", outcome.original)
                elif outcome.kind == "result":
                    for key, pixels in outcome.images.items():
                        save_png(out / IMAGES_DIR / f"{key}.png", pixels)
                    store.record_result(outcome.data, outcome.steps)
                    if outcome.data["status"] == "ok":
                        ok += 1
                    else:
                        failed += 1
                    bar.update(1)
                    bar.set_postfix_str(f"{outcome.data['image_id']} {outcome.data['scheme']}", refresh=False)
                else:
                    d = outcome.data
                    store.record_oracle(d["image_id"], d["n_words"], d["curve"], d["status"], d["error"])
                    bar.update(1)
        finally:
            bar.close()
    return StudySummary(out, total, skipped, ok, failed, time.perf_counter() - t0)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, s: str, refresh: bool = True) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="lsc run", unit="run", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
