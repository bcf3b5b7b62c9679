"""Progress inside long steps (the oracle's 2^n images, lowest_lpips' search, loading models, building a
report) and one-time notes on why a step is slow.

Why a reporter installed by the caller rather than an argument: these steps sit far below the command
that shows progress, and threading a display handle through every call would couple the protocol to the
terminal. A step opens a `stage` and advances it; whatever reporter the caller installed with `showing`
draws it (in `lsc run` and `lsc report`: a second tqdm bar under the main one, shown only when the step
takes more than a second). Without a reporter nothing is drawn, and no result ever depends on one.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Protocol


class Reporter(Protocol):
    """Draws stages and notes. Stages may nest; the innermost one is the one advancing."""

    def begin(self, label: str, total: int | None, unit: str) -> Any:
        """Open a stage; returns a handle passed back to `advance` and `end`."""

    def advance(self, handle: Any, n: int, detail: str | None = None) -> None:
        """`n` more units done; `detail` (optional) names the last one."""

    def end(self, handle: Any) -> None:
        ...

    def note(self, text: str) -> None:
        """One line for the user (drawn without breaking the bars)."""


_REPORTER: ContextVar["Reporter | None"] = ContextVar("lsc_progress_reporter", default=None)
_NOTED: ContextVar["set[str] | None"] = ContextVar("lsc_progress_noted", default=None)
_OPEN: ContextVar["tuple[Stage, ...]"] = ContextVar("lsc_progress_open", default=())


class Stage:
    """A long step in progress: `advance(n)` as its work gets done."""

    def __init__(self, reporter: Reporter | None, handle: Any) -> None:
        self._reporter, self._handle = reporter, handle
        self.done = 0

    def advance(self, n: int = 1, detail: str | None = None) -> None:
        self.done += n
        if self._reporter is not None:
            self._reporter.advance(self._handle, n, detail)


@contextmanager
def stage(label: str, total: int | None = None, unit: str = "image") -> Iterator[Stage]:
    """A long step of `total` units (None: unknown, elapsed time only), drawn by the installed reporter."""
    reporter = _REPORTER.get()
    handle = reporter.begin(label, total, unit) if reporter is not None else None
    current = Stage(reporter, handle)
    token = _OPEN.set(_OPEN.get() + (current,))
    try:
        yield current
    finally:
        _OPEN.reset(token)
        if reporter is not None:
            reporter.end(handle)


def tick(detail: str | None = None) -> None:
    """One more unit of the innermost open stage, from code that does not hold it (e.g. one model of a
    backend loaded); nothing when no stage is open."""
    open_stages = _OPEN.get()
    if open_stages:
        open_stages[-1].advance(1, detail)


def note_once(key: str, text: str) -> bool:
    """Tell the user `text` once per `showing` block (per `lsc run`), e.g. why a step will be slow.

    Returns whether it was shown (False: said before, or no reporter installed).
    """
    reporter, noted = _REPORTER.get(), _NOTED.get()
    if reporter is None or noted is None or key in noted:
        return False
    noted.add(key)
    reporter.note(text)
    return True


def rough_duration(seconds: float) -> str:
    """A duration as a note says it: '40 s', '3 min', '2.5 h'."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


@contextmanager
def showing(reporter: Reporter | None) -> Iterator[None]:
    """Install `reporter` for the steps run inside the block (None: show nothing)."""
    token = _REPORTER.set(reporter)
    noted = _NOTED.set(set())
    try:
        yield
    finally:
        _REPORTER.reset(token)
        _NOTED.reset(noted)


class TerminalReporter:
    """Stages as tqdm bars on stderr under the main bar, each shown only once it has run `delay` seconds
    (a step that finishes quickly never flickers on screen); notes as lines above the bars."""

    def __init__(self, delay: float = 1.0, position: int = 1) -> None:
        self.delay = delay
        self.position = position
        self._open: list[Any] = []

    def begin(self, label: str, total: int | None, unit: str) -> Any:
        from tqdm import tqdm

        # An open-ended step (no total) shows for how long it has run and what it did last; no bar, no ETA.
        fmt = "{desc} [{elapsed}{postfix}]" if total is None else None
        # Drawn on a terminal only (disable=None): piped into a log, a cleared bar would leave its text and cursor
        # codes in front of the next line, an `error:` line included.
        bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False, disable=None,
                   delay=self.delay, position=self.position + len(self._open), smoothing=0.1, bar_format=fmt)
        self._open.append(bar)
        return bar

    def advance(self, handle: Any, n: int, detail: str | None = None) -> None:
        if detail is not None:
            handle.set_postfix_str(detail, refresh=False)
        handle.update(n)

    def end(self, handle: Any) -> None:
        handle.close()
        self._open = [b for b in self._open if b is not handle]

    def note(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"note: {text}", file=sys.stderr)
