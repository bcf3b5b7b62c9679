"""The Gradio page of `lsc demo`: its callbacks (plain methods, testable without a browser) and layout.

Why callbacks never raise: a user's mistake (an unreadable upload, an empty caption, an SNR out of
range) must come back as a line in the page, and an unexpected failure as one line too (the traceback
goes to the server log), so the app keeps serving.
"""

from __future__ import annotations

import atexit
import functools
import os
import queue
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no calls home

from lsc.demo.inputs import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_MB, upload_source, world_source
from lsc.demo.session import (MAX_SEND_IMAGES, MAX_SEND_SECONDS, SNR_RANGE_DB, DemoEvent, DemoInputError,
                              DemoRequest, SendLimits, SendStopped, Source, archive_run, check_request,
                              parse_scheme_options, prepare_run, run_config)
from lsc.demo.view import PAGE_CSS, RunView, curve_image, load_view, outcome_text, panel_html
from lsc.errors import LscError, one_line
from lsc.runner.folder import STORE_FILE

CHANNEL_MODELS = ("none", "analytic", "phy")
MODULATIONS = ("bpsk", "qpsk", "qam16", "qam64")
PROMPT_ORDERS = ("backend default", "caption", "send")
DEFAULT_SCHEMES = ("random", "heads")
DOWNLOAD_TTL_S = 3600  # gradio's cached copy of a download lives at most this long (the page's own: while shown)


def message(text: str, error: bool = False) -> str:
    """A status line for the page (markdown)."""
    return f"**error:** {text}" if error else text


def describe(exc: BaseException) -> str:
    """One line for the page; a bug also leaves its traceback in the server log."""
    if isinstance(exc, (LscError, SendStopped)):  # a stopped send says why; it is no bug
        return one_line(exc)
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return one_line(f"{type(exc).__name__}: {exc}")


def for_display(pixels: Any, side: int = 160) -> Any:
    """A small image scaled up by whole pixels (nearest) so a 32x32 scene is visible; numbers never use it."""
    import numpy as np

    arr = np.asarray(pixels)
    k = max(1, side // max(arr.shape[:2]))
    return arr.repeat(k, axis=0).repeat(k, axis=1) if k > 1 else arr


def _no_change(n: int) -> list[Any]:
    import gradio as gr

    return [gr.update() for _ in range(n)]


def guarded(n_outputs: int, status_at: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a callback return its outputs unchanged plus an error line instead of raising."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - shown in the page; the app keeps serving
                out = _no_change(n_outputs)
                out[status_at] = message(describe(exc), error=True)
                return tuple(out)

        return inner

    return wrap


class Demo:
    """One demo server: its backend, limits and work folder; every page callback is a method."""

    def __init__(self, backend: str = "world", work_dir: str | Path | None = None, threads: int | None = None,
                 max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_pixels: int = DEFAULT_MAX_PIXELS,
                 step_delay: float = 0.25, concurrency: int = 1) -> None:
        from lsc.runner.worker import default_threads

        self.backend_name = backend
        self.work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="lsc-demo-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.threads = threads or default_threads()
        self.max_bytes = int(max_upload_mb * 1e6)
        self.max_pixels = int(max_pixels)
        self.step_delay = float(step_delay)
        self.concurrency = max(1, int(concurrency))
        self.send_limits = {"max_images": MAX_SEND_IMAGES, "max_seconds": MAX_SEND_SECONDS}  # per send

    def backend(self) -> Any:
        """The backend, loaded once per process (the runner's cache, so runs reuse it)."""
        from lsc.demo.session import backend_options
        from lsc.runner.worker import get_backend

        return get_backend(self.backend_name, backend_options(self.backend_name, self.threads))

    def distance(self) -> Any:
        """The backend's perceptual distance (its declared name and scale label the page)."""
        from lsc.backends import declared_distance
        from lsc.interfaces import UNDECLARED_DISTANCE

        return declared_distance(self.backend_name) or getattr(self.backend(), "distance", UNDECLARED_DISTANCE)

    def scheme_names(self) -> list[str]:
        from lsc import api

        return [info.name for info in api.schemes()]

    # ------------------------------------------------------------ picking the image
    @guarded(4, 2)
    def load_scene(self, index: Any, seed: Any, state: dict[str, Any] | None) -> tuple[Any, ...]:
        """World scene -> (original, Alice's caption, status, state)."""
        pixels, src = world_source(self.backend(), index, seed)
        state = {**(state or {}), "source": src}
        return for_display(pixels), src.alice_caption, message(f"scene {src.index} of seed {src.seed}: {src.image_id}"), state

    @guarded(5, 3)
    def random_scene(self, seed: Any, state: dict[str, Any] | None) -> tuple[Any, ...]:
        """A random scene index (shown, so the pick can be repeated) -> (index, original, caption, status, state)."""
        index = secrets.randbelow(100_000)
        return (index, *self.load_scene(index, seed, state))

    @guarded(4, 2)
    def load_upload(self, file: Any, state: dict[str, Any] | None) -> tuple[Any, ...]:
        """Uploaded file -> (original, Alice's caption, status, state)."""
        path = getattr(file, "name", file)
        pixels, src = upload_source(self.backend(), path, self.work_dir / "uploads", self.max_bytes, self.max_pixels)
        state = {**(state or {}), "source": src}
        return for_display(pixels), src.alice_caption, message(f"uploaded image {src.image_id}"), state

    # ------------------------------------------------------------ sending
    def request(self, state: dict[str, Any] | None, caption: Any, schemes: Any, options: Any, channel_model: Any,
                snr_db: Any, modulation: Any, word_correction: Any, scc: Any, prompt_order: Any,
                seed: Any) -> DemoRequest:
        """The page's fields as a DemoRequest (the first thing wrong is a DemoInputError)."""
        src = (state or {}).get("source")
        if not isinstance(src, Source):
            raise DemoInputError("pick a scene or upload an image first")
        chosen = [str(s) for s in (schemes or [])]
        if not chosen:
            raise DemoInputError("choose at least one scheme")
        model = str(channel_model or "none")
        channel: dict[str, Any] = {"model": model}
        if model != "none":
            channel.update(snr_db=snr_db, modulation=str(modulation or "qam16"))
        channel["word_correction"] = bool(word_correction)
        if scc:
            channel["scc"] = {"enabled": True}
        try:
            study_seed = int(float(seed if seed is not None else 0))
        except (TypeError, ValueError):
            raise DemoInputError(f"seed must be a whole number, not {seed!r}") from None
        order = None if prompt_order in (None, "", "backend default") else str(prompt_order)
        req = DemoRequest(backend=self.backend_name, source=src, caption=str(caption or ""), schemes=chosen,
                          scheme_options=parse_scheme_options(options, chosen), channel=channel,
                          prompt_order=order, seed=study_seed, threads=self.threads)
        check_request(req)
        return req

    def send(self, state: dict[str, Any] | None, *fields: Any) -> Iterator[tuple[Any, ...]]:
        """Run the request; yields (status, panel, curve, step slider, download, state) as it goes."""
        import gradio as gr

        keep = gr.update()
        try:
            req = self.request(state, *fields)
            yield from self._send(req, dict(state or {}))
        except Exception as exc:  # noqa: BLE001 - shown in the page; the app keeps serving
            yield message(describe(exc), error=True), keep, keep, keep, keep, keep

    def _send(self, req: DemoRequest, state: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
        import gradio as gr

        keep = gr.update()
        run_dir = self.work_dir / "runs" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        try:
            cfg = prepare_run(req, run_dir)
        except Exception:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        self._drop_run(state.get("run_dir"))
        state["run_dir"] = str(run_dir)
        events: queue.Queue[DemoEvent | None] = queue.Queue()
        outcome: dict[str, Any] = {}
        limits = SendLimits(**self.send_limits)

        def work() -> None:
            try:
                outcome["summary"] = run_config(cfg, run_dir, events.put, limits)
            except BaseException as exc:  # noqa: BLE001 - reported by the page
                outcome["error"] = exc
            finally:
                events.put(None)

        threading.Thread(target=work, name="lsc-demo-run", daemon=True).start()
        outcome["started"] = time.monotonic()  # the page's own clock: the run and the step-by-step reveal
        try:
            yield from self._follow(req, cfg, run_dir, state, events, outcome)
        finally:  # the client left (gradio closed this generator) or the send ended: stop drawing images
            limits.cancel.set()

    def _follow(self, req: DemoRequest, cfg: Any, run_dir: Path, state: dict[str, Any],
                events: "queue.Queue[DemoEvent | None]", outcome: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
        """The page's view of a running send, from its events, then its summary and download."""
        import gradio as gr

        keep = gr.update()
        yield (message(f"sending from {req.source.image_id} with {', '.join(req.schemes)}..."), panel_html(None, 0),
               None, gr.update(value=0, maximum=1), gr.update(visible=False, value=None), state)
        done: list[str] = []
        drawn, last_note = 0, 0.0
        view: RunView | None = None
        while True:
            ev = events.get()
            if ev is None:
                break
            if ev.kind == "generated":
                drawn = ev.count
                if time.monotonic() - last_note > 0.3:
                    last_note = time.monotonic()
                    yield (self._progress(req, done, drawn), keep, keep, keep, keep, keep)
                continue
            if ev.scheme is None:
                continue  # the image row: Alice's caption is stored
            done.append(ev.scheme)
            view = load_view(run_dir)
            pending = [spec.label for spec in cfg.schemes if spec.label not in done]
            yield from self._animate(view, ev.scheme, pending, self._progress(req, done, drawn))
        if "error" in outcome:
            yield message(describe(outcome["error"]), error=True), keep, keep, keep, keep, state
            return
        view = load_view(run_dir)
        if view.image_error:
            yield message(f"the image could not be used: {view.image_error}", error=True), panel_html(view, 0), \
                None, keep, keep, state
            return
        (self.work_dir / "downloads").mkdir(parents=True, exist_ok=True)
        zip_path = archive_run(run_dir, self.work_dir / "downloads" / f"{run_dir.name}.zip")
        top = view.max_step
        wall = time.monotonic() - outcome["started"]
        yield (self._summary(view, outcome.get("summary"), wall), panel_html(view, top), curve_image(view, top),
               gr.update(value=top, maximum=max(top, 1)), gr.update(visible=True, value=str(zip_path)), state)

    def _animate(self, view: RunView, label: str, pending: list[str], status: str) -> Iterator[tuple[Any, ...]]:
        """Reveal a newly stored scheme step by step (the others shown at the same step)."""
        import gradio as gr

        keep = gr.update()
        n = next((len(s.steps) for s in view.schemes if s.label == label), 0)
        steps = range(n) if self.step_delay > 0 else [max(n - 1, 0)]
        for k in steps:
            yield (status, panel_html(view, k, pending), curve_image(view, k), gr.update(value=k, maximum=max(view.max_step, 1)),
                   keep, keep)
            if self.step_delay > 0:
                time.sleep(self.step_delay)

    @staticmethod
    def _progress(req: DemoRequest, done: list[str], drawn: int) -> str:
        working = [s for s in req.schemes if s not in {d.split("[")[0] for d in done}]
        now = f"; working on {working[0]}" if working else ""
        return message(f"Bob drew {drawn} images so far; stored: {', '.join(done) or 'none yet'}{now}")

    @staticmethod
    def _summary(view: RunView, summary: Any, wall_s: float | None = None) -> str:
        """The closing status: the time it took as the user waited (the run's own time beside it, the rest
        being the step-by-step reveal), then per scheme what the stored run says (lsc.demo.view.outcome_text)."""
        parts = [f"{s.label}: {outcome_text(s, view.threshold, view.distance)}" for s in view.schemes]
        took = ""
        if wall_s is not None:
            run = f"; the run {summary.elapsed_s:.1f} s, the rest the step-by-step reveal" if summary is not None else ""
            took = f" in {wall_s:.1f} s{run}"
        elif summary is not None:
            took = f" in {summary.elapsed_s:.1f} s (the run, without the reveal)"
        where = f"{view.image_id}, threshold {view.threshold:.4f}" if view.threshold is not None else f"{view.image_id}"
        return message(f"finished{took} ({where}): " + "; ".join(parts))

    def _drop_run(self, run_dir: Any) -> None:
        """A session keeps only its latest run folder (and zip) on disk: the one its Download button offers."""
        if not run_dir:
            return
        path = Path(str(run_dir))
        if path.parent == self.work_dir / "runs":
            shutil.rmtree(path, ignore_errors=True)
            (self.work_dir / "downloads" / f"{path.name}.zip").unlink(missing_ok=True)

    def end_session(self, state: Any) -> None:
        """A page closed (gradio deletes its state): its run folder, zip and upload are no longer downloadable."""
        if not isinstance(state, dict):
            return
        self._drop_run(state.get("run_dir"))
        src = state.get("source")
        path = Path(src.path) if isinstance(src, Source) and src.path else None
        if path is not None and path.parent == self.work_dir / "uploads":
            path.unlink(missing_ok=True)

    @guarded(2, 0)
    def scrub(self, step: Any, state: dict[str, Any] | None) -> tuple[Any, ...]:
        """The slider: the panel and curve at another step of the last run."""
        run_dir = (state or {}).get("run_dir")
        if not run_dir or not (Path(run_dir) / STORE_FILE).is_file():
            return panel_html(None, 0), None
        view = load_view(run_dir)
        k = int(float(step or 0))
        return panel_html(view, k), curve_image(view, k)

    def close(self) -> None:
        """The server stopped: every run folder, zip, upload and gradio's copies (kept under work_dir) go."""
        shutil.rmtree(self.work_dir, ignore_errors=True)

    @property
    def cache_dir(self) -> Path:
        """Where gradio keeps its copies of what the page shows and offers (zips, images): inside work_dir."""
        return self.work_dir / "gradio"


def build_blocks(demo: Demo) -> Any:
    """The page: image choice, caption, schemes, channel, send; then the panel, curve, slider, download."""
    import gradio as gr

    names = demo.scheme_names()
    distance = demo.distance()
    # gradio's copies of the zips and images age out after DOWNLOAD_TTL_S (and go with work_dir at the end)
    with gr.Blocks(title="lsc demo", delete_cache=(DOWNLOAD_TTL_S, DOWNLOAD_TTL_S)) as page:
        state = gr.State({}, delete_callback=demo.end_session)  # a closed page's run folder goes with it
        gr.Markdown("## lsc: watch meaning arrive word by word\nAlice captions the image and sends the words in "
                    "the order a scheme picks; Bob draws an image from what he received after every word; "
                    f"{distance.name} to the original says how much meaning got across (lower is better; "
                    f"{distance.scale}).")
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tab("World scene"):
                    with gr.Row():
                        scene_index = gr.Number(0, label="scene index", precision=0, elem_id="scene-index")
                        scene_seed = gr.Number(0, label="scene seed", precision=0, elem_id="scene-seed")
                    with gr.Row():
                        load_btn = gr.Button("Load scene", elem_id="load-scene")
                        random_btn = gr.Button("Random scene", elem_id="random-scene")
                with gr.Tab("Upload"):
                    upload = gr.File(label="image (PNG, JPEG, ...)", file_types=["image"], type="filepath",
                                     elem_id="upload")
                original = gr.Image(label="original", format="png", interactive=False, height=160, elem_id="original")
            with gr.Column(scale=2):
                caption = gr.Textbox(label="Alice's caption (edit it to send something else)", elem_id="caption")
                schemes = gr.CheckboxGroup(names, value=[s for s in DEFAULT_SCHEMES if s in names], label="schemes",
                                           elem_id="schemes")
                options = gr.Textbox(label="scheme options (YAML, one scheme per line)", placeholder="lowest_lpips: {beam: 2}",
                                     elem_id="scheme-options")
                with gr.Row():
                    channel_model = gr.Dropdown(list(CHANNEL_MODELS), value="none", label="channel", elem_id="channel-model")
                    snr = gr.Number(8.0, label=f"SNR (dB, {SNR_RANGE_DB[0]:g} to {SNR_RANGE_DB[1]:g})", elem_id="snr")
                    modulation = gr.Dropdown(list(MODULATIONS), value="qam16", label="modulation", elem_id="modulation")
                with gr.Row():
                    word_correction = gr.Checkbox(False, label="word correction", elem_id="word-correction")
                    scc = gr.Checkbox(False, label="semantic channel coding", elem_id="scc")
                    prompt_order = gr.Radio(list(PROMPT_ORDERS), value="backend default", label="Bob's prompt order",
                                            elem_id="prompt-order")
                    seed = gr.Number(0, label="seed", precision=0, elem_id="seed")
                send_btn = gr.Button("Send", variant="primary", elem_id="send")
        status = gr.Markdown("Pick a scene or upload an image.", elem_id="status")
        step = gr.Slider(0, 1, value=0, step=1, label="step (words sent)", elem_id="step")
        panel = gr.HTML(panel_html(None, 0), elem_id="panel")
        curve = gr.Image(label=f"{distance.name} vs words", format="png", interactive=False, elem_id="curve")
        download = gr.DownloadButton("Download run (.zip, for lsc report)", visible=False, elem_id="download")

        model = {"concurrency_id": "model", "concurrency_limit": demo.concurrency}  # generations queue here
        # Loading a scene only captions one image: its own queue, so a long send never blocks it.
        scene = {"concurrency_id": "scene", "concurrency_limit": 4}
        load_btn.click(demo.load_scene, [scene_index, scene_seed, state], [original, caption, status, state], **scene)
        random_btn.click(demo.random_scene, [scene_seed, state], [scene_index, original, caption, status, state], **scene)
        upload.upload(demo.load_upload, [upload, state], [original, caption, status, state], **scene)
        send_btn.click(demo.send, [state, caption, schemes, options, channel_model, snr, modulation, word_correction,
                                   scc, prompt_order, seed], [status, panel, curve, step, download, state], **model)
        # `input` is every change the user makes (a drag, a click on the track, the arrow keys, the number box);
        # `change` would also fire for the page's own updates while a run is revealed
        step.input(demo.scrub, [step, state], [panel, curve], concurrency_limit=4, concurrency_id="scrub",
                   trigger_mode="always_last")
        if demo.backend_name == "world":  # the first screen shows a scene, ready to send
            page.load(demo.load_scene, [scene_index, scene_seed, state], [original, caption, status, state], **scene)
    return page


def launch(backend: str = "world", host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           concurrency: int = 1, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_pixels: int = DEFAULT_MAX_PIXELS,
           step_delay: float = 0.25, block: bool = True) -> tuple[Any, Demo]:
    """Serve the page (127.0.0.1, no share link unless asked); returns (Blocks, Demo)."""
    demo = Demo(backend, max_upload_mb=max_upload_mb, max_pixels=max_pixels, step_delay=step_delay,
                concurrency=concurrency)
    atexit.register(demo.close)  # a server stopped by a signal or an error leaves no run folder behind
    os.environ["GRADIO_TEMP_DIR"] = str(demo.cache_dir)  # gradio's copies of downloads go with the work folder
    page = build_blocks(demo)
    page.queue(default_concurrency_limit=demo.concurrency)
    page.launch(server_name=host, server_port=port, share=share, max_file_size=int(max_upload_mb * 1e6),
                prevent_thread_lock=not block, quiet=not block, css=PAGE_CSS, footer_links=[])
    return page, demo
