"""Every ordering scheme on a hand-made example whose expected order is worked out in the comments.

Caption for most tests: "a dog runs on grass" -> words 0:a 1:dog 2:runs 3:on 4:grass.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from lsc.errors import CapabilityError, ConfigError
from lsc.protocol.loop import ImageContext, LoopSettings, transmit
from lsc.protocol.testing import FakeGenerator, fake_backend
from lsc.schemes import check_capabilities, get_scheme, list_schemes, scheme_names
from lsc.schemes.attention import attentive_order, combination_order, contribution, contribution_order, softmax_all

CAPTION = "a dog runs on grass"

# Bob's attention (rows attend). Row sums are all 1; column sums 0.9 1.3 1.0 0.8 1.0; diagonal .5 .4 .3 .2 .3.
A = np.array(
    [
        [0.5, 0.2, 0.1, 0.1, 0.1],
        [0.1, 0.4, 0.3, 0.1, 0.1],
        [0.1, 0.3, 0.3, 0.2, 0.1],
        [0.1, 0.1, 0.2, 0.2, 0.4],
        [0.1, 0.3, 0.1, 0.2, 0.3],
    ]
)
# A second matrix for the research-code variant layer_sum_head0.
B = np.array(
    [
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.0, 0.0, 0.0, 0.5, 0.5],
    ]
)

# Alice-vs-Bob example: Bob's matrix is all zeros (softmax: 1/25 everywhere); Alice's is log(1/25 + E), so
# the difference D equals E. E's off-diagonal weights sit in the upper triangle, w_ij (x 1e-3):
# w01=1 w02=-4 w03=6 w04=2 w12=-7 w13=3 w14=9 w23=5 w24=-8 w34=10; E[0,0] = -17e-3 makes E sum to zero.
W = {(0, 1): 1, (0, 2): -4, (0, 3): 6, (0, 4): 2, (1, 2): -7, (1, 3): 3, (1, 4): 9, (2, 3): 5, (2, 4): -8, (3, 4): 10}
E = np.zeros((5, 5))
for (i, j), v in W.items():
    E[i, j] = v * 1e-3
E[0, 0] = -17e-3
ALICE = np.log(1.0 / 25 + E)
BOB_ZERO = np.zeros((5, 5))


def analyzer_for(nouns=(), verbs=(), heads=()):
    """A parser stand-in: POS and heads by word."""

    def analyze(words):
        return [SimpleNamespace(word=w, is_noun=w in nouns, is_verb=w in verbs, is_head=w in heads) for w in words]

    return analyze


# "a dog runs on grass": nouns dog, grass; verb runs; heads (spaCy style) dog (has 'a'), runs (root), on (has 'grass').
ANALYZE = analyzer_for(nouns={"dog", "grass"}, verbs={"runs"}, heads={"dog", "runs", "on"})


def make_ctx(caption=CAPTION, image_id="img", **backend_kwargs):
    backend = fake_backend(caption, **backend_kwargs)
    image = backend.generator.generate([caption], 0)[0]
    return ImageContext(backend, image_id, image, caption, seed=0)


def plan(name, ctx, settings=None, **options):
    return get_scheme(name, **options).plan(ctx, settings or LoopSettings())


# ---------------------------------------------------------------- attention (schemes 2, 3)
def test_contribution_hand_values():
    # row sum + column sum - 2 diag: 1+.9-1.0, 1+1.3-.8, 1+1.0-.6, 1+.8-.4, 1+1.0-.6
    np.testing.assert_allclose(contribution(A), [0.9, 1.5, 1.4, 1.4, 1.4])


def test_most_attentive():
    # first: argmax contribution = 1 (dog, 1.5).
    # last=1: A[1,j]+A[j,1]: j0 .3, j2 .6, j3 .2, j4 .4 -> 2 (runs)
    # last=2: j0 .2, j3 .4, j4 .2 -> 3 (on);  last=3: j0 .2, j4 .6 -> 4;  then 0.
    ctx = make_ctx(bob_attention=A)
    assert plan("most_attentive", ctx).order == [1, 2, 3, 4, 0]


def test_least_attentive():
    # first as most_attentive: 1. last=1: min(j0 .3, j2 .6, j3 .2, j4 .4) -> 3.
    # last=3: j0 .2, j2 .4, j4 .6 -> 0.  last=0: j2 .1+.1=.2, j4 .1+.1=.2 tie -> lowest index 2; then 4.
    ctx = make_ctx(bob_attention=A)
    assert plan("least_attentive", ctx).order == [1, 3, 0, 2, 4]


def test_most_attentive_research_variant_reads_layer_sum_head0():
    # B: column sums .8 .8 .8 1.3 1.3, row sums 1, diag .2 .2 .2 .2 .5 -> contribution 1.4 1.4 1.4 1.9 1.3: first 3.
    # last=3: j0 .4, j1 .4, j2 .4, j4 .2+.5=.7 -> 4.  last=4: j0 0+.2, j1 .2, j2 .2 -> tie -> 0.
    # last=0: j1 .4, j2 .4 -> 1; then 2.
    ctx = make_ctx(bob_attention={"mean": A, "layer_sum_head0": B})
    assert plan("most_attentive", ctx, attention_variant="layer_sum_head0").order == [3, 4, 0, 1, 2]
    assert ctx.backend.bob_text_encoder.calls[-1][1] == "layer_sum_head0"
    assert plan("most_attentive", ctx).order == [1, 2, 3, 4, 0]


# ---------------------------------------------------------------- Alice vs Bob (schemes 6, 7)
def test_softmax_all_is_over_all_entries():
    s = softmax_all(np.log(np.array([[1.0, 2.0], [3.0, 4.0]])))
    np.testing.assert_allclose(s, [[0.1, 0.2], [0.3, 0.4]])


def test_attention_contribution_absolute_and_signed():
    # contribution(D, i) = sum of the weights on i's edges (diagonal cancels):
    # c0 = 1-4+6+2 = 5, c1 = 1-7+3+9 = 6, c2 = -4-7+5-8 = -14, c3 = 6+3+5+10 = 24, c4 = 2+9-8+10 = 13  (x1e-3)
    # |c| ascending: 0(5) 1(6) 4(13) 2(14) 3(24);   signed ascending: 2(-14) 0 1 4 3
    ctx = make_ctx(bob_attention=BOB_ZERO, alice_attention=ALICE)
    assert plan("attention_contribution", ctx).order == [0, 1, 4, 2, 3]
    assert plan("attention_contribution", ctx, signed=True).order == [2, 0, 1, 4, 3]


def test_attention_combination_absolute_and_signed():
    # pair(j, last) = (D[j,last] + D[last,j]) / 2 = w/2.
    # absolute: first 0; last=0: |w01|=1,|w02|=4,|w03|=6,|w04|=2 -> 1; last=1: |w12|=7,|w13|=3,|w14|=9 -> 3;
    #           last=3: |w23|=5, |w34|=10 -> 2; then 4.
    # signed:   first 2 (c=-14); last=2: w02=-4, w12=-7, w23=5, w24=-8 -> 4; last=4: w04=2, w14=9, w34=10 -> 0;
    #           last=0: w01=1, w03=6 -> 1; then 3.
    ctx = make_ctx(bob_attention=BOB_ZERO, alice_attention=ALICE)
    assert plan("attention_combination", ctx).order == [0, 1, 3, 2, 4]
    assert plan("attention_combination", ctx, signed=True).order == [2, 4, 0, 1, 3]


def test_pure_order_functions_on_exact_difference_matrix():
    assert contribution_order(E) == [0, 1, 4, 2, 3]
    assert combination_order(E, signed=True) == [2, 4, 0, 1, 3]
    assert attentive_order(np.zeros((0, 0))) == []
    assert attentive_order(np.ones((1, 1))) == [0]


# ---------------------------------------------------------------- grounding (schemes 5, 8)
def test_alice_attention_descending_map_mass():
    # map sums: a 1, dog 5, runs 3, on 0.5, grass 4 -> dog, grass, runs, a, on
    sums = {"a": 1.0, "dog": 5.0, "runs": 3.0, "on": 0.5, "grass": 4.0}
    maps = {w: np.full((2, 2), s / 4) for w, s in sums.items()}
    ctx = make_ctx(grounding_maps=maps)
    assert plan("alice_attention", ctx).order == [1, 4, 2, 0, 3]


def test_crossattention_match_l1_on_normalised_maps():
    # Alice 4x4 maps are box-averaged to Bob's 2x2 grid, then each map is scaled to sum 1:
    #  a:    Alice uniform -> [.25 .25 .25 .25]; Bob [[1,0],[0,0]] -> [1 0 0 0];   L1 = .75 + 3*.25 = 1.5
    #  dog:  Alice top-left quadrant -> [1 0 0 0]; Bob [[2,0],[0,0]] -> same;      L1 = 0
    #  runs: Alice top half -> [.5 .5 0 0]; Bob [[1,0],[0,0]];                     L1 = .5 + .5 = 1.0
    #  on:   Alice all zeros -> uniform; Bob [[1,1],[1,0]] -> [1/3 1/3 1/3 0];     L1 = 3/12 + .25 = .5
    #  grass: Alice bottom-right -> [0 0 0 1]; Bob [[0,0],[1,4]] -> [0 0 .2 .8];   L1 = .2 + .2 = .4
    # ascending: dog(0) grass(.4) on(.5) runs(1.0) a(1.5)
    z = np.zeros((4, 4))
    tl, top, br = z.copy(), z.copy(), z.copy()
    tl[:2, :2] = 1
    top[:2, :] = 1
    br[2:, 2:] = 1
    alice = {"a": np.ones((4, 4)), "dog": tl, "runs": top, "on": z, "grass": br}
    bob = {
        "a": np.array([[1.0, 0], [0, 0]]),
        "dog": np.array([[2.0, 0], [0, 0]]),
        "runs": np.array([[1.0, 0], [0, 0]]),
        "on": np.array([[1.0, 1], [1, 0]]),
        "grass": np.array([[0.0, 0], [1, 4]]),
    }
    ctx = make_ctx(grounding_maps=alice, generator=FakeGenerator(cross_maps=bob))
    p = plan("crossattention_match", ctx)
    np.testing.assert_allclose(p.info["distances"], [1.5, 0.0, 1.0, 0.5, 0.4], atol=1e-6)
    assert p.order == [1, 4, 3, 2, 0]


# ---------------------------------------------------------------- parser-based (schemes 9-14)
def test_nouns_and_nouns_verbs():
    ctx = make_ctx()
    # nouns dog(1) grass(4), then a on... in caption order: 0 2 3
    assert plan("nouns", ctx, analyzer=ANALYZE).order == [1, 4, 0, 2, 3]
    # nouns and verbs: dog runs grass, then a on
    assert plan("nouns_verbs", ctx, analyzer=ANALYZE).order == [1, 2, 4, 0, 3]


def test_heads_and_only_heads():
    ctx = make_ctx()
    assert plan("heads", ctx, analyzer=ANALYZE).order == [1, 2, 3, 0, 4]
    assert plan("heads", ctx, analyzer=ANALYZE, only_heads=True).order == [1, 2, 3]


def test_only_heads_transmission_sends_only_heads():
    ctx = make_ctx()
    result = transmit(ctx, get_scheme("heads", analyzer=ANALYZE, only_heads=True), LoopSettings(threshold=0.0))
    assert [s.word_sent for s in result.steps] == ["", "dog", "runs", "on"]
    assert result.steps[-1].prompt == "dog runs on"


def test_heads_attentive():
    # heads 1 2 3; A restricted to them:  1:[.4 .3 .1]  2:[.3 .3 .2]  3:[.1 .2 .2]
    # contribution: 1: .8+.8-.8=.8   2: .8+.8-.6=1.0   3: .5+.5-.4=.6  -> first 2 (runs)
    # last=2: j1 .3+.3=.6, j3 .2+.2=.4 -> 1; then 3.  Rest (0, 4) in caption order.
    ctx = make_ctx(bob_attention=A)
    assert plan("heads_attentive", ctx, analyzer=ANALYZE).order == [2, 1, 3, 0, 4]
    assert plan("heads_attentive", ctx, analyzer=ANALYZE, only_heads=True).order == [2, 1, 3]


def test_heads_random_heads_first_and_deterministic():
    ctx = make_ctx()
    orders = [plan("heads_random", ctx, LoopSettings(seed=s), analyzer=ANALYZE).order for s in range(8)]
    for order in orders:
        assert sorted(order[:3]) == [1, 2, 3] and sorted(order[3:]) == [0, 4]
    assert len({tuple(o) for o in orders}) > 1  # the seed matters
    again = plan("heads_random", ctx, LoopSettings(seed=3), analyzer=ANALYZE).order
    assert again == orders[3]


def test_random_is_a_seeded_permutation():
    ctx = make_ctx()
    a = plan("random", ctx, LoopSettings(seed=1)).order
    assert sorted(a) == [0, 1, 2, 3, 4]
    assert plan("random", ctx, LoopSettings(seed=1)).order == a
    other_image = make_ctx(image_id="img2")
    orders = {tuple(plan("random", c, LoopSettings(seed=s)).order) for s in range(5) for c in (ctx, other_image)}
    assert len(orders) > 1
    # the generator is numpy's default_rng seeded by a stable hash of (study seed, image id, scheme name)
    expected = list(LoopSettings(seed=1).rng("img", "random").permutation(5))
    assert a == expected


def test_heads_skd_rewrites_then_orders_heads():
    seen = {}

    class Engine:
        def rewrite(self, caption, examples):
            seen["args"] = (caption, examples)
            return SimpleNamespace(text="a dog running on green grass", kept=True, reason="lexicon")

    # rewritten words: 0:a 1:dog 2:running 3:on 4:green 5:grass; heads dog running on -> 1 2 3, then 0 4 5
    analyze = analyzer_for(nouns={"dog", "grass"}, heads={"dog", "running", "on"})
    examples = [("a dog runs on grass", "dog running, grass, photo")]
    ctx = make_ctx(skd_examples=examples)
    scheme = get_scheme("heads_skd", engine=Engine(), analyzer=analyze)
    result = transmit(ctx, scheme, LoopSettings(threshold=0.0))
    assert seen["args"] == (CAPTION, examples)
    assert result.words == ["a", "dog", "running", "on", "green", "grass"]
    assert result.order == [1, 2, 3, 0, 4, 5]
    assert result.rewritten == "a dog running on green grass"
    assert result.steps[3].prompt == "dog running on"
    assert result.info["skd_kept"] is True


def test_heads_skd_empty_rewrite_keeps_caption():
    class Empty:
        def rewrite(self, caption, examples):
            return ("", False, "nothing")

    ctx = make_ctx()
    p = plan("heads_skd", ctx, engine=Empty(), analyzer=ANALYZE)
    assert p.words == ctx.words and p.order == [1, 2, 3, 0, 4]


# ---------------------------------------------------------------- registry and capabilities
def test_builtins_come_first_in_the_docs_order_with_holdings():
    from lsc.schemes.base import CANONICAL_ORDER

    names = scheme_names()
    assert names[: len(CANONICAL_ORDER)] == list(CANONICAL_ORDER)  # docs/SCHEMES.md's numbering, plugins after
    holds = {s.name: s.alice_holds for s in list_schemes()}
    assert holds["random"] == "nothing"
    assert holds["most_attentive"] == "Bob's language model"
    assert holds["lowest_lpips"] == "all of Bob's model"
    assert holds["alice_attention"] == "her own ITM model"
    assert holds["learned"] == "her own policy"


@pytest.mark.parametrize("name", scheme_names())
def test_every_registered_scheme_passes_the_contract(name):
    """The contract kit plugin authors use (lsc.testing): a permutation or subset, deterministic for a seed,
    only the declared capabilities, options that round-trip through the resolved config."""
    from lsc.testing import check_scheme

    check_scheme(name)


def test_unknown_scheme_and_bad_options_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="unknown scheme 'fastest'"):
        get_scheme("fastest")
    with pytest.raises(ConfigError, match="has no option 'beams'"):
        get_scheme("lowest_lpips", beams=2)
    with pytest.raises(ConfigError, match="beam must be"):
        get_scheme("lowest_lpips", beam=0)
    with pytest.raises(ConfigError, match="attention_variant"):
        get_scheme("most_attentive", attention_variant="max")
    with pytest.raises(ConfigError, match="takes no options"):
        get_scheme("random", seed=3)


def test_check_capabilities_names_scheme_and_capability():
    backend = fake_backend(CAPTION, with_text_encoders=False)
    check_capabilities(backend, ["random", "lowest_lpips", "heads", {"name": "nouns"}])  # all fine
    with pytest.raises(CapabilityError) as err:
        check_capabilities(backend, ["random", "most_attentive", {"name": "crossattention_match"}])
    msg = str(err.value)
    assert "'most_attentive' needs bob_text_attention" in msg
    assert "'crossattention_match' needs alice_grounding, bob_cross_attention" in msg
    assert "\n" not in msg
    with pytest.raises(ConfigError):
        check_capabilities(backend, ["nope"])


def test_heads_with_the_default_spacy_parser():
    pytest.importorskip("spacy")
    from lsc.errors import ModelUnavailableError

    caption = "A black dog is running through the grass ."
    ctx = make_ctx(caption=caption)
    try:
        p = plan("heads", ctx)
    except ModelUnavailableError:
        pytest.skip("no spaCy English model installed")
    # spaCy style heads (see lsc.language.parse): dog (det, amod), running (root), through (pobj), grass (det)
    assert [p.words[i] for i in p.order] == ["dog", "running", "through", "grass", "A", "black", "is", "the", "."]
