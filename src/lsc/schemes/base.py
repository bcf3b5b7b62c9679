"""What an ordering scheme is, and the registry that finds one by name.

A scheme is Alice's semantic source coding policy: from what she holds (nothing, Bob's language model,
all of Bob's model, her own image-text model, her own learnt ordering policy) it decides which caption words to send and in what
order. It plans the whole order before sending, since Alice never sees Bob's channel errors.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping

from lsc.errors import CapabilityError, ConfigError
from lsc.protocol.context import ImageContext, LoopSettings, Plan

if TYPE_CHECKING:
    from lsc.interfaces import Backend

ALICE_HOLDS = ("nothing", "Bob's language model", "all of Bob's model", "her own ITM model", "Bob's language model and her own",
               "her own policy")


@dataclass(frozen=True)
class SchemeInfo:
    """A scheme's name, one-line description, what Alice must hold, and the capabilities it needs."""

    name: str
    description: str
    alice_holds: str
    requires: frozenset[str]


class Scheme(ABC):
    """Base of all schemes. Subclasses set the class attributes and take their options as keyword arguments."""

    name: ClassVar[str]
    description: ClassVar[str]
    alice_holds: ClassVar[str]
    requires: ClassVar[frozenset[str]]

    @abstractmethod
    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        """The send order for this image."""

    @classmethod
    def info(cls) -> SchemeInfo:
        return SchemeInfo(cls.name, cls.description, cls.alice_holds, frozenset(cls.requires))

    def options(self) -> dict[str, Any]:
        """The options this instance was built with (for the resolved configuration)."""
        return {k: getattr(self, k) for k in _option_names(type(self)) if not callable(getattr(self, k, None))}


_REGISTRY: dict[str, type[Scheme]] = {}

# docs/SCHEMES.md's numbering; schemes registered by others come after, in registration order.
CANONICAL_ORDER = (
    "random", "most_attentive", "least_attentive", "lowest_lpips", "alice_attention", "attention_contribution",
    "attention_combination", "crossattention_match", "nouns", "nouns_verbs", "heads", "heads_attentive",
    "heads_random", "heads_skd", "learned",
)
# The papers' 14 schemes (every canonical one but `learned`, lsc's own): a study's default `schemes`.
PAPER_SCHEMES = tuple(n for n in CANONICAL_ORDER if n != "learned")


def _sorted_names() -> list[str]:
    known = [n for n in CANONICAL_ORDER if n in _REGISTRY]
    return known + [n for n in _REGISTRY if n not in CANONICAL_ORDER]


def register(cls: type[Scheme]) -> type[Scheme]:
    """Class decorator: make a scheme available by its `name`."""
    if cls.alice_holds not in ALICE_HOLDS:
        raise ValueError(f"{cls.__name__}.alice_holds {cls.alice_holds!r} not in {ALICE_HOLDS}")
    _REGISTRY[cls.name] = cls
    return cls


def scheme_names() -> list[str]:
    return _sorted_names()


def list_schemes() -> list[SchemeInfo]:
    """Every registered scheme, in the order of docs/SCHEMES.md."""
    return [_REGISTRY[n].info() for n in _sorted_names()]


def scheme_class(name: str) -> type[Scheme]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown scheme {name!r}; choose one of {', '.join(_sorted_names())}")
    return _REGISTRY[name]


def _option_names(cls: type[Scheme]) -> list[str]:
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p != "self" and params[p].kind is inspect.Parameter.KEYWORD_ONLY]


def get_scheme(name: str, **options: Any) -> Scheme:
    """Build a scheme by name; an unknown scheme or option is a one-line ConfigError naming it."""
    cls = scheme_class(name)
    allowed = _option_names(cls)
    for key in options:
        if key not in allowed:
            hint = f"; its options are {', '.join(allowed)}" if allowed else "; it takes no options"
            raise ConfigError(f"scheme {name!r} has no option {key!r}{hint}")
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"scheme {name!r}: {exc}") from None


def _entry_name(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Scheme):
        return entry.name
    if isinstance(entry, Mapping) and "name" in entry:
        return str(entry["name"])
    name = getattr(entry, "name", None)
    if isinstance(name, str):
        return name
    raise ConfigError(f"cannot read a scheme name from {entry!r}")


def check_capabilities(backend: "Backend", schemes: Iterable[Any]) -> None:
    """Fail before a study starts if a scheme needs a capability the backend lacks, naming both.

    `schemes` holds names, Scheme instances, or {name: ..., ...} mappings.
    """
    problems = []
    for entry in schemes:
        name = _entry_name(entry)
        missing = backend.missing(scheme_class(name).requires)
        if missing:
            problems.append(f"scheme {name!r} needs {', '.join(missing)}")
    if problems:
        raise CapabilityError(f"backend {backend.name!r} lacks what these schemes need: {'; '.join(problems)}")
