"""One registry for everything a user may bring: ordering schemes, step metrics, channel models, backends.

Why one module: a name in a study (`schemes: [longest_first]`, `metrics: [...]`, `channel.model`,
`backend`) must mean the same thing everywhere -- config validation, the runner, Ray workers, the report,
`lsc schemes`, the demo -- and a plugin must be found the same way for every kind. There are three ways
to name something, checked in this order:

1. a built-in name (lsc's own, registered through `Registry.add` by the module that defines it);
2. an entry point of an installed package, in the group of its kind (`lsc.schemes`, `lsc.metrics`,
   `lsc.channels`, `lsc.backends`): `longest_first = "my_pkg.orders:LongestFirst"` in its pyproject.toml;
3. an import path `package.module:Attribute`, for code that is importable but not installed as a plugin.

An entry point may not take a built-in's name, nor may two packages declare one name: either is refused
with one line (a silent winner would make a study's numbers depend on what else is installed). Where a
plugin came from (`Origin`: its import path, its distribution and that distribution's version) is
recorded in the resolved configuration, so a run folder refuses to resume under another version.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any, Callable, Generic, TypeVar

from lsc.errors import ConfigError

T = TypeVar("T")

# The entry-point group of each kind of plugin.
GROUPS = {"scheme": "lsc.schemes", "metric": "lsc.metrics", "channel": "lsc.channels", "backend": "lsc.backends"}
BUILTIN = "lsc"  # the distribution named for built-ins


@dataclass(frozen=True)
class Origin:
    """Where a named plugin comes from: its import path, and the distribution (and version) holding it.

    `distribution` is "lsc" for a built-in and "" for an import path outside any installed distribution.
    """

    kind: str
    name: str
    target: str
    distribution: str
    version: str

    @property
    def builtin(self) -> bool:
        """lsc's own code (a built-in name, or an import path into lsc): versioned with lsc itself."""
        return self.distribution == BUILTIN or self.target.startswith("lsc.")

    def record(self) -> dict[str, str]:
        """The entry of the resolved configuration's `plugins` (the study's identity)."""
        out = {"target": self.target}
        if self.distribution:
            out["distribution"] = self.distribution
            out["version"] = self.version
        return out

    def package(self) -> str:
        """How listings name where it comes from: "lsc (built-in)", "my-pkg 0.1.0", or the import path."""
        if self.builtin:
            return "lsc (built-in)"
        if self.distribution:
            return f"{self.distribution} {self.version}".strip()
        return f"import path ({self.target.split(':')[0]})"


def is_import_path(name: str) -> bool:
    """Whether a name is written `package.module:Attribute`."""
    return ":" in name


def import_object(target: str, kind: str = "plugin") -> Any:
    """The object an import path `package.module:Attribute` names; a module that does not import or a
    missing attribute is one ConfigError line. The one way lsc loads code it does not know by name."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{kind} {target!r} is not 'package.module:Attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{kind} {target!r}: module {module_name!r} cannot be imported ({_one_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - a plugin module that fails on import is the plugin's to fix
        raise ConfigError(f"{kind} {target!r}: importing {module_name!r} failed: {type(exc).__name__}: {_one_line(exc)}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{kind} {target!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def distribution_of(module_name: str) -> tuple[str, str]:
    """(distribution, version) that installed a top-level module, ("", "") when none did (a loose module)."""
    top = module_name.split(".")[0]
    dists = metadata.packages_distributions().get(top) or []
    if not dists:
        return "", ""
    name = dists[0]
    try:
        return name, metadata.version(name)
    except metadata.PackageNotFoundError:
        return name, ""


@dataclass(frozen=True)
class _EntryPoint:
    name: str
    target: str
    distribution: str
    version: str


@lru_cache(maxsize=None)
def _entry_points(group: str) -> tuple[_EntryPoint, ...]:
    """The installed entry points of a group (cached: scanning installed packages takes milliseconds each time)."""
    out = []
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        out.append(_EntryPoint(ep.name, ep.value, dist.metadata["Name"] if dist is not None else "",
                               dist.version if dist is not None else ""))
    return tuple(sorted(out, key=lambda e: (e.name, e.distribution)))


def refresh() -> None:
    """Forget the entry points seen so far (after installing a package into a running process)."""
    _entry_points.cache_clear()
    for registry in REGISTRIES.values():
        registry._loaded.clear()


class Registry(Generic[T]):
    """The named plugins of one kind: built-ins, then entry points of its group, then import paths.

    `check(obj, target)` returns the object to use (a class, a function, a metric record) or raises a
    ConfigError line saying why `obj` is not one of this kind.
    """

    def __init__(self, kind: str, check: Callable[[Any, str], T] | None = None, order: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.order = order  # built-ins listed first in this order (the docs'), the others in registration order
        self.group = GROUPS[kind]
        self.check: Callable[[Any, str], T] = check or (lambda obj, target: obj)
        self._builtins: dict[str, Any] = {}  # name -> object, or its import path (loaded on first use)
        self._loaded: dict[str, T] = {}
        REGISTRIES[kind] = self

    def add(self, name: str, obj: Any) -> None:
        """Register a built-in (lsc's own modules call this): an object, or an import path loaded on first use."""
        self._builtins[name] = obj
        self._loaded.pop(name, None)

    def builtin_names(self) -> list[str]:
        first = [n for n in self.order if n in self._builtins]
        return first + [n for n in self._builtins if n not in self.order]

    def _plugins(self) -> dict[str, _EntryPoint]:
        """The group's entry points by name, refusing one that shadows a built-in or is declared twice."""
        out: dict[str, _EntryPoint] = {}
        for ep in _entry_points(self.group):
            if ep.name in self._builtins:
                raise ConfigError(f"package {ep.distribution or '?'!r} declares {self.kind} {ep.name!r} "
                                  f"(entry point group {self.group}), which is lsc's built-in {self.kind} of that "
                                  "name; the plugin must use another name")
            if ep.name in out:
                raise ConfigError(f"{self.kind} {ep.name!r} is declared by two packages, "
                                  f"{out[ep.name].distribution!r} and {ep.distribution!r} (entry point group "
                                  f"{self.group}); uninstall one")
            out[ep.name] = ep
        return out

    def plugin_names(self) -> list[str]:
        """Names declared by installed packages (entry points), sorted."""
        return sorted(self._plugins())

    def names(self) -> list[str]:
        """Every name usable by name: built-ins in registration order, then installed plugins."""
        return self.builtin_names() + self.plugin_names()

    def known(self, name: str) -> bool:
        """Whether `name` is a built-in or installed plugin name, or written as an import path."""
        return is_import_path(name) or name in self._builtins or name in self._plugins()

    def get(self, name: str) -> T:
        """The plugin a name stands for, loaded (and checked) once per process; an unknown name is one line."""
        if name in self._loaded:
            return self._loaded[name]
        if name in self._builtins:
            obj, target = self._builtins[name], self._builtins[name]
            if isinstance(obj, str):
                obj = import_object(obj, self.kind)
            else:
                target = _target_of(obj)
        else:
            plugins = self._plugins()
            if name in plugins:
                target = plugins[name].target
            elif is_import_path(name):
                target = name
            else:
                raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())} "
                                  "or 'package.module:Attribute'")
            obj = import_object(target, self.kind)
        value = self.check(obj, name if not is_import_path(name) else target)
        self._loaded[name] = value
        return value

    def origin(self, name: str) -> Origin:
        """Where a name comes from (it need not be loaded)."""
        if name in self._builtins:
            obj = self._builtins[name]
            target = obj if isinstance(obj, str) else _target_of(obj)
            if target.startswith("lsc."):
                return Origin(self.kind, name, target, BUILTIN, "")
            return Origin(self.kind, name, target, *distribution_of(target.split(":")[0]))  # registered in-process
        plugins = self._plugins()
        if name in plugins:
            ep = plugins[name]
            return Origin(self.kind, name, ep.target, ep.distribution, ep.version)
        if is_import_path(name):
            dist, version = distribution_of(name.split(":")[0])
            return Origin(self.kind, name, name, dist, version)
        raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")


def _target_of(obj: Any) -> str:
    """The import path of a class or function (`module:QualName`)."""
    module = getattr(obj, "__module__", None) or type(obj).__module__
    qual = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}:{qual}"


REGISTRIES: dict[str, Registry[Any]] = {}


def registry(kind: str) -> Registry[Any]:
    """The registry of a kind ("scheme", "metric", "channel", "backend"), with lsc's built-ins registered."""
    _BUILTIN_MODULES = {"scheme": "lsc.schemes", "metric": "lsc.metrics.registry", "channel": "lsc.channel.registry",
                        "backend": "lsc.backends"}
    if kind not in GROUPS:
        raise ValueError(f"no plugin kind {kind!r}; kinds: {', '.join(GROUPS)}")
    importlib.import_module(_BUILTIN_MODULES[kind])  # its module registers the built-ins on import
    return REGISTRIES[kind]


def plugin_record(kind: str, name: str) -> tuple[str, dict[str, str]] | None:
    """The resolved configuration's `plugins` entry (key, record) of a name, None for a built-in."""
    origin = registry(kind).origin(name)
    if origin.builtin:
        return None
    return f"{kind}:{name}", origin.record()
