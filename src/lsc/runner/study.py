"""The study runner: every image x scheme (x SNR) of a config, durably, resumably, with progress.

A run folder's layout is `lsc.runner.folder`'s (config.resolved.yaml, results.sqlite, images/, originals/,
report/). Each (image, scheme, condition) is one SQLite transaction written as soon as it finishes; the
same command on the same folder skips what is done. Results depend only on the config (seeds are derived
from ids, never from processing order), so a run killed with SIGKILL and resumed gives the numbers of an
uninterrupted run. Inside a transmission, every generator call is journaled in the store as it returns
(`GenerationJournal`), so a kill in a long one (lowest_lpips: n(n+1)/2 images) loses at most the call in
flight, not the whole transmission.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from lsc.config import Condition, ExecutorConfig, FolderImages, SchemeSpec, StudyConfig
from lsc.errors import ConfigError, LscError, LscWarning
from lsc.interfaces import Backend
from lsc.progress import TerminalReporter, showing, stage
from lsc.runner.executor import (DoneOutcome, Executor, ImageOutcome, ImageTask, OracleOutcome, Outcome,
                                 ResultOutcome, make_executor)
from lsc.runner.folder import (EXECUTION_OPTIONS, SCHEMES_META, STORE_FILE, RunLock, check_out_dir, image_path,
                               original_path, prepare_run_dir, save_png)
from lsc.runner.images import ImageReadError, StudyImage, list_images
from lsc.runner.rows import ResultKey, ResultSummary
from lsc.runner.store import GenerationJournal, ResultStore

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

    # What the store holds after the run (this run's results and earlier ones): whether anything worked.
    recorded_ok: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)  # reason -> failed transmissions, most first

    def line(self) -> str:
        return (
            f"{self.ok} ok, {self.failed} failed, {self.skipped} already done, of {self.total} transmissions "
            f"in {self.elapsed_s:.1f} s -> {self.out_dir}"
        )

    @property
    def nothing_succeeded(self) -> bool:
        """No transmission of the study is recorded ok, and some are recorded failed."""
        return self.recorded_ok == 0 and bool(self.failure_reasons)

    def failure_line(self) -> str:
        """Why nothing succeeded: the count and the most common reason (what `lsc run` exits with)."""
        n_failed = sum(self.failure_reasons.values())
        reason, count = next(iter(self.failure_reasons.items()))
        others = len(self.failure_reasons) - 1
        other = f"; {others} other reason{'s' if others > 1 else ''} in the report" if others else ""
        return (f"no transmission succeeded: all {n_failed} failed; most common reason ({count} of {n_failed}): "
                f"{reason}{other}")


# ---------------------------------------------------------------- backend loading (once per process)


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
    elif options.get("threads") is not None:
        from lsc.limits import machine_threads

        options["threads"] = machine_threads(options["threads"])
    key = f"{name}\x1f{json.dumps(options, sort_keys=True, default=str)}"
    if key not in _BACKENDS:
        if ":" in name and notify is not None:
            notify(f"backend: calling {getattr(loader, '__module__', '?')}.{getattr(loader, '__qualname__', '?')} "
                   f"from {_source_of(loader)} (a custom backend is code; it runs with your rights)")
        _check_options(name, loader, options)
        with stage(f"loading the {name} backend", unit="model"):  # hf loaders tick once per model loaded
            backend = loader(**options)
        if not isinstance(backend, Backend):
            raise ConfigError(f"backend {name!r} returned a {type(backend).__name__}, not an lsc Backend "
                              "(lsc.interfaces.Backend)")
        _BACKENDS[key] = backend
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
    """The study's identity: what the backend decides (threshold, prompt order) and the model files it reads
    (with their fingerprints) filled in, execution options (threads) left out, so the resolved config fixes
    every number. A config that already lists `models` is refused on other files."""
    from lsc.runner.models import changed_model, model_files

    update: dict[str, Any] = {}
    models = model_files(cfg)
    if cfg.models is not None and cfg.models != models:
        raise ConfigError(f"models: the configuration pins other model files: {changed_model(cfg.models, models)}")
    update["models"] = models
    if cfg.threshold is None:
        update["threshold"] = float(backend.default_threshold)
    if cfg.prompt_order is None:
        update["prompt_order"] = backend.default_prompt_order
    if any(k in cfg.backend_options for k in EXECUTION_OPTIONS):
        update["backend_options"] = {k: v for k, v in cfg.backend_options.items() if k not in EXECUTION_OPTIONS}
    if cfg.executor != ExecutorConfig():
        update["executor"] = ExecutorConfig()  # where units run never changes a number
    if cfg.metrics is None:
        from lsc.metrics.registry import defaults

        update["metrics"] = defaults(cfg.backend)  # the resolved config names the step metrics it scores
    plugins = plugin_records(cfg.model_copy(update=update))
    if plugins != cfg.plugins:
        update["plugins"] = plugins
    return cfg.model_copy(update=update) if update else cfg


def plugin_records(cfg: StudyConfig) -> dict[str, dict[str, str]]:
    """The plugins a study uses (not lsc's own code), keyed "kind:name": import path, distribution, version."""
    from lsc.plugins import plugin_record

    used = [("backend", cfg.backend), *[("scheme", s.name) for s in cfg.schemes], *[("metric", m) for m in cfg.metrics or []]]
    if cfg.channel.model not in ("none", "analytic", "phy"):
        used.append(("channel", cfg.channel.model))
    out: dict[str, dict[str, str]] = {}
    for kind, name in used:
        if kind == "metric" and name in ("lpips", "ssim", "psnr"):
            continue
        record = plugin_record(kind, name)
        if record is not None:
            out[record[0]] = record[1]
    return dict(sorted(out.items()))


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
        self.cold = True  # the first transmission of this worker pays the models' warm-up (stored as `cold`)
        assert cfg.threshold is not None and cfg.prompt_order is not None
        self.settings = LoopSettings(
            prompt_order=cfg.prompt_order, threshold=cfg.threshold, stop_at_success=cfg.stop_at_success, seed=cfg.seed
        )
        self.schemes = {spec.label: get_scheme(spec.name, **self._options(spec)) for spec in cfg.schemes}
        from lsc.metrics.registry import defaults
        from lsc.runner.scoring import StepScorer

        self.scorer = StepScorer(cfg.metrics if cfg.metrics is not None else defaults(cfg.backend), cfg.backend,
                                 cfg.metrics_every, cfg.to_dict(), backend)

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

        def image_outcome(caption: str | None, status: str, error: str | None,
                          original: np.ndarray | None = None) -> ImageOutcome:
            return ImageOutcome(task.seq, image.image_id, caption, list(image.captions), image.attributes, status,
                                error, original)

        try:
            pixels = image.load()
            self._check_size(pixels)
            caption = self.caption_for(image, pixels)
            ctx = ImageContext(self.backend, image.image_id, pixels, caption, seed=self.cfg.seed, journal=self.journal)
        except Exception as exc:  # noqa: BLE001 - any unreadable image is recorded and the study goes on
            reason = one_line(exc)
            yield image_outcome(None, "failed", reason)
            for cond, specs in task.jobs:
                for spec in specs:
                    yield failed_result(image.image_id, spec, cond, reason)
            if task.oracle:
                yield OracleOutcome(image.image_id, None, [], "failed", reason)
            yield DoneOutcome(task.seq, image.image_id)
            return
        yield image_outcome(caption, "ok", None, pixels)
        # the scene's truth as the store keeps it (JSON), which is what the report's metrics read
        truth = json.loads(json.dumps(image.attributes, sort_keys=True, default=str)) if image.attributes else None
        for cond, specs in task.jobs:
            for spec in specs:
                yield self._transmit(ctx, spec, cond, truth)
        if task.oracle:
            yield self._oracle(ctx)
        self.scorer.forget(image.image_id)
        if self.journal is not None:  # every outcome above is stored by now: its images are not needed
            self.journal.drop_pixels_of(image.image_id)
        yield DoneOutcome(task.seq, image.image_id)

    def _transmit(self, ctx: Any, spec: SchemeSpec, cond: Condition, truth: dict[str, Any] | None = None) -> ResultOutcome:
        from lsc.protocol.loop import transmit

        t0 = time.perf_counter()
        cold, self.cold = self.cold, False
        try:
            link = self._link(ctx.image_id, spec, cond)
            result = transmit(ctx, self.schemes[spec.label], self.settings, link)
            t1 = time.perf_counter()
            self.scorer.score(ctx, truth, result.steps)  # the step metrics of the due steps, into each StepRecord
        except Exception as exc:  # noqa: BLE001 - recorded as failed, the study goes on
            return failed_result(ctx.image_id, spec, cond, one_line(exc))
        t2 = time.perf_counter()
        summary = ResultSummary(
            words_to_threshold=result.words_to_threshold, words_to_all_right=self.scorer.words_to_all_right(result.steps),
            bits_to_threshold=result.bits_to_threshold, alice_images=result.info.get("alice_images"),
            final_lpips=float(result.final_lpips), n_words=len(result.words), caption=result.caption, status="ok",
            error=None, words_json=json.dumps(result.words), order_json=json.dumps(result.order),
            elapsed_s=t2 - t0, planning_s=result.planning_s, transmission_s=result.elapsed_s - result.planning_s,
            metrics_s=t2 - t1, cold=int(cold),
        )
        images = {s.image_key: ctx.image_for(s.image_key) for s in result.steps} if self.cfg.save_images else {}
        return ResultOutcome(ResultKey(ctx.image_id, spec.label, cond.key, cond.snr_db), summary, result.steps, images)

    def _link(self, image_id: str, spec: SchemeSpec, cond: Condition) -> Any:
        from lsc.channel.link import WordLink
        from lsc.protocol.words import stable_seed

        seed = stable_seed(self.cfg.seed, image_id, spec.label, cond.key, "channel")
        return WordLink(cond.channel, seed=seed, vocabulary=self.backend.bob_vocabulary)

    def _oracle(self, ctx: Any) -> OracleOutcome:
        from lsc.protocol.words import clean_words

        words = clean_words(ctx.caption)
        if len(words) > self.cfg.oracle_max_words:
            return OracleOutcome(ctx.image_id, len(words), [], "skipped",
                                 f"caption has {len(words)} words > oracle_max_words={self.cfg.oracle_max_words}")
        try:
            from lsc.schemes.oracle import oracle_curve

            curve = [(int(k), float(v)) for k, v in oracle_curve(ctx, words, max_words=self.cfg.oracle_max_words)]
        except Exception as exc:  # noqa: BLE001
            return OracleOutcome(ctx.image_id, len(words), [], "failed", one_line(exc))
        return OracleOutcome(ctx.image_id, len(words), curve, "ok", None)


def failed_result(image_id: str, spec: SchemeSpec, cond: Condition, reason: str) -> ResultOutcome:
    return ResultOutcome(ResultKey(image_id, spec.label, cond.key, cond.snr_db), ResultSummary(status="failed", error=reason))


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, (LscError, ImageReadError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------- entry point
def run_study(
    cfg: StudyConfig,
    out_dir: str | Path,
    progress: bool = True,
    retry_failed: bool = False,
    executor: Executor | None = None,
    notify: Callable[[str], None] | None = None,
) -> StudySummary:
    """Run (or resume) a study into `out_dir`; returns counts. Raises LscError on a user error.

    The folder is locked for the run's duration; `notify` receives one-line notices (e.g. which
    function a custom backend imported). `executor` defaults to the one `cfg.executor` names.
    """

    t0 = time.perf_counter()
    out = Path(out_dir)
    check_out_dir(out)
    lock = RunLock(out)
    if out.is_dir():
        lock.acquire()  # a second run on a busy folder stops here, before loading any model
    try:
        if executor is None:
            executor = make_executor(cfg, notify)
        try:
            with showing(TerminalReporter() if progress else None):  # long steps' own bars under the main one
                return _run_locked(cfg, out, lock, progress, retry_failed, executor, t0)
        finally:
            executor.close()
    finally:
        lock.release()


def _run_locked(cfg: StudyConfig, out: Path, lock: RunLock, progress: bool, retry_failed: bool,
                executor: Executor, t0: float) -> StudySummary:
    from lsc.schemes import check_capabilities

    # Models first: a missing model is the first thing a user on a fresh machine must hear about. With
    # Ray they load on the workers, and `backend` is what the driver needs to know of them.
    backend = executor.start(cfg)
    images = list_images(cfg)
    check_capabilities(backend, [spec.name for spec in cfg.schemes])
    if cfg.channel.word_correction and backend.bob_vocabulary is None:
        raise ConfigError(f"channel.word_correction needs Bob's vocabulary, and the {backend.name!r} backend has none")
    size = getattr(backend, "image_size", None)
    resize = getattr(cfg.images, "resize", None)
    if size is not None and resize is not None and resize != size:
        raise ConfigError(f"images.resize: the {backend.name!r} backend takes {size}x{size} images; "
                          f"set images.resize: {size} (got {resize})")
    if isinstance(cfg.images, FolderImages) and backend.name == "world":
        warn_own_images_on_world(cfg.images.path)
    resolved = resolve(cfg, backend)
    out.mkdir(parents=True, exist_ok=True)
    lock.acquire()
    prepare_run_dir(out, resolved.to_dict(), resolved.to_yaml())

    conditions = resolved.conditions()
    total = len(images) * len(conditions) * len(resolved.schemes)
    with ResultStore(out / STORE_FILE) as store:
        store.set_meta("config", resolved.to_yaml())
        store.set_meta(SCHEMES_META, json.dumps([spec.label for spec in resolved.schemes]))
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

        journal = GenerationJournal(store)
        journal.drop_pixels(keep=[t.image.image_id for t in tasks])  # left by a run killed after its last result
        ok = failed = 0
        # The bar counts what the summary counts: transmissions (an oracle shows its own bar under it).
        bar = _progress(n_pending, progress)
        try:
            for outcome in executor.run(resolved, tasks, journal):
                if isinstance(outcome, ImageOutcome):
                    store.record_image(outcome.seq, outcome.image_id, outcome.caption, outcome.captions,
                                       outcome.attributes, outcome.status, outcome.error)
                    if outcome.original is not None and resolved.save_images:
                        save_png(original_path(out, outcome.image_id), outcome.original)
                elif isinstance(outcome, ResultOutcome):
                    for key, pixels in outcome.images.items():
                        save_png(image_path(out, key), pixels)
                    store.record_result(outcome.key, outcome.summary, outcome.steps)
                    if outcome.summary.status == "ok":
                        ok += 1
                    else:
                        failed += 1
                    bar.set_postfix_str(f"{outcome.key.image_id} {outcome.key.scheme}: {ok} ok, {failed} failed",
                                        refresh=False)
                    bar.update(1)
                elif isinstance(outcome, OracleOutcome):
                    store.record_oracle(outcome.image_id, outcome.n_words, outcome.curve, outcome.status, outcome.error)
        finally:
            bar.close()
        finish_corpus_metrics(store)
        recorded_ok, reasons = _recorded_outcomes(store)
    return StudySummary(out, total, skipped, ok, failed, time.perf_counter() - t0, recorded_ok, reasons)


def _recorded_outcomes(store: ResultStore) -> tuple[int, dict[str, int]]:
    """Transmissions recorded ok, and failed ones counted by reason (most common first, then by text)."""
    rows = store.rows("SELECT status, error, COUNT(*) AS n FROM summary GROUP BY status, error")
    ok = sum(int(r["n"]) for r in rows if r["status"] == "ok")
    failed = [(str(r["error"] or "no reason recorded"), int(r["n"])) for r in rows if r["status"] != "ok"]
    return ok, dict(sorted(failed, key=lambda item: (-item[1], item[0])))


def warn_own_images_on_world(path: str) -> None:
    """Once per process: the world's models were trained on world scenes only (see the world backend's page)."""
    import warnings

    warnings.warn(f"images from {path} on the world backend: its models know only the world's scenes (shapes on "
                  "grounds), so captions and distances on other images mean nothing and are not comparable with "
                  "the world's threshold; use backend: hf for your own photos", OwnImagesOnWorldWarning, stacklevel=3)


class OwnImagesOnWorldWarning(LscWarning):
    """A study runs a folder of images on the world backend."""


def finish_corpus_metrics(store: ResultStore) -> int:
    """Fill the step metric columns that need every caption of the study (CIDEr-D's document frequencies)
    from what the steps stored (Alice's re-captions) and the images' captions; returns the steps updated.

    Run at the end of every `lsc run` (a resumed or finished one too, so a kill before it costs nothing):
    the values depend on the study's captions only, never on the order in which transmissions finished.
    """
    from lsc.metrics import registry

    metrics = [m for m in registry.REGISTRY.values() if m.corpus and m.texts]
    texts = list(dict.fromkeys(t for m in metrics for t in m.texts))
    if not texts:
        return 0
    rows = store.rows(f"SELECT image_id, scheme, cond, step, {', '.join(texts)} FROM steps "
                      f"WHERE {' OR '.join(f'{t} IS NOT NULL' for t in texts)}")
    if not rows:
        return 0
    captions = {r["image_id"]: r["caption"] for r in store.images() if r["status"] == "ok"}
    got = registry.finish_corpus(metrics, [captions.get(r["image_id"]) or "" for r in rows], rows,
                                 registry.study_corpus(captions.values()))
    updates = [((r["image_id"], r["scheme"], r["cond"], r["step"]), v) for r, v in zip(rows, got) if v]
    store.set_step_values(updates)
    return len(updates)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, s: str, refresh: bool = True) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="lsc run", unit="transmission", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
