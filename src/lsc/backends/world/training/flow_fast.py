"""Distilling Bob's flow generator into the 2-step `flow_fast` student: cached teacher pairs, then reflow."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lsc.backends.world import STEP_CAPS, nets, scenes
from lsc.backends.world.training import loop
from lsc.backends.world.training.data import FINETUNE_COUNT_P, PromptMix, records_differ, training_prompt
from lsc.errors import ConfigError

FLOW_FAST_PAIRS = 6144  # (noise, teacher image) pairs, generated once and cached in the part's folder
FLOW_FAST_CHUNK = 256  # pairs generated (and saved) at a time: an interrupted run loses at most one chunk
FLOW_FAST_LR = 1e-4
FLOW_FAST_ON_GRID = 0.75  # share of training times on the student's own sampler times; the rest uniform
FLOW_FAST_EMA = 0.998


def _teacher_record(teacher_dir: Path) -> dict:
    from lsc.backends.world.models import file_sha256

    meta = json.loads((Path(teacher_dir) / "world.json").read_text())
    return {
        "bob_text_sha256": file_sha256(Path(teacher_dir) / "bob_text.safetensors"),
        "bob_unet_sha256": file_sha256(Path(teacher_dir) / "bob_unet.safetensors"),
        "sampler": meta.get("sampler", {}),
        "generator_training": meta.get("training", {}).get("generator", {}),
    }


def teacher_pairs(
    folder: Path, teacher_dir: Path, n_pairs: int, seed: int, deadline: float, chunk: int = FLOW_FAST_CHUNK,
    logfile=None, mix: PromptMix = PromptMix(),
) -> dict | None:
    """The (noise, teacher image, prompt) pairs the student learns from, memory-mapped .npy files in
    `folder`, generated chunk by chunk (resumable; each chunk's data depends on (seed, chunk) only).

    Prompts are drawn as the generator's training prompts are (`training_prompt`: Alice's or Bob's
    phrasing, partial, reordered, empty, with unknown words; as `mix` sets, some without function
    words and some a whole caption in random order) on the fine-tuning scene mix; each pair
    has its own noise, and its image is the teacher's guided Euler sample from that noise with the
    teacher's own sampler settings (the `flow` receiver's images). Returns the arrays when every chunk
    is done, None when `deadline` (time.time()) came first.
    """
    from lsc.backends.world.models import load_models
    from lsc.backends.world.receivers import flow

    teacher = load_models(str(Path(teacher_dir).resolve()))
    sampler = teacher.meta.get("sampler", {})
    steps, guidance = int(sampler.get("steps", 8)), float(sampler.get("guidance", 3.0))
    record = {"pairs": n_pairs, "chunk": chunk, "seed": seed, "teacher_unet_sha256": _teacher_record(teacher_dir)["bob_unet_sha256"],
              "teacher_sampler": {"steps": steps, "guidance": guidance}, **mix.record()}
    meta_path = folder / "pairs.json"
    done = 0
    old_pairs = None
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        same = {k: v for k, v in record.items() if k != "pairs"}
        if records_differ({k: v for k, v in old.items() if k not in ("pairs", "done")}, same):
            raise ConfigError(f"{folder} holds teacher pairs of another teacher, seed, chunk size or prompt mix (content-only rate, shuffled rate); distil into a new --out folder")
        done, old_pairs = old["done"], old["pairs"]
    size = scenes.IMAGE_SIZE
    max_len = teacher.text.cfg.max_len
    shapes = {"noise": (np.float32, (3, size, size)), "image": (np.float32, (3, size, size)), "tokens": (np.int32, (max_len,))}
    n_chunks = math.ceil(n_pairs / chunk)
    if old_pairs is not None and old_pairs != n_pairs:
        # Another pair count: a pair depends on (seed, chunk, row) only, so the rows both counts have are kept.
        keep = min(done * chunk, old_pairs, n_pairs)
        for name, (dtype, shape) in shapes.items():
            old_arr = np.load(folder / f"pairs_{name}.npy", mmap_mode="r")
            new_arr = np.lib.format.open_memmap(folder / f"pairs_{name}.tmp.npy", "w+", dtype, (n_pairs, *shape))
            new_arr[:keep] = old_arr[:keep]
            new_arr.flush()
            del old_arr, new_arr
            (folder / f"pairs_{name}.tmp.npy").replace(folder / f"pairs_{name}.npy")
        done = n_chunks if keep >= n_pairs else keep // chunk
        meta_path.write_text(json.dumps({**record, "done": done}))
    mode = "r+" if meta_path.exists() else "w+"
    arrays = {name: np.lib.format.open_memmap(folder / f"pairs_{name}.npy", mode, dtype, (n_pairs, *shape))
              for name, (dtype, shape) in shapes.items()}
    if mode == "w+":
        meta_path.write_text(json.dumps({**record, "done": 0}))
    start = time.time()
    while done < n_chunks:
        if time.time() >= deadline:
            return None
        lo, hi = done * chunk, min(n_pairs, (done + 1) * chunk)
        rng = np.random.default_rng([seed + loop.TRAIN_SEED_OFFSET, loop.PART_ID["flow_fast"], 0, done])
        # A whole chunk's prompts and noise are drawn even when the last chunk keeps fewer rows, so row r
        # of chunk k is the same pair whatever the pair count.
        prompts = [training_prompt(scenes.sample_scene(rng, FINETUNE_COUNT_P), rng, mix)[0] for _ in range(chunk)][: hi - lo]
        tokens = teacher.bob_vocab.tokens(prompts, max_len)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        noise = torch.randn((chunk, 3, size, size), generator=gen)[: hi - lo].contiguous()
        images = []
        with torch.inference_mode():
            empty = torch.zeros(1, tokens.shape[1], dtype=torch.long)
            empty[0, 0] = nets.BOS_ID
            u_feats, u_pad = teacher.text(empty)
            for i in range(0, hi - lo, 16):  # the sampler's own pass size (receivers.common.CHUNK)
                feats, padding = teacher.text(tokens[i : i + 16])
                b = len(feats)
                uncond = (u_feats.expand(b, -1, -1), u_pad.expand(b, -1))
                images.append(flow.euler_sample(teacher.unet, noise[i : i + b].clone(), feats, padding, steps, guidance, uncond))
        padded = np.zeros((hi - lo, max_len), np.int32)
        padded[:, : tokens.shape[1]] = tokens.numpy()
        arrays["noise"][lo:hi] = noise.numpy()
        arrays["image"][lo:hi] = torch.cat(images).numpy()
        arrays["tokens"][lo:hi] = padded
        done = loop.commit_chunk(arrays, meta_path, record, done, f"flow_fast teacher pairs {hi}/{n_pairs} ({time.time() - start:.0f}s this call)", logfile)
    return arrays


def train_flow_fast(
    out_dir: Path, minutes: float, teacher_dir: Path, seed: int = 0, batch_size: int = 32, max_steps: int = STEP_CAPS["flow_fast"],
    pairs: int = FLOW_FAST_PAIRS, sampler_steps: int = 2, chunk: int = FLOW_FAST_CHUNK, mix: PromptMix = PromptMix(),
) -> dict:
    """Bob's flow generator distilled to `sampler_steps` Euler steps with guidance folded in (`flow_fast`).

    The student is the teacher's U-Net architecture, initialised from the teacher's U-Net, reading
    the teacher's frozen text encoder; it predicts the guided velocity itself (no unconditional
    branch: one evaluation per step). It learns the straight path from each pair's noise to the
    teacher's guided 8-step image (rectified-flow reflow): at time t it sees (1 - t) image + t noise
    and regresses noise - image, t mostly on its own sampler's times (1, 1/2 for 2 steps), else
    uniform. The time budget covers generating the pairs (cached, resumable) and training.
    """
    from lsc.backends.world.models import load_models

    folder = out_dir / "flow_fast"
    folder.mkdir(parents=True, exist_ok=True)
    if sampler_steps < 1 or pairs < 1:
        raise ConfigError("flow_fast needs at least 1 sampler step and 1 teacher pair")
    record = _teacher_record(teacher_dir)
    state_path = folder / "state.json"
    if state_path.exists():
        old = json.loads(state_path.read_text())
        if (old.get("teacher", {}).get("bob_unet_sha256") != record["bob_unet_sha256"] or old.get("sampler_steps") != sampler_steps
                or old.get("pairs") != pairs):
            raise ConfigError(f"{folder} distils another teacher, step count or pair count; use a new --out folder")
    start = time.time()
    logfile = (folder / "train.log").open("a")
    try:
        arrays = teacher_pairs(folder, teacher_dir, pairs, seed, start + minutes * 60, chunk, logfile, mix)
    finally:
        logfile.close()
    if arrays is None:  # the budget ended while generating pairs: resume later
        return json.loads(state_path.read_text()) if state_path.exists() else {"step": 0, "elapsed_s": 0.0, "part": "flow_fast", "seed": seed}
    teacher = load_models(str(Path(teacher_dir).resolve()))
    torch.manual_seed(seed + loop.PART_ID["flow_fast"])
    student = nets.FlowUNet(nets.UNetConfig())
    student.load_state_dict(teacher.unet.state_dict())
    ema = nets.FlowUNet(nets.UNetConfig())
    ema.load_state_dict(teacher.unet.state_dict())
    student = student.to(memory_format=torch.channels_last).train()
    ema = ema.to(memory_format=torch.channels_last).requires_grad_(False)
    grid = torch.arange(sampler_steps, 0, -1, dtype=torch.float32) / sampler_steps  # 1, ..., 1/steps
    n = len(arrays["noise"])

    def loss_fn(rng, gen, step):
        idx = np.sort(rng.choice(n, size=batch_size, replace=False)) if batch_size <= n else rng.integers(0, n, batch_size)
        noise = torch.from_numpy(np.ascontiguousarray(arrays["noise"][idx]))
        x0 = torch.from_numpy(np.ascontiguousarray(arrays["image"][idx]))
        tokens = torch.from_numpy(np.ascontiguousarray(arrays["tokens"][idx])).long()
        tokens = tokens[:, : max(1, int((tokens != nets.PAD_ID).sum(1).max()))]
        on_grid = torch.from_numpy(rng.random(batch_size) < FLOW_FAST_ON_GRID)
        t = torch.where(on_grid, grid[torch.from_numpy(rng.integers(0, sampler_steps, batch_size))],
                        torch.from_numpy(rng.random(batch_size).astype(np.float32)))
        with torch.no_grad():
            feats, padding = teacher.text(tokens)
        tt = t[:, None, None, None]
        xt = ((1 - tt) * x0 + tt * noise).contiguous(memory_format=torch.channels_last)
        v = student(xt, t, feats, padding)
        loss = F.mse_loss(v, noise - x0)
        with torch.no_grad():
            grid_loss = float(F.mse_loss(v[on_grid], (noise - x0)[on_grid])) if bool(on_grid.any()) else 0.0
        return loss, {"on_grid": grid_loss}

    spent = (time.time() - start) / 60
    return loop.train_loop(
        "flow_fast", out_dir, max(0.0, minutes - spent), seed, {"unet": student}, list(student.parameters()), loss_fn,
        FLOW_FAST_LR, max_steps, ema={"unet": ema}, ema_decay=FLOW_FAST_EMA, lr_decay=(int(0.4 * max_steps), max_steps, 0.1),
        warmup=min(100, max_steps), extra_state={"teacher": record, "sampler_steps": sampler_steps, "pairs": pairs, **mix.record()},
        ema_warmup=True,
    )
