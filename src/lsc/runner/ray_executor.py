"""The Ray executor: a study's units (one source image with all its schemes) run on Ray actors.

Why actors: a backend (Stable Diffusion, or the world's networks) is loaded once per worker and serves
every unit sent to it. Why units of one image: its schemes share one ImageContext (the perceptual
reference and Bob's image cache), as locally. Results stream back unit by unit (Bob's images as PNG
bytes) and only the driver writes results.sqlite and the run folder, so no shared file system is
assumed for the store, and a killed driver loses at most the units in flight.

Scheduling, placement and retries are Ray's: each actor takes one unit at a time, a dead worker is
restarted and its unit retried once (`max_restarts`, `max_task_retries`, `retry_exceptions`); a unit
that fails twice is recorded as failed with its reason and the study goes on.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterable, Iterator

from lsc.config import ExecutorConfig, StudyConfig
from lsc.errors import ConfigError, LscError
from lsc.runner.executor import BackendFacts
from lsc.runner.outcomes import ImageOutcome, ImageTask, Outcome, ResultOutcome, failed_unit, one_line
from lsc.runner.worker import ImageWorker, get_backend, resolve, takes_option

INSTALL_HINT = "pip install 'lsc[ray]'"
# A local Ray instance started by lsc keeps its shared-memory object store small: units return PNG
# bytes and step rows (kilobytes to tens of MB), and Ray's default takes 30% of the machine's memory.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2

UnitHook = Callable[[ImageTask], None]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"executor.kind ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


class UnitActor:
    """One Ray worker: loads the backend once, then runs units. Made a Ray actor by `RayExecutor`.

    The constructor never raises: a load error (missing weights, bad option) is kept and reported to the
    driver as one line, instead of Ray restarting an actor that can never start.
    """

    def __init__(self, cfg: StudyConfig, threads: int | None, hook: UnitHook | None) -> None:
        self.hook = hook
        self.notices: list[str] = []
        self.error: str | None = None
        self.user_error = False  # a load error the user can fix (an LscError): one line on the driver
        self.worker: Any = None
        self.facts: BackendFacts | None = None
        try:
            options = dict(cfg.backend_options)
            if threads is not None and "threads" not in options and _takes_threads(cfg.backend):
                options["threads"] = threads  # the actor's CPUs, unless the study sets its own count
            backend = get_backend(cfg.backend, options, notify=self.notices.append)
            self.facts = BackendFacts.of(backend)
            # The same resolution as the driver's (it uses these facts), so a restarted actor needs
            # nothing from the driver but its constructor arguments.
            self.worker = ImageWorker(resolve(cfg, backend), backend)
        except Exception as exc:  # noqa: BLE001 - reported to the driver as one line
            self.error, self.user_error = one_line(exc), isinstance(exc, LscError)

    def describe(self) -> tuple[BackendFacts | None, str | None, bool, list[str]]:
        """(backend facts, load error, whether the user can fix it, notices) for the driver."""
        return self.facts, self.error, self.user_error, self.notices

    def run(self, task: ImageTask) -> list[Outcome]:
        """All outcomes of one unit, Bob's images and the original as PNG bytes (each image once)."""
        from lsc.runner.folder import encode_png

        if self.error is not None:
            raise RuntimeError(self.error)
        if self.hook is not None:
            self.hook(task)
        sent: set[str] = set()
        out: list[Outcome] = []
        for outcome in self.worker.run(task):
            if isinstance(outcome, ResultOutcome):
                images: dict[str, Any] = {}
                for key, pixels in outcome.images.items():
                    if key not in sent:  # schemes of one image share pictures; the driver writes each once
                        sent.add(key)
                        images[key] = pixels if isinstance(pixels, bytes) else encode_png(pixels)
                outcome.images = images
            elif isinstance(outcome, ImageOutcome):
                if outcome.original is not None and not isinstance(outcome.original, bytes):
                    outcome.original = encode_png(outcome.original) if self.worker.cfg.save_images else None
            out.append(outcome)
        return out


class RayExecutor:
    """Runs units on Ray actors (see the module docstring); `unit_hook`, if given, is called in the actor
    before each unit (fault injection in tests, instrumentation)."""

    def __init__(self, spec: ExecutorConfig, notify: Callable[[str], None] | None = None,
                 unit_hook: UnitHook | None = None) -> None:
        self.spec = spec
        self.notify = notify
        self.unit_hook = unit_hook
        self.ray: Any = None
        self.started_ray = False
        self.actor_class: Any = None
        self.actors: list[Any] = []
        self.cfg: StudyConfig | None = None

    # ------------------------------------------------------------ start: Ray, one actor, the backend's facts
    def start(self, cfg: StudyConfig) -> BackendFacts:
        ray = self.ray = _import_ray()
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
            if self.spec.address is None and not os.environ.get("RAY_ADDRESS"):  # else Ray joins that cluster
                kwargs.update(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
            try:
                ray.init(address=self.spec.address, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a cluster that cannot be reached is the user's to fix
                where = self.spec.address or "a local instance"
                raise ConfigError(f"executor: cannot start Ray ({where}): {_first_line(exc)}") from None
            self.started_ray = True
        self.cfg = cfg
        self.slots = self._slots()
        options: dict[str, Any] = {"num_cpus": self.spec.num_cpus_per_task, "num_gpus": self.spec.num_gpus_per_task,
                                   "max_restarts": -1, "max_task_retries": 1}
        self.actor_class = ray.remote(**options)(UnitActor)
        self.threads = max(1, int(self.spec.num_cpus_per_task))
        first = self._new_actor()
        facts, error, user_error, notices = ray.get(first.describe.remote())
        for line in notices:
            if self.notify is not None:
                self.notify(line)
        if error is not None:
            if user_error:
                raise ConfigError(error)
            raise RuntimeError(f"loading backend {cfg.backend!r} on a Ray worker failed: {error}")
        assert facts is not None
        return facts

    def _slots(self) -> int:
        """How many units may run at once: max_in_flight, else as many actors as the cluster's resources fit."""
        total = self.ray.cluster_resources()
        fits = []
        for key, need in (("CPU", self.spec.num_cpus_per_task), ("GPU", self.spec.num_gpus_per_task)):
            if need > 0:
                have = float(total.get(key, 0.0))
                if have < need:
                    field = "num_cpus_per_task" if key == "CPU" else "num_gpus_per_task"
                    raise ConfigError(f"executor.{field}={need:g}: the Ray cluster has {have:g} {key}s")
                fits.append(int(math.floor(have / need + 1e-9)))
        capacity = min(fits) if fits else max(1, int(total.get("CPU", 1)))
        return self.spec.max_in_flight or capacity

    def _new_actor(self) -> Any:
        actor = self.actor_class.remote(self.cfg, self.threads, self.unit_hook)
        self.actors.append(actor)
        return actor

    # ------------------------------------------------------------ run: submit units, receive outcomes
    def run(self, resolved: StudyConfig, tasks: Iterable[ImageTask], journal: Any = None) -> Iterator[Outcome]:
        """Keep every actor busy with one unit; yield each unit's outcomes as it finishes.

        `resolved` is not shipped: each actor resolved the same config against its own backend (the
        driver's copy came from the first actor's facts), so a restarted actor needs nothing more.
        `journal` is not used: actors run elsewhere, and only the driver writes the store.
        """
        ray = self.ray
        queue = list(tasks)
        queue.reverse()  # pop() takes units in study order
        while len(self.actors) < min(self.slots, len(queue)):
            self._new_actor()
        in_flight: dict[Any, tuple[Any, ImageTask]] = {}
        idle = list(self.actors)
        while queue or in_flight:
            while queue and idle:
                actor, task = idle.pop(0), queue.pop()
                ref = actor.run.options(retry_exceptions=True).remote(task)
                in_flight[ref] = (actor, task)
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            actor, task = in_flight.pop(ready[0])
            idle.append(actor)
            try:
                outcomes = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - Ray already retried once: record and go on
                outcomes = failed_unit(task, _reason(exc))
            yield from outcomes

    def close(self) -> None:
        """Kill the actors (freeing their models and GPUs); shut Ray down only if this executor started it."""
        if self.ray is None:
            return
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False


def _takes_threads(backend: str) -> bool:
    from lsc.backends import backend_loader

    return takes_option(backend_loader(backend), "threads")


def _reason(exc: BaseException) -> str:
    """Why a unit failed twice, in one line: the worker's own exception, or that the worker died."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"failed twice on a Ray worker: {one_line(cause)}"
    from lsc.runner.environment import ENVIRONMENT_PREFIX

    return f"{ENVIRONMENT_PREFIX}the Ray worker died twice running this unit ({type(exc).__name__})"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
