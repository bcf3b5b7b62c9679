"""The `vqvae_ar` receiver: Bob as a VQ-VAE with a text-conditioned autoregressive prior.

A third kind of text-to-image model beside the flow U-Net: the VQ-VAE turns a 32x32 picture into an
8x8 grid of codes (a codebook of VQ_CODES, updated by EMA with dead-code restarts) and back; a small
causal transformer predicts the 64 codes in raster order, cross-attending to Bob's (frozen) text
encoder, with classifier-free guidance, temperature and top-k at sampling. The models, the sampler,
the loader and the Generator live here; their training (`--part vqvae`, `--part prior`) is
lsc.backends.world.training.vqvae_ar.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from lsc.backends.world import nets, scenes
from lsc.backends.world.receivers.common import CHUNK, receiver_meta, to_unit

log = logging.getLogger("lsc.world.vqvae_ar")

VQVAE_FILE = "vqvae.safetensors"
PRIOR_FILE = "prior.safetensors"
META_FILE = "vqvae_ar.json"  # sampler settings, threshold, training and text-encoder record, eval
GRID = 8  # codes per side: 4x4 pixels per code
LENGTH = GRID * GRID
VQ_CODES = 512
VQ_DIM = 64
# Chosen on 60 held-out scenes (scene seed 999, not the eval's 2024), Bob's and Alice's phrasing, at prior step 3000:
# all-attributes-right 0.78 / 0.85 here, against 0.68 / 0.65 at guidance 2, temperature 0.6 and 0.67 / 0.80 at guidance 3, temperature 0.4.
DEFAULT_SAMPLER = {"guidance": 2.0, "temperature": 0.25, "top_k": 64}


# ------------------------------------------------------------------------------------------ VQ-VAE
class _Res(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.GELU(), nn.Conv2d(ch, ch, 3, padding=1), nn.GELU(), nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Quantizer(nn.Module):
    """Nearest-code quantisation with an EMA codebook (no codebook gradient: stable on a CPU budget).

    Training updates the codebook from the batch's assignments (decay VQ_EMA) and restarts codes
    that fell out of use onto random encoder outputs of the batch, drawn from the step's generator
    so a resumed run restarts the same codes."""

    def __init__(self, codes: int, dim: int, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("embed", torch.randn(codes, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(codes))
        self.register_buffer("embed_avg", self.embed.clone())

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) -> (B, H, W) code indices."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed.T + self.embed.pow(2).sum(1)[None])
        return d.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, H, W) indices -> (B, D, H, W) code vectors."""
        return self.embed[idx].permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def update(self, z: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> int:
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        onehot = F.one_hot(idx.flatten(), self.embed.shape[0]).to(flat.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(onehot.T @ flat, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        size = (self.cluster_size + 1e-5) / (n + self.embed.shape[0] * 1e-5) * n
        self.embed.copy_(self.embed_avg / size[:, None])
        dead = self.cluster_size < 0.3
        count = int(dead.sum())
        if count:
            pick = torch.randint(0, flat.shape[0], (count,), generator=gen)
            self.embed[dead] = flat[pick]
            self.embed_avg[dead] = flat[pick]
            self.cluster_size[dead] = 1.0
        return count


@dataclass
class VQConfig:
    codes: int = VQ_CODES
    dim: int = VQ_DIM
    channels: tuple[int, int, int] = (48, 96, 128)


class VQVAE(nn.Module):
    """32x32 RGB in [-1, 1] <-> an 8x8 grid of code indices."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.cfg = cfg
        c1, c2, c3 = cfg.channels
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1), nn.GELU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c2, c3, 4, stride=2, padding=1), _Res(c3), _Res(c3), nn.GELU(),
            nn.Conv2d(c3, cfg.dim, 1),
        )
        self.quantizer = Quantizer(cfg.codes, cfg.dim)
        self.decoder = nn.Sequential(
            nn.Conv2d(cfg.dim, c3, 3, padding=1), _Res(c3), _Res(c3), nn.GELU(),
            nn.ConvTranspose2d(c3, c2, 4, stride=2, padding=1), nn.GELU(),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c1, 3, 3, padding=1),
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, 64) code indices, raster order."""
        return self.quantizer.codes(self.encoder(images)).flatten(1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, 64) code indices -> (B, 3, 32, 32) in about [-1, 1]."""
        return self.decoder(self.quantizer.lookup(codes.view(-1, GRID, GRID)))


# ------------------------------------------------------------------------------------------- prior
@dataclass
class PriorConfig:
    codes: int = VQ_CODES
    dim: int = 192
    layers: int = 4
    heads: int = 4
    text_dim: int = 128  # Bob's text encoder's width


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, h, d // h).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


class _Block(nn.Module):
    """Causal self-attention (with a key/value cache for sampling), cross-attention to the prompt's
    features (its weights kept when `capture` is on: the receiver's cross-attention maps), MLP."""

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        d, self.h = cfg.dim, cfg.heads
        self.norm1, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d)
        self.norm_c, self.cq, self.ckv, self.cproj = nn.LayerNorm(d), nn.Linear(d, d, bias=False), nn.Linear(cfg.text_dim, 2 * d, bias=False), nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.capture = False
        self.last_weights: torch.Tensor | None = None  # (B, heads, Lq, T)

    def text_kv(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.ckv(text).chunk(2, dim=-1)
        return _heads(k, self.h), _heads(v, self.h)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], allowed: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        q, k, v = (_heads(t, self.h) for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # one new position attends to every earlier one
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
            y = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(_merge(y))
        q = _heads(self.cq(self.norm_c(x)), self.h)
        if self.capture:
            w = ((q @ kv[0].transpose(-1, -2)) / math.sqrt(q.shape[-1])).masked_fill(~allowed, float("-inf")).softmax(-1)
            self.last_weights = w.detach()
            y = w @ kv[1]
        else:
            y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=allowed)
        x = x + self.cproj(_merge(y))
        return x + self.ff(self.norm2(x))


class CodePrior(nn.Module):
    """p(code_i | codes before i, prompt): a causal transformer over the 64 codes in raster order,
    [BOS] (index `codes`) first, cross-attending to Bob's text features."""

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.codes + 1, cfg.dim)
        self.pos = nn.Parameter(torch.zeros(LENGTH, cfg.dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.codes)

    @property
    def bos(self) -> int:
        return self.cfg.codes

    def context(self, text: torch.Tensor, padding: torch.Tensor) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """Each block's cross-attention keys and values of the prompt, and the mask of real tokens."""
        return [blk.text_kv(text) for blk in self.blocks], ~padding[:, None, None, :]

    def forward(self, codes: torch.Tensor, text: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: codes (B, 64) -> logits (B, 64, codes) of each code given those before it."""
        inputs = torch.cat([torch.full_like(codes[:, :1], self.bos), codes[:, :-1]], 1)
        x = self.embed(inputs) + self.pos
        kvs, allowed = self.context(text, padding)
        for blk, kv in zip(self.blocks, kvs):
            x = blk(x, kv, allowed)
        return self.head(self.norm(x))

    def step(self, token: torch.Tensor, i: int, kvs: list, allowed: torch.Tensor, caches: list[dict]) -> torch.Tensor:
        """One sampling step: the token at position i (B,) -> logits (B, codes) of code i."""
        x = self.embed(token[:, None]) + self.pos[i]
        for blk, kv, cache in zip(self.blocks, kvs, caches):
            x = blk(x, kv, allowed, cache)
        return self.head(self.norm(x))[:, 0]

    def cross_attention_blocks(self) -> list[_Block]:
        return list(self.blocks)


def sample_codes(
    prior: CodePrior, text: torch.Tensor, padding: torch.Tensor, uncond: tuple[torch.Tensor, torch.Tensor] | None,
    guidance: float, temperature: float, top_k: int, uniforms: torch.Tensor, on_step: Any = None,
) -> torch.Tensor:
    """The 64 codes of each prompt, one prior step per code (with guidance != 1, two rows per image:
    the prompt's and `uncond`'s logits, mixed as lu + g (lc - lu)), top-k and temperature.

    `uniforms` (64,) drives the draws: code i of every row is the top-k entry where the cumulative
    probability first passes uniforms[i], so the same seed gives every row the same random stream,
    whatever else is in the batch (as flow's one noise tensor per seed)."""
    b = text.shape[0]
    guided = guidance != 1.0
    if guided:
        assert uncond is not None
        text, padding = torch.cat([text, uncond[0]]), torch.cat([padding, uncond[1]])
    kvs, allowed = prior.context(text, padding)
    caches: list[dict] = [{} for _ in prior.blocks]
    token = torch.full((text.shape[0],), prior.bos, dtype=torch.long)
    out = []
    k = min(int(top_k), prior.cfg.codes) if top_k else prior.cfg.codes
    for i in range(LENGTH):
        logits = prior.step(token, i, kvs, allowed, caches)
        if guided:
            logits = logits[b:] + guidance * (logits[:b] - logits[b:])
        vals, idx = (logits / temperature).topk(k, dim=-1)
        cum = vals.softmax(-1).cumsum(-1)
        j = (cum < uniforms[i] * cum[:, -1:]).sum(-1).clamp(max=k - 1)
        code = idx.gather(1, j[:, None])[:, 0]
        out.append(code)
        token = torch.cat([code, code]) if guided else code
        if on_step is not None:
            on_step(i)
    return torch.stack(out, 1)


# ------------------------------------------------------------------------------------- receiver
def load_vqvae_ar(folder: Path) -> tuple[VQVAE, CodePrior, dict[str, Any]]:
    """The VQ-VAE, prior and vqvae_ar.json of a weights folder. Missing files, or a prior trained on
    another text encoder than this folder's bob_text.safetensors, are a one-line ConfigError."""
    folder = Path(folder)
    meta = receiver_meta(
        folder, META_FILE, (VQVAE_FILE, PRIOR_FILE, META_FILE),
        lambda missing: (f"backend_options.receiver=vqvae_ar: no {', '.join(missing)} in {folder}; train them with "
                         f"`lsc world train --out DIR --part vqvae` then `--part prior --base-weights {folder}`"),
        "text", f"backend_options.receiver=vqvae_ar: {PRIOR_FILE} in {folder} was trained with",
        "train the prior again on these weights",
    )
    vqvae = VQVAE(VQConfig())
    vqvae.load_state_dict({k: v.float() for k, v in load_file(str(folder / VQVAE_FILE)).items()})
    state = {k: v.float() for k, v in load_file(str(folder / PRIOR_FILE)).items()}
    prior = CodePrior(PriorConfig(**meta.get("prior_config", {})))
    prior.load_state_dict(state)
    return vqvae.eval().requires_grad_(False), prior.eval().requires_grad_(False), meta


class VQARGenerator:
    """Bob as VQ-VAE + autoregressive prior (`receiver="vqvae_ar"`): 64 prior steps per image, each
    one evaluation per image row (two with guidance). `evaluations` counts those per image row."""

    receiver = "vqvae_ar"

    def __init__(self, models: Any, guidance: float | None = None):
        vqvae, prior, meta = models.cached("vqvae_ar", load_vqvae_ar)
        self.m, self.vqvae, self.prior, self.meta = models, vqvae, prior, meta
        sampler = {**DEFAULT_SAMPLER, **meta.get("sampler", {})}
        self.guidance = float(guidance if guidance is not None else sampler["guidance"])
        self.temperature, self.top_k = float(sampler["temperature"]), int(sampler["top_k"])
        self.steps = LENGTH  # prior steps per image (one per code)
        self.calls = 0
        self.evaluations = 0

    @torch.inference_mode()
    def _codes(self, prompts: Sequence[str], seed: int, capture: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = len(prompts)
        tokens = nets.encode_words(self.m.bob_vocab, [p.split() for p in prompts], self.m.text.cfg.max_len)
        empty = torch.zeros(1, tokens.shape[1], dtype=torch.long)
        empty[0, 0] = nets.BOS_ID
        feats, padding = self.m.text(torch.cat([tokens, empty]))
        uncond = (feats[b:].expand(b, -1, -1), padding[b:].expand(b, -1))
        uniforms = torch.rand(LENGTH, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64).float()
        blocks = self.prior.cross_attention_blocks()
        maps = torch.zeros(b, tokens.shape[1], LENGTH) if capture else None

        def keep(i: int) -> None:
            if maps is not None:  # the prompt rows' attention when predicting code i, mean over blocks and heads
                maps[:, :, i] = torch.stack([blk.last_weights[:b, :, 0] for blk in blocks]).mean((0, 2))

        for blk in blocks:
            blk.capture = capture
        try:
            codes = sample_codes(self.prior, feats[:b], padding[:b], uncond, self.guidance, self.temperature, self.top_k, uniforms, keep)
        finally:
            for blk in blocks:
                blk.capture, blk.last_weights = False, None
        self.evaluations += LENGTH * b * (2 if self.guidance != 1.0 else 1)
        return codes, maps

    def generate(self, prompts: Sequence[str], seed: int) -> np.ndarray:
        """Bob's images for prompts, CHUNK at a time; bit-identical for a prompt and seed whatever the batch."""
        if len(prompts) == 0:
            return np.zeros((0, scenes.IMAGE_SIZE, scenes.IMAGE_SIZE, 3), np.float32)
        self.calls += 1
        prompts = list(prompts)
        out = []
        for i in range(0, len(prompts), CHUNK):
            codes, _ = self._codes(prompts[i : i + CHUNK], seed)
            with torch.inference_mode():
                out.append(to_unit(self.vqvae.decode(codes)))
        return np.concatenate(out)

    def with_steps(self, steps: int) -> "VQARGenerator":
        from lsc.errors import CapabilityError

        raise CapabilityError("receiver vqvae_ar has no cheaper sampler (one prior step per code): proxy_steps needs receiver flow or flow_fast")

    def cross_attention(self, words: Sequence[str], seed: int) -> np.ndarray:
        """Per word, the prior's cross-attention when predicting each code of the 8x8 grid (mean over
        blocks and heads, one sampling step per code), [BOS] dropped, upsampled to the image."""
        _, maps = self._codes([" ".join(words)], seed, capture=True)
        assert maps is not None
        size = scenes.IMAGE_SIZE
        per_token = maps[0].reshape(-1, 1, GRID, GRID)
        up = F.interpolate(per_token, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        out = torch.zeros(len(words), size, size)
        n = min(len(words), up.shape[0] - 1)
        out[:n] = up[1 : n + 1]
        return out.numpy()
