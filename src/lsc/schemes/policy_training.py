"""Training the `learned` scheme's policy (`lsc world train --part policy`): lowest_lpips traces on world scenes, then Alice's ordering policy imitating them.

Traces. Scene i of the trace seed (default 7777: no study or evaluation draws from it; studies use
images.seed, 0 by default, and `lsc world eval` seed 2024) is rendered, captioned by Alice's captioner
(as a study's `caption_source: alice`) and ordered by lowest_lpips' greedy with Bob's seed 0 and caption-order
prompts (the world's defaults). Each step records every candidate word's LPIPS (read back from the image
context's cache: no extra image) and the greedy pick. Traces are appended to `OUT/policy/traces.jsonl` one
scene per line as they finish, with `traces.json` naming the generator they came from (a fingerprint of its
weight files): a resumed run continues where the file ends and never regenerates a trace; traces of
another generator are refused.

Training. Every step state (the words, which are sent, the candidates) is one example; the loss is the
cross-entropy of the greedy pick plus a listwise ranking term, the cross-entropy against
softmax(-(LPIPS - min) / TAU) over the candidates, so a near-tie counts as nearly right. Scenes whose
index is a multiple of HOLDOUT_EVERY are held out and give the validation numbers in the state and
the log. The loop is the world's (lsc.backends.world.training.loop: checkpoints, log, resume, batches drawn from (seed, part, step)).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lsc.backends.world import STEP_CAPS, scenes
from lsc.errors import ConfigError
from lsc.schemes.policy_net import OrderPolicy, PolicyConfig, PolicyVocab, save_policy

log = logging.getLogger("lsc.world.train")

TRACE_SEED = 7777
BOB_SEED = 0
PROMPT_ORDER = "caption"
DEFAULT_TRACE_SCENES = 300
HOLDOUT_EVERY = 10
TAU = 0.1
RANK_WEIGHT = 1.0
BASE_LR = 1e-3
WEIGHT_FILES = ("world.json", "bob_text.safetensors", "bob_unet.safetensors", "alice.safetensors",
                "attributes.safetensors", "perceptual.safetensors")


def weights_fingerprint(weights_dir: Path) -> str:
    """sha256 over the weight folder's files (those present): which generator, captioner and metric made a trace."""
    h = hashlib.sha256()
    for name in WEIGHT_FILES:
        p = Path(weights_dir) / name
        if p.exists():
            h.update(name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def scene_trace(backend: Any, index: int, seed: int) -> dict[str, Any]:
    """lowest_lpips' greedy on scene `index` of `seed`, with every step's candidates and their LPIPS."""
    from lsc.protocol.context import ImageContext, LoopSettings, make_prompt
    from lsc.schemes.perceptual import LowestLpips

    t0 = time.perf_counter()
    scene = scenes.world_scene(index, seed)
    image = scenes.render(scene)
    caption = str(backend.captioner.caption([image])[0])
    ctx = ImageContext(backend, f"world-{seed}-{index:05d}", image, caption, seed=BOB_SEED)
    plan = LowestLpips().plan(ctx, LoopSettings(prompt_order=PROMPT_ORDER))
    words, order = list(ctx.words), list(plan.order)
    images = ctx.generated_images
    steps = []
    for k, pick in enumerate(order):
        rest = [j for j in range(len(words)) if j not in order[:k]]
        lpips = ctx.distances([make_prompt(words, order[:k] + [j], PROMPT_ORDER) for j in rest])
        steps.append({"candidates": rest, "lpips": [float(v) for v in lpips], "pick": pick})
    assert ctx.generated_images == images, "a trace must read the greedy's own images"
    return {"index": index, "image_id": ctx.image_id, "caption": caption, "words": words, "order": order,
            "steps": steps, "images": images, "seconds": round(time.perf_counter() - t0, 3)}


def _read_traces(path: Path) -> list[dict[str, Any]]:
    """Complete trace lines; a line cut by a kill is dropped from the file."""
    if not path.exists():
        return []
    traces, good = [], 0
    raw = path.read_bytes()
    for line in raw.splitlines(keepends=True):
        try:
            item = json.loads(line)
        except ValueError:
            break
        if not line.endswith(b"\n") or item.get("index") != len(traces):
            break
        traces.append(item)
        good += len(line)
    if good != len(raw):
        with path.open("r+b") as f:
            f.truncate(good)
    return traces


def ensure_traces(folder: Path, weights_dir: Path, n: int, seed: int, deadline: float) -> list[dict[str, Any]]:
    """The first `n` traces, generating the missing ones until `deadline` (time.time()); may return fewer."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"fingerprint": weights_fingerprint(weights_dir), "trace_seed": seed, "bob_seed": BOB_SEED,
            "prompt_order": PROMPT_ORDER, "scheme": "lowest_lpips greedy", "caption_source": "alice"}
    meta_path = folder / "traces.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        differs = [k for k in meta if old.get(k) != meta[k]]
        if differs:
            raise ConfigError(f"{folder} holds traces of other settings ({', '.join(differs)} differ: "
                              f"{', '.join(f'{k}={old.get(k)!r}' for k in differs)}); use a new --out")
    else:
        meta_path.write_text(json.dumps({**meta, "weights": str(Path(weights_dir).resolve())}, indent=1))
    lines = folder / "traces.jsonl"
    traces = _read_traces(lines)
    if len(traces) >= n:
        return traces[:n]
    from lsc.backends.world.backend import load_world_backend

    backend = load_world_backend(str(weights_dir))
    t0, done0 = time.time(), len(traces)
    with lines.open("a") as f, (folder / "train.log").open("a") as logfile:
        for i in range(len(traces), n):
            if time.time() >= deadline:
                break
            trace = scene_trace(backend, i, seed)
            f.write(json.dumps(trace) + "\n")
            f.flush()
            traces.append(trace)
            rate = (time.time() - t0) / (len(traces) - done0)
            msg = f"policy traces {len(traces)}/{n} ({rate:.1f} s per scene, {trace['images']} images for {len(trace['words'])} words)"
            logfile.write(msg + "\n")
            logfile.flush()
            log.info(msg)
    return traces


class Examples:
    """Every step state of some traces as padded tensors."""

    def __init__(self, traces: list[dict[str, Any]], vocab: PolicyVocab) -> None:
        rows = [(t, s) for t in traces for s in t["steps"] if len(s["candidates"]) > 1]  # a last word teaches nothing
        width = max((len(t["words"]) for t, _ in rows), default=1)
        e = len(rows)
        self.tokens = torch.zeros(e, width, dtype=torch.long)
        self.sent = torch.zeros(e, width, dtype=torch.long)
        self.lengths = torch.zeros(e, dtype=torch.long)
        self.candidate = torch.zeros(e, width, dtype=torch.bool)
        self.lpips = torch.full((e, width), float("inf"))
        self.pick = torch.zeros(e, dtype=torch.long)
        for r, (t, s) in enumerate(rows):
            n = len(t["words"])
            self.tokens[r, :n] = torch.tensor(vocab.ids(t["words"]))
            self.lengths[r] = n
            self.sent[r, :n] = 1
            self.sent[r, s["candidates"]] = 0
            self.candidate[r, s["candidates"]] = True
            self.lpips[r, s["candidates"]] = torch.tensor(s["lpips"], dtype=torch.float32)
            self.pick[r] = s["pick"]

    def __len__(self) -> int:
        return int(self.pick.shape[0])

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k)[idx] for k in ("tokens", "sent", "lengths", "candidate", "lpips", "pick")}


def policy_loss(model: OrderPolicy, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    logits = model(b["tokens"], b["sent"], b["lengths"]).masked_fill(~b["candidate"], float("-inf"))
    logp = torch.log_softmax(logits, -1).masked_fill(~b["candidate"], 0.0)
    ce = F.nll_loss(logp, b["pick"])
    lp = b["lpips"]
    best = lp.min(-1, keepdim=True).values
    target = torch.softmax((-(lp - best) / TAU).masked_fill(~b["candidate"], float("-inf")), -1)
    rank = -(target * logp).sum(-1).mean()
    with torch.no_grad():
        chosen = logits.argmax(-1)
        agree = (chosen == b["pick"]).float().mean().item()
        regret = (lp.gather(1, chosen[:, None]) - best)[:, 0].mean().item()
    return ce + RANK_WEIGHT * rank, {"ce": ce.item(), "agree": agree, "regret": regret}


def split(traces: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    held = [t for t in traces if t["index"] % HOLDOUT_EVERY == 0]
    return [t for t in traces if t["index"] % HOLDOUT_EVERY != 0], held


def vocabulary(weights_dir: Path) -> PolicyVocab:
    """Alice's vocabulary of the weights the traces came from."""
    meta = json.loads((Path(weights_dir) / "world.json").read_text())
    return PolicyVocab([w for w in meta["alice_vocab"] if not w.startswith("[")])


def train_policy(
    out_dir: Path, minutes: float, seed: int = 0, max_steps: int = STEP_CAPS["policy"], weights: Path | None = None,
    trace_scenes: int = DEFAULT_TRACE_SCENES, trace_seed: int = TRACE_SEED, batch_size: int = 64, stop_at: int | None = None,
) -> dict[str, Any]:
    """Traces (until `trace_scenes` exist or the time budget ends), then training in the time left.

    The learning rate warms up over the first tenth of `max_steps` and decays linearly to a tenth over the
    second half; `stop_at` ends this call at that step
    (an interruption, as tests make one), the schedule unchanged."""
    from lsc.backends.world.training import loop
    from lsc.backends.world.options import world_weights_dir

    if trace_scenes < 2:
        raise ConfigError(f"the policy needs at least 2 trace scenes, not {trace_scenes}")
    weights = world_weights_dir(weights)
    folder = Path(out_dir) / "policy"
    start = time.time()
    traces = ensure_traces(folder, weights, trace_scenes, trace_seed, start + minutes * 60)
    state_path = folder / "state.json"
    previous = json.loads(state_path.read_text()) if state_path.exists() else {"step": 0, "elapsed_s": 0.0}
    if len(traces) < trace_scenes:
        log.info("policy: %d of %d traces; run again to continue", len(traces), trace_scenes)
        return {**previous, "traces": len(traces), "complete": False}
    left = minutes - (time.time() - start) / 60
    if left <= 0 and previous.get("step", 0) < max_steps:
        return {**previous, "traces": len(traces), "complete": False}
    vocab = vocabulary(weights)
    (folder / "vocab.json").write_text(json.dumps(vocab.itos[2:]))
    train_traces, held = split(traces)
    data = Examples(train_traces, vocab)
    torch.manual_seed(seed + loop.PART_ID["policy"])  # the initial weights, before any resume
    model = OrderPolicy(PolicyConfig(vocab_size=len(vocab)))

    def loss_fn(rng: np.random.Generator, gen: torch.Generator, step: int):
        torch.manual_seed(int(rng.integers(2**31)))  # dropout, as a function of the step
        idx = torch.from_numpy(rng.integers(len(data), size=batch_size))
        model.train()
        return policy_loss(model, data.batch(idx))

    state = loop.train_loop("policy", Path(out_dir), max(left, 1e-3), seed, {"model": model}, list(model.parameters()),
                          loss_fn, BASE_LR, min(max_steps, stop_at or max_steps), lr_decay=(max_steps // 2, max_steps, 0.1),
                          warmup=max(1, max_steps // 10))
    model.eval()
    validation = evaluate_policy(model, Examples(held, vocab)) if held else {}
    state = {**state, "traces": len(traces), "train_scenes": len(train_traces), "held_out_scenes": len(held),
             "train_examples": len(data), "validation": validation, "complete": state["step"] >= max_steps}
    state_path.write_text(json.dumps(state, indent=1))
    msg = f"policy step {state['step']} held-out " + " ".join(f"{k}={v:.4f}" for k, v in validation.items())
    with (folder / "train.log").open("a") as logfile:
        logfile.write(msg + "\n")
    log.info(msg)
    return state


@torch.no_grad()
def evaluate_policy(model: OrderPolicy, data: Examples) -> dict[str, float]:
    """Step-level agreement with the greedy pick, and the mean LPIPS lost against it (greedy states)."""
    if not len(data):
        return {}
    _, metrics = policy_loss(model.eval(), data.batch(torch.arange(len(data))))
    return {"agree": metrics["agree"], "regret": metrics["regret"], "examples": float(len(data))}


def export_policy(train_dir: Path, path: Path) -> Path:
    """fp16 `policy.safetensors` from a trained policy folder, its training record in the metadata."""
    folder = Path(train_dir) / "policy"
    state = json.loads((folder / "state.json").read_text())
    traces_meta = json.loads((folder / "traces.json").read_text())
    traces_meta.pop("weights", None)  # a local path: the fingerprint names the generator
    tensors = load_file(str(folder / "checkpoint.safetensors"))
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    vocab_size = model_state["embed.weight"].shape[0]
    model = OrderPolicy(PolicyConfig(vocab_size=vocab_size))
    model.load_state_dict(model_state)
    weights_vocab = json.loads((folder / "vocab.json").read_text())
    meta = {"traces": {**traces_meta, "scenes": state.get("traces")},
            "training": {k: state[k] for k in ("step", "elapsed_s", "seed", "train_scenes", "held_out_scenes", "train_examples") if k in state},
            "validation": state.get("validation", {}), "tau": TAU, "rank_weight": RANK_WEIGHT}
    save_policy(Path(path), model, PolicyVocab(weights_vocab), meta)
    return Path(path)
