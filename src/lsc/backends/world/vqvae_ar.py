"""The `vqvae_ar` receiver: Bob as a VQ-VAE with a text-conditioned autoregressive prior.

A third kind of text-to-image model beside the flow U-Net: the VQ-VAE turns a 32x32 picture into an
8x8 grid of codes (a codebook of VQ_CODES, updated by EMA with dead-code restarts) and back; a small
causal transformer predicts the 64 codes in raster order, cross-attending to Bob's (frozen) text
encoder, with classifier-free guidance, temperature and top-k at sampling. Its training parts
(`--part vqvae`, `--part prior`), the prior's cached training codes, the sampler and the Generator
live here; train.py dispatches to them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from lsc.backends.world import STEP_CAPS, nets, scenes
from lsc.backends.world import train as T
from lsc.errors import ConfigError

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


VQ_LR = 1e-3
VQ_COMMIT = 0.25
VQ_PERCEPTUAL = 0.5  # weight of the world's perceptual distance (with --base-weights): shapes stay sharp


def _perceptual_loss(weights_dir: Path) -> Any:
    """The world's perceptual distance (its metric: attribute-network features, learnt channel weights)
    of a weights folder, as a differentiable loss: mean squared error alone blurs a triangle into a
    blob that the attribute reader takes for a circle, for a few pixels of error."""
    from lsc.backends.world.backend import load_models
    from lsc.backends.world.perceptual import _normalise

    models = load_models(str(Path(weights_dir).resolve()))
    net = models.classifier
    weights = models.channel_weights or [torch.ones(c) for c in net.cfg.channels]

    def loss(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = [_normalise(f) for f in net.features(x)]
        total = torch.zeros(())
        for w, r, f in zip(weights, ref, net.features(recon)):
            total = total + ((_normalise(f) - r).pow(2) * w[None, :, None, None]).sum(1).mean()
        return total

    return loss


def train_vqvae(out_dir: Path, minutes: float, seed: int = 0, batch_size: int = 32, max_steps: int = STEP_CAPS["vqvae"],
                perceptual_from: Path | None = None) -> dict:
    """The VQ-VAE on rendered training scenes (the generator's scene and prompt stream: the targets
    `training_prompt` gives, so partial scenes and empty backgrounds are in its range). With
    `perceptual_from` (a weights folder), the world's perceptual distance joins the loss."""
    torch.manual_seed(seed + T._PART_ID["vqvae"])
    model = VQVAE(VQConfig())
    perceptual = _perceptual_loss(perceptual_from) if perceptual_from is not None else None

    def loss_fn(rng, gen, step):
        batch = [T.training_prompt(scenes.sample_scene(rng), rng)[1] if rng.random() < 0.5 else scenes.sample_scene(rng)
                 for _ in range(batch_size)]
        x = T.to_tensor(np.stack([scenes.render(s) for s in batch]))
        z = model.encoder(x)
        idx = model.quantizer.codes(z)
        q = model.quantizer.lookup(idx)
        recon = model.decoder(z + (q - z).detach())  # straight-through
        rec = F.mse_loss(recon, x)
        commit = F.mse_loss(z, q.detach())
        restarted = model.quantizer.update(z.detach(), idx, gen) if model.training else 0
        used = float(torch.unique(idx).numel())
        loss = rec + VQ_COMMIT * commit
        metrics = {"rec": rec.item(), "used": used, "restarted": float(restarted)}
        if perceptual is not None:
            perc = perceptual(x, recon)
            loss = loss + VQ_PERCEPTUAL * perc
            metrics["perc"] = perc.item()
        return loss, metrics

    record = {"max_steps": max_steps, "perceptual_from": None if perceptual_from is None else str(Path(perceptual_from).resolve())}
    return T._train_loop("vqvae", out_dir, minutes, seed, {"model": model}, list(model.parameters()), loss_fn, VQ_LR, max_steps,
                         lr_decay=(int(0.5 * max_steps), max_steps, 0.1), warmup=min(100, max_steps), extra_state=record)


def vqvae_finished(out_dir: Path) -> bool:
    """Whether the vqvae part in `out_dir` reached its step cap (the prior's codes need its final weights)."""
    path = Path(out_dir) / "vqvae" / "state.json"
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    return state["step"] >= state.get("max_steps", STEP_CAPS["vqvae"])


def load_trained_vqvae(out_dir: Path, weights_dir: Path | None = None) -> VQVAE:
    """The VQ-VAE of a training folder's finished vqvae part, else of a weights folder's vqvae.safetensors;
    neither is a one-line ConfigError."""
    model = VQVAE(VQConfig())
    out_dir = Path(out_dir)
    if vqvae_finished(out_dir):
        tensors = load_file(str(out_dir / "vqvae" / "checkpoint.safetensors"))
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    elif weights_dir is not None and (Path(weights_dir) / VQVAE_FILE).exists() and not (out_dir / "vqvae" / "state.json").exists():
        model.load_state_dict({k: v.float() for k, v in load_file(str(Path(weights_dir) / VQVAE_FILE)).items()})
    else:
        raise ConfigError(f"--part prior needs a finished VQ-VAE: run `lsc world train --out {out_dir} --part vqvae` until it reaches "
                          f"its step cap (or give --base-weights a weights folder with {VQVAE_FILE})")
    return model.eval().requires_grad_(False)


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


# ------------------------------------------------------------------------------ the prior's data
PRIOR_EXAMPLES = 32768  # (codes, prompt) examples, encoded once and cached in the part's folder
PRIOR_CHUNK = 512  # examples encoded (and saved) at a time
PRIOR_LR = 5e-4
PRIOR_DROPOUT = 0.1  # share of prompts replaced by the empty prompt: the unconditional branch of guidance
PRIOR_EMA = 0.999


def module_sha256(module: nn.Module) -> str:
    """A fingerprint of a module's weights (the cached codes belong to one VQ-VAE)."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def code_cache(
    folder: Path, vqvae: VQVAE, vocab: nets.WordVocab, max_len: int, n: int, seed: int, deadline: float,
    chunk: int = PRIOR_CHUNK, logfile: Any = None,
) -> dict[str, np.ndarray] | None:
    """The prior's training examples, memory-mapped .npy files in `folder` written chunk by chunk
    (codes.json counts the chunks done: a killed run resumes without re-encoding).

    Each example is a training scene of the generator's fine-tuning mix and one of its training
    prompts (`training_prompt`: Alice's or Bob's phrasing, partial, reordered, empty, unknown words),
    the VQ-VAE's codes of the image that prompt should produce, and the prompt's token ids. Example r
    of chunk k depends on (seed, k, r) only. Returns the arrays when complete, None at `deadline`."""
    record = {"examples": n, "chunk": chunk, "seed": seed, "vqvae_sha256": module_sha256(vqvae), "max_len": max_len}
    meta_path = folder / "codes.json"
    done = 0
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if {k: old.get(k) for k in record} != record:
            raise ConfigError(f"{folder} holds codes of another VQ-VAE, seed, example count or chunk size; train the prior into a new --out folder")
        done = old["done"]
    shapes = {"codes": (np.int16, (LENGTH,)), "tokens": (np.int32, (max_len,))}
    mode = "r+" if meta_path.exists() else "w+"
    arrays = {name: np.lib.format.open_memmap(folder / f"prior_{name}.npy", mode, dtype, (n, *shape)) for name, (dtype, shape) in shapes.items()}
    if mode == "w+":
        meta_path.write_text(json.dumps({**record, "done": 0}))
    n_chunks = math.ceil(n / chunk)
    start = time.time()
    while done < n_chunks:
        if time.time() >= deadline:
            return None
        lo, hi = done * chunk, min(n, (done + 1) * chunk)
        rng = np.random.default_rng([seed + T.TRAIN_SEED_OFFSET, T._PART_ID["prior"], 0, done])
        pairs = [T.training_prompt(scenes.sample_scene(rng, T.FINETUNE_COUNT_P), rng) for _ in range(hi - lo)]
        tokens = vocab.tokens([p for p, _ in pairs], max_len)
        with torch.inference_mode():
            x = T.to_tensor(np.stack([scenes.render(s) for _, s in pairs]))
            codes = torch.cat([vqvae.encode(x[i : i + 128]) for i in range(0, len(x), 128)])
        padded = np.zeros((hi - lo, max_len), np.int32)
        padded[:, : tokens.shape[1]] = tokens.numpy()
        arrays["codes"][lo:hi] = codes.numpy().astype(np.int16)
        arrays["tokens"][lo:hi] = padded
        done = T.commit_chunk(arrays, meta_path, record, done, f"prior codes {hi}/{n} ({time.time() - start:.0f}s this call)", logfile)
    return arrays


def _text_record(base_dir: Path) -> dict:
    from lsc.backends.world.backend import file_sha256

    return {"bob_text_sha256": file_sha256(Path(base_dir) / "bob_text.safetensors"), "weights": str(Path(base_dir).resolve())}


def train_prior(
    out_dir: Path, minutes: float, base_dir: Path, seed: int = 0, batch_size: int = 32, max_steps: int = STEP_CAPS["prior"],
    examples: int = PRIOR_EXAMPLES, chunk: int = PRIOR_CHUNK, vqvae_from: Path | None = None,
) -> dict:
    """The prior on cached codes, reading the frozen text encoder of `base_dir` (a weights folder).

    The VQ-VAE is this folder's vqvae part (or `vqvae_from`'s vqvae.safetensors). 10% of prompts are
    dropped to the empty prompt so that classifier-free guidance has an unconditional branch. The
    time budget covers encoding the codes (cached, resumable) and training."""
    from lsc.backends.world.backend import load_models

    folder = Path(out_dir) / "prior"
    vqvae = load_trained_vqvae(Path(out_dir), vqvae_from)
    if examples < 1 or chunk < 1:
        raise ConfigError("the prior needs at least 1 example and a chunk of at least 1")
    record = _text_record(base_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / "state.json"
    if state_path.exists():
        old = json.loads(state_path.read_text())
        if old.get("text", {}).get("bob_text_sha256") != record["bob_text_sha256"] or old.get("examples") != examples:
            raise ConfigError(f"{folder} trained with another text encoder or example count; use a new --out folder")
    base = load_models(str(Path(base_dir).resolve()))
    text = base.text
    start = time.time()
    logfile = (folder / "train.log").open("a")
    try:
        arrays = code_cache(folder, vqvae, base.bob_vocab, text.cfg.max_len, examples, seed, start + minutes * 60, chunk, logfile)
    finally:
        logfile.close()
    if arrays is None:
        return json.loads(state_path.read_text()) if state_path.exists() else {"step": 0, "elapsed_s": 0.0, "part": "prior", "seed": seed}
    torch.manual_seed(seed + T._PART_ID["prior"])
    prior = CodePrior(PriorConfig(text_dim=text.cfg.dim))
    ema = CodePrior(PriorConfig(text_dim=text.cfg.dim))
    ema.load_state_dict(prior.state_dict())
    ema.requires_grad_(False)
    n = len(arrays["codes"])

    def loss_fn(rng, gen, step):
        idx = np.sort(rng.choice(n, size=batch_size, replace=False)) if batch_size <= n else rng.integers(0, n, batch_size)
        codes = torch.from_numpy(np.ascontiguousarray(arrays["codes"][idx])).long()
        tokens = torch.from_numpy(np.ascontiguousarray(arrays["tokens"][idx])).long()
        drop = torch.from_numpy(rng.random(batch_size) < PRIOR_DROPOUT)
        tokens[drop, 1:] = nets.PAD_ID
        tokens = tokens[:, : max(1, int((tokens != nets.PAD_ID).sum(1).max()))]
        with torch.no_grad():
            feats, padding = text(tokens)
        logits = prior(codes, feats, padding)
        loss = F.cross_entropy(logits.flatten(0, 1), codes.flatten())
        return loss, {"acc": float((logits.argmax(-1) == codes).float().mean())}

    spent = (time.time() - start) / 60
    return T._train_loop(
        "prior", out_dir, max(0.0, minutes - spent), seed, {"prior": prior}, list(prior.parameters()), loss_fn, PRIOR_LR, max_steps,
        ema={"prior": ema}, ema_decay=PRIOR_EMA, lr_decay=(int(0.5 * max_steps), max_steps, 0.1), warmup=min(200, max_steps),
        extra_state={"text": record, "examples": examples, "vqvae_sha256": module_sha256(vqvae)}, ema_warmup=True,
    )


# ------------------------------------------------------------------------------------- receiver
def load_receiver(folder: Path) -> tuple[VQVAE, CodePrior, dict[str, Any]]:
    """The VQ-VAE, prior and vqvae_ar.json of a weights folder. Missing files, or a prior trained on
    another text encoder than this folder's bob_text.safetensors, are a one-line ConfigError."""
    from lsc.backends.world.backend import check_text_encoder

    folder = Path(folder)
    missing = [f for f in (VQVAE_FILE, PRIOR_FILE, META_FILE) if not (folder / f).exists()]
    if missing:
        raise ConfigError(
            f"backend_options.receiver=vqvae_ar: no {', '.join(missing)} in {folder}; train them with "
            f"`lsc world train --out DIR --part vqvae` then `--part prior --base-weights {folder}`"
        )
    meta = json.loads((folder / META_FILE).read_text())
    check_text_encoder(folder, meta.get("text", {}).get("bob_text_sha256"),
                       f"backend_options.receiver=vqvae_ar: {PRIOR_FILE} in {folder} was trained with",
                       "train the prior again on these weights")
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
        vqvae, prior, meta = models.vqvae_ar()
        self.m, self.vqvae, self.prior, self.meta = models, vqvae, prior, meta
        sampler = {**DEFAULT_SAMPLER, **meta.get("sampler", {})}
        self.guidance = float(guidance if guidance is not None else sampler["guidance"])
        self.temperature, self.top_k = float(sampler["temperature"]), int(sampler["top_k"])
        self.steps = LENGTH  # prior steps per image (one per code)
        self.calls = 0
        self.evaluations = 0

    @torch.inference_mode()
    def _codes(self, prompts: Sequence[str], seed: int, capture: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        from lsc.backends.world.backend import _encode

        b = len(prompts)
        tokens = _encode(self.m.bob_vocab, [p.split() for p in prompts], self.m.text.cfg.max_len)
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
        from lsc.backends.world.backend import CHUNK, _to_unit

        if len(prompts) == 0:
            return np.zeros((0, scenes.IMAGE_SIZE, scenes.IMAGE_SIZE, 3), np.float32)
        self.calls += 1
        prompts = list(prompts)
        out = []
        for i in range(0, len(prompts), CHUNK):
            codes, _ = self._codes(prompts[i : i + CHUNK], seed)
            with torch.inference_mode():
                out.append(_to_unit(self.vqvae.decode(codes)))
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


def train_vqvae_ar_parts(
    out_dir: Path, minutes: float, parts: tuple[str, ...], seed: int, caps: dict[str, int], base_weights: Path | None,
    prior_examples: int = PRIOR_EXAMPLES, prior_chunk: int = PRIOR_CHUNK,
) -> dict:
    """`lsc world train --part vqvae [--part prior]`: the VQ-VAE, then (when it is finished) the prior,
    splitting the time budget 30/70 when both run."""
    if set(parts) - set(T.VQVAE_AR_PARTS):
        raise ConfigError("--part vqvae and --part prior train apart from the world's other parts: give them in a call of their own")
    if "prior" in parts and base_weights is None:
        raise ConfigError("--part prior reads Bob's frozen text encoder: give its weights folder with --base-weights WEIGHTS")
    states: dict[str, dict] = {}
    start = time.time()
    if "vqvae" in parts:
        states["vqvae"] = train_vqvae(out_dir, minutes * (0.3 if "prior" in parts else 1.0), seed, max_steps=caps["vqvae"],
                                      perceptual_from=base_weights)
    if "prior" in parts:
        if "vqvae" in parts and not vqvae_finished(out_dir):
            return states  # the budget ended inside the VQ-VAE: the same command continues it
        left = minutes - (time.time() - start) / 60
        assert base_weights is not None
        states["prior"] = train_prior(out_dir, max(0.0, left), Path(base_weights), seed, max_steps=caps["prior"],
                                      examples=prior_examples, chunk=prior_chunk, vqvae_from=Path(base_weights))
    return states
