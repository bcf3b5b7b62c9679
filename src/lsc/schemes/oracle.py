"""The oracle bound: for each k, the lowest LPIPS any k words of the caption reach (in caption order).

It is not a send order (the best 3-word subset need not contain the best 2-word one) but the curve no
scheme can beat with caption-order prompts, drawn on the report's plots. It costs 2^n generations, so
captions longer than `max_words` are refused.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

from lsc.config import DEFAULT_ORACLE_MAX_WORDS as MAX_ORACLE_WORDS  # one constant: the config's default
from lsc.errors import LscError
from lsc.protocol.context import ImageContext
from lsc.protocol.words import join_words


class OracleTooLongError(LscError):
    """The caption has too many words for an exhaustive search."""


def oracle_curve(
    ctx: ImageContext, words: Sequence[str] | None = None, max_words: int = MAX_ORACLE_WORDS, keep_images: bool = False
) -> list[tuple[int, float]]:
    """[(k, min LPIPS over k-word subsets)] for k = 0..n, every uncached subset generated in one batched call.

    Images of new subsets are not kept (only their distances) unless keep_images: 2^n of them.
    """
    words = list(ctx.words if words is None else words)
    n = len(words)
    if n > max_words:
        raise OracleTooLongError(
            f"oracle needs 2^{n} generations for the {n}-word caption of image {ctx.image_id!r}; "
            f"it is limited to captions of at most {max_words} words"
        )
    subsets = [c for k in range(n + 1) for c in combinations(range(n), k)]
    lpips = ctx.distances([join_words([words[i] for i in c]) for c in subsets], keep_images=keep_images)
    best: dict[int, float] = {}
    for c, value in zip(subsets, lpips):
        k = len(c)
        best[k] = min(best.get(k, float("inf")), float(value))
    return [(k, best[k]) for k in range(n + 1)]
