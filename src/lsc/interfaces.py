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


@dataclass(frozen=True)
class Distance:
    """What a backend's perceptual distance is, declared by the backend: the one source of the name every plot,
    table, export and the demo print for its values, of the scale they run on and of what its threshold was
    calibrated to. Why: the world's distance is the LPIPS formula on its own features, its values run far past
    the papers' LPIPS (AlexNet), and a label "LPIPS" beside them would invite a comparison that does not hold.
    """

    name: str  # e.g. "LPIPS (AlexNet)", "LPIPS-world"
    scale: str  # the range its values take, in words
    calibration: str  # what the backend's default threshold was calibrated to

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "scale": self.scale, "calibration": self.calibration}

    def named(self, text: str) -> str:
        """A label written with the generic word "LPIPS" (a table head, an axis, a title), naming this distance."""
        return text.replace("LPIPS", self.name)

    def line(self, threshold: float | None) -> str:
        """What a reader must know first: the name, its scale, and what the threshold was calibrated to."""
        at = f"threshold {threshold:g}" if threshold is not None else "threshold"
        return f"distance: {self.name}, {self.scale}; {at}: {self.calibration}"


def lpips_distance(net: str = "alex") -> Distance:
    """The papers' LPIPS (the `lpips` package's linear heads on AlexNet or VGG features)."""
    label = {"alex": "AlexNet", "vgg": "VGG"}.get(net, net)
    return Distance(f"LPIPS ({label})", "0 (the same image) to about 1",
                    "0.6, the papers' threshold for LPIPS (AlexNet)" if net == "alex" else
                    "the papers' 0.6, set for LPIPS (AlexNet); VGG's values differ")


# A backend that declares nothing: its values are labelled plainly "LPIPS", and the report says the scale is unknown.
UNDECLARED_DISTANCE = Distance("LPIPS", "a scale its backend does not declare", "not declared by the backend")


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
    # Alice's own style translator for these captions (a .safetensors file of lsc.language.translator),
    # the seq2seq SKD engine's default; None when the backend ships none (engine "auto" then uses the lexicon).
    skd_translator: str | None = None
    # Success threshold suited to this backend's perceptual metric (0.6 for LPIPS-AlexNet).
    default_threshold: float = 0.6
    # What `perceptual` measures, under the name every label shows (see Distance).
    distance: Distance = UNDECLARED_DISTANCE
    # How Bob builds his prompt unless the study says: "send" (research code) or "caption" order.
    default_prompt_order: str = "send"
    # The square side (pixels) this backend's models take; None = any size. The runner refuses other
    # sizes with a reason naming images.resize rather than letting a model fail on a tensor shape.
    image_size: int | None = None

    def missing(self, required: frozenset[str] | set[str]) -> list[str]:
        """Capabilities in `required` this backend lacks (parser/skd are provided by lsc.language)."""
        provided = set(self.capabilities) | {CAP_PARSER, CAP_SKD}
        return sorted(set(required) - provided)
