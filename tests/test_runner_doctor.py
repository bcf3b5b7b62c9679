"""`lsc doctor`: one screen, exit 0 only when the study can run (tiny hf models, no GPU here)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from hf_tiny import hf_options  # noqa: F401  (session fixture)


@pytest.fixture
def tiny_study(tmp_path, hf_options) -> callable:
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")

    def write(**backend_options) -> str:
        cfg = {"backend": "hf", "backend_options": {**hf_options, "batch_size": 2, **backend_options},
               "images": {"source": "folder", "path": str(tmp_path), "limit": 3},
               "schemes": ["random", "lowest_lpips"], "metrics": [], "oracle": False}
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return str(path)

    return write


def test_doctor_ready_times_a_batch_and_estimates(tiny_study, lsc_main) -> None:
    res = lsc_main("doctor", tiny_study())
    out = res.stdout
    assert res.returncode == 0, out
    assert "ok    captioner" in out and "local folder" in out and "ok    transformers" in out
    assert "2 image(s) in" in out
    # 1 image (limit 3, one file) x (random: 10 + 1, lowest_lpips: 10 * 11 / 2) = 66 generated images
    assert "1 images x 66 generated images each" in out and "= 66 images" in out
    assert out.rstrip().endswith("ready: the study can run here")


def test_doctor_names_a_missing_model_and_exits_1(tiny_study, lsc_main, tmp_path) -> None:
    missing = str(tmp_path / "no_such_model")
    res = lsc_main("doctor", tiny_study(generator=missing))
    assert res.returncode == 1
    assert f"FAIL  generator" in res.stdout and "not here" in res.stdout
    assert "estimate: needs every model here first" in res.stdout
    assert res.stdout.rstrip().endswith("not ready: 1 problem(s) above")


def test_doctor_estimate_formula() -> None:
    from lsc.config import load_config
    from lsc.runner.doctor import Report, estimate, images_per_caption

    assert [images_per_caption(s, 10) for s in ("random", "lowest_lpips", "crossattention_match")] == [11, 55, 12]
    report = Report()
    estimate(report, load_config(None, ["oracle=true", "images.count=4"]), 2.0, words=3)
    # the default world study's schemes, plus 2^3 oracle images, for 4 images at 2 s each
    assert "4 images x" in report.lines[0] and "oracle" in report.lines[0]
