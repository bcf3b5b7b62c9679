"""The `flow` and `flow_fast` receivers: Bob's rectified-flow U-Net sampled with Euler steps, with
classifier-free guidance (`flow`, 8 steps) or as the distilled student with the guidance folded in
(`flow_fast`, 2 steps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lsc.backends.world import nets, scenes
from lsc.backends.world.models import WorldModels
from lsc.backends.world.receivers.common import CHUNK, receiver_meta, to_unit
from lsc.errors import ConfigError

DEFAULT_SAMPLER_STEPS = 8
DEFAULT_GUIDANCE = 3.0
FAST_UNET_FILE = "bob_unet_fast.safetensors"  # the flow_fast student, beside the teacher's weights
FAST_META_FILE = "flow_fast.json"  # its sampler steps, threshold, training and teacher record
DEFAULT_FAST_STEPS = 2


def load_flow_fast(folder: Path) -> tuple[nets.FlowUNet, dict[str, Any]]:
    """The `flow_fast` receiver's files in a weights folder: the distilled student U-Net (guidance folded
    in) and its flow_fast.json (sampler steps, threshold). Missing files, or a student distilled against
    another text encoder than this folder's, are a one-line ConfigError."""
    meta = receiver_meta(
        folder, FAST_META_FILE, (FAST_UNET_FILE, FAST_META_FILE),
        lambda _: (f"backend_options.receiver=flow_fast: no {FAST_UNET_FILE} and {FAST_META_FILE} in {folder}; "
                   f"distil them with `lsc world train --out DIR --part flow_fast --init-generator {folder}`"),
        "teacher", f"backend_options.receiver=flow_fast: {FAST_UNET_FILE} in {folder} was distilled with",
        "distil it again from these weights",
    )
    state = {k: v.float() for k, v in load_file(str(folder / FAST_UNET_FILE)).items()}
    student = nets.FlowUNet(nets.UNetConfig())
    student.load_state_dict(state)
    return student.eval().requires_grad_(False).to(memory_format=torch.channels_last), meta


def flow_fast_student(models: WorldModels) -> tuple[nets.FlowUNet, dict[str, Any]]:
    """The student of a weights folder and its meta, loaded once per WorldModels."""
    return models.cached("flow_fast", load_flow_fast)


def euler_sample(
    unet: nets.FlowUNet, x: torch.Tensor, text: torch.Tensor, padding: torch.Tensor, steps: int,
    guidance: float | None, uncond: tuple[torch.Tensor, torch.Tensor] | None = None,
    on_step: Any = None,
) -> torch.Tensor:
    """Euler steps of the rectified flow from t=1 (noise `x`) to t=0 (the image).

    With `guidance`, classifier-free guidance: each step evaluates the U-Net on the prompts and on
    `uncond` (the empty prompt's features and padding, one row per image), 2 evaluations per image
    per step. With guidance None (a student that predicts the guided velocity itself), one.
    `on_step(i)` runs after each step's U-Net call (the cross-attention maps are then fresh).
    """
    b = x.shape[0]
    if guidance is not None:
        assert uncond is not None
        text, padding = torch.cat([text, uncond[0]]), torch.cat([padding, uncond[1]])
    ts = torch.linspace(1.0, 0.0, steps + 1)
    for i in range(steps):
        if guidance is None:
            v = unet(x, ts[i].expand(b), text, padding)
        else:
            v = unet(torch.cat([x, x]), ts[i].expand(2 * b), text, padding)
            v_c, v_u = v[:b], v[b:]
            v = v_u + guidance * (v_c - v_u)
        x = x + (ts[i + 1] - ts[i]) * v
        if on_step is not None:
            on_step(i)
    return x


class WorldGenerator:
    """Bob: text encoder + flow-matching U-Net, Euler sampler with classifier-free guidance.

    `receiver="flow_fast"` samples with the distilled student instead: guidance folded into its
    velocity, one U-Net evaluation per image per step and (by default) 2 steps, against the
    teacher's 2 x 8. `evaluations` counts U-Net evaluations per image row (benchmarks, tests).
    """

    def __init__(self, models: WorldModels, sampler_steps: int, guidance: float | None, receiver: str = "flow"):
        if receiver not in ("flow", "flow_fast"):
            raise ConfigError(f"backend_options.receiver must be one of flow, flow_fast, not {receiver!r}")
        self.m = models
        self.steps = sampler_steps
        self.receiver = receiver
        self.unet = models.unet if receiver == "flow" else flow_fast_student(models)[0]
        self.guidance = guidance if receiver == "flow" else None
        self.calls = 0  # batched generate() calls, for benchmarks
        self.evaluations = 0  # U-Net evaluations, one per image row per call

    @torch.inference_mode()
    def _sample(self, prompts: Sequence[str], seed: int, capture: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b = len(prompts)
        tokens = nets.encode_words(self.m.bob_vocab, [p.split() for p in prompts], self.m.text.cfg.max_len)
        empty = torch.zeros(1, tokens.shape[1], dtype=torch.long)
        empty[0, 0] = 2
        feats, padding = self.m.text(torch.cat([tokens, empty]))
        cond, cond_pad = feats[:b], padding[:b]
        uncond = (feats[b:].expand(b, -1, -1), padding[b:].expand(b, -1))
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.randn((1, 3, scenes.IMAGE_SIZE, scenes.IMAGE_SIZE), generator=gen).expand(b, -1, -1, -1).clone()
        maps: list[torch.Tensor] = []
        modules = self.unet.cross_attention_modules()
        for m in modules:
            m.capture = capture

        def keep_maps(i: int) -> None:
            if capture:
                maps.extend(m.last_weights[:b] for m in modules)  # (b, heads, HW, L)

        try:
            x = euler_sample(self.unet, x, cond, cond_pad, self.steps, self.guidance, uncond, keep_maps)
        finally:
            for m in modules:
                m.capture = False
        self.evaluations += self.steps * b * (1 if self.guidance is None else 2)
        return x, maps

    def generate(self, prompts: Sequence[str], seed: int) -> np.ndarray:
        """Bob's images for prompts, in chunks of CHUNK: on a CPU one call of 512 prompts took 3.4x as
        long as 32 calls of 16 (the activations of a big batch fall out of cache)."""
        if len(prompts) == 0:
            return np.zeros((0, scenes.IMAGE_SIZE, scenes.IMAGE_SIZE, 3), np.float32)
        self.calls += 1
        prompts = list(prompts)
        return np.concatenate([to_unit(self._sample(prompts[i : i + CHUNK], seed)[0]) for i in range(0, len(prompts), CHUNK)])

    def with_steps(self, steps: int) -> "WorldGenerator":
        """The same models sampling with `steps` Euler steps: a cheaper proxy for multi-fidelity search
        (lowest_lpips' `proxy_steps`). The view counts its own `calls`; the models are shared, not copied."""
        if int(steps) != steps or int(steps) < 1:
            raise ConfigError(f"sampler steps must be an integer >= 1, not {steps}")
        view = WorldGenerator.__new__(WorldGenerator)
        view.__dict__.update(self.__dict__)
        view.steps, view.calls, view.evaluations = int(steps), 0, 0
        return view

    def cross_attention(self, words: Sequence[str], seed: int) -> np.ndarray:
        """DAAM-style heat maps: cross-attention per word, summed over layers, heads and steps."""
        _, maps = self._sample([" ".join(words)], seed, capture=True)
        size = scenes.IMAGE_SIZE
        total = torch.zeros(len(words), size, size)
        for w in maps:
            hw = w.shape[2]
            side = int(round(hw**0.5))
            per_token = w[0].mean(0).T.reshape(-1, 1, side, side)  # (L, 1, side, side)
            up = F.interpolate(per_token, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
            n = min(len(words), up.shape[0] - 1)
            total[:n] += up[1 : n + 1]  # drop [BOS]
        return total.numpy()

