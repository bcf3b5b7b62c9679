"""The four model interfaces every backend implements (contracts: docs/CONTRACTS.md).

The protocol (schemes, channel, loop, metrics, runner, report) talks only to these; it never imports a
model library. Images cross this boundary as numpy float32 arrays of shape (H, W, 3) with values in
[0, 1]; batches as (B, H, W, 3). Words are whitespace words of a caption, already cleaned by
`lsc.protocol.words.clean_words`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from lsc.errors import ConfigError

# Capability names. A scheme lists the ones it needs; the runner checks them before a study starts.
CAP_BOB_ATTENTION = "bob_text_attention"  # Bob's text encoder word-level self-attention
CAP_ALICE_ATTENTION = "alice_text_attention"  # Alice's own language-model self-attention
CAP_ALICE_GROUNDING = "alice_grounding"  # Alice's per-word maps on the image (Grad-CAM / cross-attn)
CAP_BOB_CROSS_ATTENTION = "bob_cross_attention"  # Bob's per-word cross-attention maps (DAAM-style)
CAP_GENERATOR = "generator"  # Bob's text-to-image model (always present)
CAP_PERCEPTUAL = "perceptual"  # perceptual distance (always present)
CAP_PARSER = "parser"  # POS tags and dependency heads (lsc.language; not a backend capability)
CAP_SKD = "skd"  # semantic knowledge distillation engine


@runtime_checkable
class Captioner(Protocol):
    """Alice's image-to-text model."""

    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        """One caption per image, deterministic."""
        ...

    def grounding(self, image: np.ndarray, words: Sequence[str]) -> np.ndarray:
        """Per-word grounding maps on the image, shape (len(words), h, w), non-negative.

        Raise NotImplementedError when the backend lacks CAP_ALICE_GROUNDING.
        """
        ...


# The attention variants TextEncoder.word_attention takes (see it); a backend that cannot compute one
# refuses it with a ConfigError (the world backend has no "research").
ATTENTION_VARIANTS = ("mean", "layer_sum_head0", "research")
RESEARCH_VARIANT = "research"


def check_attention_variant(variant: str) -> str:
    """The one check of an attention variant name (schemes' options, text encoders): a ConfigError naming the choices."""
    if variant not in ATTENTION_VARIANTS:
        raise ConfigError(f"attention_variant must be one of {', '.join(ATTENTION_VARIANTS)}, not {variant!r}")
    return variant


@runtime_checkable
class TextEncoder(Protocol):
    """A language model whose word-level self-attention the attention-based schemes read."""

    def word_attention(self, words: Sequence[str], variant: str = "mean") -> np.ndarray:
        """Word-by-word self-attention, shape (n, n), rows index the attending word.

        Model tokens are merged back to words (sum over a word's tokens as keys, mean as queries);
        special tokens and padding dropped. variant "mean": averaged over layers and heads (the
        papers' prose); "layer_sum_head0": summed over layers, first head only (an ablation);
        "research" (hf backend): llm_att.py's head 2 summed over layers, no start/end tokens.
        """
        ...


@runtime_checkable
class Generator(Protocol):
    """Bob's text-to-image model."""

    def generate(self, prompts: Sequence[str], seed: int) -> np.ndarray:
        """Images (B, H, W, 3) in [0, 1] for a batch of prompts, in one batched call.

        Every prompt starts from the same initial noise for a given seed, so an image depends only on
        (prompt, seed), never on what else is in the batch.
        """
        ...

    def cross_attention(self, words: Sequence[str], seed: int) -> np.ndarray:
        """Per-word cross-attention heat maps from generating the full prompt, (n, h, w).

        Raise NotImplementedError when the backend lacks CAP_BOB_CROSS_ATTENTION.
        """
        ...


@runtime_checkable
class Perceptual(Protocol):
    """Perceptual distance (LPIPS formula) with the reference's features cached."""

    def reference(self, image: np.ndarray) -> Any:
        """Compute and keep the reference image's features; returns a handle for `distances`."""
        ...

    def distances(self, reference: Any, images: np.ndarray) -> np.ndarray:
        """Distances (B,) between the reference and each image of a batch, one batched call."""
        ...


@dataclass
class SceneSample:
    """One image of a study: pixels, an id, optional reference captions and ground truth."""

    image_id: str
    image: np.ndarray | None  # None when it could not be read; `error` says why
    captions: list[str] = field(default_factory=list)
    attributes: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Backend:
    """A set of models behind the four interfaces, plus what the language side needs from them."""

    name: str
    captioner: Captioner
    generator: Generator
    perceptual: Perceptual
    bob_text_encoder: TextEncoder | None = None
    alice_text_encoder: TextEncoder | None = None
    capabilities: frozenset[str] = frozenset({CAP_GENERATOR, CAP_PERCEPTUAL})
    # Words Bob's text encoder knows (for receiver word correction and SCC); None = unrestricted.
    bob_vocabulary: frozenset[str] | None = None
    # (alice_style, bob_style) caption pairs of the same images, for SKD in-context learning.
    skd_examples: list[tuple[str, str]] = field(default_factory=list)
    # Success threshold suited to this backend's perceptual metric (0.6 for LPIPS-AlexNet).
    default_threshold: float = 0.6
    # How Bob builds his prompt unless the study says: "send" (research code) or "caption" order.
    default_prompt_order: str = "send"
    # The square side (pixels) this backend's models take; None = any size. The runner refuses other
    # sizes with a reason naming images.resize rather than letting a model fail on a tensor shape.
    image_size: int | None = None

    def missing(self, required: frozenset[str] | set[str]) -> list[str]:
        """Capabilities in `required` this backend lacks (parser/skd are provided by lsc.language)."""
        provided = set(self.capabilities) | {CAP_PARSER, CAP_SKD}
        return sorted(set(required) - provided)
