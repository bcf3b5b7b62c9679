"""colourfulness: Hasler and Suesstrunk's colourfulness of Bob's image, a step metric needing no model."""

import numpy as np

from lsc.metrics.registry import StepBatch, StepMetric


def _colourfulness(batch: StepBatch) -> list[dict[str, float]]:
    out = []
    for image in batch.images:  # (H, W, 3) in [0, 1]
        r, g, b = (image[..., c].astype(np.float64) * 255 for c in range(3))
        rg, yb = r - g, 0.5 * (r + g) - b
        std = np.hypot(rg.std(), yb.std())
        mean = np.hypot(rg.mean(), yb.mean())
        out.append({"colourfulness": float(std + 0.3 * mean)})
    return out


COLOURFULNESS = StepMetric(
    "colourfulness",
    needs="nothing but Bob's image",
    cost="a few array operations per image",
    columns=("colourfulness",),  # higher is more colourful
    compute=_colourfulness,
    backends=("*",),  # any backend
)
