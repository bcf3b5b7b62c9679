"""A demo request run as a study: the page's choices become a StudyConfig that the study runner runs
into a run folder, with an event as each transmission is stored.

Why: there is one transmission loop (lsc.protocol, driven by lsc.runner). The demo only builds a config
and watches, so its numbers are a study's for the same scene, scheme, channel and seed, and its folder
is one `lsc report` reads.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import shutil
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

import yaml

from lsc.config import StudyConfig, validate_config
from lsc.errors import ConfigError, LscError
from lsc.limits import load_yaml
from lsc.runner.executor import InProcessExecutor
from lsc.runner.folder import DEMO_INPUTS_DIR, LOCK_FILE

SNR_RANGE_DB = (-20.0, 40.0)  # the page's SNR bounds: beyond them every word is lost or none is
# What one send may ask of a shared page: a caption a person types, and a bounded share of the generator
# (one 6000-word caption held the only generation slot for minutes).
MAX_CAPTION_WORDS = 40
MAX_CAPTION_CHARS = 400
MAX_SEND_IMAGES = 20_000  # images Bob draws in one send (lowest_lpips on 40 words: 820 per beam)
MAX_SEND_SECONDS = 600.0
NOT_ARCHIVED = (LOCK_FILE,)  # the lock is the writing process's, not part of the run


class DemoInputError(LscError):
    """Something the page was given cannot be run; the message is shown in the page."""


class SendStopped(BaseException):
    """A send stopped by the page: its client left, or it went over MAX_SEND_IMAGES or MAX_SEND_SECONDS.

    A BaseException on purpose: the runner records an Exception inside a transmission as the scheme's
    failure, and a stopped send is nobody's failure; it unwinds the run (the store keeps what is done)."""


@dataclass
class SendLimits:
    """The bounds of one send, checked each time Bob is about to draw images."""

    max_images: int = MAX_SEND_IMAGES
    max_seconds: float = MAX_SEND_SECONDS
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    def check(self, images_after: int) -> None:
        if self.cancel.is_set():
            raise SendStopped("the page was closed: the send was cancelled")
        if time.monotonic() - self.started > self.max_seconds:
            raise SendStopped(f"the send ran over {self.max_seconds:g} s and was stopped: choose fewer schemes, "
                              "a shorter caption or cheaper options")
        if images_after > self.max_images:
            raise SendStopped(f"the send would draw more than {self.max_images} images and was stopped: choose fewer "
                              "schemes, a shorter caption or cheaper options (beam, proxy_top)")


@dataclass
class Source:
    """The picture being sent: a world scene (index, seed) or an uploaded file, and Alice's caption of it."""

    kind: Literal["world", "upload"]
    alice_caption: str
    index: int = 0
    seed: int = 0
    path: str | None = None  # the uploaded file (kind "upload")

    @property
    def image_id(self) -> str:
        """The id a study gives this image (world scenes: the id they have in `lsc run`)."""
        if self.kind == "world":
            return f"world-{self.seed}-{self.index:05d}"
        return Path(self.path or "upload.png").name


@dataclass
class DemoRequest:
    """Everything the page decides about a run."""

    backend: str
    source: Source
    caption: str
    schemes: list[str]
    scheme_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    channel: dict[str, Any] = field(default_factory=dict)
    prompt_order: str | None = None  # None = the backend's
    seed: int = 0
    threads: int | None = None  # execution only: never part of the study's identity


@dataclass
class DemoEvent:
    """What the runner did: `generated` (Bob drew `count` images so far) or `stored` (a transmission of
    `scheme`, or the image row when `scheme` is None, is now in results.sqlite)."""

    kind: Literal["generated", "stored"]
    count: int = 0
    scheme: str | None = None
    status: str | None = None
    error: str | None = None


def parse_scheme_options(text: str | None, schemes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The page's options box: YAML `scheme: {option: value}` for schemes that are selected."""
    if text is None or not text.strip():
        return {}
    try:
        data = load_yaml(text, "scheme options")
    except ConfigError as exc:
        raise DemoInputError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise DemoInputError(f"scheme options: not valid YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DemoInputError("scheme options: write one line per scheme, e.g. 'lowest_lpips: {beam: 2}'")
    selected = set(schemes)
    for name in data:
        if name not in selected:
            raise DemoInputError(f"scheme options: {name!r} is not one of the selected schemes")
    return {str(k): dict(v) for k, v in data.items()}


def check_request(req: DemoRequest) -> None:
    """The page's own checks, before any config is built (config errors come after, from validation)."""
    if not " ".join(req.caption.split()):
        raise DemoInputError("the caption is empty: type what Alice should send")
    words = len(req.caption.split())
    if words > MAX_CAPTION_WORDS or len(req.caption) > MAX_CAPTION_CHARS:
        raise DemoInputError(f"the caption is {words} words, {len(req.caption)} characters: the page sends at most "
                             f"{MAX_CAPTION_WORDS} words and {MAX_CAPTION_CHARS} characters")
    if not req.schemes:
        raise DemoInputError("choose at least one scheme")
    snr = req.channel.get("snr_db")
    if req.channel.get("model", "none") != "none":
        lo, hi = SNR_RANGE_DB
        try:
            value = float(snr)
        except (TypeError, ValueError):
            raise DemoInputError(f"SNR must be a number of dB between {lo:g} and {hi:g}, not {snr!r}") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise DemoInputError(f"SNR {value:g} dB is out of range: choose between {lo:g} and {hi:g} dB")


def build_config(req: DemoRequest, run_dir: Path, image_size: int | None) -> StudyConfig:
    """The study the page describes. An unedited world scene is `images: {source: world, start, count: 1}`
    (the study's own image); an upload or an edited caption is a one-image folder study whose
    captions file holds the caption (written under run_dir/inputs)."""
    check_request(req)
    caption = " ".join(req.caption.split())
    src = req.source
    edited = caption != " ".join(src.alice_caption.split())
    data: dict[str, Any] = {
        "backend": req.backend,
        "backend_options": backend_options(req.backend, req.threads),
        "schemes": [{"name": s, **req.scheme_options.get(s, {})} for s in req.schemes],
        "seed": int(req.seed),
        "prompt_order": req.prompt_order,
        "oracle": False,  # 2^n generations: a study's job, not a page's
        "channel": dict(req.channel),
        "save_images": True,
    }
    if src.kind == "world" and not edited:
        data["images"] = {"source": "world", "start": int(src.index), "count": 1, "seed": int(src.seed)}
        data["caption_source"] = "alice"
    else:
        inputs = run_dir / DEMO_INPUTS_DIR
        inputs.mkdir(parents=True, exist_ok=True)
        name = _write_input(src, inputs)
        with open(inputs / "captions.txt", "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([("image", "caption"), (name, caption)])
        data["images"] = {"source": "folder", "path": str(inputs), "captions": str(inputs / "captions.txt"),
                          "format": "flickr8k", "resize": image_size}
        data["caption_source"] = "dataset" if edited else "alice"
    return validate_config(data)


def _write_input(src: Source, inputs: Path) -> str:
    """The image file of a folder study: the upload as it came, or the world scene as a PNG (8-bit)."""
    if src.kind == "upload":
        if src.path is None:
            raise DemoInputError("no uploaded image: upload one first")
        name = Path(src.path).name
        shutil.copyfile(src.path, inputs / name)
        return name
    from lsc.runner.images import world_image
    from lsc.runner.folder import save_png

    name = f"{src.image_id}.png"
    save_png(inputs / name, world_image(src.index, src.seed).load())
    return name


class CountingGenerator:
    """Bob's generator, counting images as they are drawn so the page can show progress during a long
    search (lowest_lpips); every call and attribute goes to the real generator, so numbers do not change."""

    def __init__(self, inner: Any, notify: Callable[[int], None], limits: SendLimits | None = None) -> None:
        self._inner = inner
        self._notify = notify
        self._limits = limits
        self.images = 0

    def generate(self, prompts: Any, seed: int) -> Any:
        if self._limits is not None:
            self._limits.check(self.images + len(prompts))  # a left client or a runaway send stops here
        out = self._inner.generate(prompts, seed)
        self.images += len(prompts)
        self._notify(self.images)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class StreamingExecutor(InProcessExecutor):
    """The runner's in-process executor, announcing each outcome once the runner has stored it.

    The runner stores an outcome before asking for the next, so the event sent when the generator
    resumes means: it is in results.sqlite now (the page reads it from there, as `lsc report` does).
    """

    def __init__(self, notify: Callable[[DemoEvent], None], limits: SendLimits | None = None) -> None:
        super().__init__()
        self.events = notify
        self.limits = limits

    def start(self, cfg: Any) -> Any:
        backend = super().start(cfg)
        counter = CountingGenerator(backend.generator, lambda n: self.events(DemoEvent("generated", count=n)),
                                    self.limits)
        self.backend = dataclasses.replace(backend, generator=counter)
        return self.backend

    def run(self, resolved: Any, tasks: Iterable[Any], journal: Any = None) -> Iterator[Any]:
        from lsc.runner.executor import DoneOutcome, ResultOutcome

        for outcome in super().run(resolved, tasks, journal):
            yield outcome
            if isinstance(outcome, ResultOutcome):
                self.events(DemoEvent("stored", scheme=outcome.key.scheme, status=outcome.summary.status,
                                      error=outcome.summary.error))
            elif not isinstance(outcome, DoneOutcome):
                self.events(DemoEvent("stored", status=outcome.status, error=outcome.error))


def backend_options(backend: str, threads: int | None) -> dict[str, Any]:
    """The page's backend options: the default study's for its backend (the world's receiver), so a scene
    sent in the page gives the numbers `lsc run` gives it, plus a thread count for a loader that takes one."""
    from lsc.backends import backend_loader
    from lsc.config import load_config
    from lsc.runner.worker import takes_option

    default = load_config()
    options = dict(default.backend_options) if backend == default.backend else {}
    if threads and takes_option(backend_loader(backend), "threads"):
        options["threads"] = int(threads)
    return options


def prepare_run(req: DemoRequest, run_dir: Path) -> StudyConfig:
    """The request's study config, validated (a bad scheme option or channel value is refused here)."""
    from lsc.runner.worker import get_backend

    backend = get_backend(req.backend, backend_options(req.backend, req.threads))
    return build_config(req, run_dir, getattr(backend, "image_size", None))


def run_config(cfg: StudyConfig, run_dir: Path, notify: Callable[[DemoEvent], None],
               limits: SendLimits | None = None) -> Any:
    """Run the page's study into run_dir: the runner's own loop, store and files; events as it goes.
    `limits` bound the send (SendStopped when it goes over them or is cancelled)."""
    from lsc.runner.study import run_study

    return run_study(cfg, run_dir, progress=False, executor=StreamingExecutor(notify, limits))


def run_request(req: DemoRequest, run_dir: Path, notify: Callable[[DemoEvent], None]) -> Any:
    """prepare_run then run_config: a request as a study, for callers without a page."""
    return run_config(prepare_run(req, run_dir), run_dir, notify)


def archive_run(run_dir: Path, zip_path: Path) -> Path:
    """The run folder as a zip (one top folder, as `lsc run` wrote it, plus its report)."""
    from lsc.report import build_report

    build_report(run_dir)
    tmp = zip_path.with_name(zip_path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(run_dir.rglob("*")):
            if path.is_file() and path.name not in NOT_ARCHIVED:
                zf.write(path, Path(run_dir.name) / path.relative_to(run_dir))
    tmp.replace(zip_path)
    return zip_path
