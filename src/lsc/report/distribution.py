"""Report-time distribution metrics of Bob's images: FID, KID and Inception Score, from the stored PNGs.

Per scheme and step k (the image after k words, the last one for shorter captions) the set of Bob's
images is compared with the set of originals of the same images:

- FID: ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)) of feature means and covariances. The
  trace of the matrix square root is computed exactly as the nuclear norm of X_r X_g^T / sqrt((n_r-1)(n_g-1))
  (X: centred features), an n x n SVD instead of a d x d sqrtm, so the n leave-one-out recomputations stay cheap.
- KID: the unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3 over all images (one subset).
- IS: exp(E_x KL(p(y|x) || p(y))) of the classifier's posteriors of Bob's images (one split).

These are the definitions torchmetrics implements; tests/test_report_distribution.py checks the numbers
against torchmetrics' FrechetInceptionDistance and KernelInceptionDistance on the same features.

Features: on the world backend the attribute classifier's last conv stage, averaged over space (128
dimensions), and as posteriors the scene class (background x the shape in each of the three slots, 320
classes, the product of the classifier's heads): **FID-world / KID-world / IS-world**, not comparable to
Inception FID. On hf: torchmetrics' Inception v3 (2048-d pool features, 1008 logits) when torch-fidelity and
its weights file are present, else one line says which weights are missing. Intervals: jackknife over
images (leave one image out of both sets; estimate +- 1.96 SE), not a bootstrap, whose repeated images
bias these set statistics (`lsc.report.stats.jackknife_ci`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from lsc.report.data import RunData
from lsc.report.stats import jackknife_ci

# Inception weights torchmetrics' FID feature extractor loads (through torch-fidelity) into torch hub's cache.
INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


class FeatureExtractor(Protocol):
    """Maps images (B, H, W, 3) in [0, 1] to features (B, d) and class posteriors (B, C)."""

    name: str  # how the report names the metrics' family, e.g. "FID-world"
    dim: int

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (n >= 2 each)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    xr, xg = real - real.mean(0), fake - fake.mean(0)
    nr, ng = len(real), len(fake)
    tr_r = float(np.sum(xr * xr)) / (nr - 1)
    tr_g = float(np.sum(xg * xg)) / (ng - 1)
    cross = float(np.linalg.svd(xr @ xg.T, compute_uv=False).sum()) / math.sqrt((nr - 1) * (ng - 1))
    return float(np.sum((real.mean(0) - fake.mean(0)) ** 2) + tr_r + tr_g - 2 * cross)


def kid(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased MMD^2 with the polynomial kernel (x.y/d + 1)^3 (Binkowski et al. 2018), all images as one subset."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    d = real.shape[1]
    k_rr = (real @ real.T / d + 1) ** 3
    k_gg = (fake @ fake.T / d + 1) ** 3
    k_rg = (real @ fake.T / d + 1) ** 3
    m = len(real)
    return float((k_rr.sum() - np.trace(k_rr) + k_gg.sum() - np.trace(k_gg)) / (m * (m - 1)) - 2 * k_rg.sum() / (m * m))


def inception_score(probs: np.ndarray) -> float:
    """exp(mean KL(p(y|x) || p(y))) of posteriors (B, C)."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    marginal = p.mean(0, keepdims=True)
    return float(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(marginal)), axis=1))))


@dataclass
class Cell:
    """One scheme at one step: the three metrics with jackknife intervals and the sample size."""

    scheme: str
    step: str  # "3" or "final"
    n: int
    fid: tuple[float, float, float]
    kid: tuple[float, float, float]
    inception: tuple[float, float, float]


def metric_cells(real: np.ndarray, fakes: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]) -> list[Cell]:
    """FID/KID/IS with jackknife intervals per (scheme, step); `real` rows align with each fake's."""
    cells = []
    for (scheme, step), (feats, probs) in fakes.items():
        n = len(feats)
        if n < 2:
            continue
        cells.append(Cell(
            scheme, step, n,
            jackknife_ci(n, lambda ix: fid(real[ix], feats[ix])),
            jackknife_ci(n, lambda ix: kid(real[ix], feats[ix])),
            jackknife_ci(n, lambda ix: inception_score(probs[ix])),
        ))
    return cells


# ---------------------------------------------------------------- feature extractors
class WorldFeatures:
    """The world's attribute classifier: last-stage features (128-d) and the scene-class posterior."""

    name = "world"

    def __init__(self, weights: str | None = None) -> None:
        from lsc.backends.world.models import load_models
        from lsc.backends.world.options import world_weights_dir

        self.net = load_models(str(world_weights_dir(weights))).classifier
        self.dim = int(self.net.cfg.channels[-1])

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from lsc.backends.world.nets import to_tensor

        with torch.no_grad():
            x = to_tensor(images)
            feats = self.net.features(x)[-1].mean(dim=(2, 3))
            out = self.net(x)
            bg = out["background"].log_softmax(-1)  # (B, 5)
            shape = out["shape"].log_softmax(-1)  # (B, 3 slots, 4)
            joint = bg[:, :, None, None, None] + shape[:, 0, None, :, None, None] \
                + shape[:, 1, None, None, :, None] + shape[:, 2, None, None, None, :]
            probs = joint.reshape(len(x), -1).exp()
        return feats.numpy().astype(np.float64), probs.numpy().astype(np.float64)


class TorchmetricsInception:
    """torchmetrics' FID Inception v3 (torch-fidelity's port of the TF graph): 2048-d pool features and logits."""

    name = "Inception"
    dim = 2048

    def __init__(self) -> None:
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048", "logits_unbiased"])

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        x = torch.from_numpy((np.asarray(images) * 255).round().astype(np.uint8)).permute(0, 3, 1, 2)
        with torch.no_grad():
            feats, logits = self.net(x)
        return feats.double().numpy(), logits.double().softmax(-1).numpy()


def extractor_for(config: dict[str, Any]) -> tuple[FeatureExtractor | None, str]:
    """The feature extractor for a run's backend, or None and one line saying why there is none."""
    backend = config.get("backend", "world")
    if backend == "world":
        try:
            return WorldFeatures((config.get("backend_options") or {}).get("weights")), ""
        except Exception as exc:  # noqa: BLE001 - the report goes on without this section
            return None, f"FID-world not computed: the world weights could not be loaded ({exc})."
    if backend == "hf":
        return _inception()
    return None, f"FID/KID/IS not computed: no feature extractor for backend {backend!r} (world and hf have one)."


def _inception() -> tuple[FeatureExtractor | None, str]:
    import importlib.util

    if importlib.util.find_spec("torchmetrics") is None or importlib.util.find_spec("torch_fidelity") is None:
        return None, ("FID/KID/IS not computed: torchmetrics' Inception feature extractor needs `pip install "
                      "torchmetrics torch-fidelity` and the weights " + INCEPTION_WEIGHTS + ".")
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS
    if not path.is_file():
        return None, (f"FID/KID/IS not computed: the Inception weights {INCEPTION_WEIGHTS} (torch-fidelity's FID "
                      f"Inception v3) are not at {path}; download them there once on a connected machine.")
    return TorchmetricsInception(), ""


# ---------------------------------------------------------------- from a run's stored images
def _load(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def run_cells(data: RunData, cond: str, extractor: FeatureExtractor, steps: Sequence[int] = (3,)) -> tuple[list[Cell], str]:
    """Cells for every scheme at each of `steps` words and the final step; returns them and a note ('' if none).

    Only images whose original and whose Bob's images are all stored take part (save_images: false
    leaves none).
    """
    from lsc.runner.folder import image_path, original_path

    originals = {i: original_path(data.run_dir, i) for i in data.image_order}
    originals = {i: p for i, p in originals.items() if p.is_file()}
    feature_cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}

    def features(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        todo = [p for p in paths if p not in feature_cache]
        if todo:
            f, pr = extractor(np.stack([_load(p) for p in todo]))
            feature_cache.update({p: (f[j], pr[j]) for j, p in enumerate(todo)})
        return (np.stack([feature_cache[p][0] for p in paths]), np.stack([feature_cache[p][1] for p in paths]))

    cells: list[Cell] = []
    for scheme in data.schemes:
        ids = [i for i in data.image_order if i in originals and data.steps.get((cond, scheme, i))
               and all((image_path(data.run_dir, r["image_key"])).is_file() for r in data.steps[(cond, scheme, i)])]
        if len(ids) < 2:
            continue
        real = features([originals[i] for i in ids])[0]
        fakes = {}
        for label, k in [(str(k), k) for k in steps] + [("final", None)]:
            paths = []
            for i in ids:
                rows = data.steps[(cond, scheme, i)]
                row = rows[-1] if k is None else [r for r in rows if r["step"] <= k][-1]
                paths.append(image_path(data.run_dir, row["image_key"]))
            fakes[(scheme, label)] = features(paths)
        cells += metric_cells(real, fakes)
    note = ""
    n = max((c.n for c in cells), default=0)
    if cells and n <= extractor.dim:
        note = (f"The sample is too small for FID to mean much: {n} images per set against {extractor.dim} feature "
                f"dimensions (the covariances are singular and FID is biased upwards at small n); KID is unbiased "
                f"but wide, read the intervals.")
    return cells, note


def fmt_ci(ci: tuple[float, float, float], digits: int = 3) -> str:
    est, lo, hi = ci
    if math.isnan(lo):
        return f"{est:.{digits}g}"
    return f"{est:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def table(cells: list[Cell], name: str) -> tuple[list[str], list[list[str]]]:
    """One row per scheme and step: FID, KID, IS (estimate [jackknife 95% interval])."""
    head = ["scheme", "after", "images", f"FID-{name}", f"KID-{name}", f"IS-{name}"] if name == "world" else \
        ["scheme", "after", "images", "FID", "KID", "IS"]
    body = [[c.scheme, f"{c.step} words" if c.step != "final" else "the last word", str(c.n), fmt_ci(c.fid),
             fmt_ci(c.kid), fmt_ci(c.inception)] for c in cells]
    return head, body

