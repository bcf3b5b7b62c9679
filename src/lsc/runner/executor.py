"""Executors: where the per-image work runs. The runner only sees `Executor.run(tasks) -> outcomes`.

Why a seam: today everything runs in this process (models loaded once, one image after another). A
Ray executor can later hold one `ImageWorker` per actor (each loading the models once) and stream the
same `Outcome` objects back; results are written only by the driver, so durability and resume do not
change. The one exception is the generation journal (`lsc.runner.store.GenerationJournal`), which the
in-process worker writes after each generator call; a remote worker would need its own journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol, Union

import numpy as np

from lsc.config import Condition, SchemeSpec
from lsc.protocol.loop import StepRecord
from lsc.runner.images import StudyImage
from lsc.runner.rows import ResultKey, ResultSummary


@dataclass
class ImageTask:
    """All pending work on one image: (condition, schemes) pairs, and whether its oracle is still due.

    One task per image so that every scheme and SNR of that image shares one ImageContext (the
    perceptual reference and Bob's image cache).
    """

    seq: int
    image: StudyImage
    jobs: list[tuple[Condition, list[SchemeSpec]]]
    oracle: bool


@dataclass
class ImageOutcome:
    """An image read (or not): its images-table row, and the original's pixels when it was read."""

    seq: int
    image_id: str
    caption: str | None
    captions: list[str]
    attributes: dict[str, Any] | None
    status: str
    error: str | None
    original: np.ndarray | None = None


@dataclass
class ResultOutcome:
    """One transmission (image x scheme x condition): its summary and steps rows, Bob's images by key."""

    key: ResultKey
    summary: ResultSummary
    steps: list[StepRecord] = field(default_factory=list)
    images: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class OracleOutcome:
    """An image's oracle curve [(k, lpips)], or why there is none (status 'skipped' or 'failed')."""

    image_id: str
    n_words: int | None
    curve: list[tuple[int, float]]
    status: str
    error: str | None


Outcome = Union[ImageOutcome, ResultOutcome, OracleOutcome]


class Worker(Protocol):
    def run(self, task: ImageTask) -> Iterator[Outcome]:
        ...


class Executor(Protocol):
    """Runs tasks and yields outcomes as they finish (any order across tasks)."""

    def run(self, tasks: Iterable[ImageTask]) -> Iterator[Outcome]:
        ...


class InProcessExecutor:
    """Runs each task in this process, one after another, yielding each outcome as soon as it exists."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def run(self, tasks: Iterable[ImageTask]) -> Iterator[Outcome]:
        for task in tasks:
            yield from self.worker.run(task)
