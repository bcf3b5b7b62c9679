"""The hf backend: the papers' real models (BLIP, Stable Diffusion / LCM, CLIP / BERT attention, LPIPS).

Importing this package is cheap; transformers and diffusers are imported when the backend is loaded.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_hf_backend"]


def load_hf_backend(**options: Any) -> Any:
    """See lsc.backends.hf.backend.load_hf_backend."""
    from lsc.backends.hf.backend import load_hf_backend as _load

    return _load(**options)
