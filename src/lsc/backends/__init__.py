"""Backends by name. Imports are lazy so that the protocol never pulls in a model library."""

from __future__ import annotations

from typing import Any, Callable

from lsc.interfaces import Backend

_LOADERS: dict[str, str] = {
    "world": "lsc.backends.world.backend:load_world_backend",
    "hf": "lsc.backends.hf.backend:load_hf_backend",
}


def available_backends() -> list[str]:
    return sorted(_LOADERS)


def backend_loader(name: str) -> Callable[..., Backend]:
    """The loader function of a backend: a registered name, or 'package.module:function' of your own."""
    import importlib

    from lsc.errors import ConfigError

    if ":" in name:
        module_name, func_name = name.split(":", 1)
        try:
            return getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"backend {name!r} cannot be imported: {exc}") from None
    if name not in _LOADERS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(available_backends())}")
    module_name, func_name = _LOADERS[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def load_backend(name: str, options: dict[str, Any] | None = None) -> Backend:
    """Load a backend by name with its options (the config's `backend_options`)."""
    return backend_loader(name)(**(options or {}))
