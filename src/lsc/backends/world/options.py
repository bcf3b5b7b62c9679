"""The world backend's options (the config's `backend_options`): a light module, so a configuration is
checked against them without importing torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
