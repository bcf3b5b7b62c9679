"""Executors: where the units of a study run. The runner sees `start`, `run(tasks) -> outcomes`, `close`.

Why a seam: locally everything runs in this process (models loaded once, one image after another); the
Ray executor (`ray_executor.py`) holds one `ImageWorker` per actor (each loading the models once) and
streams the same `Outcome` objects back. Only the driver writes the store and the run folder, so
durability and resume do not depend on where a unit ran. The one exception is the generation journal
(`lsc.runner.store.GenerationJournal`), which the in-process worker writes after each generator call
(a kill loses at most the call in flight); a Ray unit is journaled by nobody, so a killed driver loses
the units in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

from lsc.config import StudyConfig
from lsc.interfaces import UNDECLARED_DISTANCE, Distance
from lsc.runner import worker
from lsc.runner.outcomes import (DoneOutcome, ImageOutcome, ImageTask, OracleOutcome, Outcome,  # noqa: F401 - the executor's vocabulary
                                 ResultOutcome)

if TYPE_CHECKING:
    from lsc.interfaces import Backend
    from lsc.runner.store import GenerationJournal


class Worker(Protocol):
    def run(self, task: ImageTask) -> Iterator[Outcome]:
        ...


class Executor(Protocol):
    """Runs units and yields their outcomes as they finish (any order across units).

    `start(cfg)` loads the backend where units will run and returns it, or a `BackendFacts` view of it,
    for the driver's checks and `resolve`; `run(resolved, tasks, journal)` runs the units (a worker in this process journals its generator calls); `close()` frees workers.
    """

    def start(self, cfg: StudyConfig) -> Any:
        ...

    def run(self, resolved: StudyConfig, tasks: Iterable[ImageTask], journal: "GenerationJournal | None" = None) -> Iterator[Outcome]:
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class BackendFacts:
    """What the driver needs to know about a backend loaded elsewhere (checks and `resolve`), so a Ray
    driver never loads the models itself (it may have no GPU)."""

    name: str
    capabilities: frozenset[str]
    bob_vocabulary: frozenset[str] | None
    default_threshold: float
    default_prompt_order: str
    image_size: int | None
    distance: Distance = UNDECLARED_DISTANCE

    @classmethod
    def of(cls, backend: "Backend") -> "BackendFacts":
        return cls(backend.name, frozenset(backend.capabilities), backend.bob_vocabulary,
                   float(backend.default_threshold), str(backend.default_prompt_order),
                   getattr(backend, "image_size", None), getattr(backend, "distance", UNDECLARED_DISTANCE))

    def missing(self, required: frozenset[str] | set[str]) -> list[str]:
        from lsc.interfaces import Backend

        return Backend.missing(self, required)  # type: ignore[arg-type]  # the same rule as the backend's


class InProcessExecutor:
    """Runs each unit in this process, one after another, yielding each outcome as soon as it exists."""

    def __init__(self, notify: Callable[[str], None] | None = None) -> None:
        self.notify = notify
        self.backend: Any = None

    def start(self, cfg: StudyConfig) -> Any:
        self.backend = worker.get_backend(cfg.backend, cfg.backend_options, notify=self.notify)
        return self.backend

    def run(self, resolved: StudyConfig, tasks: Iterable[ImageTask], journal: "GenerationJournal | None" = None) -> Iterator[Outcome]:
        images = worker.ImageWorker(resolved, self.backend, journal)
        for task in tasks:
            yield from images.run(task)

    def close(self) -> None:
        """Nothing to free: the backend stays cached for the next study in this process."""
