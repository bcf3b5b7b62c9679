"""The benchmark's naive loop is the same algorithm as lsc's lowest_lpips (so its ratio is fair)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lsc.protocol.loop import ImageContext, LoopSettings, transmit
from lsc.protocol.testing import FakeGenerator, FakePerceptual, fake_backend
from lsc.schemes import get_scheme

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_lowest_lpips.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_lowest_lpips", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("prompt_order", ["send", "caption"])
def test_naive_loop_matches_lsc(prompt_order):
    bench = load_bench()
    caption = "a small red circle left of a blue square"
    gen = FakeGenerator(size=6)
    backend = fake_backend(caption, generator=gen)
    image = gen.image(caption)
    ctx = ImageContext(backend, "x", image, caption, seed=0)
    result = transmit(ctx, get_scheme("lowest_lpips"), LoopSettings(prompt_order=prompt_order))
    order, curve, calls = bench.naive_lowest_lpips(backend, image, ctx.words, 0, FakePerceptual, prompt_order)
    n = len(ctx.words)
    assert order == result.order
    np.testing.assert_allclose(curve, [s.lpips for s in result.steps])
    # naive: empty prompt + n(n+1)/2 candidates + n regenerated choices, one call each
    assert calls == 1 + n * (n + 1) // 2 + n
    # lsc: one call per step plus the empty prompt; repeated words ("a") share images
    assert ctx.generator_calls == n + 1
    assert ctx.generated_images < calls
