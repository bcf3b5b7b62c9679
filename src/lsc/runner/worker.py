"""What runs a study's units, wherever they run: the backend loaded once per process, the study's
identity resolved against it, and the `ImageWorker` that runs one image's schemes and oracle.

Why apart from the driver (`lsc.runner.study`): the in-process executor and each Ray actor run this
code; the driver only stores what it yields. It imports no executor and no driver, so the three
modules form no circle.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Iterator

import numpy as np

from lsc.config import Condition, ExecutorConfig, SchemeSpec, StudyConfig
from lsc.errors import ConfigError
from lsc.interfaces import Backend
from lsc.progress import stage
from lsc.runner.environment import raise_if_environment
from lsc.runner.folder import EXECUTION_OPTIONS
from lsc.runner.images import ImageReadError, StudyImage
from lsc.runner.outcomes import (DoneOutcome, ImageOutcome, ImageTask, OracleOutcome, Outcome, ResultOutcome,
                                 failed_result, failed_unit, one_line)
from lsc.runner.rows import ResultKey, ResultSummary
from lsc.runner.store import GenerationJournal

_BACKENDS: dict[str, Backend] = {}


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
    if "threads" not in options and takes_option(loader, "threads"):
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


def takes_option(loader: Callable[..., Any], param: str) -> bool:
    """Whether a backend loader takes the keyword `param` (a thread count is passed only to one that does)."""
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
            raise_if_environment(exc)  # a full disk or no memory stops the study instead
            yield from failed_unit(task, one_line(exc))
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
            raise_if_environment(exc)  # not the scheme's failure: the study stops, the resume redoes it
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
            raise_if_environment(exc)
            return OracleOutcome(ctx.image_id, len(words), [], "failed", one_line(exc))
        return OracleOutcome(ctx.image_id, len(words), curve, "ok", None)
