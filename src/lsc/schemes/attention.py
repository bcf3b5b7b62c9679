"""Schemes that read language-model self-attention: Bob's alone (partBob) or Alice's against Bob's (bothAtt).

Definitions, for a word-by-word attention matrix A (rows attend):
  contribution(A, i) = sum_j A[i, j] + sum_j A[j, i] - 2 A[i, i]   (attention given and received)
  pair(A, last, j)   = A[last, j] + A[j, last]                       (link to the word sent last)
Ties always go to the lowest word index, so orders are deterministic.

Attention variants: "mean" (default; layers and heads averaged, as the papers' prose describes) and
"layer_sum_head0" (an ablation) use the orders above. "research" reproduces llm_att.py / main_flicker.py
(partBob): head 2 summed over layers, the caption without start/end tokens, the per-word contributions
reversed (np.flip) before the first choice, and each next word chained to the highest-position word sent
so far (main_flicker sorts the sent list); heads_attentive then sorts the head words by that reversed
score (heads_partBob). It is Bob's attention only: bothAtt.py averages layers and heads ("mean").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lsc.errors import ConfigError, LscError
from lsc.interfaces import CAP_ALICE_ATTENTION, CAP_BOB_ATTENTION, CAP_GENERATOR, RESEARCH_VARIANT, check_attention_variant
from lsc.protocol.context import ImageContext, LoopSettings, Plan
from lsc.schemes.base import Scheme, register

def contribution(a: np.ndarray) -> np.ndarray:
    """Per word: attention it gives plus attention it receives, self-attention excluded."""
    a = np.asarray(a, dtype=np.float64)
    return a.sum(axis=1) + a.sum(axis=0) - 2.0 * np.diag(a)


def softmax_all(a: np.ndarray) -> np.ndarray:
    """Softmax over all entries of a matrix (so two models' matrices become comparable distributions)."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return a
    e = np.exp(a - a.max())
    return e / e.sum()


def _pick(values: np.ndarray, candidates: Sequence[int], best: str) -> int:
    """Candidate with the max or min value; first (lowest index) on ties."""
    vals = values[list(candidates)]
    pos = int(np.argmax(vals)) if best == "max" else int(np.argmin(vals))
    return int(candidates[pos])


def attentive_order(a: np.ndarray, next_best: str = "max") -> list[int]:
    """Scheme 2/3: first the word of highest contribution, then repeatedly the unsent word most
    (next_best="max") or least ("min") linked to the word sent last."""
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    if n == 0:
        return []
    order = [_pick(contribution(a), list(range(n)), "max")]
    while len(order) < n:
        last = order[-1]
        rest = [j for j in range(n) if j not in order]
        order.append(_pick(a[last, :] + a[:, last], rest, next_best))
    return order


def research_scores(a: np.ndarray) -> np.ndarray:
    """llm_att.py's `att_sums`: the per-word contributions in reverse word order (np.flip), which the
    research code then indexes by word position, so word k is scored with word n-1-k's contribution."""
    return contribution(a)[::-1].copy()


def research_attentive_order(a: np.ndarray, next_best: str = "max") -> list[int]:
    """partBob as main_flicker.py runs llm_att.choose_word with trial=1.

    First: np.argmax of the reversed contributions. Then the unsent word most ("max") or least ("min")
    linked to pre_idx[-1], which is the highest position sent so far because main_flicker sorts pre_idx.
    Ties as numpy's argsort of a short array: "max" takes the highest index (np.flip(np.argsort)),
    "min" the lowest.
    """
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    if n == 0:
        return []
    order = [int(np.argmax(research_scores(a)))]
    while len(order) < n:
        anchor = max(order)
        link = a[anchor, :] + a[:, anchor]
        rest = [j for j in range(n) if j not in order]
        vals = link[rest]
        if next_best == "max":
            pos = len(rest) - 1 - int(np.argmax(vals[::-1]))
        else:
            pos = int(np.argmin(vals))
        order.append(rest[pos])
    return order


def research_heads_order(a: np.ndarray, words: Sequence[str], heads: Sequence[int]) -> list[int]:
    """heads_partBob: head words sorted by their rank in np.argsort(att_sums)[::-1], looked up by word
    string as main_flicker does (`att_prior.index(word)`: a repeated word takes its best-ranked position)."""
    ranking = [int(k) for k in np.argsort(research_scores(a), kind="stable")[::-1]]
    prior = [words[k] for k in ranking]
    return sorted(heads, key=lambda h: prior.index(words[h]))


def pad_matrix(a: np.ndarray, size: int) -> np.ndarray:
    """`a` in the top-left corner of a size x size zero matrix (bothAtt.py stores every caption's attention
    in a 50x50 array of zeros, and main_flicker's softmax runs over all of it). size 0: unchanged."""
    a = np.asarray(a, dtype=np.float64)
    if size <= 0:
        return a
    if a.shape[0] > size:
        raise LscError(f"caption of {a.shape[0]} words does not fit pad_to={size}")
    out = np.zeros((size, size), dtype=np.float64)
    out[: a.shape[0], : a.shape[1]] = a
    return out


def difference_matrix(alice: np.ndarray, bob: np.ndarray, pad_to: int = 0) -> np.ndarray:
    """D = softmax_all(Alice) - softmax_all(Bob): where Alice's and Bob's language models disagree.
    With pad_to, both are zero-padded first (the research code's 50x50 arrays), so D is pad_to x pad_to."""
    alice, bob = np.asarray(alice, dtype=np.float64), np.asarray(bob, dtype=np.float64)
    if alice.shape != bob.shape:
        raise LscError(f"Alice's attention {alice.shape} and Bob's {bob.shape} do not cover the same words")
    return softmax_all(pad_matrix(alice, pad_to)) - softmax_all(pad_matrix(bob, pad_to))


def contribution_order(d: np.ndarray, signed: bool = False, n: int | None = None) -> list[int]:
    """Scheme 6: ascending |contribution(D, i)| (most similar first), or the signed value (research code).
    n: the caption's words are D's first n rows (a padded D's other rows still count in the sums)."""
    n = d.shape[0] if n is None else n
    c = contribution(d)[:n]
    key = c if signed else np.abs(c)
    return [int(i) for i in np.argsort(key, kind="stable")]


def combination_order(d: np.ndarray, signed: bool = False, n: int | None = None) -> list[int]:
    """Scheme 7: first word as scheme 6, then the unsent j minimising |D[j, last] + D[last, j]| / 2
    (the absolute value of the pair's mean difference; signed=True drops the absolute value)."""
    d = np.asarray(d, dtype=np.float64)
    n = d.shape[0] if n is None else n
    if n == 0:
        return []
    order = [contribution_order(d, signed, n)[0]]
    while len(order) < n:
        last = order[-1]
        pair = (d[:, last] + d[last, :]) / 2.0
        key = pair if signed else np.abs(pair)
        rest = [j for j in range(n) if j not in order]
        order.append(_pick(key, rest, "min"))
    return order


def _check_variant(variant: str, bob_only: bool = False) -> None:
    """A known variant name; with bob_only, not "research" (the research code reads only Bob's attention that way)."""
    check_attention_variant(variant)
    if bob_only and variant == RESEARCH_VARIANT:
        raise ConfigError("attention_variant 'research' is partBob's (llm_att.py); the research code's bothAtt.py "
                          "averages layers and heads: use 'mean'")


def word_attention(ctx: ImageContext, who: str, words: Sequence[str], variant: str) -> np.ndarray:
    """Alice's or Bob's word attention for these words, computed once per image context."""
    encoder = ctx.backend.bob_text_encoder if who == "bob" else ctx.backend.alice_text_encoder
    if encoder is None:
        cap = CAP_BOB_ATTENTION if who == "bob" else CAP_ALICE_ATTENTION
        raise LscError(f"backend {ctx.backend.name!r} has no {who}'s text encoder ({cap})")

    def compute() -> np.ndarray:
        a = np.asarray(encoder.word_attention(list(words), variant=variant), dtype=np.float64)
        if a.shape != (len(words), len(words)):
            raise LscError(f"{who}'s text encoder returned attention {a.shape} for {len(words)} words")
        return a

    return ctx.memo((f"{who}_attention", variant, tuple(words)), compute)


@register
class MostAttentive(Scheme):
    name = "most_attentive"
    description = "Bob's text-encoder attention: strongest contributor first, then the word most linked to the last sent"
    alice_holds = "Bob's language model"
    requires = frozenset({CAP_GENERATOR, CAP_BOB_ATTENTION})
    next_best = "max"

    def __init__(self, *, attention_variant: str = "mean") -> None:
        _check_variant(attention_variant)
        self.attention_variant = attention_variant

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        a = word_attention(ctx, "bob", ctx.words, self.attention_variant)
        if self.attention_variant == RESEARCH_VARIANT:
            return Plan(list(ctx.words), research_attentive_order(a, self.next_best))
        return Plan(list(ctx.words), attentive_order(a, self.next_best))


@register
class LeastAttentive(MostAttentive):
    name = "least_attentive"
    description = "as most_attentive, but then the word least linked to the last sent"
    next_best = "min"


@register
class AttentionContribution(Scheme):
    name = "attention_contribution"
    description = "words whose attention contribution Alice's and Bob's language models agree on most go first"
    alice_holds = "Bob's language model and her own"
    requires = frozenset({CAP_GENERATOR, CAP_BOB_ATTENTION, CAP_ALICE_ATTENTION})

    def __init__(self, *, signed: bool = False, attention_variant: str = "mean", pad_to: int = 0) -> None:
        _check_variant(attention_variant, bob_only=True)
        if not isinstance(pad_to, int) or pad_to < 0:
            raise ConfigError(f"pad_to must be a non-negative integer, not {pad_to!r}")
        self.pad_to = pad_to
        self.signed = bool(signed)
        self.attention_variant = attention_variant

    def difference(self, ctx: ImageContext) -> np.ndarray:
        alice = word_attention(ctx, "alice", ctx.words, self.attention_variant)
        bob = word_attention(ctx, "bob", ctx.words, self.attention_variant)
        return difference_matrix(alice, bob, self.pad_to)

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        return Plan(list(ctx.words), contribution_order(self.difference(ctx), self.signed, len(ctx.words)))


@register
class AttentionCombination(AttentionContribution):
    name = "attention_combination"
    description = "first word as attention_contribution, then the word whose link to the last sent Alice and Bob agree on most"

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        return Plan(list(ctx.words), combination_order(self.difference(ctx), self.signed, len(ctx.words)))
