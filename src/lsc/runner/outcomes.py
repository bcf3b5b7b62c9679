"""A study's units of work and what they yield: an image's task, its outcomes, and the failure outcome.

Why a module of its own: the driver (`lsc.runner.study`), the in-process worker (`lsc.runner.worker`) and
the executors (`lsc.runner.executor`, `lsc.runner.ray_executor`) all speak these types; kept apart, none
of them imports another's module for them, and a unit that fails is recorded one way wherever it ran
(`failed_unit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np

from lsc.config import Condition, SchemeSpec
from lsc.errors import LscError
from lsc.protocol.loop import StepRecord
from lsc.runner.images import ImageReadError, StudyImage
from lsc.runner.rows import ResultKey, ResultSummary


@dataclass
class ImageTask:
    """One unit of work: all pending work on one image, (condition, schemes) pairs, and whether its oracle
    is still due.

    One unit per image so that every scheme and SNR of that image shares one ImageContext (the
    perceptual reference and Bob's image cache).
    """

    seq: int
    image: StudyImage
    jobs: list[tuple[Condition, list[SchemeSpec]]]
    oracle: bool


@dataclass
class ImageOutcome:
    """An image read (or not): its images-table row, and the original when it was read (its pixels, or
    PNG bytes when it crossed a process boundary)."""

    seq: int
    image_id: str
    caption: str | None
    captions: list[str]
    attributes: dict[str, Any] | None
    status: str
    error: str | None
    original: np.ndarray | bytes | None = None


@dataclass
class ResultOutcome:
    """One transmission (image x scheme x condition): its summary and steps rows, Bob's images by key
    (pixels, or PNG bytes when they crossed a process boundary)."""

    key: ResultKey
    summary: ResultSummary
    steps: list[StepRecord] = field(default_factory=list)
    images: dict[str, np.ndarray | bytes] = field(default_factory=dict)


@dataclass
class OracleOutcome:
    """An image's oracle curve [(k, lpips)], or why there is none (status 'skipped' or 'failed')."""

    image_id: str
    n_words: int | None
    curve: list[tuple[int, float]]
    status: str
    error: str | None


@dataclass
class DoneOutcome:
    """The unit (`seq`, `image_id`) has no more outcomes (the demo's page waits for it)."""

    seq: int
    image_id: str


Outcome = Union[ImageOutcome, ResultOutcome, OracleOutcome, DoneOutcome]


def failed_result(image_id: str, spec: SchemeSpec, cond: Condition, reason: str) -> ResultOutcome:
    """One transmission recorded as failed with `reason` (no steps, no images)."""
    return ResultOutcome(ResultKey(image_id, spec.label, cond.key, cond.snr_db), ResultSummary(status="failed", error=reason))


def one_line(exc: BaseException) -> str:
    """Why something failed, in one line for the store: a user's error as its message, a bug with its type."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (LscError, ImageReadError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def failed_unit(task: ImageTask, reason: str) -> list[Outcome]:
    """Every pending piece of a unit recorded as failed with `reason` (the study goes on)."""
    image = task.image
    out: list[Outcome] = [ImageOutcome(task.seq, image.image_id, None, list(image.captions), image.attributes,
                                       "failed", reason)]
    for cond, specs in task.jobs:
        out.extend(failed_result(image.image_id, spec, cond, reason) for spec in specs)
    if task.oracle:
        out.append(OracleOutcome(image.image_id, None, [], "failed", reason))
    out.append(DoneOutcome(task.seq, image.image_id))
    return out
