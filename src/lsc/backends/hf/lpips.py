"""LPIPS (Zhang et al. 2018) with AlexNet or VGG16 trunks built in plain torch (no torchvision).

The trunks use torchvision's module layout, so torchvision-format state dicts (`alexnet-owt-7be5be79.pth`,
`vgg16-397923af.pth`, as found in the torch hub cache) load as they are; the linear calibration layers
load the lpips project's v0.1 weights (`alex.pth` / `vgg.pth`, BSD-2, keys `lin0.model.1.weight` ...).
The formula: scale the [-1, 1] input, take five ReLU feature maps, normalise each over channels,
square the differences, weight channels with the linear layer, average over space, sum over layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lsc.errors import ConfigError, ModelUnavailableError

NETS = ("alex", "vgg")
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# Files torchvision writes to the torch hub cache for the ImageNet backbones.
TORCHVISION_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
LPIPS_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/{net}.pth"


def _alex_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            c_in = int(v)
    return nn.Sequential(*layers)


# Slice ends (exclusive) into `features` after each of the five ReLUs LPIPS reads (as in lpips' pn module).
_SLICES = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30)}


class Trunk(nn.Module):
    """AlexNet / VGG16 `features` with torchvision's indices; returns the five LPIPS ReLU outputs."""

    def __init__(self, net: str) -> None:
        super().__init__()
        if net not in NETS:
            raise ConfigError(f"lpips net must be one of {', '.join(NETS)}, not {net!r}")
        self.net = net
        self.features = _alex_features() if net == "alex" else _vgg16_features()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        start = 0
        for end in _SLICES[self.net]:
            for layer in self.features[start:end]:
                x = layer(x)
            outs.append(x)
            start = end
        return outs


class LinearLayers(nn.Module):
    """The five 1x1 convolutions (no bias) of LPIPS v0.1, attribute names as in the lpips project."""

    def __init__(self, net: str) -> None:
        super().__init__()
        for k, c in enumerate(CHANNELS[net]):
            setattr(self, f"lin{k}", nn.Conv2d(c, 1, kernel_size=1, bias=False))

    def layer(self, k: int) -> nn.Conv2d:
        return getattr(self, f"lin{k}")


def normalize_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit length over channels, as lpips.normalize_tensor."""
    return x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + eps)


class LPIPSNet(nn.Module):
    """LPIPS v0.1: distance(x0, x1) for images in [-1, 1]; features can be computed once and reused."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        self.trunk = Trunk(net)
        self.lins = LinearLayers(net)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised feature maps of a batch in [-1, 1]."""
        return [normalize_channels(f) for f in self.trunk((x - self.shift) / self.scale)]

    def distance_from_features(self, f0: list[torch.Tensor], f1: list[torch.Tensor]) -> torch.Tensor:
        """(B,) distances; f0 may have batch 1 (a cached reference) and broadcasts."""
        total = None
        for k, (a, b) in enumerate(zip(f0, f1)):
            d = self.lins.layer(k)((a - b) ** 2).mean(dim=(2, 3))[:, 0]
            total = d if total is None else total + d
        assert total is not None
        return total

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return self.distance_from_features(self.features(x0), self.features(x1))


def _load_state(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign files (EOFError, UnpicklingError, ...)
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ModelUnavailableError(f"cannot read LPIPS weights file {str(path)!r}: {reason}") from exc
    if not isinstance(state, Mapping):
        raise ModelUnavailableError(f"LPIPS weights file {str(path)!r} holds no state dict")
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    return state


def _torch_hub_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_backbone_weights(net: str, path: str | None) -> Path:
    """The torchvision-format backbone file: the given path, else the torch hub cache."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelUnavailableError(f"LPIPS backbone weights file {str(p)!r} does not exist")
        return p
    cached = _torch_hub_dir() / TORCHVISION_FILES[net]
    if cached.is_file():
        return cached
    raise ModelUnavailableError(
        f"LPIPS {net} backbone weights ({TORCHVISION_FILES[net]}) not found in {cached.parent}: copy torchvision's "
        f"ImageNet weights there (https://download.pytorch.org/models/{TORCHVISION_FILES[net]}) or set backend "
        f"option lpips_backbone=/path/to/{TORCHVISION_FILES[net]}"
    )


def find_linear_weights(net: str, path: str | None) -> Path:
    """The lpips v0.1 linear weights: the given path, an installed lpips package's copy, or the hub cache."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelUnavailableError(f"LPIPS linear weights file {str(p)!r} does not exist")
        return p
    candidates = [_torch_hub_dir() / f"lpips_v0.1_{net}.pth", _torch_hub_dir() / "lpips" / "v0.1" / f"{net}.pth"]
    import importlib.util

    spec = importlib.util.find_spec("lpips")  # the package's data file, without importing it (it imports torchvision)
    if spec is not None and spec.origin:
        candidates.insert(0, Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth")
    for c in candidates:
        if c.is_file():
            return c
    raise ModelUnavailableError(
        f"LPIPS v0.1 linear weights for {net} not found: download {LPIPS_URL.format(net=net)} (BSD-2, 6 KB) and set "
        f"backend option lpips_linear=/path/to/{net}.pth (or put it at {candidates[-1]})"
    )


def load_lpips(
    net: str = "alex",
    backbone: str | Path | Mapping[str, torch.Tensor] | None = None,
    linear: str | Path | Mapping[str, torch.Tensor] | None = None,
) -> LPIPSNet:
    """An LPIPSNet with backbone (torchvision format) and linear (lpips format) weights from files or dicts."""
    model = LPIPSNet(net)
    b_state = backbone if isinstance(backbone, Mapping) else _load_state(find_backbone_weights(net, backbone and str(backbone)))
    feats = {k[len("features.") :]: v for k, v in b_state.items() if k.startswith("features.")}
    if not feats:
        raise ModelUnavailableError(f"LPIPS backbone weights for {net} have no 'features.*' keys (torchvision format expected)")
    try:
        model.trunk.features.load_state_dict(feats, strict=True)
    except RuntimeError as exc:
        raise ModelUnavailableError(f"LPIPS backbone weights do not fit {net}: {' '.join(str(exc).split())[:200]}") from exc
    l_state = linear if isinstance(linear, Mapping) else _load_state(find_linear_weights(net, linear and str(linear)))
    lin: dict[str, torch.Tensor] = {}
    for k in range(len(CHANNELS[net])):
        for key in (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight", f"lin{k}.weight", f"lins.{k}.model.1.weight"):
            if key in l_state:
                lin[f"lin{k}.weight"] = l_state[key]
                break
        else:
            raise ModelUnavailableError(f"LPIPS linear weights for {net} lack layer lin{k} (expected key lin{k}.model.1.weight)")
    try:
        model.lins.load_state_dict(lin, strict=True)
    except RuntimeError as exc:
        raise ModelUnavailableError(f"LPIPS linear weights do not fit {net}: {' '.join(str(exc).split())[:200]}") from exc
    return model


class _Reference:
    """A reference image with its LPIPS features cached per comparison size."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.features: dict[tuple[int, int], list[torch.Tensor]] = {}


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, H, W, 3) or (H, W, 3) in [0, 1] -> (B, 3, H, W) in [-1, 1], float32."""
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ConfigError(f"images must have shape (B, H, W, 3), got {tuple(arr.shape)}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).to(device)
    return t * 2.0 - 1.0


class LpipsPerceptual:
    """The Perceptual interface on LPIPSNet: reference features computed once per size, batched distances.

    `size` None: LPIPS at the size of Bob's images, the reference resized (bilinear, antialiased) to it.
    `size` S: both images resized the same way to S x S first, as the research code's lpips_score.py
    does (Resize((256, 256))); LPIPS depends on resolution, and the papers' 0.6 threshold belongs to 256.
    """

    def __init__(self, model: LPIPSNet, device: str | torch.device = "cpu", batch_size: int = 32,
                 size: int | None = None, antialias: bool = True) -> None:
        self.model = model.to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        if size is not None and (not isinstance(size, int) or size < 16):
            raise ConfigError(f"lpips_size must be an integer of at least 16 pixels, not {size!r}")
        self.size = size
        self.antialias = bool(antialias)  # False: lpips_score.py's tensor Resize as torchvision < 0.17 did it

    def reference(self, image: np.ndarray) -> Any:
        return _Reference(np.asarray(image, dtype=np.float32))

    def _resize(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=self.antialias)

    def _ref_features(self, ref: _Reference, size: tuple[int, int]) -> list[torch.Tensor]:
        if size not in ref.features:
            x = self._resize(to_tensor(ref.image, self.device), size)
            with torch.no_grad():
                ref.features[size] = self.model.features(x)
        return ref.features[size]

    def distances(self, reference: Any, images: np.ndarray) -> np.ndarray:
        if not isinstance(reference, _Reference):
            reference = self.reference(reference)
        x = to_tensor(images, self.device)
        size = (self.size, self.size) if self.size else tuple(x.shape[-2:])
        f_ref = self._ref_features(reference, size)
        out = []
        with torch.no_grad():
            for i in range(0, x.shape[0], self.batch_size):
                chunk = self._resize(x[i : i + self.batch_size], size)
                out.append(self.model.distance_from_features(f_ref, self.model.features(chunk)))
        return torch.cat(out).double().cpu().numpy() if out else np.zeros((0,), dtype=np.float64)
