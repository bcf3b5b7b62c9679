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
from lsc.plugins import Registry
from lsc.protocol.context import ImageContext, LoopSettings, Plan

if TYPE_CHECKING:
    from lsc.interfaces import Backend

# What Alice holds in the built-in schemes, in the words `lsc schemes` prints. A plugin states its own in
# words (any non-empty text, e.g. "a word-frequency table"): it is shown, not interpreted.
ALICE_HOLDS = ("nothing", "Bob's language model", "all of Bob's model", "her own ITM model", "Bob's language model and her own",
               "her own policy")


@dataclass(frozen=True)
class SchemeInfo:
    """A scheme's name, one-line description, what Alice must hold, the capabilities it needs, and where it
    comes from ("lsc (built-in)", the installed package and its version, or its import path)."""

    name: str
    description: str
    alice_holds: str
    requires: frozenset[str]
    package: str = "lsc (built-in)"


class Scheme(ABC):
    """Base of all schemes. Subclasses set the class attributes and take their options as keyword-only
    arguments (validated by their `__init__`: raise ValueError or TypeError with a one-line reason).

    `name`: how it is stored and seeded; `description`: one line; `alice_holds`: in words, what Alice must
    hold to plan this way; `requires`: the capabilities it reads (`lsc.interfaces.CAP_*`), checked against
    the backend before a study starts. See docs/extending.md.
    """

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


# docs/SCHEMES.md's numbering; schemes registered by others come after, in registration order, then the
# schemes of installed packages (entry points of group lsc.schemes), by name.
CANONICAL_ORDER = (
    "random", "most_attentive", "least_attentive", "lowest_lpips", "alice_attention", "attention_contribution",
    "attention_combination", "crossattention_match", "nouns", "nouns_verbs", "heads", "heads_attentive",
    "heads_random", "heads_skd", "learned", "skd",
)
# The papers' 14 schemes (every canonical one but lsc's own `learned` and `skd`): a study's default `schemes`.
PAPER_SCHEMES = tuple(n for n in CANONICAL_ORDER if n not in ("learned", "skd"))
_ATTRIBUTES = ("name", "description", "alice_holds", "requires")


def as_scheme_class(obj: Any, target: str) -> type[Scheme]:
    """`obj` if it is a usable scheme class, else one ConfigError line saying what is wrong with it."""
    if not (isinstance(obj, type) and issubclass(obj, Scheme)):
        raise ConfigError(f"scheme {target!r} is not a scheme: {_describe(obj)} is not a subclass of lsc.schemes.Scheme")
    missing = [a for a in _ATTRIBUTES if not hasattr(obj, a)]
    if missing:
        raise ConfigError(f"scheme {target!r} does not set the class attribute {missing[0]!r} (see docs/extending.md)")
    if inspect.isabstract(obj):
        raise ConfigError(f"scheme {target!r} does not define plan(ctx, settings)")
    for attr in ("name", "description", "alice_holds"):
        value = getattr(obj, attr)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"scheme {target!r}: {attr} must be a non-empty string, not {value!r}")
    requires = obj.requires
    if isinstance(requires, str) or not all(isinstance(r, str) for r in requires):
        raise ConfigError(f"scheme {target!r}: requires must be a set of capability names (lsc.interfaces.CAP_*), "
                          f"not {requires!r}")
    return obj


def _describe(obj: Any) -> str:
    return f"class {obj.__qualname__}" if isinstance(obj, type) else f"a {type(obj).__name__}"


SCHEMES: Registry[type[Scheme]] = Registry("scheme", as_scheme_class, order=CANONICAL_ORDER)


def register(cls: type[Scheme]) -> type[Scheme]:
    """Class decorator: make a scheme available by its `name` in this process (lsc's own schemes; a plugin
    is found by its entry point or import path instead, so Ray workers and `lsc run` find it too)."""
    as_scheme_class(cls, cls.__name__)
    SCHEMES.add(cls.name, cls)
    return cls


def scheme_names() -> list[str]:
    """Every scheme usable by name: the built-ins in docs/SCHEMES.md's order, then installed plugins."""
    return SCHEMES.names()


def scheme_info(name: str) -> SchemeInfo:
    """A scheme's info (its class loaded), with the package it comes from."""
    cls = scheme_class(name)
    return SchemeInfo(name, cls.description, cls.alice_holds, frozenset(cls.requires), SCHEMES.origin(name).package())


def list_schemes() -> list[SchemeInfo]:
    """Every scheme usable by name, in the order of `scheme_names`."""
    return [scheme_info(n) for n in scheme_names()]


def scheme_class(name: str) -> type[Scheme]:
    """The class of a scheme name, installed plugin name or import path `package.module:Class` (ConfigError, one line)."""
    return SCHEMES.get(name)


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
    from lsc.schemes.options import check_options

    check_options(name, cls, options)
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
