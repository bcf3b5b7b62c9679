"""Loading weights from the Hugging Face hub or a local folder, with one-line errors when they are missing.

Every `from_pretrained` of the hf backend goes through `load_pretrained`, so that a machine without the
weights (or with HF_HUB_OFFLINE=1) gets a `ModelUnavailableError` naming the model and how to get it,
never a traceback from deep inside the hub client.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, TypeVar

from lsc import progress
from lsc.errors import ModelUnavailableError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """Whether the hub client is told to stay offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if not text:
        text = type(exc).__name__
    return text[:240] + ("..." if len(text) > 240 else "")


def unavailable_message(model_id: str, what: str, option: str, exc: BaseException | None = None) -> str:
    """The one-line message for weights that cannot be loaded."""
    path = Path(model_id).expanduser()
    if model_id.startswith(("/", "./", "../", "~")) and not path.exists():
        return f"{what}: local folder {model_id!r} does not exist (option {option})"
    if path.exists():
        reason = f": {_reason(exc)}" if exc is not None else ""
        return f"could not load {what} from local folder {model_id!r}{reason}"
    offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
    reason = f" [{_reason(exc)}]" if exc is not None else ""
    return (
        f"{what} weights {model_id!r} are not available here{offline}: download them once with "
        f"`huggingface-cli download {model_id}` on a machine with internet (they go to the Hugging Face cache), "
        f"or set backend option {option}=/path/to/local/folder{reason}"
    )


SAFE_BIN_TORCH = (2, 6)  # transformers refuses torch.load (.bin weights) below torch 2.6: CVE-2025-32434


def torch_release() -> tuple[int, ...]:
    """The installed torch's version as numbers (2.5.1+cu121 -> (2, 5, 1))."""
    import torch
    from packaging.version import Version

    return Version(torch.__version__).release


def checkpoint_files(model_id: str) -> list[str] | None:
    """File names of a local folder or of the cached hub snapshot; None when neither is here."""
    path = Path(model_id).expanduser()
    if not path.is_dir():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(model_id, local_files_only=True))
        except Exception:  # noqa: BLE001  (not cached, or not a hub id)
            return None
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def bin_only_blocked(model_id: str) -> bool:
    """Whether this torch (< 2.6) cannot load the checkpoint: it holds .bin weights and no .safetensors."""
    if torch_release() >= SAFE_BIN_TORCH:
        return False
    files = checkpoint_files(model_id) or []
    return any(f.endswith(".bin") for f in files) and not any(f.endswith(".safetensors") for f in files)


def bin_only_refusal(model_id: str, what: str, option: str, exc: BaseException) -> str | None:
    """The one-line truth when transformers refused a checkpoint's .bin weights because torch is older
    than 2.6 (its message cites CVE-2025-32434); None for any other failure. Why: the generic message
    would blame missing weights and send the user to download what is already there."""
    seen: BaseException | None = exc
    while seen is not None and "CVE-2025-32434" not in str(seen):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    import torch

    return (f"{what} {model_id!r} has only PyTorch .bin weights, which transformers refuses to load with torch "
            f"{torch.__version__} (torch.load needs torch >= 2.6 since CVE-2025-32434): upgrade torch to 2.6 or "
            f"later, or give a copy with model.safetensors (option {option})")


def load_pretrained(loader: Callable[..., T], model_id: str, what: str, option: str, **kwargs: Any) -> T:
    """`loader(model_id, **kwargs)` with every load failure (missing or partial files, a weight variant that
    is not there, a corrupt file, a version mismatch) made one line: a user sees which model failed and
    why, never a traceback from inside transformers, diffusers or the hub client."""
    if hub_offline():  # the hub client reads HF_HUB_OFFLINE once at import; honour a later setting too
        kwargs.setdefault("local_files_only", True)
    try:
        model = loader(model_id, **kwargs)
    except ModelUnavailableError:
        raise
    except Exception as exc:  # noqa: BLE001  (the point: any loader error becomes the one-line message)
        refusal = bin_only_refusal(model_id, what, option, exc)
        raise ModelUnavailableError(refusal or unavailable_message(model_id, what, option, exc)) from exc
    progress.tick(what)  # a backend's loading stage counts the models it has loaded
    return model


def load_with_variants(loader: Callable[..., T], model_id: str, what: str, option: str, variants: list[str | None],
                       **kwargs: Any) -> T:
    """`load_pretrained` trying weight variants in turn (e.g. ["fp16", None]: the fp16 files that a
    download of only `*fp16.safetensors` fetches, then the full-precision ones); the first error if all fail."""
    first: ModelUnavailableError | None = None
    for variant in variants:
        extra = {"variant": variant} if variant else {}
        try:
            return load_pretrained(loader, model_id, what, option, **kwargs, **extra)
        except ModelUnavailableError as exc:
            first = first or exc
    assert first is not None
    raise first
