"""The `world` backend: the shipped world models behind lsc's four interfaces.

Loads the safetensors package data once per process (well under 2 s) and serves Alice's captioner
(with her language-model attention and per-word grounding maps), Bob's text encoder and flow-matching
generator (with per-word cross-attention maps), and the perceptual metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lsc.backends.world import nets, scenes
from lsc.backends.world.models import WorldModels, load_models
from lsc.backends.world.options import DISTANCE as WORLD_DISTANCE  # the distance's name, declared there
from lsc.backends.world.options import PACKAGED_WEIGHTS, world_weights_dir  # noqa: F401  (the folder's one owner)
from lsc.backends.world.perceptual import WorldPerceptual
from lsc.backends.world.receivers import check_receiver, load_receiver
from lsc.errors import ConfigError
from lsc.interfaces import (
    CAP_ALICE_ATTENTION,
    CAP_ALICE_GROUNDING,
    CAP_BOB_ATTENTION,
    CAP_BOB_CROSS_ATTENTION,
    CAP_GENERATOR,
    CAP_PERCEPTUAL,
    RESEARCH_VARIANT,
    Backend,
    check_attention_variant,
)


class WorldTextEncoder:
    """Word-level self-attention of Bob's text encoder (one token per word, [BOS] dropped)."""

    def __init__(self, models: WorldModels):
        self.m = models

    @torch.inference_mode()
    def word_attention(self, words: Sequence[str], variant: str = "mean") -> np.ndarray:
        tokens = nets.encode_words(self.m.bob_vocab, [list(words)], self.m.text.cfg.max_len)
        self.m.text.set_capture(True)
        try:
            self.m.text(tokens)
            layers = torch.stack([w[0] for w in self.m.text.attention_maps()])  # (layers, heads, L, L)
        finally:
            self.m.text.set_capture(False)
        return reduce_attention(layers, len(words), variant)


def reduce_attention(layers: torch.Tensor, n: int, variant: str) -> np.ndarray:
    if check_attention_variant(variant) == RESEARCH_VARIANT:
        raise ConfigError("attention_variant 'research' reproduces the research code's CLIP attention and needs the hf backend; "
                          "the world backend offers 'mean' and 'layer_sum_head0'")
    if variant == "mean":
        a = layers.mean(dim=(0, 1))
    elif variant == "layer_sum_head0":
        a = layers[:, 0].sum(0)
    out = np.zeros((n, n), np.float32)
    k = min(n, a.shape[0] - 1)
    out[:k, :k] = a[1 : k + 1, 1 : k + 1].numpy()
    return out


class WorldCaptioner:
    """Alice: greedy captions; her decoder's cross-attention per word is its grounding map."""

    def __init__(self, models: WorldModels, max_len: int = 36):
        self.m = models
        self.max_len = max_len

    @torch.inference_mode()
    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        if len(images) == 0:
            return []
        model = self.m.captioner
        image_tokens = model.encode_image(nets.to_tensor(images))
        b = image_tokens.shape[0]
        tokens = torch.full((b, 1), nets.BOS_ID, dtype=torch.long)
        done = torch.zeros(b, dtype=torch.bool)
        for _ in range(self.max_len):
            logits = model.decode(tokens, image_tokens)[:, -1]
            logits[:, : nets.EOS_ID] = float("-inf")  # never PAD, UNK or BOS
            nxt = logits.argmax(-1)
            nxt[done] = nets.PAD_ID
            tokens = torch.cat([tokens, nxt[:, None]], 1)
            done |= nxt == nets.EOS_ID
            if bool(done.all()):
                break
        itos = self.m.alice_vocab.itos
        return [" ".join(itos[int(t)] for t in row[1:] if int(t) > nets.EOS_ID) for row in tokens]

    def grounding(self, image: np.ndarray, words: Sequence[str]) -> np.ndarray:
        """Grad-CAM of each word on the image, as lsc computes it for BLIP's image-text model.

        The last decoder layer's cross-attention from the position that predicts word i, times the
        positive part of the gradient of word i's score (its logit) with respect to that attention, averaged over
        heads. A word the image decides ("red", "ball") gets mass; one grammar decides ("a", "on") gets
        little. (A softmax attention map alone sums to the same total for every word.)
        """
        model = self.m.captioner
        tokens = nets.encode_words(self.m.alice_vocab, [list(words)], model.cfg.max_len)
        n = min(len(words), tokens.shape[1] - 1)
        last = model.layers[-1].cross
        last.capture, last.keep_graph = True, True
        try:
            with torch.enable_grad():
                logits = model.decode(tokens[:, :n], model.encode_image(nets.to_tensor([image])))
                attn = last.last_weights  # (1, heads, L, 64), in the graph
                score = logits[0, :n].gather(1, tokens[0, 1 : n + 1, None])  # pre-softmax, as Grad-CAM
                (grad,) = torch.autograd.grad(score.sum(), attn)
        finally:
            last.capture, last.keep_graph = False, False
            last.last_weights = None
        cam = (attn.detach() * grad.clamp(min=0))[0].mean(0)[:n].reshape(-1, 1, 8, 8)
        up = F.interpolate(cam, size=(scenes.IMAGE_SIZE,) * 2, mode="bilinear", align_corners=False)[:, 0]
        out = np.zeros((len(words), scenes.IMAGE_SIZE, scenes.IMAGE_SIZE), np.float32)
        out[:n] = up.numpy()
        return out


class AliceTextEncoder:
    """Alice's language-model attention: her caption decoder's (causal) self-attention."""

    def __init__(self, models: WorldModels):
        self.m = models

    @torch.inference_mode()
    def word_attention(self, words: Sequence[str], variant: str = "mean") -> np.ndarray:
        model = self.m.captioner
        tokens = nets.encode_words(self.m.alice_vocab, [list(words)], model.cfg.max_len)
        blank = torch.zeros((1, 64, model.cfg.dim))  # language-model attention without an image
        model.set_capture(True)
        try:
            model.decode(tokens, blank)
            layers = torch.stack([layer.attn.last_weights[0] for layer in model.layers])
        finally:
            model.set_capture(False)
        return reduce_attention(layers, len(words), variant)


def _shipped_translator(weights_dir: Path) -> str | None:
    """Alice's style translator in a weights folder (`lsc world train --part skd`), if it has one."""
    from lsc.backends.world.skd_translator import TRANSLATOR_FILE

    path = Path(weights_dir) / TRANSLATOR_FILE
    return str(path) if path.is_file() else None


def load_world_backend(
    weights: str | None = None,
    sampler_steps: int | None = None,
    guidance: float | None = None,
    threads: int | None = None,
    receiver: str = "flow",
) -> Backend:
    """The world backend from shipped weights (or a `weights` folder written by `lsc world train`).

    `receiver` picks Bob's generator: `flow` (the 8-step guided sampler), `flow_fast` (its distilled
    student, bob_unet_fast.safetensors with flow_fast.json in the same folder: its own steps and
    threshold; guidance is folded into it) or `vqvae_ar` (a VQ-VAE with an autoregressive prior,
    vqvae.safetensors, prior.safetensors and vqvae_ar.json: its own sampler settings and threshold;
    `guidance` overrides its guidance scale)."""
    weights_dir = world_weights_dir(weights)
    check_receiver(receiver)
    if threads:
        torch.set_num_threads(int(threads))
    models = load_models(str(weights_dir))
    generator, threshold = load_receiver(models, receiver, sampler_steps, guidance)
    return Backend(
        name="world",
        captioner=WorldCaptioner(models),
        generator=generator,
        perceptual=WorldPerceptual(models.classifier, models.channel_weights),
        bob_text_encoder=WorldTextEncoder(models),
        alice_text_encoder=AliceTextEncoder(models),
        capabilities=frozenset(
            {CAP_GENERATOR, CAP_PERCEPTUAL, CAP_BOB_ATTENTION, CAP_ALICE_ATTENTION, CAP_ALICE_GROUNDING, CAP_BOB_CROSS_ATTENTION}
        ),
        bob_vocabulary=frozenset(models.bob_vocab.itos[4:]),  # the words these weights learnt
        skd_examples=scenes.skd_example_pairs(),
        skd_translator=_shipped_translator(weights_dir),
        default_threshold=threshold,
        distance=WORLD_DISTANCE,
        default_prompt_order="caption",  # each word carries its caption position (see protocol.loop.position_bits)
        image_size=scenes.IMAGE_SIZE,
    )
