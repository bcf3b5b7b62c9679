"""Which model files a study uses, each with a content fingerprint: part of the study's identity.

Why: two studies with the same YAML on other weights give other numbers. The resolved configuration lists
every weights file a run reads (`models:`, filled in by `lsc.runner.worker.resolve`), so a run folder refuses
to resume on other weights (naming the file that changed) and a reader of config.resolved.yaml knows which
models made its numbers. File names, never folder paths, are the keys: a study resumes after its weights
folder moved, not after its weights changed.

- world: every file of the weights folder (`world_weights_dir`, the folder's one owner), `world/<name>`.
- hf: each model option as `id@commit` (the Hub cache's revision; `@not-cached` where the cache lacks it),
  or, for a local folder, each of its files by content.
- a plugin (`module:function` backend, a scheme by import path): not here; `plugins:` records its version.
- a scheme with its own model files (`learned`'s policy): `scheme <label>/<name>`, unless listed already.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lsc.config import StudyConfig

MODELS_KEY = "models"


def file_fingerprint(path: Path) -> str:
    """`sha256:<hex>` of a file's bytes (cached per path, size and modification time: a run start rehashes
    nothing it hashed before unless the file changed)."""
    st = path.stat()
    return _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _folder_files(folder: Path, prefix: str, seen: set[Path]) -> dict[str, str]:
    """Every regular file under `folder` (hidden ones aside) as `prefix/<relative path>` -> fingerprint."""
    out: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        seen.add(path.resolve())
        out[f"{prefix}/{rel.as_posix()}"] = file_fingerprint(path)
    return out


def _world(options: dict[str, Any], seen: set[Path]) -> dict[str, str]:
    from lsc.backends.world.options import world_weights_dir

    folder = world_weights_dir(options.get("weights"))
    if not folder.is_dir():
        return {}  # the loader says what is missing
    return _folder_files(folder, "world", seen)


def _hub_revision(model_id: str) -> str:
    """The commit of a Hub model in the local cache (what an offline load reads), else `not-cached`."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return "not-cached"
    ref = Path(HF_HUB_CACHE) / f"models--{model_id.replace('/', '--')}" / "refs" / "main"
    try:
        return ref.read_text(encoding="utf-8").strip() or "not-cached"
    except OSError:
        return "not-cached"


_HF_MODEL_OPTIONS = ("captioner", "itm_model", "alice_text_encoder", "bob_text_encoder", "generator", "lcm_lora",
                     "lpips_backbone", "lpips_linear")


def _hf(options: dict[str, Any], seen: set[Path]) -> dict[str, str]:
    from lsc.backends.hf.options import HFBackendOptions

    opts = HFBackendOptions(**options)
    out: dict[str, str] = {}
    for name in _HF_MODEL_OPTIONS:
        value = getattr(opts, name)
        if name == "generator" and value is None:
            from lsc.backends.hf.backend import RECEIVER_MODELS

            value = RECEIVER_MODELS[opts.receiver]
        if not value or (name == "alice_text_encoder" and value == "itm"):
            continue
        local = Path(str(value)).expanduser()
        if local.is_dir():
            out.update(_folder_files(local, f"hf/{name}", seen))
        elif local.is_file():
            seen.add(local.resolve())
            out[f"hf/{name}/{local.name}"] = file_fingerprint(local)
        else:
            out[f"hf/{name}"] = f"{value}@{_hub_revision(str(value))}"
    return out


def model_files(cfg: "StudyConfig") -> dict[str, str]:
    """Every model file the study uses -> its fingerprint (see the module docstring), in a stable order."""
    from lsc.schemes import get_scheme

    seen: set[Path] = set()
    options = dict(cfg.backend_options)
    if cfg.backend == "world":
        out = _world(options, seen)
    elif cfg.backend == "hf":
        out = _hf(options, seen)
    else:  # a plugin backend: its distribution's version is the study's `plugins` record (lsc.plugins)
        out = {}
    for spec in cfg.schemes:
        files = getattr(get_scheme(spec.name, **spec.options), "model_files", None)
        for path in (files() if callable(files) else []):
            path = Path(path)
            if path.is_file() and path.resolve() not in seen:
                seen.add(path.resolve())
                out[f"scheme {spec.label}/{path.name}"] = file_fingerprint(path)
    return out


def changed_model(recorded: dict[str, str], now: dict[str, str]) -> str | None:
    """The first model file that differs between two `models:` records, as one phrase; None when equal."""
    for key in list(recorded) + [k for k in now if k not in recorded]:
        old, new = recorded.get(key), now.get(key)
        if old != new:
            if old is None:
                return f"{key} is new"
            if new is None:
                return f"{key} is gone"
            return f"{key} changed ({_short(old)} recorded, {_short(new)} now)"
    return None


def _short(fingerprint: str) -> str:
    return fingerprint[: len("sha256:") + 12] if fingerprint.startswith("sha256:") else fingerprint
