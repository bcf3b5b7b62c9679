"""Every registered scheme runs end to end on the tiny hf backend, and `lsc run --set backend=hf` with
tiny local model folders completes a study and its report."""

from __future__ import annotations

import numpy as np
import pytest

from hf_tiny import hf_backend, hf_options  # noqa: F401  (session fixtures)
from lsc.protocol.loop import ImageContext, LoopSettings, transmit
from lsc.schemes import check_capabilities, get_scheme, list_schemes

CAPTION = "a brown dog runs on the green grass"


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
