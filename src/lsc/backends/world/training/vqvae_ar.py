"""Training the `vqvae_ar` receiver: the VQ-VAE (`--part vqvae`), then the prior on the VQ-VAE's cached
codes of training scenes (`--part prior`). The models and the sampler are lsc.backends.world.receivers.vqvae_ar's."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from lsc.backends.world import STEP_CAPS, nets, scenes
from lsc.backends.world.nets import to_tensor
from lsc.backends.world.training import loop
from lsc.backends.world.training.data import FINETUNE_COUNT_P, PromptMix, records_differ, training_prompt
from lsc.backends.world.receivers.vqvae_ar import LENGTH, VQVAE, VQVAE_FILE, CodePrior, PriorConfig, VQConfig
from lsc.errors import ConfigError

VQVAE_AR_PARTS = ("vqvae", "prior")  # the vqvae_ar receiver's parts, trained apart from the others, in that order
VQ_LR = 1e-3
VQ_COMMIT = 0.25
VQ_PERCEPTUAL = 0.5  # weight of the world's perceptual distance (with --base-weights): shapes stay sharp


def _perceptual_loss(weights_dir: Path) -> Any:
    """The world's perceptual distance (its metric: attribute-network features, learnt channel weights)
    of a weights folder, as a differentiable loss: mean squared error alone blurs a triangle into a
    blob that the attribute reader takes for a circle, for a few pixels of error."""
    from lsc.backends.world.models import load_models
    from lsc.backends.world.perceptual import normalise

    models = load_models(str(Path(weights_dir).resolve()))
    net = models.classifier
    weights = models.channel_weights or [torch.ones(c) for c in net.cfg.channels]

    def loss(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = [normalise(f) for f in net.features(x)]
        total = torch.zeros(())
        for w, r, f in zip(weights, ref, net.features(recon)):
            total = total + ((normalise(f) - r).pow(2) * w[None, :, None, None]).sum(1).mean()
        return total

    return loss


def train_vqvae(out_dir: Path, minutes: float, seed: int = 0, batch_size: int = 32, max_steps: int = STEP_CAPS["vqvae"],
                perceptual_from: Path | None = None) -> dict:
    """The VQ-VAE on rendered training scenes (the generator's scene and prompt stream: the targets
    `training_prompt` gives, so partial scenes and empty backgrounds are in its range). With
    `perceptual_from` (a weights folder), the world's perceptual distance joins the loss."""
    torch.manual_seed(seed + loop.PART_ID["vqvae"])
    model = VQVAE(VQConfig())
    perceptual = _perceptual_loss(perceptual_from) if perceptual_from is not None else None

    def loss_fn(rng, gen, step):
        batch = [training_prompt(scenes.sample_scene(rng), rng)[1] if rng.random() < 0.5 else scenes.sample_scene(rng)
                 for _ in range(batch_size)]
        x = to_tensor(np.stack([scenes.render(s) for s in batch]))
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
    return loop.train_loop("vqvae", out_dir, minutes, seed, {"model": model}, list(model.parameters()), loss_fn, VQ_LR, max_steps,
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
    chunk: int = PRIOR_CHUNK, logfile: Any = None, mix: PromptMix = PromptMix(),
) -> dict[str, np.ndarray] | None:
    """The prior's training examples, memory-mapped .npy files in `folder` written chunk by chunk
    (codes.json counts the chunks done: a killed run resumes without re-encoding).

    Each example is a training scene of the generator's fine-tuning mix and one of its training
    prompts (`training_prompt`: Alice's or Bob's phrasing, partial, reordered, empty, unknown words;
    as `mix` sets: some without function words, some a whole caption in random order),
    the VQ-VAE's codes of the image that prompt should produce, and the prompt's token ids. Example r
    of chunk k depends on (seed, k, r) only. Returns the arrays when complete, None at `deadline`."""
    record = {"examples": n, "chunk": chunk, "seed": seed, "vqvae_sha256": module_sha256(vqvae), "max_len": max_len,
              **mix.record()}
    meta_path = folder / "codes.json"
    done = 0
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if records_differ({k: v for k, v in old.items() if k != "done"}, record):
            raise ConfigError(f"{folder} holds codes of another VQ-VAE, seed, example count, chunk size or prompt mix (content-only rate, shuffled rate); "
                              "train the prior into a new --out folder")
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
        rng = np.random.default_rng([seed + loop.TRAIN_SEED_OFFSET, loop.PART_ID["prior"], 0, done])
        pairs = [training_prompt(scenes.sample_scene(rng, FINETUNE_COUNT_P), rng, mix) for _ in range(hi - lo)]
        tokens = vocab.tokens([p for p, _ in pairs], max_len)
        with torch.inference_mode():
            x = to_tensor(np.stack([scenes.render(s) for _, s in pairs]))
            codes = torch.cat([vqvae.encode(x[i : i + 128]) for i in range(0, len(x), 128)])
        padded = np.zeros((hi - lo, max_len), np.int32)
        padded[:, : tokens.shape[1]] = tokens.numpy()
        arrays["codes"][lo:hi] = codes.numpy().astype(np.int16)
        arrays["tokens"][lo:hi] = padded
        done = loop.commit_chunk(arrays, meta_path, record, done, f"prior codes {hi}/{n} ({time.time() - start:.0f}s this call)", logfile)
    return arrays


def _text_record(base_dir: Path) -> dict:
    from lsc.backends.world.models import file_sha256

    return {"bob_text_sha256": file_sha256(Path(base_dir) / "bob_text.safetensors"), "weights": str(Path(base_dir).resolve())}


def train_prior(
    out_dir: Path, minutes: float, base_dir: Path, seed: int = 0, batch_size: int = 32, max_steps: int = STEP_CAPS["prior"],
    examples: int = PRIOR_EXAMPLES, chunk: int = PRIOR_CHUNK, vqvae_from: Path | None = None, mix: PromptMix = PromptMix(),
) -> dict:
    """The prior on cached codes, reading the frozen text encoder of `base_dir` (a weights folder).

    The VQ-VAE is this folder's vqvae part (or `vqvae_from`'s vqvae.safetensors). 10% of prompts are
    dropped to the empty prompt so that classifier-free guidance has an unconditional branch. The
    time budget covers encoding the codes (cached, resumable) and training."""
    from lsc.backends.world.models import load_models

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
        arrays = code_cache(folder, vqvae, base.bob_vocab, text.cfg.max_len, examples, seed, start + minutes * 60, chunk, logfile, mix)
    finally:
        logfile.close()
    if arrays is None:
        return json.loads(state_path.read_text()) if state_path.exists() else {"step": 0, "elapsed_s": 0.0, "part": "prior", "seed": seed}
    torch.manual_seed(seed + loop.PART_ID["prior"])
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
    return loop.train_loop(
        "prior", out_dir, max(0.0, minutes - spent), seed, {"prior": prior}, list(prior.parameters()), loss_fn, PRIOR_LR, max_steps,
        ema={"prior": ema}, ema_decay=PRIOR_EMA, lr_decay=(int(0.5 * max_steps), max_steps, 0.1), warmup=min(200, max_steps),
        extra_state={"text": record, "examples": examples, "vqvae_sha256": module_sha256(vqvae),
                     **mix.record()},
        ema_warmup=True,
    )


def train_vqvae_ar_parts(
    out_dir: Path, minutes: float, parts: tuple[str, ...], seed: int, caps: dict[str, int], base_weights: Path | None,
    prior_examples: int = PRIOR_EXAMPLES, prior_chunk: int = PRIOR_CHUNK, mix: PromptMix = PromptMix(),
) -> dict:
    """`lsc world train --part vqvae [--part prior]`: the VQ-VAE, then (when it is finished) the prior,
    splitting the time budget 30/70 when both run."""
    if set(parts) - set(VQVAE_AR_PARTS):
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
                                      examples=prior_examples, chunk=prior_chunk, vqvae_from=Path(base_weights),
                                      mix=mix)
    return states
