"""Backends by name. Imports are lazy so that the protocol never pulls in a model library."""

from __future__ import annotations

from typing import Any, Callable

from lsc.errors import LscError
from lsc.interfaces import Backend

_LOADERS: dict[str, str] = {
    "world": "lsc.backends.world.backend:load_world_backend",
    "hf": "lsc.backends.hf.backend:load_hf_backend",
}


class BackendError(LscError):
    """A backend could not be loaded (missing weights, bad option); the message is one line."""


def available_backends() -> list[str]:
    return sorted(_LOADERS)


def load_backend(name: str, options: dict[str, Any] | None = None) -> Backend:
    """Load a backend by name with its options (the config's `backend_options`)."""
    if name not in _LOADERS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(available_backends())}")
    module_name, func_name = _LOADERS[name].split(":")
    import importlib

    loader: Callable[..., Backend] = getattr(importlib.import_module(module_name), func_name)
    return loader(**(options or {}))
