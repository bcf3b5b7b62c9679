"""The world's perceptual metric: the LPIPS formula on the attribute classifier's feature trunk.

As LPIPS reads an ImageNet classifier's features, this reads the features of a network trained to
recognise the world's backgrounds, shapes, colours and sizes. Per stage l, features are normalised to
unit length over channels, their squared difference is weighted per channel by learnt non-negative
linear weights (LPIPS' "lin" variant; trained in `train.train_perceptual` from the world's own
same-scene / changed-scene judgements, as LPIPS trained its own from people's), summed over channels
and averaged over space; the stages are summed. Weights without linear layers use LPIPS' "baseline"
variant (all ones). It is not LPIPS-AlexNet, so its numbers are on their own scale: the success
threshold is derived for this world from what success means (see `lsc.backends.world.evaluate.derive_threshold`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from lsc.backends.world.nets import AttributeNet, to_tensor


class LinearWeights(torch.nn.Module):
    """LPIPS' per-channel linear layers: non-negative weights (softplus), mean 1 over all channels so
    that the distance keeps the baseline's scale; `scale` is the 2AFC logistic's slope, for training."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.raw = torch.nn.ParameterList(torch.nn.Parameter(torch.full((c,), 0.5413)) for c in channels)  # softplus = 1
        self.log_scale = torch.nn.Parameter(torch.zeros(()))

    def weights(self) -> list[torch.Tensor]:
        w = [torch.nn.functional.softplus(r) for r in self.raw]
        mean = torch.cat(w).mean()
        return [x / mean for x in w]

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp() * 4.0

    def distance(self, a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for w, fa, fb in zip(self.weights(), a, b):
            total = total + ((normalise(fa) - normalise(fb)).pow(2) * w[None, :, None, None]).sum(1).mean(dim=(1, 2))
        return total


def normalise(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class WorldPerceptual:
    """Perceptual distances in one batched call; a reference's features are computed once."""

    def __init__(self, network: AttributeNet, channel_weights: list[torch.Tensor] | None = None):
        self.net = network
        self.channel_weights = channel_weights or [torch.ones(c) for c in network.cfg.channels]
        self.feature_calls = 0  # images pushed through the trunk, for benchmarks

    @torch.inference_mode()
    def _features(self, images: np.ndarray | Sequence[np.ndarray]) -> list[torch.Tensor]:
        x = to_tensor(np.asarray(images, dtype=np.float32))
        self.feature_calls += len(x)
        return [normalise(f) for f in self.net.features(x)]

    def reference(self, image: np.ndarray) -> list[torch.Tensor]:
        return self._features(image)

    @torch.inference_mode()
    def distances(self, reference: list[torch.Tensor], images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros(0, np.float32)
        feats = self._features(images)
        total = torch.zeros(len(images))
        for w, r, f in zip(self.channel_weights, reference, feats):
            total += ((f - r).pow(2) * w[None, :, None, None]).sum(dim=1).mean(dim=(1, 2))
        return total.numpy().astype(np.float32)
