"""Every registered scheme runs end to end on the tiny hf backend, and `lsc run --set backend=hf` with
tiny local model folders completes a study and its report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from hf_tiny import hf_backend, hf_options  # noqa: F401  (session fixtures)
from lsc.protocol.loop import ImageContext, LoopSettings, transmit
from lsc.schemes import check_capabilities, get_scheme, list_schemes

CAPTION = "a brown dog runs on the green grass"
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", [info.name for info in list_schemes()])
def test_every_scheme_end_to_end(hf_backend, name: str) -> None:
    check_capabilities(hf_backend, [name])
    image = np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)
    ctx = ImageContext(hf_backend, "img0", image, CAPTION, seed=0)
    result = transmit(ctx, get_scheme(name), LoopSettings(threshold=0.6))
    words = result.words
    assert words and len(result.order) == len(set(result.order)) <= len(words)
    assert all(0 <= i < len(words) for i in result.order)
    assert result.steps[0].step == 0 and result.steps[0].prompt == ""
    assert len(result.steps) == len(result.order) + 1
    lp = np.array([s.lpips for s in result.steps])
    assert np.all(np.isfinite(lp)) and np.all(lp >= 0)
    final = ctx.image_for(result.steps[-1].image_key)
    assert final.shape == (32, 32, 3)


def _lsc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "lsc.cli", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def _flickr_folder(root: Path) -> tuple[Path, Path]:
    images = root / "Images"
    images.mkdir(parents=True)
    for i in range(2):
        pixels = (np.random.default_rng(i).random((40, 56, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"im{i}.jpg")
    captions = root / "captions.txt"
    captions.write_text("image,caption\nim0.jpg,a brown dog runs on the grass\nim1.jpg,a man riding a horse\n")
    return images, captions


@pytest.mark.slow
def test_lsc_run_paper_config_on_tiny_models(hf_options, tmp_path: Path) -> None:
    """`lsc run configs/paper.yaml --set backend=hf` with every model pointed at a tiny local folder."""
    images, captions = _flickr_folder(tmp_path / "flickr")
    sets = ["backend=hf", f"images.path={images}", f"images.captions={captions}", "images.limit=1"]
    sets += [f"backend_options.{k}={v}" for k, v in hf_options.items()]
    args = [a for s in sets for a in ("--set", s)]
    out = tmp_path / "run"
    proc = _lsc("run", str(REPO / "configs" / "paper.yaml"), "--out", str(out), "--no-progress", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n = 15  # one image x the paper config's 15 scheme entries
    assert proc.stdout.splitlines()[0].startswith(f"{n} ok, 0 failed"), proc.stdout
    assert (out / "report" / "report.html").is_file()
    resolved = (out / "config.resolved.yaml").read_text()
    assert "backend: hf" in resolved and "threshold: 0.6" in resolved
    import sqlite3

    con = sqlite3.connect(out / "results.sqlite")
    last = con.execute("SELECT s.recaption, s.bleu4, s.cider_d FROM steps s JOIN (SELECT image_id, scheme, MAX(step) AS m "
                       "FROM steps GROUP BY image_id, scheme) l ON s.image_id = l.image_id AND s.scheme = l.scheme "
                       "AND s.step = l.m").fetchall()
    con.close()
    # hf's default step metric: the backend's BLIP re-captions Bob's image after the last word of each transmission
    assert len(last) == n and all(None not in r for r in last), last


@pytest.mark.slow
def test_lsc_run_paper_config_without_weights_is_one_line(hf_options, tmp_path: Path) -> None:
    """On a machine without the BLIP / Stable Diffusion weights: exit 2 and one line naming the model."""
    images, captions = _flickr_folder(tmp_path / "flickr")
    args = ["--set", f"images.path={images}", "--set", f"images.captions={captions}",
            "--set", f"backend_options.lpips_backbone={hf_options['lpips_backbone']}",
            "--set", f"backend_options.lpips_linear={hf_options['lpips_linear']}"]
    proc = _lsc("run", str(REPO / "configs" / "paper.yaml"), "--out", str(tmp_path / "run"), *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: captioner weights 'Salesforce/blip-image-captioning-base' are not available")
    assert "huggingface-cli download Salesforce/blip-image-captioning-base" in line


def test_unreadable_lpips_file_is_one_line(tmp_path: Path) -> None:
    from lsc.backends.hf.lpips import load_lpips
    from lsc.errors import ModelUnavailableError

    (tmp_path / "b.pth").write_bytes(b"")
    with pytest.raises(ModelUnavailableError, match="cannot read LPIPS weights file"):
        load_lpips("alex", str(tmp_path / "b.pth"), None)


def test_paper_configs_load_and_say_what_the_research_code_does(hf_options) -> None:
    """paper.yaml: BLIP base greedy captions, LPIPS at 256, float32 Grad-CAM with [ENC]; paper_cliptx.yaml:
    CLIP Interrogator's BLIP-large settings and first comma segment; both build on the tiny models."""
    from lsc.backends.hf.backend import HFBackendOptions
    from lsc.config import load_config

    paper = load_config(REPO / "configs" / "paper.yaml").backend_options
    clip_tx = load_config(REPO / "configs" / "paper_cliptx.yaml").backend_options
    p, c = HFBackendOptions(**paper), HFBackendOptions(**clip_tx)
    assert (p.captioner, p.caption_num_beams, p.caption_max_new_tokens, p.caption_prompt) == (
        "Salesforce/blip-image-captioning-base", 1, 19, None)
    assert (p.lpips_size, p.itm_dtype, p.itm_first_token, p.itm_block) == (256, "float32", "enc", 7)
    assert (c.captioner, c.caption_num_beams, c.caption_max_new_tokens, c.caption_min_length) == (
        "Salesforce/blip-image-captioning-large", 8, 28, 5)
    assert c.caption_prompt == "a picture of" and c.caption_first_segment and not p.caption_first_segment
    assert {k: v for k, v in clip_tx.items() if not k.startswith("caption")} == {
        k: v for k, v in paper.items() if not k.startswith("caption")}


def test_caption_first_segment(hf_backend, monkeypatch) -> None:
    cap = hf_backend.captioner
    monkeypatch.setattr(cap.tokenizer, "batch_decode", lambda ids, **kw: ["a dog on the grass, digital art, trending"])
    monkeypatch.setattr(cap, "first_segment", True)
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    assert cap.caption([image]) == ["a dog on the grass"]
    monkeypatch.setattr(cap, "first_segment", False)
    assert cap.caption([image]) == ["a dog on the grass, digital art, trending"]


@pytest.fixture(scope="module")
def hf_backend_fp16(hf_options):
    from lsc.backends.hf import load_hf_backend

    return load_hf_backend(**{**hf_options, "dtype": "float16"})


@pytest.mark.parametrize("name", [info.name for info in list_schemes()])
def test_every_scheme_end_to_end_in_float16(hf_backend_fp16, name: str) -> None:
    """float16 on CPU (as on a GPU by default): finite LPIPS, the ITM Grad-CAM still float32 and non-zero."""
    import warnings

    b = hf_backend_fp16
    assert b.generator.pipe.unet.dtype == torch.float16 and b.captioner.model.dtype == torch.float16
    assert next(b.captioner.itm_model.parameters()).dtype == torch.float32
    check_capabilities(b, [name])
    image = np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)
    ctx = ImageContext(b, "img0", image, CAPTION, seed=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*all zero.*")
        result = transmit(ctx, get_scheme(name), LoopSettings(threshold=0.6))
    assert len(result.order) == len(set(result.order)) and len(result.steps) == len(result.order) + 1
    lp = np.array([s.lpips for s in result.steps])
    assert np.all(np.isfinite(lp)) and np.all(lp >= 0)
