"""lowest_lpips' multi-fidelity option (proxy_steps / proxy_top) and its lookahead option.

Why: a proxy may only save full-fidelity work; it must never change what is stored (the study's images
are full fidelity) and, when every candidate is re-scored, never change the order.
"""

import numpy as np
import pytest

from lsc.errors import CapabilityError, ConfigError
from lsc.protocol.loop import ImageContext, LoopSettings, transmit
from lsc.protocol.testing import FakeGenerator, fake_backend
from lsc.schemes import get_scheme

CAPTION = "a small red circle on the left of a blue square"


def fake_ctx(journal=None):
    gen = FakeGenerator(size=6)
    backend = fake_backend(CAPTION, generator=gen)
    return gen, ImageContext(backend, "x", gen.image(CAPTION), CAPTION, seed=0, journal=journal)


@pytest.mark.parametrize("prompt_order", ["send", "caption"])
@pytest.mark.parametrize("beam", [1, 3])
def test_proxy_top_at_least_n_is_exact(prompt_order, beam):
    settings = LoopSettings(prompt_order=prompt_order)
    _, exact_ctx = fake_ctx()
    exact = transmit(exact_ctx, get_scheme("lowest_lpips", beam=beam), settings)
    _, ctx = fake_ctx()
    n = len(ctx.words)
    proxied = transmit(ctx, get_scheme("lowest_lpips", beam=beam, proxy_steps=1, proxy_top=n * beam), settings)
    assert proxied.order == exact.order
    assert [s.lpips for s in proxied.steps] == [s.lpips for s in exact.steps]


@pytest.mark.parametrize("prompt_order", ["send", "caption"])
def test_proxy_saves_full_fidelity_work_and_stores_only_full_images(prompt_order):
    settings = LoopSettings(prompt_order=prompt_order)
    _, exact_ctx = fake_ctx()
    transmit(exact_ctx, get_scheme("lowest_lpips"), settings)
    recorded = []

    class Journal:
        def load(self, image_id):
            return []

        def record(self, image_id, entries):
            recorded.extend(entries)

    gen, ctx = fake_ctx(Journal())
    result = transmit(ctx, get_scheme("lowest_lpips", proxy_steps=2, proxy_top=1), settings)
    n = len(ctx.words)
    assert ctx.generated_images <= n + 1 < exact_ctx.generated_images  # one full image per step + the empty prompt
    assert gen.generated == ctx.generated_images
    assert sum(v.generated for v in gen.views) > 0  # the proxy did the ranking
    assert all("@" not in k for k in ctx.cached_keys())
    assert {k for k, *_ in recorded} == set(ctx.cached_keys())  # only full-fidelity images journaled
    for step in result.steps:  # each recorded LPIPS is the full sampler's
        assert step.lpips == pytest.approx(float(np.abs(gen.image(step.prompt) - ctx.image).mean()))
    assert result.info["alice_proxy_images"] == sum(v.generated for v in gen.views)


def test_proxy_keys_never_meet_full_keys():
    _, ctx = fake_ctx()
    proxy = ctx.proxy(2)
    assert proxy is ctx.proxy(2)
    assert proxy.key("a red circle") != ctx.key("a red circle")
    assert ctx.proxy(3).key("a red circle") != proxy.key("a red circle")
    full = ctx.lpips_of("a red circle")
    rough = proxy.lpips_of("a red circle")
    assert full != rough
    assert ctx.lpips_of("a red circle") == full and ctx.generated_images == 1
    assert ctx.reference_computations == 1 and proxy.reference_computations == 0


@pytest.mark.parametrize("options", [{"proxy_steps": 0}, {"proxy_steps": -2}, {"proxy_steps": 1.5}, {"proxy_top": 0},
                                     {"lookahead": 2}, {"lookahead": 1, "beam": 2}, {"lookahead": 1, "proxy_steps": 2}])
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError, match="lowest_lpips"):
        get_scheme("lowest_lpips", **options)


def test_generator_without_steps_is_a_capability_error():
    class Plain:
        def __init__(self, inner):
            self.inner = inner

        def generate(self, prompts, seed):
            return self.inner.generate(prompts, seed)

    gen = FakeGenerator(size=6)
    backend = fake_backend(CAPTION, generator=gen)
    backend.generator = Plain(gen)
    ctx = ImageContext(backend, "x", gen.image(CAPTION), CAPTION)
    with pytest.raises(CapabilityError, match="fewer steps"):
        get_scheme("lowest_lpips", proxy_steps=1, proxy_top=1).plan(ctx, LoopSettings())


def test_lookahead_finds_the_pair_greedy_misses():
    """Greedy takes 'a' (best alone); 'b' then 'c' reach far lower LPIPS after two words."""
    table = {frozenset(): 1.0, frozenset("a"): 0.5, frozenset("b"): 0.6, frozenset("c"): 0.6,
             frozenset("ab"): 0.45, frozenset("ac"): 0.45, frozenset("bc"): 0.1, frozenset("abc"): 0.0}
    gen = FakeGenerator(table=table, size=2)
    backend = fake_backend("a b c", generator=gen)
    settings = LoopSettings(prompt_order="caption")
    greedy = transmit(ImageContext(backend, "t", gen.image("a b c"), "a b c"), get_scheme("lowest_lpips"), settings)
    look = transmit(ImageContext(backend, "t", gen.image("a b c"), "a b c"), get_scheme("lowest_lpips", lookahead=1), settings)
    assert greedy.order[:2] == [0, 1]
    assert look.order[:2] == [1, 2]
    assert sum(s.lpips for s in look.steps) < sum(s.lpips for s in greedy.steps)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from lsc.backends.world.backend import load_world_backend
    from lsc.backends.world.release import write_random_weights

    return load_world_backend(str(write_random_weights(tmp_path_factory.mktemp("world") / "weights", sampler_steps=3)))


def world_ctx(backend):
    image = np.random.default_rng(0).uniform(0, 1, (backend.image_size, backend.image_size, 3)).astype(np.float32)
    return ImageContext(backend, "w", image, "a big red circle left of a small blue square", seed=1)


def test_world_with_steps_is_another_sampler(world):
    view = world.generator.with_steps(1)
    assert view.steps == 1 and world.generator.steps == 3 and view.m is world.generator.m
    full = world.generator.generate(["a red circle"], 0)
    assert not np.allclose(view.generate(["a red circle"], 0), full)
    np.testing.assert_array_equal(world.generator.generate(["a red circle"], 0), full)
    with pytest.raises(ConfigError):
        world.generator.with_steps(0)


@pytest.mark.parametrize("prompt_order", ["send", "caption"])
def test_world_proxy(world, prompt_order):
    settings = LoopSettings(prompt_order=prompt_order)
    exact_ctx = world_ctx(world)
    exact = transmit(exact_ctx, get_scheme("lowest_lpips"), settings)
    n = len(exact_ctx.words)
    same_ctx = world_ctx(world)
    same = transmit(same_ctx, get_scheme("lowest_lpips", proxy_steps=1, proxy_top=n), settings)
    assert same.order == exact.order
    cheap_ctx = world_ctx(world)
    cheap = transmit(cheap_ctx, get_scheme("lowest_lpips", proxy_steps=1, proxy_top=2), settings)
    assert cheap_ctx.generated_images < exact_ctx.generated_images
    assert cheap.info["alice_proxy_images"] > 0
    assert all("@" not in k for k in cheap_ctx.cached_keys())


def test_counting_prompts_nests_and_counts_cached_prompts():
    """Each block counts the distinct prompts asked inside it, cached or not; nested blocks keep their own sets."""
    from lsc.protocol.context import ImageContext
    from lsc.protocol.testing import fake_backend

    ctx = ImageContext(fake_backend(), "img", np.zeros((4, 4, 3), np.float32), "a red ball on grass")
    ctx.distances(["a red"])
    with ctx.counting_prompts() as outer:
        with ctx.counting_prompts() as inner:  # equal sets at its exit: it must close itself, not outer
            ctx.distances(["a red", "ball"])
        ctx.distances(["grass", "a", "a red"])
    ctx.distances(["on"])
    assert len(inner) == 2 and len(outer) == 4 and ctx._tallies == []
