"""`lsc demo` without a browser: the page's callbacks, the config it builds, its archive, its limits.

The fast tests use the fake backend (lsc.protocol.testing); the world test checks that a demo run's numbers
equal a study's for the same scene, schemes, channel and seed.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("gradio", reason="lsc demo needs gradio (pip install -e '.[demo]')")

from study_data import FAKE_BACKEND, save_caption_png  # noqa: E402
from lsc.config import load_config  # noqa: E402
from lsc.demo.app import Demo  # noqa: E402
from lsc.demo.session import DemoInputError, DemoRequest, Source, build_config, parse_scheme_options  # noqa: E402
from lsc.demo.view import RunView, SchemeView, panel_html  # noqa: E402
from lsc.runner.images import list_images  # noqa: E402

FAKE = FAKE_BACKEND
CAPTION = "a red ball on green grass"  # the fake captioner's caption


def _fields(caption: str = CAPTION, schemes: tuple[str, ...] = ("random", "heads"), options: str = "",
            model: str = "none", snr: Any = 8.0, modulation: str = "qam16", correction: bool = False,
            scc: bool = False, order: str = "backend default", seed: Any = 0) -> list[Any]:
    return [caption, list(schemes), options, model, snr, modulation, correction, scc, order, seed]


def _last(gen: Any) -> tuple[Any, ...]:
    out = None
    for out in gen:
        pass
    assert out is not None
    return out


@pytest.fixture
def demo(tmp_path: Path) -> Demo:
    return Demo(FAKE, work_dir=tmp_path / "work", threads=1, step_delay=0)


@pytest.fixture
def uploaded(demo: Demo, tmp_path: Path) -> dict[str, Any]:
    img = tmp_path / "pic.png"
    save_caption_png(img, CAPTION, size=16)
    original, caption, status, state = demo.load_upload(str(img), {})
    assert caption == CAPTION and "error" not in status
    assert isinstance(original, np.ndarray) and original.shape == (160, 160, 3)  # shown scaled up
    return state


def _steps(run_dir: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(run_dir / "results.sqlite")
    try:
        return con.execute("SELECT scheme, step, word_sent, word_received, bits, bit_errors, prompt, lpips, image_key "
                           "FROM steps ORDER BY scheme, step").fetchall()
    finally:
        con.close()


def test_send_streams_then_shows_the_stored_run_and_a_zip_lsc_report_reads(demo: Demo, uploaded: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    outs = list(demo.send(uploaded, *_fields(model="analytic", snr=2.0)))
    status, panel, curve, step, download, state = outs[-1]
    assert status.startswith("finished"), status
    run_dir = Path(state["run_dir"])
    rows = _steps(run_dir)
    assert {r[0] for r in rows} == {"random", "heads"}
    # Every stored step's LPIPS is what the panel shows (the page reads the store).
    for scheme in ("random", "heads"):
        last = max((r for r in rows if r[0] == scheme), key=lambda r: r[1])
        assert f'data-scheme="{scheme}" data-step="{last[1]}" data-lpips="{last[7]!r}"' in panel
    assert step["value"] == max(r[1] for r in rows) and curve is not None and curve.ndim == 3
    assert any("data-lpips" in str(o[1]) for o in outs[:-1])  # something was shown before the end
    assert any(str(o[0]).startswith("Bob drew") for o in outs)  # progress while generating
    # The zip is the run folder `lsc run` writes; `lsc report` rebuilds its report.
    with zipfile.ZipFile(download["value"]) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "unzipped")
    top = run_dir.name
    assert f"{top}/results.sqlite" in names and f"{top}/config.resolved.yaml" in names
    assert any(n.startswith(f"{top}/images/") and n.endswith(".png") for n in names)
    assert not any(n.endswith(".lsc-run.lock") for n in names)
    from lsc import api

    assert api.report(tmp_path / "unzipped" / top).is_file()  # what `lsc report` calls
    assert _steps(tmp_path / "unzipped" / top) == rows
    # Scrubbing shows another step of the same run.
    panel0, _ = demo.scrub(0, state)
    assert 'data-step="0"' in panel0 and "<li" not in panel0


def test_demo_numbers_equal_a_folder_study_of_the_same_image(demo: Demo, uploaded: dict[str, Any], tmp_path: Path) -> None:
    """The page builds a study config and the runner runs it: the same config via `lsc run` agrees."""
    from lsc import api

    _, _, _, _, _, state = _last(demo.send(uploaded, *_fields(model="analytic", snr=3.0, seed=5)))
    run_dir = Path(state["run_dir"])
    cfg = load_config(run_dir / "config.resolved.yaml")
    api.run(cfg, tmp_path / "study", progress=False, report=False)
    assert _steps(tmp_path / "study") == _steps(run_dir)
    assert any(r[5] > 0 for r in _steps(run_dir))  # the channel did flip bits: the seeds matter


def test_bad_input_is_a_line_in_the_page_and_the_app_keeps_serving(demo: Demo, uploaded: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    cases = {
        "the caption is empty": _fields(caption="   "),
        "out of range": _fields(model="analytic", snr=99),
        "SNR must be a number": _fields(model="analytic", snr=None),
        "choose at least one scheme": _fields(schemes=()),
        "scheme options": _fields(options="lowest_lpips: {beam: 2}"),
        "has no option 'colour'": _fields(options="random: {colour: 3}"),
    }
    for expected, fields in cases.items():
        outs = list(demo.send(uploaded, *fields))
        assert len(outs) == 1 and outs[0][0].startswith("**error:**") and expected in outs[0][0], (expected, outs[0][0])
        assert "Traceback" not in outs[0][0] and "\n" not in outs[0][0]
    assert "pick a scene or upload" in list(demo.send({}, *_fields()))[0][0]
    # Unreadable, too large (bytes, pixels) uploads.
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    assert "not an image file" in demo.load_upload(str(junk), {})[2]
    big = tmp_path / "big.png"
    save_caption_png(big, CAPTION, size=64)
    small = Demo(FAKE, work_dir=tmp_path / "w2", threads=1, max_pixels=32 * 32, max_upload_mb=0.0001)
    assert "MB limit" in small.load_upload(str(big), {})[2]
    small.max_bytes = 10**9
    assert "Mpx limit" in small.load_upload(str(big), {})[2]
    assert "no image uploaded" in demo.load_upload(None, {})[2]
    assert "world backend" in demo.load_scene(0, 0, {})[2]  # the fake backend has no world scenes
    # ... and after all that, a good request still runs.
    assert _last(demo.send(uploaded, *_fields()))[0].startswith("finished")


def test_an_edited_caption_is_what_alice_sends(demo: Demo, uploaded: dict[str, Any]) -> None:
    status, panel, *_, state = _last(demo.send(uploaded, *_fields(caption="two blue cats", schemes=("heads",))))
    assert status.startswith("finished")
    cfg = load_config(Path(state["run_dir"]) / "config.resolved.yaml")
    assert cfg.caption_source == "dataset"
    con = sqlite3.connect(Path(state["run_dir"]) / "results.sqlite")
    assert con.execute("SELECT caption FROM summary").fetchone()[0] == "two blue cats"
    con.close()


def test_build_config_world_scene_is_the_studys_own_image(tmp_path: Path) -> None:
    src = Source("world", "a big red ball", index=3, seed=7)
    req = DemoRequest("world", src, "a big  red ball", ["random"], channel={"model": "analytic", "snr_db": 4})
    cfg = build_config(req, tmp_path, 32)
    assert cfg.images.source == "world" and (cfg.images.start, cfg.images.count, cfg.images.seed) == (3, 1, 7)
    assert cfg.caption_source == "alice" and cfg.oracle is False
    assert [im.image_id for im in list_images(cfg)] == ["world-7-00003"]
    edited = build_config(DemoRequest("world", src, "a red ball", ["random"]), tmp_path, 32)
    assert edited.images.source == "folder" and edited.caption_source == "dataset" and edited.images.resize == 32
    assert (tmp_path / "inputs" / "world-7-00003.png").is_file()
    assert "world-7-00003.png,a red ball" in (tmp_path / "inputs" / "captions.txt").read_text()


def test_world_start_is_written_only_when_set() -> None:
    plain = load_config(None, ["images.count=3"])
    assert "start" not in plain.to_dict()["images"]  # existing run folders keep their identity
    shifted = load_config(None, ["images.count=2", "images.start=5"])
    assert shifted.to_dict()["images"]["start"] == 5
    assert [im.image_id for im in list_images(shifted)] == ["world-0-00005", "world-0-00006"]
    assert [im.image_id for im in list_images(plain)] == ["world-0-00000", "world-0-00001", "world-0-00002"]


def test_scheme_options_parse_or_say_why() -> None:
    assert parse_scheme_options("lowest_lpips: {beam: 2}", ["lowest_lpips"]) == {"lowest_lpips": {"beam": 2}}
    assert parse_scheme_options("  ", ["heads"]) == {}
    for text, why in [("heads: [1", "not valid YAML"), ("heads: 3", "one line per scheme"), ("nouns: {}", "not one of")]:
        with pytest.raises(DemoInputError, match=why):
            parse_scheme_options(text, ["heads"])


def test_panel_escapes_words_and_marks_bit_errors(tmp_path: Path) -> None:
    row = {"step": 1, "word_sent": "<b>red", "word_received": "<b>rad", "bit_errors": 2, "lpips": 0.5, "cum_bits": 40,
           "prompt": "<b>rad", "image_key": "missing"}
    zero = {**row, "step": 0, "word_sent": "", "word_received": "", "bit_errors": 0, "prompt": ""}
    view = RunView(tmp_path, "x", "<b>red", 0.6, [SchemeView("heads", "ok", None, [zero, row], 1, 0.5)])
    html = panel_html(view, 1)
    assert '<span class="biterr" title="2 bit errors' in html and "&lt;b&gt;rad" in html and "<b>" not in html
    assert "lsc-under" in html  # 0.5 is under the threshold 0.6
    assert "biterr" not in panel_html(view, 0)


def test_launch_binds_localhost_without_a_share_link_and_limits_uploads(monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    from lsc.demo import app as demo_app

    seen: dict[str, Any] = {}

    def fake_launch(self: Any, **kwargs: Any) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    page, demo = demo_app.launch(FAKE, block=False, max_upload_mb=2)
    try:
        assert seen["server_name"] == "127.0.0.1" and seen["share"] is False and seen["max_file_size"] == 2_000_000
        assert page._queue.default_concurrency_limit == 1  # one generation at a time
        deps = [d for d in page.fns.values() if d.concurrency_id == "model"]
        assert deps and all(d.concurrency_limit == 1 for d in deps)
    finally:
        demo.close()


def test_cli_refuses_an_unknown_backend_in_one_line() -> None:
    out = subprocess.run([sys.executable, "-m", "lsc.cli", "demo", "--backend", "nope"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip() == "error: --backend: choose world or hf, not 'nope'"


@pytest.mark.slow
def test_world_demo_numbers_equal_the_world_studys(tmp_path: Path) -> None:
    """Scene 1 of seed 0 in the page = scene 1 of `lsc run --set images.count=2` (same schemes, channel, seed)."""
    from lsc import api

    demo = Demo("world", work_dir=tmp_path / "work", threads=1, step_delay=0)
    _, caption, status, state = demo.load_scene(1, 0, {})
    assert "world-0-00001" in status
    fields = _fields(caption=caption, schemes=("random",), model="analytic", snr=4.0, seed=3)
    final = _last(demo.send(state, *fields))
    assert final[0].startswith("finished"), final[0]
    # The page runs Bob on one torch thread; the study does too (a thread count may move a distance in its
    # sixth digit, and the suite's earlier tests leave torch's count at whatever they set).
    cfg = load_config(None, ["images.count=2", "schemes=[random]", "oracle=false", "seed=3", "channel.model=analytic",
                             "channel.snr_db=4.0", "channel.modulation=qam16", "backend_options.threads=1"])
    api.run(cfg, tmp_path / "study", progress=False, report=False)
    con = sqlite3.connect(tmp_path / "study" / "results.sqlite")
    study = con.execute("SELECT scheme, step, word_sent, word_received, bits, bit_errors, prompt, lpips, image_key "
                        "FROM steps WHERE image_id = 'world-0-00001' ORDER BY scheme, step").fetchall()
    con.close()
    assert study and _steps(Path(final[-1]["run_dir"])) == study


# ------------------------------------------------------------------------ hostile inputs, round two: bounds
def test_a_send_is_bounded_in_caption_images_and_time_and_stops_when_the_client_leaves(
        demo: Demo, uploaded: dict[str, Any]) -> None:
    import sqlite3 as sq

    from lsc.demo.session import SendLimits, SendStopped

    long = " ".join(["dog"] * 6000)
    out = list(demo.send(uploaded, *_fields(caption=long)))
    assert len(out) == 1 and "the caption is 6000 words" in out[0][0] and "at most 40 words" in out[0][0]
    bomb = "lowest_lpips: {x: &a [1,1,1,1,1,1,1,1,1], y: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], " + ", ".join(
        f"{k}: &{k} [{', '.join(['*' + p] * 9)}]" for p, k in zip("bcdef", "cdefg")) + "}"
    out = list(demo.send(uploaded, *_fields(schemes=("lowest_lpips",), options=bomb)))
    assert "YAML expands to more than 200000 values" in out[0][0]
    out = list(demo.send(uploaded, *_fields(schemes=("lowest_lpips",), options="lowest_lpips: {beam: 1000000000}")))
    assert "option beam is at most 64" in out[0][0]

    # over the images a send may draw: stopped with why, nothing recorded as the scheme's failure
    demo.send_limits = {"max_images": 3, "max_seconds": 600.0}
    last = _last(demo.send(uploaded, *_fields(schemes=("lowest_lpips",))))
    assert last[0].startswith("**error:** the send would draw more than 3 images"), last[0]
    run_dir = Path(last[-1]["run_dir"])
    with sq.connect(run_dir / "results.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM summary WHERE status = 'failed'").fetchone()[0] == 0
    conn.close()

    limits = SendLimits(max_images=10**6, max_seconds=10**6)
    limits.check(5)
    limits.cancel.set()  # what closing the page does (the send generator's finally)
    with pytest.raises(SendStopped, match="the page was closed"):
        limits.check(5)
    with pytest.raises(SendStopped, match="ran over 0 s"):
        SendLimits(max_seconds=0, started=0.0).check(1)


def test_closing_the_page_mid_send_cancels_the_run(demo: Demo, uploaded: dict[str, Any]) -> None:
    gen = demo.send(uploaded, *_fields(schemes=("lowest_lpips", "random", "heads")))
    next(gen)  # the send started; the client leaves
    gen.close()
    import time as _time

    deadline = _time.monotonic() + 30
    while any(t.name == "lsc-demo-run" and t.is_alive() for t in __import__("threading").enumerate()):
        assert _time.monotonic() < deadline, "the run went on after the client left"
        _time.sleep(0.05)


def test_demo_port_is_checked_in_one_line(tmp_path: Path) -> None:
    import socket

    from lsc.demo.cli import check_port
    from lsc.errors import ConfigError

    for bad in (0, -1, 99999):
        with pytest.raises(ConfigError, match="--port must be from 1 to 65535"):
            check_port("127.0.0.1", bad)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(ConfigError, match=f"--port {busy.getsockname()[1]}: cannot listen on 127.0.0.1"):
            check_port("127.0.0.1", busy.getsockname()[1])


# ------------------------------------------------------------------ issue 32 item 7: status, slider, folders
def test_finished_in_states_the_time_the_user_waited_with_the_runs_own_time_beside_it(tmp_path: Path) -> None:
    import re

    demo = Demo(FAKE, work_dir=tmp_path / "work", threads=1, step_delay=0.02)
    img = tmp_path / "pic.png"
    save_caption_png(img, CAPTION, size=16)
    *_, state = demo.load_upload(str(img), {})
    status = _last(demo.send(state, *_fields()))[0]
    got = re.match(r"finished in ([0-9.]+) s; the run ([0-9.]+) s, the rest the step-by-step reveal", status)
    assert got, status
    wall, run = float(got.group(1)), float(got.group(2))
    revealed = 2 * (len(CAPTION.split()) + 1)  # every step of both schemes, 0.02 s each
    assert wall >= run + 0.02 * revealed - 0.1  # printed to 0.1 s


def test_the_outcome_line_is_true_when_the_last_image_is_above_the_threshold_again() -> None:
    from lsc.demo.view import outcome_text

    back_above = SchemeView("heads", "ok", None, words_to_threshold=2, final_lpips=0.7)
    stays = SchemeView("heads", "ok", None, words_to_threshold=2, final_lpips=0.5)
    never = SchemeView("random", "ok", None, words_to_threshold=None, final_lpips=0.9)
    assert outcome_text(back_above, 0.6, "LPIPS-world") == (
        "final LPIPS-world 0.7000; first under the threshold at step 2, above it again at the last step")
    assert outcome_text(stays, 0.6, "LPIPS-world") == "final LPIPS-world 0.5000; first under the threshold at step 2"
    assert outcome_text(never, 0.6, "LPIPS (AlexNet)") == "final LPIPS (AlexNet) 0.9000; never under the threshold"
    summary = Demo._summary(RunView(Path("."), "img", "c", 0.6, [back_above, never], distance="LPIPS-world"), None)
    assert "under the threshold from" not in summary and "above it again at the last step" in summary


def test_every_user_change_of_the_slider_moves_the_panels_and_the_first_screen_loads_a_scene(tmp_path: Path) -> None:
    from lsc.demo.app import build_blocks

    demo = Demo(FAKE, work_dir=tmp_path / "work", threads=1, step_delay=0)
    page = build_blocks(demo)
    step = next(b for b in page.blocks.values() if getattr(b, "elem_id", None) == "step")
    scrub = [f for f in page.fns.values() if getattr(f.fn, "__name__", "") == "scrub"]
    # `input`: drags, clicks on the track, arrow keys and the number box; not `release` alone (mouse only)
    assert scrub and {t[1] for f in scrub for t in f.targets if t[0] == step._id} == {"input"}
    assert all(f.trigger_mode == "always_last" for f in scrub)
    loads = [f for f in page.fns.values() if any(t[1] == "load" for t in f.targets)]
    assert loads == []  # the fake backend has no world scenes: nothing to load
    world = build_blocks(Demo("world", work_dir=tmp_path / "w2", threads=1, step_delay=0))
    (load,) = [f for f in world.fns.values() if any(t[1] == "load" for t in f.targets)]
    assert load.fn.__name__ == "load_scene"


def test_a_closed_page_and_a_stopped_server_leave_no_run_folder(demo: Demo, uploaded: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first = _last(demo.send(uploaded, *_fields()))[-1]
    second = _last(demo.send(dict(first), *_fields()))[-1]
    runs = demo.work_dir / "runs"
    assert [p.name for p in runs.iterdir()] == [Path(second["run_dir"]).name]  # the one the page offers
    assert len(list((demo.work_dir / "downloads").iterdir())) == 1
    demo.end_session(second)  # what gradio calls when the page closes
    assert list(runs.iterdir()) == [] and list((demo.work_dir / "downloads").iterdir()) == []
    assert list((demo.work_dir / "uploads").iterdir()) == []
    import gradio as gr

    from lsc.demo import app as demo_app

    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: None)
    monkeypatch.setenv("GRADIO_TEMP_DIR", "unset")  # restored after the test
    _, served = demo_app.launch(FAKE, block=False)
    import os

    assert Path(os.environ["GRADIO_TEMP_DIR"]) == served.cache_dir and served.cache_dir.parent == served.work_dir
    served.close()
    assert not served.work_dir.exists()
