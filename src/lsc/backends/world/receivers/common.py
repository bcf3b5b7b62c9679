"""What every receiver shares: prompts per sampler pass and the 8-bit images it returns."""

from __future__ import annotations

import numpy as np
import torch

CHUNK = 16  # prompts per sampler pass


def to_unit(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) float32 in [0, 1], quantised to 8-bit levels.

    Bob's images are 8-bit pictures: quantising also makes them exactly reproducible across batch
    compositions, whose float rounding differs in the last bits.
    """
    x = ((images.clamp(-1, 1) + 1) * 127.5).round() / 255.0
    return x.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32)

