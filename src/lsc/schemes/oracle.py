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
from lsc.progress import note_once, rough_duration, stage
from lsc.protocol.context import ImageContext
from lsc.protocol.words import join_words

# Subsets per generator call: small enough that the progress bar moves every few seconds, large enough that
# a batch fills the generator (images depend only on (prompt, seed), so chunking changes no number).
ORACLE_CHUNK = 128
# From this many subsets on, the run says once why it is slow (2^9 = 512: a 9-word caption).
SLOW_ORACLE_IMAGES = 512


class OracleTooLongError(LscError):
    """The caption has too many words for an exhaustive search."""


def oracle_curve(
    ctx: ImageContext, words: Sequence[str] | None = None, max_words: int = MAX_ORACLE_WORDS, keep_images: bool = False
) -> list[tuple[int, float]]:
    """[(k, min LPIPS over k-word subsets)] for k = 0..n, uncached subsets generated in batches of ORACLE_CHUNK.

    Images of new subsets are not kept (only their distances) unless keep_images: 2^n of them. The batches
    advance a progress stage, and a caption of 2^n >= SLOW_ORACLE_IMAGES subsets is announced once.
    """
    words = list(ctx.words if words is None else words)
    n = len(words)
    if n > max_words:
        raise OracleTooLongError(
            f"oracle needs 2^{n} generations for the {n}-word caption of image {ctx.image_id!r}; "
            f"it is limited to captions of at most {max_words} words"
        )
    subsets = [c for k in range(n + 1) for c in combinations(range(n), k)]
    prompts = [join_words([words[i] for i in c]) for c in subsets]
    if len(prompts) >= SLOW_ORACLE_IMAGES:
        rate = ctx.seconds_per_image()
        about = f", about {rough_duration(rate * len(prompts))} at this image's rate so far" if rate else ""
        note_once("oracle", f"oracle: {len(prompts)} images (2^{n}) for the {n}-word caption of {ctx.image_id!r}{about}; "
                            "each caption word doubles it (oracle_max_words caps it; oracle: false skips it)")
    lpips: list[float] = []
    with stage(f"oracle {ctx.image_id}", total=len(prompts), unit="image") as progress:
        for start in range(0, len(prompts), ORACLE_CHUNK):
            chunk = prompts[start : start + ORACLE_CHUNK]
            lpips.extend(float(v) for v in ctx.distances(chunk, keep_images=keep_images))
            progress.advance(len(chunk))
    best: dict[int, float] = {}
    for c, value in zip(subsets, lpips):
        k = len(c)
        best[k] = min(best.get(k, float("inf")), float(value))
    return [(k, best[k]) for k in range(n + 1)]

