"""The benchmark's research-code loop is the same algorithm as lsc's lowest_lpips (so its ratio is fair)."""

import importlib.util
import json
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
def test_research_loop_matches_lsc(prompt_order):
    bench = load_bench()
    caption = "a small red circle left of a blue square"
    gen = FakeGenerator(size=6)
    backend = fake_backend(caption, generator=gen)
    image = gen.image(caption)
    ctx = ImageContext(backend, "x", image, caption, seed=0)
    result = transmit(ctx, get_scheme("lowest_lpips"), LoopSettings(prompt_order=prompt_order))
    builds = []

    def rebuild():
        builds.append(1)
        return FakePerceptual()

    order, curve, calls = bench.research_lowest_lpips(backend, image, ctx.words, 0, rebuild, prompt_order)
    n = len(ctx.words)
    assert order == result.order
    np.testing.assert_allclose(curve, [s.lpips for s in result.steps[1:]])
    # research: n(n+1)/2 candidates + n regenerated choices, one call each; LPIPS (and its network) twice per candidate
    assert calls == n * (n + 1) // 2 + n
    assert len(builds) == n * (n + 1)
    # lsc: one call per step plus the empty prompt; repeated words ("a") share images
    assert ctx.generator_calls == n + 1
    assert ctx.generated_images < calls


def test_bench_runs_all_three_and_refuses_a_bad_proxy(tmp_path, capsys):
    bench = load_bench()
    out = tmp_path / "b.json"
    assert bench.main(["--backend", "fake", "--images", "1", "--proxy-steps", "1", "--proxy-top", "1", "--json", str(out)]) == 0
    import json

    figures = json.loads(out.read_text())
    assert figures["research_same_orders_as_lsc"] is True
    assert figures["proxy_full_images"] < figures["lsc_generated_images"]
    assert 0 <= figures["proxy_position_agreement"] <= 1
    assert bench.main(["--proxy-steps", "0"]) == 2
    assert "proxy_steps" in capsys.readouterr().err


def test_bench_receivers_times_each_receiver_on_the_same_prompts(tmp_path, capsys):
    """Random weights without a student: flow is timed (2 steps x 2 evaluations per image), flow_fast is listed
    as missing with its one-line reason, an unknown receiver is exit 2."""
    from lsc.backends.world.release import write_random_weights

    spec = importlib.util.spec_from_file_location("bench_receivers", BENCH.parent / "bench_receivers.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    weights = write_random_weights(tmp_path / "w", sampler_steps=2)
    assert bench.main(["--images", "1", "--weights", str(weights), "--receivers", "flow,flow_fast", "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    flow = result["receivers"]["flow"]
    assert flow["evaluations_per_image"] == 4.0 and flow["time_vs_flow"] == 1.0 and flow["ms_per_image"] > 0
    assert result["prompts"] >= 1 and list(result["missing"]) == ["flow_fast"] and "bob_unet_fast" in result["missing"]["flow_fast"]
    capsys.readouterr()
    assert bench.main(["--receivers", "flow,nope"]) == 2
    assert "unknown receiver nope" in capsys.readouterr().err
