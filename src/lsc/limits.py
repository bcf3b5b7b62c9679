"""Bounds on what a file, a `--set` or a form can ask lsc for, in one place, and readers that keep them.

Why: a study file or a page's form is data, and data must not be able to hang or crash lsc. A YAML
alias bomb is a few hundred bytes that expand to billions of nodes when anything walks them; JSON or
YAML nested a thousand deep overflows Python's recursion; a seed of 5000 digits or a billion SNR points
is accepted by types alone. Each bound below is refused with one line that names it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from lsc.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a study file or a --set value; the packaged study is 2 KB
MAX_DEPTH = 64  # nesting of YAML / JSON mappings and lists (a study needs 4)
MAX_ALIASES = 100  # YAML aliases (*name) in one document; each may expand what it names
MAX_NODES = 200_000  # YAML nodes after expanding aliases
MAX_SEED = 2**32 - 1  # seeds are NumPy's 32-bit seeds
MAX_SNR_POINTS = 64  # values of an SNR sweep
MAX_SEPARATOR_BITS = 64
MAX_TRANSMISSIONS = 10_000_000  # images x schemes x SNRs of one study
MAX_CAPTIONS_BYTES = 512 << 20  # a captions file (COCO's captions_train2017.json is 92 MB)


def check_captions_size(path: Path, where: str) -> None:
    """A captions file over MAX_CAPTIONS_BYTES is refused before it is read (one line naming the bound)."""
    try:
        size = path.stat().st_size
    except OSError:
        return  # the reader says what is wrong with it
    if size > MAX_CAPTIONS_BYTES:
        raise ConfigError(f"{where}: {size >> 20} MB, over the {MAX_CAPTIONS_BYTES >> 20} MB bound for a captions file")


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting depth, aliases and expanded nodes as it composes the document."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D401 - PyYAML's hook
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise ConfigError(f"more than {MAX_ALIASES} YAML aliases (*name); write the values out")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ConfigError(f"YAML nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(node: Any, budget: list[int]) -> None:
    """Walk the composed graph as a reader of the data would (aliases expanded), within a node budget."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(f"YAML expands to more than {MAX_NODES} values (an alias bomb?)")
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            _expanded_size(k, budget)
            _expanded_size(v, budget)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _expanded_size(v, budget)


def load_yaml(text: str, what: str) -> Any:
    """YAML text as Python data, within the bounds above; a bound crossed is a ConfigError naming `what`."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what}: larger than {MAX_CONFIG_BYTES >> 10} KB")
    loader = _BoundedLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except ConfigError as exc:
            raise ConfigError(f"{what}: {exc}") from None
        if node is None:
            return None
        try:
            _expanded_size(node, [MAX_NODES])
        except ConfigError as exc:
            raise ConfigError(f"{what}: {exc}") from None
        try:
            return loader.construct_document(node)
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            raise ConfigError(f"{what}: {' '.join(str(exc).split(';')[0].split())}") from None
    finally:
        loader.dispose()


def load_json(text: str, what: str) -> Any:
    """JSON text as Python data; nesting deep enough to overflow the parser's recursion is a ConfigError
    (json.JSONDecodeError is left to the caller, which words it with the line)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ConfigError(f"{what}: JSON nested too deep") from None


def check_seed(value: int, key: str) -> int:
    """A seed within NumPy's 32-bit range (a negative or huge one crashed at run time, after --dry-run)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{key}: a seed is an integer from 0 to {MAX_SEED} (got {str(value)[:40]})")
    return value


def machine_threads(value: object, key: str = "backend_options.threads") -> int:
    """A thread count within this machine: at most its cores (a count far beyond them crashed the world
    backend's math library). More is one warning line and the core count, as thread counts never enter
    a study's identity; not an integer >= 1 is a ConfigError."""
    import warnings

    from lsc.errors import LscWarning

    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: a thread count is an integer >= 1 (got {str(value)[:40]})")
    cores = os.cpu_count() or 1
    if value > cores:
        warnings.warn(LscWarning(f"{key}: {value} is more than this machine's {cores} cores; using {cores}"),
                      stacklevel=2)
        return cores
    return value


def check_output_file(path: object, suffixes: tuple[str, ...], option: str) -> Path:
    """A file a command will write: not empty, with one of `suffixes`, not a folder, in a writable folder
    (each a one-line ConfigError; a matplotlib or Pillow error would be a traceback)."""
    text = str(path) if path is not None else ""
    if not text.strip():
        raise ConfigError(f"{option} is empty; name a file")
    p = Path(text)
    if p.suffix.lower() not in suffixes:
        raise ConfigError(f"{option} {p}: the file name must end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise ConfigError(f"{option} {p}: is a folder, not a file")
    parent = p.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {p}: folder {parent} is not writable")
    return p


def check_text(text: str, what: str) -> str:
    """Text from the command line that lsc will process as words: valid UTF-8 (an argument of undecodable
    bytes reaches Python as lone surrogates, which every encoder and tokenizer rejects with a traceback)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} is not valid UTF-8 text") from None
    return text
