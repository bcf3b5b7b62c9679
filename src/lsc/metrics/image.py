"""Pixel-level image metrics (SSIM, PSNR) and resizing, in numpy only.

The papers report LPIPS, and tried SSIM; PSNR is the communication community's habit. These run on
every Bob image, so they stay dependency-free and cheap. Images are float arrays (H, W, 3) in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def psnr(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB; +inf for identical images."""
    ref, img = _pair(reference, image)
    mse = float(np.mean((ref - img) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


def _filter_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation of (H, W, C) with kernel k, 'valid' region only."""
    size = len(k)
    h, w = x.shape[0] - size + 1, x.shape[1] - size + 1
    rows = sum(k[i] * x[i : i + h] for i in range(size))
    return sum(k[j] * rows[:, j : j + w] for j in range(size))


def ssim(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004), Gaussian window, channels averaged.

    Constants K1=0.01, K2=0.03 and the 11x11 sigma-1.5 window are the paper's; statistics use the
    population (biased) variance; the mean is over the 'valid' region. For images smaller than the
    window, the window shrinks to the largest odd size that fits.
    """
    ref, img = _pair(reference, image)
    if ref.ndim == 2:
        ref, img = ref[..., None], img[..., None]
    size = min(win_size, ref.shape[0], ref.shape[1])
    if size % 2 == 0:
        size -= 1
    size = max(size, 1)
    k = _gaussian_kernel(size, sigma)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _filter_valid(ref, k), _filter_valid(img, k)
    sxx = _filter_valid(ref * ref, k) - mu_x**2
    syy = _filter_valid(img * img, k) - mu_y**2
    sxy = _filter_valid(ref * img, k) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def resize(image: np.ndarray, height: int, width: int, box: bool = False) -> np.ndarray:
    """Resize a float image (H, W[, C]) or map with PIL per channel: bilinear with antialiasing, or box (area mean)."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.shape[:2] == (height, width):
        return arr.copy()
    resample = Image.Resampling.BOX if box else Image.Resampling.BILINEAR
    if arr.ndim == 2:
        return np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize((width, height), resample), dtype=np.float32)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., c])).resize((width, height), resample)) for c in range(arr.shape[2])]
    return np.stack(channels, axis=-1).astype(np.float32)


def _pair(reference: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    img = np.asarray(image, dtype=np.float64)
    if ref.shape != img.shape:
        raise ValueError(f"image shapes differ: {ref.shape} vs {img.shape}; resize first")
    return ref, img
