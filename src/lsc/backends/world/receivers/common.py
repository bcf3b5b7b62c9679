"""What every receiver shares: prompts per sampler pass, the 8-bit images it returns, and how its files
are found in a weights folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from lsc.backends.world.models import check_text_encoder
from lsc.errors import ConfigError

CHUNK = 16  # prompts per sampler pass


def to_unit(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) float32 in [0, 1], quantised to 8-bit levels.

    Bob's images are 8-bit pictures: quantising also makes them exactly reproducible across batch
    compositions, whose float rounding differs in the last bits.
    """
    x = ((images.clamp(-1, 1) + 1) * 127.5).round() / 255.0
    return x.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32)



def receiver_meta(folder: Path, meta_file: str, required: Sequence[str], if_missing: Callable[[list[str]], str],
                  text_key: str, made_with: str, fix: str) -> dict[str, Any]:
    """A receiver's meta file in `folder`, once every `required` file is there (else the one-line
    ConfigError `if_missing(missing files)`) and the text encoder it records under `text_key` is the
    folder's own (else "<made_with> another text encoder than this folder's ...; <fix>")."""
    missing = [f for f in required if not (folder / f).exists()]
    if missing:
        raise ConfigError(if_missing(missing))
    meta = json.loads((folder / meta_file).read_text())
    check_text_encoder(folder, meta.get(text_key, {}).get("bob_text_sha256"), made_with, fix)
    return meta
