"""The transmission loop, the image cache, lowest_lpips (greedy, penalty, beam) and the oracle.

A flat fake generator makes every image a constant grey level, a function of the prompt's word set; the
original image is white (1.0), so LPIPS (mean absolute difference) = 1 - level, exactly.
"""

import math

import numpy as np
import pytest

from lsc.errors import LscError
from lsc.protocol.loop import ImageContext, ImageError, LoopSettings, make_prompt, transmit
from lsc.protocol.testing import FakeGenerator, fake_backend
from lsc.schemes import get_scheme
from lsc.schemes.oracle import OracleTooLongError, oracle_curve

# words: 0 ball, 1 red, 2 on   (lengths 4, 3, 2)
CAPTION = "ball red on"
F = frozenset
TABLE = {
    F(): 0.0,
    F({"ball"}): 0.5, F({"red"}): 0.4, F({"on"}): 0.0,  # LPIPS .5 .6 1.0
    F({"ball", "red"}): 0.55, F({"ball", "on"}): 0.6, F({"red", "on"}): 0.95,  # LPIPS .45 .4 .05
    F({"ball", "red", "on"}): 1.0,  # LPIPS 0
}


def make_ctx(caption=CAPTION, table=TABLE, values=None, **kwargs):
    gen = FakeGenerator(values=values or {}, table=table)
    backend = fake_backend(caption, generator=gen, **kwargs)
    return ImageContext(backend, "img", np.ones((4, 4, 3), dtype=np.float32), caption, seed=7)


def all_generated(ctx):
    return [p for call in ctx.backend.generator.calls for p in call]


def test_make_prompt_orders():
    words = ["ball", "red", "on"]
    assert make_prompt(words, [2, 0], "send") == "on ball"
    assert make_prompt(words, [2, 0], "caption") == "ball on"


def test_steps_bits_threshold_and_fidelity():
    ctx = make_ctx()
    # nouns-like fixed order via heads with a stand-in analyzer: heads "on", "ball" -> order [0, 2, 1]
    from types import SimpleNamespace

    def analyze(words):
        return [SimpleNamespace(is_noun=False, is_verb=False, is_head=w in {"ball", "on"}) for w in words]

    result = transmit(ctx, get_scheme("heads", analyzer=analyze), LoopSettings(threshold=0.42))
    assert result.order == [0, 2, 1]
    assert [s.prompt for s in result.steps] == ["", "ball", "ball on", "ball on red"]
    assert [s.lpips for s in result.steps] == pytest.approx([1.0, 0.5, 0.4, 0.0])
    # ideal channel: 8 bits per character + 8-bit separator: ball 40, on 24, red 32
    assert [s.bits for s in result.steps] == [0, 40, 24, 32]
    assert [s.cum_bits for s in result.steps] == [0, 40, 64, 96]
    assert result.steps[0].index is None and result.steps[0].word_sent == ""
    # first step below .42 is step 2 ("ball on", .4)
    assert result.words_to_threshold == 2 and result.bits_to_threshold == 64
    assert result.final_lpips == 0.0
    # fidelity of a grey level v against white: PSNR = -20 log10(1 - v); SSIM = (2v + C1)/(1 + v^2 + C1)
    s1 = result.steps[1]
    assert s1.psnr == pytest.approx(-20 * math.log10(0.5))
    assert s1.ssim == pytest.approx((2 * 0.5 + 1e-4) / (1 + 0.25 + 1e-4))
    assert result.steps[-1].psnr == math.inf and result.steps[-1].ssim == pytest.approx(1.0)
    assert result.steps[1].image_key == ctx.key("ball")
    np.testing.assert_allclose(ctx.image_for(result.steps[1].image_key), 0.5)


def test_threshold_never_reached_and_empty_prompt_success():
    ctx = make_ctx()
    never = transmit(ctx, get_scheme("lowest_lpips"), LoopSettings(threshold=0.0))
    assert never.words_to_threshold is None and never.bits_to_threshold is None
    at_once = transmit(ctx, get_scheme("lowest_lpips"), LoopSettings(threshold=1.5))
    assert at_once.words_to_threshold == 0 and at_once.bits_to_threshold == 0


def test_caption_prompt_order_and_stop_at_success():
    ctx = make_ctx()
    # lowest_lpips greedy order is [0, 2, 1] (see below); with caption-order prompts Bob reads "ball on".
    r = transmit(ctx, get_scheme("random"), LoopSettings(prompt_order="caption", seed=0))
    for s in r.steps[1:]:
        sent = sorted(r.order[: s.step])
        assert s.prompt == " ".join(["ball", "red", "on"][i] for i in sent)
    stop = transmit(ctx, get_scheme("lowest_lpips"), LoopSettings(threshold=0.45, stop_at_success=True))
    assert [s.prompt for s in stop.steps] == ["", "ball", "ball on"]
    assert stop.words_to_threshold == 2


class GarblingLink:
    """A channel stand-in: flips 'red' into 'rod', charges 100 bits per word, reports 3 bit errors."""

    def __init__(self):
        self.sent = []
        self.prepared = []

    def prepare(self, words):
        self.prepared.append(list(words))

    def send(self, word):
        self.sent.append(word)
        received = "rod" if word == "red" else word
        return type("Tx", (), {"sent": word, "received": received, "bits": 100, "bit_errors": 3 if word == "red" else 0})()


def test_channel_link_bits_and_received_words():
    ctx = make_ctx()
    link = GarblingLink()
    result = transmit(ctx, get_scheme("lowest_lpips"), LoopSettings(), link=link)
    assert link.sent == ["ball", "on", "red"]
    assert link.prepared == [["ball", "red", "on"]]  # the link starts each caption before its words
    assert [s.word_received for s in result.steps] == ["", "ball", "on", "rod"]
    assert result.steps[-1].prompt == "ball on rod"
    assert [s.cum_bits for s in result.steps] == [0, 100, 200, 300]
    assert [s.bit_errors for s in result.steps] == [0, 0, 0, 3]
    # {ball, on, rod} is not in the table and unknown words weigh 0: a black image, LPIPS 1
    assert result.steps[-1].lpips == pytest.approx(1.0)


# ---------------------------------------------------------------- lowest_lpips
def test_lowest_lpips_greedy_one_call_per_step_and_no_regeneration():
    ctx = make_ctx()
    # step 1: ball .5, red .6, on 1.0 -> ball.  step 2: "ball red" .45, "ball on" .4 -> on.  step 3: red.
    plan = get_scheme("lowest_lpips").plan(ctx, LoopSettings())
    assert plan.order == [0, 2, 1]
    assert ctx.generator_calls == 3 and ctx.generated_images == 3 + 2 + 1
    result = transmit(ctx, get_scheme("lowest_lpips"), LoopSettings())
    # the transmission only adds the empty prompt; every chosen image came from the cache
    assert ctx.generator_calls == 4  # plan above (3) + transmit's own plan (0 new) + empty prompt (1)
    generated = all_generated(ctx)
    assert len(generated) == len(set(generated)) == 7
    assert result.order == [0, 2, 1]
    assert ctx.backend.perceptual.reference_calls == 1


def test_lowest_lpips_penalty_changes_choice():
    # penalty .2 x length: step 1 ball .5+.8=1.3, red .6+.6=1.2, on 1+.4=1.4 -> red;
    # step 2: "red ball" .45+.8=1.25, "red on" .05+.4=.45 -> on; then ball.
    ctx = make_ctx()
    assert get_scheme("lowest_lpips", penalty=0.2).plan(ctx, LoopSettings()).order == [1, 2, 0]


def test_lowest_lpips_beam_finds_lower_cumulative_lpips():
    # greedy: ball(.5) on(.4) red(0): cumulative .9.  beam 2: step 1 keeps ball(.5), red(.6);
    # step 2: ball+red .95, ball+on .9, red+ball 1.05, red+on .65 -> keep red-on(.65), ball-on(.9);
    # step 3: red-on-ball .65, ball-on-red .9 -> red, on, ball.
    ctx = make_ctx()
    plan = get_scheme("lowest_lpips", beam=2).plan(ctx, LoopSettings())
    assert plan.order == [1, 2, 0]
    assert plan.info["score"] == pytest.approx(0.65)
    assert ctx.generator_calls == 3  # one batched call per step, whatever the beam width
    assert [len(c) for c in ctx.backend.generator.calls] == [3, 4, 2]


def test_cache_shared_across_schemes_and_reference_computed_once():
    ctx = make_ctx()
    transmit(ctx, get_scheme("lowest_lpips"), LoopSettings())
    calls = ctx.generator_calls
    from types import SimpleNamespace

    def analyze(words):  # heads ball, on -> order [0, 2, 1], the same prompts as lowest_lpips
        return [SimpleNamespace(is_noun=False, is_verb=False, is_head=w in {"ball", "on"}) for w in words]

    transmit(ctx, get_scheme("heads", analyzer=analyze), LoopSettings())
    assert ctx.generator_calls == calls  # nothing new to generate
    transmit(ctx, get_scheme("random"), LoopSettings(seed=5))
    transmit(ctx, get_scheme("most_attentive"), LoopSettings())
    assert ctx.reference_computations == 1 and ctx.backend.perceptual.reference_calls == 1


def test_evaluate_batches_dedupes_and_chunks():
    ctx = make_ctx()
    images, lpips = ctx.evaluate(["ball", "red", "ball", ""])
    assert images.shape == (4, 4, 4, 3)
    assert lpips.tolist() == pytest.approx([0.5, 0.6, 0.5, 1.0])
    assert ctx.backend.generator.calls == [["ball", "red", ""]]
    ctx.evaluate(["ball", "on"])
    assert ctx.backend.generator.calls[-1] == ["on"]
    chunked = make_ctx()
    chunked.max_batch = 2
    chunked.evaluate(["ball", "red", "on"])
    assert chunked.backend.generator.calls == [["ball", "red"], ["on"]]


def test_bad_image_and_bad_settings():
    backend = fake_backend(CAPTION)
    with pytest.raises(ImageError):
        ImageContext(backend, "x", None, CAPTION)
    with pytest.raises(ImageError):
        ImageContext(backend, "x", np.zeros((4, 4)), CAPTION)
    with pytest.raises(LscError):
        LoopSettings(prompt_order="reverse")


# ---------------------------------------------------------------- oracle
def test_oracle_curve_four_words():
    # additive levels a .4, b .3, c .2, d .1, except {c, d} = .85 (they work well together).
    # k=0: 1.0; k=1: best {a} -> .6; k=2: {c,d} .85 beats {a,b} .7 -> .15; k=3: {a,b,c} .9 -> .1; k=4: 0.
    values = {"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1}
    ctx = make_ctx(caption="a b c d", table={F({"c", "d"}): 0.85}, values=values)
    curve = oracle_curve(ctx)
    assert [k for k, _ in curve] == [0, 1, 2, 3, 4]
    assert [v for _, v in curve] == pytest.approx([1.0, 0.6, 0.15, 0.1, 0.0])
    assert ctx.generator_calls == 1 and ctx.generated_images == 16


def test_oracle_refuses_long_captions():
    ctx = make_ctx(caption="w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12")
    with pytest.raises(OracleTooLongError, match="at most 11 words"):  # the study's default limit
        oracle_curve(ctx)


def test_oracle_keeps_only_distances_and_transmit_regenerates_what_it_needs():
    ctx = make_ctx()
    oracle_curve(ctx)  # 8 subsets of 3 words, distances only
    assert ctx.generated_images == 8 and ctx.cached_keys() == []
    plan_calls = ctx.generator_calls
    get_scheme("lowest_lpips").plan(ctx, LoopSettings(prompt_order="caption"))
    assert ctx.generator_calls == plan_calls  # every candidate's distance is known already
    result = transmit(ctx, get_scheme("lowest_lpips"), LoopSettings(prompt_order="caption"))
    # Bob's images of the 4 steps are needed for the record: generated again, in one call
    assert ctx.generator_calls == plan_calls + 1 and ctx.generated_images == 12
    assert [s.prompt for s in result.steps] == ["", "ball", "ball on", "ball red on"]
    np.testing.assert_allclose(ctx.image_for(result.steps[2].image_key), 0.6)


# ---------------------------------------------------------------- bits
def test_caption_order_sends_each_word_with_its_position():
    ctx = make_ctx()
    send = transmit(ctx, get_scheme("random"), LoopSettings(prompt_order="send", seed=0))
    caption = transmit(ctx, get_scheme("random"), LoopSettings(prompt_order="caption", seed=0))
    assert [s.bits for s in send.steps] == [0] + [8 * len(s.word_sent) + 8 for s in send.steps[1:]]
    assert [s.bits for s in caption.steps] == [0] + [8 * len(s.word_sent) + 8 + 2 for s in caption.steps[1:]]  # ceil(log2 3)
    from lsc.protocol.loop import position_bits

    assert [position_bits(n, "caption") for n in (1, 2, 3, 4, 5, 16, 17)] == [0, 1, 2, 2, 3, 4, 5]
    assert position_bits(10, "send") == 0


def test_transmit_takes_a_scheme_object_not_a_name():
    ctx = ImageContext(fake_backend("a cat"), "img", np.zeros((8, 8, 3), np.float32), "a cat")
    with pytest.raises(TypeError, match="get_scheme"):
        transmit(ctx, "random", LoopSettings())  # type: ignore[arg-type]


def test_protocol_never_imports_schemes():
    """The protocol sits below the schemes: no import of lsc.schemes anywhere in lsc.protocol (lazy ones included)."""
    import ast
    from pathlib import Path

    import lsc.protocol

    offenders = []
    for path in Path(lsc.protocol.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "lsc.schemes" or n.startswith("lsc.schemes.")]
    assert offenders == []
