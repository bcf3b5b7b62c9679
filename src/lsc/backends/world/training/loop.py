"""The training loop every part of the world shares: resumable, checkpointed, logged, deterministic per step.

Every batch is drawn from an RNG seeded by (seed, part, step), so a resumed run sees the same data as an
uninterrupted one. Checkpoints are safetensors (model, EMA and optimizer moments) plus a JSON state.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger("lsc.world.train")

# Data-stream ids; flow_fast and policy were trained apart with 5 each, kept so both stay reproducible.
PART_ID = {"classifier": 1, "captioner": 2, "generator": 3, "perceptual": 4, "policy": 5, "flow_fast": 5, "vqvae": 6, "prior": 7, "skd": 8}
TRAIN_SEED_OFFSET = 10**6  # training scenes never share an RNG stream with study scenes


def save_checkpoint(folder: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer, state: dict) -> None:
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


def load_checkpoint(folder: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer) -> dict | None:
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


def learning_rate(step: int, base: float, warmup: int = 300, decay: tuple[int, int, float] | None = None) -> float:
    """Linear warm-up, constant, then (optionally) linear decay from step d0 to d1 down to base * floor."""
    lr = base * min(1.0, (step + 1) / warmup)
    if decay is not None:
        d0, d1, floor = decay
        frac = min(1.0, max(0.0, (step - d0) / max(1, d1 - d0)))
        lr *= 1.0 - frac * (1.0 - floor)
    return lr


def train_loop(
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
    warmup: int = 300,
    extra_state: dict | None = None,
    ema_warmup: bool = False,
) -> dict:
    """Generic loop: resumes from the part's folder, trains until the time budget or max_steps.

    `extra_state` is recorded in a fresh state.json (what the part was trained from). `ema_warmup`: the
    EMA's decay at step s is min(ema_decay, (1 + s) / (10 + s)), so a short run's EMA is not mostly its
    initial weights."""
    folder = out_dir / part
    folder.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.AdamW(params, lr=base_lr, weight_decay=0.0)
    all_modules = {**modules, **{f"ema_{k}": v for k, v in (ema or {}).items()}}
    state = load_checkpoint(folder, all_modules, opt) or {"step": 0, "elapsed_s": 0.0, "part": part, "seed": seed, **(extra_state or {})}
    step, elapsed = state["step"], state["elapsed_s"]
    logfile = (folder / "train.log").open("a")
    start = time.time()
    last_ckpt = start
    running: dict[str, float] = {}
    while step < max_steps and (time.time() - start) < minutes * 60:
        data_rng = np.random.default_rng([seed + TRAIN_SEED_OFFSET, PART_ID[part], step])
        noise_gen = torch.Generator().manual_seed(int(data_rng.integers(2**62)))
        for g in opt.param_groups:
            g["lr"] = learning_rate(step, base_lr, warmup=warmup, decay=lr_decay)
        loss, metrics = loss_fn(data_rng, noise_gen, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema:
            decay = min(ema_decay, (1 + step) / (10 + step)) if ema_warmup else ema_decay
            with torch.no_grad():
                for name, ema_module in ema.items():
                    for pe, p in zip(ema_module.parameters(), modules[name].parameters()):
                        pe.lerp_(p, 1 - decay)
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
            save_checkpoint(folder, all_modules, opt, {**state, "step": step, "elapsed_s": elapsed + now - start, "metrics": running})
            last_ckpt = now
    state = {**state, "step": step, "elapsed_s": elapsed + time.time() - start, "metrics": running}
    save_checkpoint(folder, all_modules, opt, state)
    logfile.close()
    return state



def commit_chunk(arrays: dict[str, np.ndarray], meta_path: Path, record: dict, done: int, message: str, logfile: Any = None) -> int:
    """Make a filled chunk of a memory-mapped training cache durable: flush the arrays, then count the chunk
    in the cache's json (in that order, so a kill never counts a chunk whose rows are not on disk)."""
    for a in arrays.values():
        a.flush()
    done += 1
    meta_path.write_text(json.dumps({**record, "done": done}))
    log.info(message)
    if logfile is not None:
        logfile.write(message + "\n")
        logfile.flush()
    return done

