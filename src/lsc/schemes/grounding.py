"""Schemes that look at where words live in the image: Alice's grounding maps (Grad-CAM of her
image-text matching model), alone or matched against Bob's cross-attention heat maps (DAAM)."""

from __future__ import annotations

import warnings

import numpy as np

from lsc.errors import LscError
from lsc.interfaces import CAP_ALICE_GROUNDING, CAP_BOB_CROSS_ATTENTION, CAP_GENERATOR
from lsc.metrics.image import resize
from lsc.protocol.context import ImageContext, LoopSettings, Plan
from lsc.schemes.base import Scheme, register


def alice_grounding(ctx: ImageContext) -> np.ndarray:
    """Alice's per-word maps (n, h, w) on the original image, computed once per image."""

    def compute() -> np.ndarray:
        maps = np.asarray(ctx.backend.captioner.grounding(ctx.image, list(ctx.words)), dtype=np.float64)
        if maps.ndim != 3 or maps.shape[0] != len(ctx.words):
            raise LscError(f"Alice's grounding returned shape {maps.shape} for {len(ctx.words)} words")
        if maps.size and not np.any(maps):
            # Computed once per image context, so this warns once per image. Seen with a float16 ITM model,
            # whose gradients underflow: alice_attention would then silently send words in caption order.
            warnings.warn(f"Alice's grounding maps of image {ctx.image_id!r} are all zero (float16 underflow? "
                          "run the ITM model in float32); its words keep caption order", stacklevel=2)
        return maps

    return ctx.memo(("alice_grounding", tuple(ctx.words)), compute)


def bob_cross_attention(ctx: ImageContext) -> np.ndarray:
    """Bob's per-word cross-attention maps (n, h, w) from generating the full caption, computed once."""

    def compute() -> np.ndarray:
        maps = np.asarray(ctx.backend.generator.cross_attention(list(ctx.words), ctx.seed), dtype=np.float64)
        if maps.ndim != 3 or maps.shape[0] != len(ctx.words):
            raise LscError(f"Bob's cross-attention returned shape {maps.shape} for {len(ctx.words)} words")
        return maps

    return ctx.memo(("bob_cross_attention", tuple(ctx.words), ctx.seed), compute)


def normalise_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Maps resized to one grid by area averaging (PIL box filter), negatives clipped, each scaled to sum 1.

    Summing to one makes the comparison about *where* a word is, not how strongly each model's
    (differently scaled) map responds; an all-zero map becomes uniform (no location information).
    The L1 distance between two such maps lies in [0, 2].
    """
    out = np.empty((maps.shape[0], height, width), dtype=np.float64)
    for i, m in enumerate(maps):
        r = np.clip(resize(np.asarray(m, dtype=np.float32), height, width, box=True).astype(np.float64), 0.0, None)
        total = r.sum()
        out[i] = r / total if total > 0 else np.full((height, width), 1.0 / (height * width))
    return out


def map_distances(alice: np.ndarray, bob: np.ndarray) -> np.ndarray:
    """Per-word L1 distance between normalised maps on the coarser of the two grids."""
    if alice.shape[0] != bob.shape[0]:
        raise LscError(f"{alice.shape[0]} Alice maps vs {bob.shape[0]} Bob maps")
    h = min(alice.shape[1], bob.shape[1])
    w = min(alice.shape[2], bob.shape[2])
    a, b = normalise_maps(alice, h, w), normalise_maps(bob, h, w)
    return np.abs(a - b).reshape(a.shape[0], -1).sum(axis=1)


@register
class AliceAttention(Scheme):
    name = "alice_attention"
    description = "words most grounded in the image by Alice's own image-text model (Grad-CAM mass) first"
    alice_holds = "her own ITM model"
    requires = frozenset({CAP_GENERATOR, CAP_ALICE_GROUNDING})

    def __init__(self) -> None:
        pass

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        """Descending total map mass; ties by caption order.

        Masses are compared to 6 significant digits of the largest, so that float rounding (which
        differs with the number of threads) cannot reorder words whose masses are equal."""
        maps = alice_grounding(ctx)
        scores = maps.reshape(maps.shape[0], -1).sum(axis=1)
        scale = float(np.abs(scores).max()) if len(scores) else 0.0
        ranked = np.round(scores / scale, 6) if scale > 0 else scores
        order = [int(i) for i in np.argsort(-ranked, kind="stable")]
        return Plan(list(ctx.words), order, info={"scores": [float(s) for s in scores]})


@register
class CrossAttentionMatch(Scheme):
    name = "crossattention_match"
    description = "words whose place in the image Alice's Grad-CAM and Bob's cross-attention (his whole model) agree on most go first"
    alice_holds = "all of Bob's model"
    requires = frozenset({CAP_GENERATOR, CAP_ALICE_GROUNDING, CAP_BOB_CROSS_ATTENTION})

    def __init__(self) -> None:
        pass

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        """Ascending L1 distance between each word's normalised maps; ties by caption order."""
        dist = map_distances(alice_grounding(ctx), bob_cross_attention(ctx))
        order = [int(i) for i in np.argsort(dist, kind="stable")]
        # one image of the whole caption at Alice, sampled with Bob's cross-attention captured
        return Plan(list(ctx.words), order, info={"distances": [float(d) for d in dist], "alice_images": 1})
