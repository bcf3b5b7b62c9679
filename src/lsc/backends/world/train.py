"""Training the world's models on the CPU: resumable, checkpointed, logged, deterministic per step.

Each part (generator = Bob's text encoder + U-Net, captioner = Alice, classifier = the attribute
network behind the perceptual metric) trains in its own folder under the output directory. Every
batch is drawn from an RNG seeded by (seed, part, step), so a resumed run sees the same data as an
uninterrupted one. Checkpoints are safetensors (model, EMA and optimizer moments) plus a JSON state.
`export_weights` writes the shipped package data from the finished parts.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from lsc.backends.world import nets, scenes

log = logging.getLogger("lsc.world.train")

PARTS = ("classifier", "captioner", "generator")
_PART_ID = {"classifier": 1, "captioner": 2, "generator": 3}
TRAIN_SEED_OFFSET = 10**6  # training scenes never share an RNG stream with study scenes

BOB_VOCAB = nets.WordVocab(scenes.BOB_WORDS)
ALICE_VOCAB = nets.WordVocab(scenes.ALICE_WORDS)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) in [0, 1] -> (B, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() * 2 - 1


def encode_prompts(vocab: nets.WordVocab, prompts: list[list[str]], max_len: int) -> torch.Tensor:
    """[BOS] + word ids, padded with 0; words past max_len - 1 are dropped."""
    rows = [[2] + vocab.encode(p)[: max_len - 1] for p in prompts]
    width = max(len(r) for r in rows)
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def partial_prompt(words: list[str], rng: np.random.Generator) -> list[str]:
    """What Bob may receive mid-transmission: the mix that teaches him partial and shuffled prompts.

    10% empty (also the unconditional branch of classifier-free guidance), 10% a prefix, 25% a random
    subset in caption order, 15% a random subset in random order, 40% the full caption; and 10% of
    prompts get one word unknown to Bob, so that Alice's words he never learnt are ignored.
    """
    u = rng.random()
    n = len(words)
    if u < 0.10:
        out: list[str] = []
    elif u < 0.20:
        out = words[: int(rng.integers(1, n + 1))]
    elif u < 0.45:
        keep = rng.random(n) < rng.uniform(0.2, 0.9)
        out = [w for w, k in zip(words, keep) if k]
    elif u < 0.60:
        keep = rng.random(n) < rng.uniform(0.2, 0.9)
        out = [w for w, k in zip(words, keep) if k]
        out = [out[i] for i in rng.permutation(len(out))]
    else:
        out = list(words)
    if out and rng.random() < 0.10:
        out.insert(int(rng.integers(len(out) + 1)), "[UNK]")
    return out


# ---------------------------------------------------------------------------------- checkpoints
def _save_checkpoint(folder: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer, state: dict) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for k, v in module.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().contiguous().clone()
    for i, group_state in enumerate(opt.state.values()):
        for k, v in group_state.items():
            if torch.is_tensor(v):
                tensors[f"opt.{i}.{k}"] = v.detach().contiguous().clone()
    tmp = folder / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(folder / "checkpoint.safetensors")
    (folder / "state.json.tmp").write_text(json.dumps(state, indent=1))
    (folder / "state.json.tmp").replace(folder / "state.json")


def _load_checkpoint(folder: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer) -> dict | None:
    if not (folder / "state.json").exists():
        return None
    tensors = load_file(str(folder / "checkpoint.safetensors"))
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    params = [p for g in opt.param_groups for p in g["params"]]
    step = json.loads((folder / "state.json").read_text())["step"]
    for i, p in enumerate(params):
        keys = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
        if keys:
            opt.state[p] = {k: v for k, v in keys.items()}
            opt.state[p]["step"] = torch.tensor(float(step))
    return json.loads((folder / "state.json").read_text())


def _lr(step: int, base: float, warmup: int = 300, decay: tuple[int, int, float] | None = None) -> float:
    """Linear warm-up, constant, then (optionally) linear decay from step d0 to d1 down to base * floor."""
    lr = base * min(1.0, (step + 1) / warmup)
    if decay is not None:
        d0, d1, floor = decay
        frac = min(1.0, max(0.0, (step - d0) / max(1, d1 - d0)))
        lr *= 1.0 - frac * (1.0 - floor)
    return lr


def _train_loop(
    part: str,
    out_dir: Path,
    minutes: float,
    seed: int,
    modules: dict[str, torch.nn.Module],
    params: list[torch.nn.Parameter],
    loss_fn: Callable[[np.random.Generator, torch.Generator, int], tuple[torch.Tensor, dict]],
    base_lr: float,
    max_steps: int,
    ema: dict[str, torch.nn.Module] | None = None,
    ema_decay: float = 0.999,
    checkpoint_every_s: float = 120.0,
    lr_decay: tuple[int, int, float] | None = None,
) -> dict:
    """Generic loop: resumes from the part's folder, trains until the time budget or max_steps."""
    folder = out_dir / part
    folder.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.AdamW(params, lr=base_lr, weight_decay=0.0)
    all_modules = {**modules, **{f"ema_{k}": v for k, v in (ema or {}).items()}}
    state = _load_checkpoint(folder, all_modules, opt) or {"step": 0, "elapsed_s": 0.0, "part": part, "seed": seed}
    step, elapsed = state["step"], state["elapsed_s"]
    logfile = (folder / "train.log").open("a")
    start = time.time()
    last_ckpt = start
    running: dict[str, float] = {}
    while step < max_steps and (time.time() - start) < minutes * 60:
        data_rng = np.random.default_rng([seed + TRAIN_SEED_OFFSET, _PART_ID[part], step])
        noise_gen = torch.Generator().manual_seed(int(data_rng.integers(2**62)))
        for g in opt.param_groups:
            g["lr"] = _lr(step, base_lr, decay=lr_decay)
        loss, metrics = loss_fn(data_rng, noise_gen, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema:
            with torch.no_grad():
                for name, ema_module in ema.items():
                    for pe, p in zip(ema_module.parameters(), modules[name].parameters()):
                        pe.lerp_(p, 1 - ema_decay)
        step += 1
        for k, v in {"loss": loss.item(), **metrics}.items():
            running[k] = 0.98 * running.get(k, v) + 0.02 * v
        now = time.time()
        if step % 50 == 0:
            msg = f"{part} step {step} elapsed {elapsed + now - start:.0f}s " + " ".join(f"{k}={v:.4f}" for k, v in running.items())
            logfile.write(msg + "\n")
            logfile.flush()
            log.info(msg)
        if now - last_ckpt > checkpoint_every_s:
            _save_checkpoint(folder, all_modules, opt, {**state, "step": step, "elapsed_s": elapsed + now - start, "metrics": running})
            last_ckpt = now
    state = {**state, "step": step, "elapsed_s": elapsed + time.time() - start, "metrics": running}
    _save_checkpoint(folder, all_modules, opt, state)
    logfile.close()
    return state


# ----------------------------------------------------------------------------------------- parts
def build_generator() -> tuple[nets.BobTextEncoder, nets.FlowUNet]:
    text = nets.BobTextEncoder(nets.TextEncoderConfig(vocab_size=len(BOB_VOCAB)))
    unet = nets.FlowUNet(nets.UNetConfig())
    return text, unet


def build_captioner() -> nets.AliceCaptioner:
    return nets.AliceCaptioner(nets.CaptionerConfig(vocab_size=len(ALICE_VOCAB)))


def build_classifier() -> nets.AttributeNet:
    return nets.AttributeNet(nets.ClassifierConfig())


def attribute_targets(batch_scenes: list[scenes.Scene]) -> dict[str, torch.Tensor]:
    """Classifier targets: background; per slot shape (0 = empty), colour and size (-100 = ignore)."""
    b = len(batch_scenes)
    bg = torch.tensor([scenes.BACKGROUNDS.index(s.background) for s in batch_scenes])
    shape = torch.zeros(b, 3, dtype=torch.long)
    color = torch.full((b, 3), -100, dtype=torch.long)
    size = torch.full((b, 3), -100, dtype=torch.long)
    for i, s in enumerate(batch_scenes):
        for o in s.objects:
            j = scenes.SLOTS.index(o.slot)
            shape[i, j] = 1 + scenes.SHAPES.index(o.shape)
            color[i, j] = scenes.COLORS.index(o.color)
            size[i, j] = scenes.SIZES.index(o.size)
    return {"background": bg, "shape": shape, "color": color, "size": size}


def classifier_loss(model: nets.AttributeNet, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(images)
    loss = F.cross_entropy(out["background"], targets["background"])
    for key in ("shape", "color", "size"):
        loss = loss + F.cross_entropy(out[key].flatten(0, 1), targets[key].flatten(), ignore_index=-100)
    return loss


def train_classifier(out_dir: Path, minutes: float, seed: int = 0, batch_size: int = 64, max_steps: int = 3000) -> dict:
    torch.manual_seed(seed + _PART_ID["classifier"])  # the initial weights, before any resume
    model = build_classifier()

    def loss_fn(rng, gen, step):
        batch = scenes.sample_batch(rng, batch_size)
        images = to_tensor(batch.images)
        # Light noise and blur augmentation: the classifier must also read Bob's (imperfect) images.
        if rng.random() < 0.5:
            images = images + torch.randn(images.shape, generator=gen) * float(rng.uniform(0, 0.15))
        if rng.random() < 0.3:
            images = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        return classifier_loss(model, images, attribute_targets(batch.scenes)), {}

    return _train_loop("classifier", out_dir, minutes, seed, {"model": model}, list(model.parameters()), loss_fn, 1e-3, max_steps)


def train_captioner(out_dir: Path, minutes: float, seed: int = 0, batch_size: int = 48, max_steps: int = 20000) -> dict:
    torch.manual_seed(seed + _PART_ID["captioner"])
    model = build_captioner()

    def loss_fn(rng, gen, step):
        batch = scenes.sample_batch(rng, batch_size)
        captions = [scenes.alice_caption(s, rng).split() for s in batch.scenes]
        ids = [[2] + ALICE_VOCAB.encode(c) + [3] for c in captions]
        width = max(len(r) for r in ids)
        tokens = torch.zeros(len(ids), width, dtype=torch.long)
        for i, r in enumerate(ids):
            tokens[i, : len(r)] = torch.tensor(r)
        logits = model.decode(tokens[:, :-1], model.encode_image(to_tensor(batch.images)))
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=0)
        return loss, {}

    return _train_loop("captioner", out_dir, minutes, seed, {"model": model}, list(model.parameters()), loss_fn, 5e-4, max_steps)


GENERATOR_STEPS = 14000
GENERATOR_LR_DECAY = (8000, 14000, 0.07)  # constant 3e-4 to step 8000, then linear to 2e-5 at 14000
FINETUNE_LR = 2e-4
FINETUNE_COUNT_P = (0.25, 0.4, 0.35)  # fine-tuning sees more 2- and 3-object scenes: binding is the hard part
BINDING_WEIGHT = 0.05


class BindingHead(nn.Module):
    """Training-only probe on Bob's text features: from each word of a full prompt, predict the
    colour, shape, size and slot of the object it describes (or the background).

    Without it the text encoder learns colours as a bag of words and the U-Net paints a prompt's
    colours on the wrong objects; with it every word of an object phrase carries the whole object,
    which is what the U-Net's cross-attention needs to bind. It is not shipped.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.sizes = {"color": len(scenes.COLORS), "shape": len(scenes.SHAPES), "size": len(scenes.SIZES), "slot": len(scenes.SLOTS), "background": len(scenes.BACKGROUNDS)}
        self.proj = nn.Linear(dim, sum(self.sizes.values()))

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.sizes, self.proj(feats).split(list(self.sizes.values()), dim=-1)))


def binding_targets(batch_scenes: list[scenes.Scene], roles: list[list[int]], width: int) -> dict[str, torch.Tensor]:
    """Per-token targets (B, width) for BindingHead; -100 where a word says nothing about the key.
    Token 0 is [BOS]; word i of a prompt is token i + 1."""
    b = len(batch_scenes)
    out = {k: torch.full((b, width), -100, dtype=torch.long) for k in ("color", "shape", "size", "slot", "background")}
    for i, (scene, rs) in enumerate(zip(batch_scenes, roles)):
        for w, r in enumerate(rs[: width - 1]):
            if r == scenes.ROLE_BACKGROUND:
                out["background"][i, w + 1] = scenes.BACKGROUNDS.index(scene.background)
            elif r >= 0:
                o = scene.objects[r]
                out["color"][i, w + 1] = scenes.COLORS.index(o.color)
                out["shape"][i, w + 1] = scenes.SHAPES.index(o.shape)
                out["size"][i, w + 1] = scenes.SIZES.index(o.size)
                out["slot"][i, w + 1] = scenes.SLOTS.index(o.slot)
    return out


def init_generator_from(weights_dir: Path, text: nets.BobTextEncoder, unet: nets.FlowUNet) -> None:
    """Start from shipped (or exported) generator weights; words new to this vocabulary start as the
    word they are a synonym of, so fine-tuning begins from a model that already draws them."""
    meta = json.loads((Path(weights_dir) / "world.json").read_text())
    old_index = {w: i for i, w in enumerate(meta["bob_vocab"])}
    text_state = {k: v.float() for k, v in load_file(str(Path(weights_dir) / "bob_text.safetensors")).items()}
    old_embed = text_state["embed.weight"]
    embed = text.embed.weight.detach().clone()
    for i, word in enumerate(BOB_VOCAB.itos):
        source = word if word in old_index else scenes.SYNONYM_BASE.get(word)
        if source in old_index:
            embed[i] = old_embed[old_index[source]]
    text_state["embed.weight"] = embed
    text.load_state_dict(text_state)
    unet.load_state_dict({k: v.float() for k, v in load_file(str(Path(weights_dir) / "bob_unet.safetensors")).items()})


def train_generator(
    out_dir: Path, minutes: float, seed: int = 0, batch_size: int = 32, max_steps: int = GENERATOR_STEPS, init_from: Path | None = None
) -> dict:
    """Bob's text encoder + U-Net: rectified flow on partial prompts, plus the binding objective.

    With `init_from` (a weights folder), fine-tune from those weights: a fresh optimizer, FINETUNE_LR
    with linear decay over the last 60% of `max_steps`, and more multi-object scenes.
    """
    torch.manual_seed(seed + _PART_ID["generator"])
    text, unet = build_generator()
    binding = BindingHead(text.cfg.dim)
    if init_from is not None:
        init_generator_from(init_from, text, unet)
        base_lr, decay, count_p = FINETUNE_LR, (int(0.4 * max_steps), max_steps, 0.1), FINETUNE_COUNT_P
    else:
        base_lr, decay, count_p = 3e-4, GENERATOR_LR_DECAY, scenes.COUNT_PROBABILITIES
    ema_text, ema_unet = build_generator()
    ema_text.load_state_dict(text.state_dict())
    ema_unet.load_state_dict(unet.state_dict())
    for p in list(ema_text.parameters()) + list(ema_unet.parameters()):
        p.requires_grad_(False)

    def loss_fn(rng, gen, step):
        batch = scenes.sample_batch(rng, batch_size, count_p)
        full = [scenes.bob_caption_roles(s, rng) for s in batch.scenes]
        prompts = [partial_prompt(words, rng) for words, _ in full]
        tokens = encode_prompts(BOB_VOCAB, prompts, text.cfg.max_len)
        x0 = to_tensor(batch.images)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.sigmoid(torch.randn(batch_size, generator=gen))  # logit-normal time, as SD3
        xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * noise
        feats, padding = text(tokens)
        v = unet(xt, t, feats, padding)
        flow = F.mse_loss(v, noise - x0)
        full_tokens = encode_prompts(BOB_VOCAB, [w for w, _ in full], text.cfg.max_len)
        targets = binding_targets(batch.scenes, [r for _, r in full], full_tokens.shape[1])
        logits = binding(text(full_tokens)[0])
        bind = sum(F.cross_entropy(logits[k].flatten(0, 1), targets[k].flatten(), ignore_index=-100) for k in targets)
        return flow + BINDING_WEIGHT * bind, {"flow": flow.item(), "bind": bind.item()}

    return _train_loop(
        "generator", out_dir, minutes, seed, {"text": text, "unet": unet, "binding": binding},
        list(text.parameters()) + list(unet.parameters()) + list(binding.parameters()),
        loss_fn, base_lr, max_steps, ema={"text": ema_text, "unet": ema_unet}, lr_decay=decay,
    )


def train(
    out_dir: Path, minutes: float, parts: tuple[str, ...] = PARTS, seed: int = 0, max_steps: dict[str, int] | None = None,
    init_generator: Path | None = None,
) -> dict:
    """Train the given parts one after another, splitting the time budget by their needs.

    A part stops at its time share or at its step cap (`max_steps`), whichever comes first; with caps
    that the budget allows, the result depends on the seed only, not on the machine's speed.
    """
    torch.set_flush_denormal(True)  # without it CPU training silently stalls (ENVIRONMENT.md)
    share = {"classifier": 0.08, "captioner": 0.22, "generator": 0.70}
    total = sum(share[p] for p in parts)
    states = {}
    for part in parts:
        budget = minutes * share[part] / total
        fn = {"classifier": train_classifier, "captioner": train_captioner, "generator": train_generator}[part]
        kwargs: dict = {"max_steps": max_steps[part]} if max_steps and part in max_steps else {}
        if part == "generator" and init_generator is not None:
            kwargs["init_from"] = Path(init_generator)
        states[part] = fn(Path(out_dir), budget, seed, **kwargs)
    return states


# ----------------------------------------------------------------------------------------- export
def export_weights(train_dir: Path, weights_dir: Path, extra_meta: dict | None = None, base_weights: Path | None = None) -> None:
    """Write the shipped weights (fp16 safetensors + world.json) from finished training folders.

    A part not trained in `train_dir` (a generator-only fine-tune) is copied from `base_weights`,
    the weights folder it started from, with its training record.
    """
    weights_dir.mkdir(parents=True, exist_ok=True)
    files = {"generator": ("bob_text", "bob_unet"), "captioner": ("alice",), "classifier": ("attributes",)}
    prefixes = {"bob_text": "ema_text.", "bob_unet": "ema_unet.", "alice": "model.", "attributes": "model."}
    base_meta = json.loads((Path(base_weights) / "world.json").read_text()) if base_weights else {}
    training: dict[str, dict] = {}
    for part, names in files.items():
        state_path = train_dir / part / "state.json"
        if state_path.exists():
            tensors = load_file(str(train_dir / part / "checkpoint.safetensors"))
            for name in names:
                prefix = prefixes[name]
                out = {k[len(prefix):]: v.half().contiguous() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith(prefix)}
                save_file(out, str(weights_dir / f"{name}.safetensors"))
            training[part] = json.loads(state_path.read_text())
            training[part].pop("metrics", None)
        elif base_weights is not None:
            for name in names:
                if Path(base_weights).resolve() != weights_dir.resolve():
                    shutil.copyfile(Path(base_weights) / f"{name}.safetensors", weights_dir / f"{name}.safetensors")
            training[part] = {**base_meta.get("training", {}).get(part, {}), "from": "base weights"}
        else:
            raise FileNotFoundError(f"{part} was not trained in {train_dir} and no base weights folder was given")
    if base_weights is not None and (train_dir / "generator" / "state.json").exists():
        training["generator"]["fine_tuned_from"] = base_meta.get("training", {}).get("generator", {})
    meta = {"bob_vocab": BOB_VOCAB.itos, "alice_vocab": ALICE_VOCAB.itos, "training": training, **(extra_meta or {})}
    (weights_dir / "world.json").write_text(json.dumps(meta, indent=1))


def main() -> None:  # python -m lsc.backends.world.train OUT MINUTES [PARTS...]
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out, minutes = Path(sys.argv[1]), float(sys.argv[2])
    parts = tuple(sys.argv[3:]) or PARTS
    print(json.dumps(train(out, minutes, parts), default=str, indent=1))


if __name__ == "__main__":
    main()
