"""The world's networks: Bob's text encoder and flow-matching U-Net, Alice's captioner, the
attribute classifier whose feature trunk the perceptual metric reads.

All are small enough to train on a CPU in an hour or two and to run a batch of 16 generations in about
a second. Attention modules keep their last attention weights when asked (`capture`), which is how
the schemes read word-level self-attention and per-word cross-attention maps.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIALS = (PAD, UNK, BOS, EOS)
# Every vocabulary puts the specials first, so their ids are the same in every model and checkpoint.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(len(SPECIALS))

log = logging.getLogger("lsc.world")


class WordVocab:
    """A word-level vocabulary: the world's captions are whitespace words, one token each.

    Inference (backend.py) and training (training/) both turn words into token ids here, so a model
    sees at inference exactly the ids it was trained on.
    """

    def __init__(self, words: list[str]):
        self.itos = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self.stoi.get(w, UNK_ID) for w in words]

    def knows(self, word: str) -> bool:
        return word in self.stoi and word not in SPECIALS

    def tokens(self, prompts: Sequence[Sequence[str]], max_len: int | None = None, eos: bool = False) -> torch.Tensor:
        """(B, L) token ids, one per word (per-word maps stay aligned with the words): [BOS] first, [EOS]
        last when asked, cut to `max_len` tokens, padded with [PAD] to the longest row."""
        rows = [[BOS_ID] + self.encode(words) + ([EOS_ID] if eos else []) for words in prompts]
        if max_len is not None:
            rows = [r[:max_len] for r in rows]
        out = torch.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out


_PUNCTUATION = ".,;:!?\"'()[]{}"


def normalise_word(word: str) -> str:
    """A word as the world's tokenizers see it: lower case, surrounding punctuation stripped ("Blue" ->
    "blue", "left." -> "left"), as a real tokenizer would; pure punctuation becomes the unknown token."""
    return word.lower().strip(_PUNCTUATION) or UNK


def encode_words(vocab: WordVocab, prompts: Sequence[Sequence[str]], max_len: int) -> torch.Tensor:
    """Token ids of prompts as the world's tokenizers see their words (`normalise_word`), [BOS] first."""
    longest = max(len(words) for words in prompts)
    if longest + 1 > max_len:
        log.warning("prompt of %d words truncated to the model's %d tokens", longest, max_len)
    return vocab.tokens([[normalise_word(w) for w in words] for words in prompts], max_len)


def to_tensor(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """Images (B, H, W, 3) or one (H, W, 3) in [0, 1] -> (B, 3, H, W) float32 in [-1, 1], as every world net takes them."""
    arr = images if isinstance(images, np.ndarray) else np.stack(list(images))
    if arr.ndim == 3:
        arr = arr[None]
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(0, 3, 1, 2) * 2 - 1


# --------------------------------------------------------------------------------------- attention
class Attention(nn.Module):
    """Multi-head attention that can keep its weights (B, heads, Lq, Lk) for inspection."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.capture = False
        self.keep_graph = False  # capture the weights inside the autograd graph (for Grad-CAM)
        self.last_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, key_padding: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        b, lq, d = x.shape
        ctx = x if context is None else context
        h = self.heads
        q = self.q(x).view(b, lq, h, d // h).transpose(1, 2)
        k, v = self.kv(ctx).chunk(2, dim=-1)
        lk = ctx.shape[1]
        k = k.view(b, lk, h, d // h).transpose(1, 2)
        v = v.view(b, lk, h, d // h).transpose(1, 2)
        mask = None
        if key_padding is not None or causal:
            mask = torch.zeros(b, 1, lq, lk, dtype=torch.bool, device=x.device)
            if key_padding is not None:
                mask |= key_padding[:, None, None, :]
            if causal:
                mask |= torch.ones(lq, lk, dtype=torch.bool, device=x.device).triu(1)[None, None]
        if self.capture:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // h)
            if mask is not None:
                scores = scores.masked_fill(mask, float("-inf"))
            w = scores.softmax(-1)
            if self.keep_graph and not w.requires_grad:
                w.requires_grad_(True)  # frozen weights: make the map itself the leaf Grad-CAM differentiates
            self.last_weights = w if self.keep_graph else w.detach()
            y = w @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else ~mask)
        return self.out(y.transpose(1, 2).reshape(b, lq, d))


class TransformerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.cross = Attention(dim, heads, context_dim) if context_dim else None
        self.norm_c = nn.LayerNorm(dim) if context_dim else None
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, padding=None, causal=False, context=None):
        x = x + self.attn(self.norm1(x), key_padding=padding, causal=causal)
        if self.cross is not None:
            x = x + self.cross(self.norm_c(x), context=context)
        return x + self.ff(self.norm2(x))


# ------------------------------------------------------------------------------------ Bob: text
@dataclass
class TextEncoderConfig:
    vocab_size: int
    dim: int = 128
    layers: int = 3
    heads: int = 4
    max_len: int = 48


class BobTextEncoder(nn.Module):
    """Bob's language model: a small transformer over word tokens, [BOS] first (never masked)."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.pos = nn.Parameter(torch.zeros(cfg.max_len, cfg.dim))
        nn.init.normal_(self.pos, std=0.02)
        self.layers = nn.ModuleList(TransformerLayer(cfg.dim, cfg.heads) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, L) -> features (B, L, d), padding mask (B, L)."""
        padding = tokens == 0
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for layer in self.layers:
            x = layer(x, padding=padding)
        return self.norm(x), padding

    def set_capture(self, on: bool) -> None:
        for layer in self.layers:
            layer.attn.capture = on

    def attention_maps(self) -> list[torch.Tensor]:
        return [layer.attn.last_weights for layer in self.layers]


# -------------------------------------------------------------------------------------- Bob: U-Net
def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t[:, None] * 1000.0 * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return h + self.skip(x)


class SpatialAttention(nn.Module):
    """Self-attention over pixels (optional) then cross-attention from pixels to text tokens."""

    def __init__(self, ch: int, text_dim: int, heads: int = 4, self_attn: bool = False):
        super().__init__()
        self.norm_s = nn.GroupNorm(8, ch) if self_attn else None
        self.self_attn = Attention(ch, heads) if self_attn else None
        self.norm_c = nn.GroupNorm(8, ch)
        self.cross = Attention(ch, heads, text_dim)

    def forward(self, x, text, padding):
        b, c, hh, ww = x.shape
        if self.self_attn is not None:
            h = self.norm_s(x).flatten(2).transpose(1, 2)
            x = x + self.self_attn(h).transpose(1, 2).view(b, c, hh, ww)
        h = self.norm_c(x).flatten(2).transpose(1, 2)
        return x + self.cross(h, context=text, key_padding=padding).transpose(1, 2).view(b, c, hh, ww)


@dataclass
class UNetConfig:
    channels: tuple[int, int, int] = (32, 64, 128)
    text_dim: int = 128
    emb_dim: int = 128


class FlowUNet(nn.Module):
    """A pixel-space U-Net predicting the rectified-flow velocity (noise - image) at time t.

    Cross-attention to the text at 16x16 and 8x8 (not at full 32x32, where it costs most and adds
    little), self-attention at 8x8; the pooled text and the time condition every residual block.
    """

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        c1, c2, c3 = cfg.channels
        e = cfg.emb_dim
        self.time = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.pool_text = nn.Linear(cfg.text_dim, e)
        self.inp = nn.Conv2d(3, c1, 3, padding=1)
        self.d1 = ResBlock(c1, c1, e)
        self.down1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)
        self.d2 = ResBlock(c1, c2, e)
        self.a2 = SpatialAttention(c2, cfg.text_dim)
        self.down2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)
        self.d3 = ResBlock(c2, c3, e)
        self.a3 = SpatialAttention(c3, cfg.text_dim, self_attn=True)
        self.m1 = ResBlock(c3, c3, e)
        self.am = SpatialAttention(c3, cfg.text_dim, self_attn=True)
        self.m2 = ResBlock(c3, c3, e)
        self.u3 = ResBlock(c3 + c3, c3, e)
        self.au3 = SpatialAttention(c3, cfg.text_dim)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.u2 = ResBlock(c3 + c2, c2, e)
        self.au2 = SpatialAttention(c2, cfg.text_dim)
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.u1 = ResBlock(c2 + c1, c1, e)
        self.out_norm = nn.GroupNorm(8, c1)
        self.out = nn.Conv2d(c1, 3, 3, padding=1)

    def cross_attention_modules(self) -> list[Attention]:
        return [m.cross for m in (self.a2, self.a3, self.am, self.au3, self.au2)]

    def forward(self, x, t, text, padding):
        keep = (~padding).float()[..., None]
        pooled = (text * keep).sum(1) / keep.sum(1).clamp(min=1)
        emb = self.time(timestep_embedding(t, self.cfg.emb_dim)) + self.pool_text(pooled)
        h1 = self.d1(self.inp(x), emb)
        h2 = self.a2(self.d2(self.down1(h1), emb), text, padding)
        h3 = self.a3(self.d3(self.down2(h2), emb), text, padding)
        m = self.m2(self.am(self.m1(h3, emb), text, padding), emb)
        u = self.au3(self.u3(torch.cat([m, h3], 1), emb), text, padding)
        u = self.au2(self.u2(torch.cat([self.up2(u), h2], 1), emb), text, padding)
        u = self.u1(torch.cat([self.up1(u), h1], 1), emb)
        return self.out(F.silu(self.out_norm(u)))


# ------------------------------------------------------------------------------------ Alice
@dataclass
class CaptionerConfig:
    vocab_size: int
    dim: int = 128
    layers: int = 3
    heads: int = 4
    max_len: int = 40


class AliceCaptioner(nn.Module):
    """A small BLIP: a CNN turns the image into 8x8 tokens; a causal transformer decoder writes words.

    The decoder's self-attention is Alice's language-model attention; its cross-attention from the
    position predicting a word to the image tokens is that word's grounding map.
    """

    def __init__(self, cfg: CaptionerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1), nn.GELU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.GELU(),
            nn.Conv2d(64, 96, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(96, 96, 3, padding=1), nn.GELU(),
            nn.Conv2d(96, d, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(d, d, 3, padding=1),
        )
        self.img_pos = nn.Parameter(torch.zeros(64, d))
        self.img_layer = TransformerLayer(d, cfg.heads)
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.pos = nn.Parameter(torch.zeros(cfg.max_len, d))
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.img_pos, std=0.02)
        self.layers = nn.ModuleList(TransformerLayer(d, cfg.heads, context_dim=d) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab_size)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, 32, 32) in [-1, 1] -> tokens (B, 64, d)."""
        feats = self.encoder(images).flatten(2).transpose(1, 2) + self.img_pos
        return self.img_layer(feats)

    def decode(self, tokens: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        padding = tokens == 0
        for layer in self.layers:
            x = layer(x, padding=padding, causal=True, context=image_tokens)
        return self.head(self.norm(x))

    def set_capture(self, on: bool) -> None:
        for layer in self.layers:
            layer.attn.capture = on
            layer.cross.capture = on


# ---------------------------------------------------------------------- attribute classifier
@dataclass
class ClassifierConfig:
    channels: tuple[int, ...] = (32, 64, 128, 128)
    n_backgrounds: int = 5
    n_shapes: int = 4  # none + 3 shapes: slot occupancy is "shape != none"
    n_colors: int = 6
    n_sizes: int = 2
    n_slots: int = 3


class AttributeNet(nn.Module):
    """Reads a scene's attributes from pixels; its conv stages are the perceptual metric's trunk."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        stages = []
        cin = 3
        for i, c in enumerate(cfg.channels):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(nn.Conv2d(cin, c, 3, stride=stride, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU()))
            cin = c
        self.stages = nn.ModuleList(stages)
        per_slot = cfg.n_shapes + cfg.n_colors + cfg.n_sizes
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin * 4 * 4, 256), nn.ReLU(), nn.Linear(256, cfg.n_backgrounds + cfg.n_slots * per_slot))

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B, 3, 32, 32) in [-1, 1] -> the output of each stage."""
        feats, x = [], images
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.features(images)[-1])
        cfg = self.cfg
        bg, rest = logits[:, : cfg.n_backgrounds], logits[:, cfg.n_backgrounds :].view(len(logits), cfg.n_slots, -1)
        s, c = cfg.n_shapes, cfg.n_colors
        return {"background": bg, "shape": rest[..., :s], "color": rest[..., s : s + c], "size": rest[..., s + c :]}
