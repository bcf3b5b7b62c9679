"""The world backend's options (the config's `backend_options`): a light module, so a configuration is
checked against them without importing torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lsc.interfaces import Distance

PACKAGED_WEIGHTS = Path(__file__).parent / "weights"
WEIGHTS_VARIABLE = "LSC_WORLD_WEIGHTS"

# The world's perceptual distance as every label names it: the LPIPS formula on its attribute classifier's
# features (not AlexNet's), so its values are not the papers' LPIPS and are not rescaled to look like them.
DISTANCE = Distance(
    "LPIPS-world",
    "0 (the same image) to about 5; the LPIPS formula on the world's attribute-classifier features, "
    "not comparable with the papers' LPIPS (AlexNet)",
    "the largest distance under which at least 85% of Bob's images are right (every object in its slot, "
    "every attribute the received words state) and none misses an object (lsc world eval)",
)


def world_weights_dir(weights: str | Path | None = None) -> Path:
    """The one answer to "which world weights folder": `weights` (backend_options.weights, a --weights option),
    else the folder the LSC_WORLD_WEIGHTS environment variable names, else the packaged weights; absolute.

    Every loader of world networks (backend, step metrics, report features, policy, `lsc world eval`) asks
    here, so a study's generator, classifier and policy always come from one folder.
    """
    chosen = weights if weights else os.environ.get(WEIGHTS_VARIABLE) or PACKAGED_WEIGHTS
    return Path(chosen).expanduser().resolve()


class WorldBackendOptions(BaseModel):
    """Options of `load_world_backend`; None takes the weights' own sampler settings."""

    model_config = ConfigDict(extra="forbid")

    weights: str | None = None
    sampler_steps: int | None = Field(None, ge=1)
    guidance: float | None = None
    threads: int | None = Field(None, ge=1)
    # Bob's generator: the 8-step guided flow sampler, its distilled 2-step student (flow_fast), or a
    # VQ-VAE with a text-conditioned autoregressive prior (vqvae_ar)
    receiver: Literal["flow", "flow_fast", "vqvae_ar"] = "flow"
