"""Scheme options typed strictly and bounded, before a scheme is built.

Why: a scheme's constructor casts what it gets (`bool("false")` is True, `float(".nan")` compares false
to every bound), so an option written with the wrong type silently changes a study's meaning, and an
option without a bound (`beam: 1000000000`) runs for ever. Each option is checked against its
constructor annotation (bool, int, float, str, optionally None) and the caps below: one line naming it.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Union

from lsc.errors import ConfigError

# Largest values a study may ask for: each far beyond what the schemes' own papers use, and small
# enough that a study using them still ends (beam and proxy_top multiply the images generated per step).
OPTION_CAPS: dict[str, float] = {"beam": 64, "proxy_top": 1024, "proxy_steps": 10_000, "pad_to": 4096,
                                 "penalty": 1e6}

_LEAVES = (bool, int, float, str)


def _leaf_types(annotation: Any) -> tuple[tuple[type, ...], bool] | None:
    """(allowed leaf types, None allowed) of a simple annotation; None for anything else (not checked here)."""
    if annotation in _LEAVES:
        return (annotation,), False
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = typing.get_args(annotation)
        leaves = tuple(a for a in args if a is not type(None))
        if leaves and all(a in _LEAVES for a in leaves):
            return leaves, type(None) in args
    return None


def _fits(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_options(name: str, cls: type, options: dict[str, Any]) -> None:
    """Refuse an option of the wrong type (a string is not a boolean), NaN or infinity, or one over its cap."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - a plugin's unresolvable annotation: its constructor checks instead
        return
    for key, value in options.items():
        leaf = _leaf_types(hints.get(key))
        if leaf is None:
            continue
        kinds, nullable = leaf
        if value is None and nullable:
            continue
        if not any(_fits(value, k) for k in kinds):
            want = " or ".join(k.__name__ for k in kinds) + (" or null" if nullable else "")
            raise ConfigError(f"scheme {name!r}: option {key} must be {want}, not {value!r} "
                              f"({type(value).__name__})")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"scheme {name!r}: option {key} must be a finite number, not {value}")
        cap = OPTION_CAPS.get(key)
        if cap is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
            raise ConfigError(f"scheme {name!r}: option {key} is at most {cap:g} (got {value:g})")
