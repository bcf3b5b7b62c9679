"""`lsc demo` end to end: the page served on a free local port, driven by Playwright in headless Chromium.

Chromium is the Debian `chromium` package (scripts/test.sh installs it where apt-get exists); without it
the test is skipped with the reason. Set LSC_DEMO_SCREENSHOT=1 to refresh docs/figures/demo.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="lsc demo needs gradio (pip install -e '.[demo]')")
pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (pip install -e '.[test]')")

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCENE = 2
SNR_DB = 8.0  # Eb/N0 at which 16-QAM flips a few bits of a caption: errors to highlight
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "demo.png"


def _chromium() -> str | None:
    found = [p for p in CHROMIUM_PATHS if os.access(p, os.X_OK)]
    return found[0] if found else shutil.which("chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _study_final_lpips(tmp_path: Path) -> dict[str, float]:
    """The same scene, schemes, channel and seed as a study (`lsc run`)."""
    from lsc import api
    from lsc.config import load_config

    cfg = load_config(None, [f"images.start={SCENE}", "images.count=1", "schemes=[random, heads]", "oracle=false",
                             "seed=0", "channel.model=analytic", f"channel.snr_db={SNR_DB}", "channel.modulation=qam16"])
    api.run(cfg, tmp_path / "study", progress=False, report=False)
    con = sqlite3.connect(tmp_path / "study" / "results.sqlite")
    rows = con.execute("SELECT scheme, final_lpips FROM summary WHERE image_id = ?", (f"world-0-{SCENE:05d}",)).fetchall()
    con.close()
    return {scheme: float(v) for scheme, v in rows}


def _save_small_png(data: bytes, path: Path) -> None:
    """The screenshot as a palette PNG (a page of flat colours: small without visible loss)."""
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(data)).convert("RGB")
    im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


@pytest.mark.slow
def test_demo_in_chromium_runs_two_schemes_and_shows_the_studys_numbers(tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium found (install the Debian package: apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    from lsc.demo.app import launch

    port = _free_port()
    page_app, demo = launch("world", port=port, step_delay=0.05, block=False)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
            # The first screen shows a loaded scene (scene 0 of seed 0), ready to send.
            expect(page.locator("#status")).to_contain_text("world-0-00000", timeout=120_000)
            expect(page.locator("#caption textarea")).not_to_have_value("", timeout=30_000)
            # Pick a scene.
            page.locator("#scene-index input").fill(str(SCENE))
            page.locator("#load-scene").click()
            expect(page.locator("#status")).to_contain_text(f"world-0-{SCENE:05d}", timeout=120_000)
            caption = page.locator("#caption textarea")
            expect(caption).not_to_have_value("", timeout=30_000)
            alice = caption.input_value()
            # Bad input is a line in the page, and the page keeps working.
            caption.fill("  ")
            page.locator("#send").click()
            expect(page.locator("#status")).to_contain_text("the caption is empty", timeout=60_000)
            caption.fill(alice)
            # Two cheap schemes (random and heads are checked by default), a noisy channel, seed 0.
            page.locator("#channel-model input").click()
            page.get_by_role("option", name="analytic").click()
            page.locator("#snr input").fill(str(SNR_DB))
            page.locator("#send").click()
            expect(page.locator("#status")).to_contain_text("finished", timeout=600_000)
            page.screenshot(path=str(tmp_path / "after-send.png"), full_page=True)  # kept for a failing run
            panel = page.locator("#panel")
            expect(panel.locator("img.lsc-bob")).to_have_count(2)
            expect(page.locator("#curve img")).to_have_count(1)
            shown = {}
            for el in panel.locator("span.lsc-final-lpips").all():
                shown[el.get_attribute("data-scheme")] = (float(el.get_attribute("data-lpips") or "nan"), el.inner_text())
            assert set(shown) == {"random", "heads"}
            expect(page.locator("#download")).to_be_visible()
            shot = page.screenshot(full_page=True)
            # "Download run" gives the run folder as a zip.
            with page.expect_download(timeout=60_000) as got:
                page.locator("#download").click()
            got.value.save_as(tmp_path / "run.zip")
            # The slider scrubs back: dragged to its start, the panel shows step 0 (no words yet).
            box = page.locator("#step input[type=range]").bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + 2, box["y"] + box["height"] / 2)
            expect(panel.locator(".lsc-panel")).to_have_attribute("data-step", "0", timeout=60_000)
            expect(panel.locator("ol.lsc-words li")).to_have_count(0)
            # The arrow keys and the number box move the panels too, not only the knob.
            page.locator("#step input[type=range]").press("ArrowRight")
            expect(panel.locator(".lsc-panel")).to_have_attribute("data-step", "1", timeout=60_000)
            number = page.locator("#step input[type=number]")
            number.fill("2")
            number.press("Enter")
            expect(panel.locator(".lsc-panel")).to_have_attribute("data-step", "2", timeout=60_000)
            browser.close()
    finally:
        page_app.close()
        demo.close()
    study = _study_final_lpips(tmp_path)
    for scheme, (value, text) in shown.items():
        assert value == study[scheme], (scheme, value, study[scheme])
        assert text == f"{study[scheme]:.4f}"
    with zipfile.ZipFile(tmp_path / "run.zip") as zf:
        names = zf.namelist()
    assert any(n.endswith("/results.sqlite") for n in names) and any("/images/" in n for n in names)
    _save_small_png(shot, tmp_path / "demo.png")
    assert (tmp_path / "demo.png").stat().st_size < 300_000
    if os.environ.get("LSC_DEMO_SCREENSHOT"):
        shutil.copyfile(tmp_path / "demo.png", SCREENSHOT)
