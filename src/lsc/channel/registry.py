"""The channel models by name (lsc.plugins): "analytic" and "phy" built in, installed packages' models
as entry points of group lsc.channels, or an import path.

Built-ins are registered by import path and loaded on first use, so the configuration can check a
model's name here without importing the models (which import the configuration)."""

from __future__ import annotations

from typing import Any

from lsc.errors import ConfigError
from lsc.plugins import Registry


def _as_factory(obj: Any, target: str) -> Any:
    """A channel plugin is a factory `(ChannelConfig, seed) -> BitChannel` (a class with that constructor will do)."""
    if not callable(obj):
        raise ConfigError(f"channel model {target!r} is not a factory (ChannelConfig, seed) -> BitChannel")
    return obj


# "none" is the ideal channel and has no model object.
CHANNELS = Registry("channel", _as_factory)
CHANNELS.add("analytic", "lsc.channel.analytic:analytic_channel")
CHANNELS.add("phy", "lsc.channel.phy:PhyChannel")
