"""The contract kit: checks every scheme, step metric and channel model must pass, for plugin authors and
for lsc's own tests (each built-in passes them), the way diffusers ships its pipeline tester mixin.

Everything runs on the tiny fake backend (`lsc.protocol.testing`), in milliseconds, with no model. Use the
functions (each raises AssertionError naming the rule broken) or subclass the pytest classes:

    from lsc.testing import SchemeContract

    class TestLongestFirst(SchemeContract):
        scheme = "my_pkg.orders:LongestFirst"     # a name, an import path or the class
        options = {"min_length": 2}

The rules (docs/extending.md):
- scheme: its plan is a list of distinct indices into its words (all of them: a permutation; or a
  declared subset); the same seed gives the same plan, from a fresh instance too; it plans on a backend
  that has only the capabilities it declares (`requires`); its options round-trip through the resolved
  configuration (`options()` rebuilds it, and a study's YAML form gives the same scheme back).
- step metric: one dict per step, only its declared columns, numbers where it declares numbers.
- channel model: B blocks of k bits in, B blocks of k decided bits (0/1) out, the same for the same seed.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from lsc.interfaces import (CAP_ALICE_ATTENTION, CAP_ALICE_GROUNDING, CAP_BOB_ATTENTION, CAP_BOB_CROSS_ATTENTION,
                            CAP_GENERATOR, CAP_PERCEPTUAL, Backend)
from lsc.protocol.context import ImageContext, LoopSettings, Plan
from lsc.protocol.words import stable_seed

CAPTIONS = ("a dog runs on green grass", "two small red boats sail past the old lighthouse", "sky")


def _maps(words: Sequence[str], salt: str, size: int = 4) -> dict[str, np.ndarray]:
    return {w: np.random.default_rng(stable_seed(salt, w)).uniform(0, 1, (size, size)) for w in words}


def declared_backend(requires: frozenset[str] | set[str], caption: str) -> Backend:
    """A fake backend with exactly the declared capabilities: any other component is absent (None), so a
    scheme that reads what it did not declare fails here, not on a user's study."""
    from lsc.protocol.testing import FakeCaptioner, FakeGenerator, FakePerceptual, FakeTextEncoder

    words = caption.split()
    caps = {CAP_GENERATOR, CAP_PERCEPTUAL} | (set(requires) & {CAP_BOB_ATTENTION, CAP_ALICE_ATTENTION,
                                                                  CAP_ALICE_GROUNDING, CAP_BOB_CROSS_ATTENTION})
    generator = FakeGenerator(cross_maps=_maps(words, "cross") if CAP_BOB_CROSS_ATTENTION in caps else None)
    grounding = _maps(words, "grounding") if CAP_ALICE_GROUNDING in caps else None
    return Backend(
        name="contract", captioner=FakeCaptioner(caption, grounding), generator=generator, perceptual=FakePerceptual(),
        bob_text_encoder=FakeTextEncoder() if CAP_BOB_ATTENTION in caps else None,
        alice_text_encoder=FakeTextEncoder() if CAP_ALICE_ATTENTION in caps else None,
        capabilities=frozenset(caps), skd_examples=[(caption, caption)],
    )


def _context(backend: Backend, caption: str, image_id: str) -> ImageContext:
    image = backend.generator.generate([caption], 0)[0]
    return ImageContext(backend, image_id, image, caption, seed=0)


def _scheme_name(scheme: Any) -> str:
    if isinstance(scheme, str):
        return scheme
    return f"{scheme.__module__}:{scheme.__qualname__}"


def check_plan(plan: Any, words: Sequence[str], where: str) -> None:
    """A plan is a Plan whose order holds distinct indices into its words (all of them, or a subset)."""
    assert isinstance(plan, Plan), f"{where}: plan() returned a {type(plan).__name__}, not a lsc.schemes.Plan"
    n = len(plan.words)
    assert plan.rewritten is not None or list(plan.words) == list(words), (
        f"{where}: the plan's words {plan.words} are not the caption's {list(words)} (a rewrite must set `rewritten`)")
    assert all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in plan.order), (
        f"{where}: the order {plan.order} holds something other than integer indices")
    assert all(0 <= i < n for i in plan.order), f"{where}: the order {plan.order} has an index outside 0..{n - 1}"
    assert len(set(plan.order)) == len(plan.order), f"{where}: the order {plan.order} sends a word twice"


def check_scheme(scheme: Any, options: Mapping[str, Any] | None = None, captions: Sequence[str] = CAPTIONS,
                 seeds: Sequence[int] = (0, 7)) -> None:
    """Every rule of a scheme (see the module docstring); `scheme` is a name, an import path or the class."""
    from lsc.config import SchemeSpec, _scheme_to_raw
    from lsc.schemes import get_scheme, scheme_class

    from lsc.schemes.base import as_scheme_class

    name, opts = _scheme_name(scheme), dict(options or {})
    cls = scheme_class(name) if isinstance(scheme, str) else as_scheme_class(scheme, name)
    where = f"scheme {name!r}"

    def build(**kw: Any) -> Any:  # a class defined in a test need not be importable by its path
        return get_scheme(name, **kw) if isinstance(scheme, str) else cls(**kw)

    built = build(**opts)
    # options round-trip: options() rebuilds an equal scheme, and the YAML form of the study gives them back
    again = build(**built.options())
    assert again.options() == built.options(), f"{where}: options() {built.options()} does not rebuild the scheme"
    spec = SchemeSpec(name=name, options=opts)
    back = SchemeSpec.from_raw(_scheme_to_raw(spec))
    assert (back.name, back.options, back.label) == (spec.name, spec.options, spec.label), (
        f"{where}: its config entry does not round-trip ({_scheme_to_raw(spec)!r})")
    for caption in captions:
        for seed in seeds:
            settings = LoopSettings(seed=seed)
            backend = declared_backend(cls.requires, caption)
            ctx = _context(backend, caption, f"contract-{seed}")
            try:
                first = built.plan(ctx, settings)
            except Exception as exc:  # noqa: BLE001 - the kit names the failure instead of a traceback deep inside
                raise AssertionError(f"{where} failed to plan {caption!r} on a backend with only its declared "
                                     f"capabilities {sorted(cls.requires)}: {type(exc).__name__}: {exc}") from exc
            check_plan(first, ctx.words, f"{where} on {caption!r}")
            fresh = build(**opts).plan(_context(declared_backend(cls.requires, caption), caption,
                                                           f"contract-{seed}"), settings)
            assert (list(fresh.words), list(fresh.order)) == (list(first.words), list(first.order)), (
                f"{where} is not deterministic: seed {seed} on {caption!r} gave {first.order}, then {fresh.order}")


def check_metric(metric: Any, backend: str = "world") -> None:
    """Every rule of a step metric (a `StepMetric`, or a registered name) on three fake images."""
    from lsc.metrics.registry import REGISTRY, StepBatch, StepMetric

    m = REGISTRY[metric] if isinstance(metric, str) else metric
    assert isinstance(m, StepMetric), f"{metric!r} is not a StepMetric"
    where = f"step metric {m.name!r}"
    assert m.columns or m.texts, f"{where} declares no columns"
    images = np.stack([np.full((8, 8, 3), v, dtype=np.float32) for v in (0.2, 0.5, 0.8)])
    captions = [CAPTIONS[0]] * 3
    batch = StepBatch(images, captions, [None] * 3, {"backend": backend}, corpus=list(CAPTIONS))
    got = m.compute(batch)
    assert isinstance(got, list) and len(got) == 3, f"{where}: compute() must return one dict per step (3), got {got!r}"
    for row in got:
        unknown = set(row) - set(m.columns) - set(m.texts)
        assert not unknown, f"{where}: compute() returned undeclared columns {sorted(unknown)}"
        for c in m.columns:
            if c in row:
                assert isinstance(row[c], (int, float)) and not isinstance(row[c], bool), (
                    f"{where}: column {c!r} must be a number, got {row[c]!r}")
    assert m.compute(StepBatch(images, captions, [None] * 3, {"backend": backend}, corpus=list(CAPTIONS))) == got, (
        f"{where} is not deterministic")


def check_channel(factory: Callable[..., Any] | str, snr_db: float = 6.0, blocks: int = 16, bits: int = 40) -> None:
    """Every rule of a channel model: a factory `(ChannelConfig, seed) -> BitChannel`, or a channel name."""
    from lsc.channel.config import ChannelConfig
    from lsc.channel.registry import CHANNELS

    make = CHANNELS.get(factory) if isinstance(factory, str) else factory
    model = factory if isinstance(factory, str) else "analytic"
    cfg = ChannelConfig(model=model, snr_db=snr_db) if isinstance(factory, str) else ChannelConfig(snr_db=snr_db)
    u = np.random.default_rng(0).integers(0, 2, size=(blocks, bits), dtype=np.uint8)
    results = [make(cfg, 5).transmit_blocks(u.copy()) for _ in range(2)]
    where = f"channel {factory!r}"
    for r in results:
        hat = np.asarray(r.u_hat)
        assert hat.shape == u.shape, f"{where}: u_hat has shape {hat.shape}, expected {u.shape}"
        assert set(np.unique(hat)) <= {0, 1}, f"{where}: u_hat holds values other than 0 and 1"
        assert int(r.channel_bits_per_block) >= bits, f"{where}: fewer channel bits per block than information bits"
    assert np.array_equal(results[0].u_hat, results[1].u_hat), f"{where} is not deterministic for a seed"


class SchemeContract:
    """A pytest mixin: set `scheme` (name, import path or class) and `options`; pytest collects the checks."""

    scheme: ClassVar[Any] = None
    options: ClassVar[Mapping[str, Any]] = {}

    def test_scheme_contract(self) -> None:
        check_scheme(self.scheme, self.options)


class MetricContract:
    """A pytest mixin: set `metric` (a StepMetric or a registered name) and `backend`."""

    metric: ClassVar[Any] = None
    backend: ClassVar[str] = "world"

    def test_metric_contract(self) -> None:
        check_metric(self.metric, self.backend)


class ChannelContract:
    """A pytest mixin: set `channel` (a factory or a channel model name)."""

    channel: ClassVar[Any] = None

    def test_channel_contract(self) -> None:
        check_channel(self.channel)
