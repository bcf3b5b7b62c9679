"""Errors the user can fix. The CLI prints them as one line (`error: ...`) and exits with code 2."""

from __future__ import annotations

from typing import Any, Collection, Mapping


class LscError(Exception):
    """Base class: a message fit to show the user as is, on one line."""


class ConfigError(LscError):
    """A configuration key, value or file is wrong."""


class CapabilityError(LscError):
    """A scheme needs a capability the chosen backend lacks."""


class ModelUnavailableError(LscError):
    """Model weights are missing; the message names the model and how to make it available."""


def one_line(text: object) -> str:
    """The first line of a message, white space folded (the CLI prints one line per error)."""
    s = str(text).strip()
    return " ".join(s.split("\n")[0].split()) if s else type(text).__name__


def _short(value: object, limit: int = 60) -> str:
    """A value as shown in a one-line error: its repr, cut (a 5000-digit seed is not worth a screen)."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else f"{str(value)[:20]}..."
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validation_message(
    exc: Any,
    prefix: str = "",
    *,
    unknown: str = "{key}: unknown key",
    skip: Collection[str] = (),
    rename: Mapping[str, str] | None = None,
) -> str:
    """A pydantic ValidationError as the one line a user reads: `key.path: problem (got value)`.

    The first problem is shown and the others counted. `prefix` is where the model sits in the user's
    input (`channel`, `backend_options`); `unknown` words a key the model forbids (with `{key}`); `skip`
    drops location parts that are not keys (union tags), `rename` maps a key to the one the user wrote.
    """
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"] if str(x) not in skip and not str(x).startswith("function-")]
        key = ".".join(loc)
        key = (rename or {}).get(key, key)
        key = ".".join(p for p in (prefix, key) if p) or "config"
        if err["type"] == "extra_forbidden":
            parts.append(unknown.format(key=key))
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {_short(got)})"
        parts.append(f"{key}: {msg}{shown}")
    line = parts[0] if parts else "invalid value"
    if len(parts) > 1:
        line += f" (and {len(parts) - 1} more problem{'s' if len(parts) > 2 else ''})"
    return one_line(line)
class LscWarning(UserWarning):
    """Something was skipped, not failed: the CLI prints it as one line (`warning: ...`)."""
