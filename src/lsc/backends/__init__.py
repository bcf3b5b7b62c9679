"""Backends by name. Imports are lazy so that the protocol never pulls in a model library."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from lsc.interfaces import Backend, Distance, lpips_distance
from lsc.plugins import Registry

if TYPE_CHECKING:
    from pydantic import BaseModel

def _as_loader(obj: Any, target: str) -> Callable[..., Backend]:
    """A backend plugin is a loader function: options as keyword arguments -> a `lsc.interfaces.Backend`."""
    if not callable(obj) or isinstance(obj, type) and issubclass(obj, BaseException):
        from lsc.errors import ConfigError

        raise ConfigError(f"backend {target!r} is not a loader function (options -> lsc.interfaces.Backend)")
    return obj  # type: ignore[no-any-return]


# Built-ins by import path (loaded on first use: a model library is imported only by the backend that needs it);
# installed packages add theirs as entry points of group lsc.backends (lsc.plugins).
BACKENDS = Registry("backend", _as_loader)
BACKENDS.add("world", "lsc.backends.world.backend:load_world_backend")
BACKENDS.add("hf", "lsc.backends.hf.backend:load_hf_backend")

# Each registered backend declares its options as a pydantic model in a light module (no model library).
_OPTIONS: dict[str, str] = {
    "world": "lsc.backends.world.options:WorldBackendOptions",
    "hf": "lsc.backends.hf.options:HFBackendOptions",
}


def declared_distance(name: str, options: dict[str, Any] | None = None) -> Distance | None:
    """The perceptual distance a registered backend declares, read without loading its models (a run folder
    written before runs recorded it is labelled by this); None for a backend of another module."""
    if name == "world":
        from lsc.backends.world.options import DISTANCE

        return DISTANCE
    if name == "hf":
        return lpips_distance(str((options or {}).get("lpips_net", "alex")))
    return None


def available_backends() -> list[str]:
    """Backends usable by name: lsc's own, then those of installed packages."""
    return BACKENDS.names()


def backend_loader(name: str) -> Callable[..., Backend]:
    """The loader function of a backend: a registered or installed name, or 'package.module:function' of your own."""
    return BACKENDS.get(name)


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
