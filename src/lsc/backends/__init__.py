"""Backends by name. Imports are lazy so that the protocol never pulls in a model library."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from lsc.interfaces import Backend

if TYPE_CHECKING:
    from pydantic import BaseModel

_LOADERS: dict[str, str] = {
    "world": "lsc.backends.world.backend:load_world_backend",
    "hf": "lsc.backends.hf.backend:load_hf_backend",
}

# Each registered backend declares its options as a pydantic model in a light module (no model library).
_OPTIONS: dict[str, str] = {
    "world": "lsc.backends.world.options:WorldBackendOptions",
    "hf": "lsc.backends.hf.options:HFBackendOptions",
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


def options_message(exc: Any, name: str, model: type["BaseModel"]) -> str:
    """A backend option's ValidationError as one line: `backend_options.key: problem`, an unknown key
    with the backend's options listed."""
    from lsc.errors import validation_message

    unknown = "{key}: unknown option of backend " + repr(name) + "; its options are " + ", ".join(model.model_fields)
    return validation_message(exc, "backend_options", unknown=unknown)


def check_backend_options(name: str, options: dict[str, Any]) -> None:
    """Check a registered backend's options against its options model (ConfigError, one line); a
    'module:function' backend's options are checked against its loader when it is loaded."""
    import importlib

    from pydantic import ValidationError

    from lsc.errors import ConfigError

    if name not in _OPTIONS:
        return
    module_name, cls_name = _OPTIONS[name].split(":")
    model = getattr(importlib.import_module(module_name), cls_name)
    try:
        model(**options)
    except ValidationError as exc:
        raise ConfigError(options_message(exc, name, model)) from None
