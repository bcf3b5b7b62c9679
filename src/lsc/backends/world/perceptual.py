"""The world's perceptual metric: the LPIPS formula on the attribute classifier's feature trunk.

As LPIPS reads an ImageNet classifier's features, this reads the features of a network trained to
recognise the world's backgrounds, shapes, colours and sizes. Per stage l, features are normalised to
unit length over channels, their squared difference is summed over channels (LPIPS' "baseline"
variant, no learned linear weights) and averaged over space; the stages are summed. It is not
LPIPS-AlexNet, so its numbers are on their own scale: the success threshold is calibrated for this
world (see `lsc.backends.world.evaluate.calibrate_threshold`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from lsc.backends.world.nets import AttributeNet


def _normalise(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class WorldPerceptual:
    """Perceptual distances in one batched call; a reference's features are computed once."""

    def __init__(self, network: AttributeNet):
        self.net = network
        self.feature_calls = 0  # images pushed through the trunk, for benchmarks

    @torch.inference_mode()
    def _features(self, images: np.ndarray | Sequence[np.ndarray]) -> list[torch.Tensor]:
        arr = np.asarray(images, dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2) * 2 - 1
        self.feature_calls += len(arr)
        return [_normalise(f) for f in self.net.features(x)]

    def reference(self, image: np.ndarray) -> list[torch.Tensor]:
        return self._features(image)

    @torch.inference_mode()
    def distances(self, reference: list[torch.Tensor], images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros(0, np.float32)
        feats = self._features(images)
        total = torch.zeros(len(images))
        for r, f in zip(reference, feats):
            total += (f - r).pow(2).sum(dim=1).mean(dim=(1, 2))
        return total.numpy().astype(np.float32)
