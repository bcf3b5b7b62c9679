"""Executors: where the per-image work runs. The runner only sees `Executor.run(tasks) -> outcomes`.

Why a seam: today everything runs in this process (models loaded once, one image after another). A
Ray executor can later hold one `ImageWorker` per actor (each loading the models once) and stream the
same `Outcome` objects back; results are written only by the driver, so durability and resume do not
change. The one exception is the generation journal (`lsc.runner.store.GenerationJournal`), which the
in-process worker writes after each generator call; a remote worker would need its own journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Literal, Protocol

import numpy as np

from lsc.config import Condition, SchemeSpec
from lsc.runner.images import StudyImage


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
class Outcome:
    """A unit of finished work, ready for the store.

    kind "image": `data` is the images-table row (caption, status, error) and `original` the pixels;
    kind "result": `data` is the summary row, `steps` its step rows, `images` Bob's pictures by key;
    kind "oracle": `data` holds n_words, curve, status, error.
    """

    kind: Literal["image", "result", "oracle"]
    data: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    original: np.ndarray | None = None


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
