"""Search quality vs cost (lsc.schemes.search): costs are what a fresh run generates, gaps are to the oracle."""

import pytest

from lsc.errors import ConfigError
from lsc.protocol.loop import ImageContext, LoopSettings
from lsc.protocol.testing import FakeGenerator, fake_backend
from lsc.schemes import get_scheme
from lsc.schemes.oracle import ORACLE_CHUNK
from lsc.schemes.search import SETTINGS, plot_gap_vs_calls, search_scene, summarise

CAPTION = "a red circle left of a blue square"


def test_costs_are_a_fresh_runs_images_and_gaps_are_non_negative():
    gen = FakeGenerator(size=6)
    backend = fake_backend(CAPTION, generator=gen)
    image = gen.image(CAPTION)
    scene = search_scene(backend, "x", image, CAPTION)
    n = scene.n_words
    # only the oracle generated (its batches of ORACLE_CHUNK subsets; repeated words share prompts)
    assert len(gen.calls) <= -(-2 ** n // ORACLE_CHUNK) and gen.generated <= 2 ** n
    for label, options in SETTINGS:
        ctx = ImageContext(backend, "x", image, CAPTION)
        get_scheme("lowest_lpips", **options).plan(ctx, LoopSettings(prompt_order="caption"))
        curve, cost = scene.runs[label]
        assert cost == ctx.generated_images, label
        assert len(curve) == n + 1
        assert all(c >= o - 1e-12 for c, o in zip(curve, scene.oracle)), label
        assert curve[0] == scene.oracle[0] and curve[-1] == scene.oracle[-1]


def test_lookahead_closes_the_gap_greedy_leaves(tmp_path):
    table = {frozenset(): 1.0, frozenset("a"): 0.5, frozenset("b"): 0.6, frozenset("c"): 0.6,
             frozenset("ab"): 0.45, frozenset("ac"): 0.45, frozenset("bc"): 0.1, frozenset("abc"): 0.0}
    gen = FakeGenerator(table=table, size=2)
    backend = fake_backend("a b c", generator=gen)
    summary = summarise([search_scene(backend, "t", gen.image("a b c"), "a b c")])
    # the oracle's curve after words 1..3 is 0.5, 0.1, 0.0: area per word 0.2; greedy's 0.5, 0.45, 0.0
    assert summary["greedy"]["area_gap"] == pytest.approx(0.35 / 3)  # 0.45 at two words vs the oracle's 0.1
    assert summary["greedy"]["relative_area_gap"] == pytest.approx((0.35 / 3) / 0.2)
    assert summary["greedy"]["gap_at"][2] == pytest.approx(0.35)
    assert summary["lookahead 1"]["area_gap"] == pytest.approx(0.1 / 3)  # 0.6 vs 0.5 at one word
    assert summary["oracle"]["images"] == 8
    png = plot_gap_vs_calls(summary, tmp_path / "gap.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_to_summarise_is_an_error():
    with pytest.raises(ConfigError):
        summarise([])
