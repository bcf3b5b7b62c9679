"""Schemes that read language-model self-attention: Bob's alone (partBob) or Alice's against Bob's (bothAtt).

Definitions (SCHEMES.md 2, 3, 6, 7), for a word-by-word attention matrix A (rows attend):
  contribution(A, i) = sum_j A[i, j] + sum_j A[j, i] - 2 A[i, i]   (attention given and received)
  pair(A, last, j)   = A[last, j] + A[j, last]                       (link to the word sent last)
Ties always go to the lowest word index, so orders are deterministic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from lsc.errors import ConfigError, LscError
from lsc.interfaces import CAP_ALICE_ATTENTION, CAP_BOB_ATTENTION, CAP_GENERATOR
from lsc.schemes.base import Plan, Scheme, register

if TYPE_CHECKING:
    from lsc.protocol.loop import ImageContext, LoopSettings

VARIANTS = ("mean", "layer_sum_head0")


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


def difference_matrix(alice: np.ndarray, bob: np.ndarray) -> np.ndarray:
    """D = softmax_all(Alice) - softmax_all(Bob): where Alice's and Bob's language models disagree."""
    alice, bob = np.asarray(alice, dtype=np.float64), np.asarray(bob, dtype=np.float64)
    if alice.shape != bob.shape:
        raise LscError(f"Alice's attention {alice.shape} and Bob's {bob.shape} do not cover the same words")
    return softmax_all(alice) - softmax_all(bob)


def contribution_order(d: np.ndarray, signed: bool = False) -> list[int]:
    """Scheme 6: ascending |contribution(D, i)| (most similar first), or the signed value (research code)."""
    c = contribution(d)
    key = c if signed else np.abs(c)
    return [int(i) for i in np.argsort(key, kind="stable")]


def combination_order(d: np.ndarray, signed: bool = False) -> list[int]:
    """Scheme 7: first word as scheme 6, then the unsent j minimising |D[j, last] + D[last, j]| / 2
    (the absolute value of the pair's mean difference; signed=True drops the absolute value)."""
    d = np.asarray(d, dtype=np.float64)
    n = d.shape[0]
    if n == 0:
        return []
    order = [contribution_order(d, signed)[0]]
    while len(order) < n:
        last = order[-1]
        pair = (d[:, last] + d[last, :]) / 2.0
        key = pair if signed else np.abs(pair)
        rest = [j for j in range(n) if j not in order]
        order.append(_pick(key, rest, "min"))
    return order


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ConfigError(f"attention_variant must be one of {', '.join(VARIANTS)}, not {variant!r}")


def word_attention(ctx: "ImageContext", who: str, words: Sequence[str], variant: str) -> np.ndarray:
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

    def plan(self, ctx: "ImageContext", settings: "LoopSettings") -> Plan:
        a = word_attention(ctx, "bob", ctx.words, self.attention_variant)
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

    def __init__(self, *, signed: bool = False, attention_variant: str = "mean") -> None:
        _check_variant(attention_variant)
        self.signed = bool(signed)
        self.attention_variant = attention_variant

    def difference(self, ctx: "ImageContext") -> np.ndarray:
        alice = word_attention(ctx, "alice", ctx.words, self.attention_variant)
        bob = word_attention(ctx, "bob", ctx.words, self.attention_variant)
        return difference_matrix(alice, bob)

    def plan(self, ctx: "ImageContext", settings: "LoopSettings") -> Plan:
        return Plan(list(ctx.words), contribution_order(self.difference(ctx), self.signed))


@register
class AttentionCombination(AttentionContribution):
    name = "attention_combination"
    description = "first word as attention_contribution, then the word whose link to the last sent Alice and Bob agree on most"

    def plan(self, ctx: "ImageContext", settings: "LoopSettings") -> Plan:
        return Plan(list(ctx.words), combination_order(self.difference(ctx), self.signed))
