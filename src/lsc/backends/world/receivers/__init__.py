"""Bob's receivers, the world's text-to-image models: `flow` (rectified-flow U-Net, 8 guided Euler
steps), `flow_fast` (its distilled 2-step student) and `vqvae_ar` (a VQ-VAE with an autoregressive
prior). Each reads Bob's one text encoder; `load_receiver` is the one loader the backend calls."""

from __future__ import annotations

from typing import Any

from lsc.backends.world.models import WorldModels
from lsc.backends.world.receivers.flow import (
    DEFAULT_FAST_STEPS,
    DEFAULT_GUIDANCE,
    DEFAULT_SAMPLER_STEPS,
    FAST_META_FILE,
    WorldGenerator,
    flow_fast_student,
)
from lsc.backends.world.receivers.vqvae_ar import META_FILE, VQARGenerator
from lsc.errors import ConfigError

RECEIVERS = ("flow", "flow_fast", "vqvae_ar")


def check_receiver(receiver: str) -> None:
    """A receiver name this backend knows, else a one-line ConfigError."""
    if receiver not in RECEIVERS:
        raise ConfigError(f"backend_options.receiver must be one of {', '.join(RECEIVERS)}, not {receiver!r}")


def meta_file(receiver: str) -> str:
    """The file in a weights folder that holds a receiver's threshold: world.json, flow_fast.json or vqvae_ar.json."""
    if receiver not in RECEIVERS:
        raise ConfigError(f"receiver must be one of {', '.join(RECEIVERS)}, not {receiver!r}")
    return {"flow_fast": FAST_META_FILE, "vqvae_ar": META_FILE}.get(receiver, "world.json")


def load_receiver(models: WorldModels, receiver: str, sampler_steps: int | None, guidance: float | None) -> tuple[Any, float]:
    """Bob's generator for `receiver` and its success threshold (the receiver's own meta file's, else world.json's)."""
    check_receiver(receiver)
    if receiver == "vqvae_ar":
        if sampler_steps is not None:
            raise ConfigError("backend_options.sampler_steps does not apply to receiver vqvae_ar (one prior step per code)")
        generator = VQARGenerator(models, guidance)
        return generator, float(generator.meta.get("threshold", models.meta.get("threshold", 0.5)))
    scale: float | None
    if receiver == "flow_fast":
        if guidance is not None:
            raise ConfigError("backend_options.guidance does not apply to receiver flow_fast (its guidance is folded into the student)")
        fast_meta = flow_fast_student(models)[1]
        steps = int(sampler_steps or fast_meta.get("sampler", {}).get("steps", DEFAULT_FAST_STEPS))
        scale = None
        threshold = float(fast_meta.get("threshold", models.meta.get("threshold", 0.5)))
    else:
        sampler = models.meta.get("sampler", {})
        steps = int(sampler_steps or sampler.get("steps", DEFAULT_SAMPLER_STEPS))
        scale = float(guidance if guidance is not None else sampler.get("guidance", DEFAULT_GUIDANCE))
        threshold = float(models.meta.get("threshold", 0.5))
    if steps < 1:
        raise ConfigError(f"backend_options.sampler_steps must be at least 1, got {steps}")
    return WorldGenerator(models, steps, scale, receiver), threshold
