"""`lsc world train`'s parts and `train`, which runs the ones asked for one after another."""

from __future__ import annotations

from pathlib import Path

import torch

from lsc.backends.world import STEP_CAPS
from lsc.backends.world.training.captioner import train_captioner
from lsc.backends.world.training.flow_fast import train_flow_fast
from lsc.backends.world.training.generator import train_generator
from lsc.backends.world.training.perception import train_classifier, train_perceptual
from lsc.backends.world.training.vqvae_ar import VQVAE_AR_PARTS, train_vqvae_ar_parts
from lsc.errors import ConfigError

PARTS = ("classifier", "perceptual", "captioner", "generator")  # the world's models (a default `lsc world train`)
POLICY = "policy"  # Alice's ordering policy (scheme `learned`): trained only when asked, in a call of its own
# Parts trained only when asked for, each in a call of its own: they need a finished weights folder
# (flow_fast distils its generator; the policy traces lowest_lpips with it).
# vqvae and prior (the vqvae_ar receiver, lsc.backends.world.receivers.vqvae_ar) train apart from the others, in that order.
EXTRA_PARTS = ("flow_fast", POLICY, *VQVAE_AR_PARTS)
ALL_PARTS = PARTS + EXTRA_PARTS


def train(
    out_dir: Path, minutes: float, parts: tuple[str, ...] = PARTS, seed: int = 0, max_steps: dict[str, int] | None = None,
    init_generator: Path | None = None, init_captioner: Path | None = None, base_weights: Path | None = None,
    policy_options: dict | None = None,
    flow_fast: dict | None = None,
    generator_options: dict | None = None,
    vqvae_ar: dict | None = None,
) -> dict:
    """Train the given parts one after another, splitting the time budget by their needs.

    The policy part (lowest_lpips traces with the generator of `base_weights`, default the shipped weights,
    then the policy; see lsc.schemes.policy_training) trains alone: its traces need finished weights.

    A part stops at its time share or at its step cap (`max_steps`), whichever comes first; with caps
    that the budget allows, the result depends on the seed only, not on the machine's speed.
    """
    torch.set_flush_denormal(True)  # denormal floats make CPU training crawl without it
    if POLICY in parts:
        if len(parts) > 1:
            raise ConfigError("train the policy in a call of its own (--part policy), with --base-weights at finished weights")
        from lsc.schemes.policy_training import train_policy

        cap = {**STEP_CAPS, **(max_steps or {})}[POLICY]
        return {POLICY: train_policy(Path(out_dir), minutes, seed, cap, weights=base_weights, **(policy_options or {}))}
    if set(parts) & set(VQVAE_AR_PARTS):
        return train_vqvae_ar_parts(Path(out_dir), minutes, parts, seed, {**STEP_CAPS, **(max_steps or {})}, base_weights or init_generator,
                                    **(vqvae_ar or {}))
    share = {"classifier": 0.07, "perceptual": 0.01, "captioner": 0.22, "generator": 0.70, "flow_fast": 1.0}
    total = sum(share[p] for p in parts)
    states = {}
    for part in parts:
        budget = minutes * share[part] / total
        if part == "flow_fast":
            teacher = init_generator or base_weights
            if teacher is None:
                raise ConfigError("the flow_fast part distils a finished generator: give its weights folder with --init-generator")
            states[part] = train_flow_fast(Path(out_dir), budget, Path(teacher), seed,
                                           max_steps={**STEP_CAPS, **(max_steps or {})}["flow_fast"], **(flow_fast or {}))
            continue
        fn = {"classifier": train_classifier, "perceptual": train_perceptual, "captioner": train_captioner, "generator": train_generator}[part]
        kwargs: dict = {"max_steps": {**STEP_CAPS, **(max_steps or {})}[part]}
        if part == "perceptual" and not (Path(out_dir) / "classifier" / "state.json").exists():
            if base_weights is None:
                raise ConfigError("the perceptual part needs a classifier: train it in the same folder (--part classifier) or give --base-weights")
            kwargs["classifier_from"] = Path(base_weights)
        if part == "generator" and init_generator is not None:
            kwargs["init_from"] = Path(init_generator)
        if part == "generator":
            kwargs.update(generator_options or {})
        if part == "captioner" and init_captioner is not None:
            kwargs["init_from"] = Path(init_captioner)
        states[part] = fn(Path(out_dir), budget, seed, **kwargs)
    return states
