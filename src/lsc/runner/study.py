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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lsc.config import FolderImages, StudyConfig
from lsc.errors import ConfigError, LscWarning
from lsc.interfaces import UNDECLARED_DISTANCE
from lsc.progress import TerminalReporter, showing
from lsc.runner.environment import EnvironmentFailure, environment_cause, stopped_line
from lsc.runner.executor import Executor, InProcessExecutor
from lsc.runner.sources import check_sources, record_source
from lsc.runner.folder import (DISTANCE_META, SCHEMES_META, STORE_FILE, RunLock, check_out_dir, image_path,
                               original_path, prepare_run_dir, save_png)
from lsc.runner.images import list_images
from lsc.runner.outcomes import ImageOutcome, ImageTask, OracleOutcome, ResultOutcome
from lsc.runner.store import GenerationJournal, ResultStore
from lsc.runner.worker import resolve


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


# ---------------------------------------------------------------- entry point
def make_executor(cfg: StudyConfig, notify: Callable[[str], None] | None = None) -> Executor:
    """The executor a study's `executor.kind` asks for (Ray's only when asked: it is an optional extra)."""
    if cfg.executor.kind == "ray":
        from lsc.runner.ray_executor import RayExecutor

        return RayExecutor(cfg.executor, notify=notify)
    return InProcessExecutor(notify=notify)


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
                return _run_locked(cfg, out, lock, progress, retry_failed, executor, t0, notify)
        except Exception as exc:
            cause = environment_cause(exc)
            if cause is None:
                raise
            raise EnvironmentFailure(stopped_line(cause, out)) from None
        finally:
            executor.close()
    finally:
        lock.release()


def _run_locked(cfg: StudyConfig, out: Path, lock: RunLock, progress: bool, retry_failed: bool,
                executor: Executor, t0: float, notify: Callable[[str], None] | None = None) -> StudySummary:
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
        with store.transaction() as conn:
            check_sources(conn, resolved, images)  # a replaced image or caption is refused, not mixed in
        distance = getattr(backend, "distance", UNDECLARED_DISTANCE)  # what its LPIPS column measures, as labelled
        store.set_meta(DISTANCE_META, json.dumps(distance.to_dict()))
        done = store.done_keys(include_failed=not retry_failed)
        kept, retried = store.failed_count()
        if (kept or retried) and notify is not None:
            notify(f"resume: {kept + retried} failed transmission(s) found: "
                   + (f"{kept} redone (--retry-failed)" if retry_failed else f"{kept} kept (--retry-failed redoes them)")
                   + (f", {retried} that the environment caused retried" if retried else ""))
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
                    with store.transaction() as conn:
                        record_source(conn, resolved, outcome.image_id, outcome.captions)
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
