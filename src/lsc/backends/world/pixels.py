"""The world's pixel primitives: textured backgrounds and shape masks, drawn at the renderer's
supersampled size (scenes.render places them and downsamples)."""

from __future__ import annotations

import numpy as np


def background(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = np.zeros((n, n, 3), np.float32)
    if name == "sky":
        top, bottom = np.array([0.35, 0.60, 0.95]), np.array([0.70, 0.85, 1.0])
        img[:] = top * (1 - yy[..., None]) + bottom * yy[..., None]
        for _ in range(rng.integers(1, 4)):  # soft clouds
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0.05, 0.5), rng.uniform(0.06, 0.14)
            d = ((xx - cx) / 1.8) ** 2 + (yy - cy) ** 2
            img += (np.exp(-d / (r * r)) * 0.35)[..., None]
    elif name == "grass":
        img[:] = (0.20, 0.58, 0.18)
        img += rng.normal(0, 0.05, (n, n, 1)) * np.array([0.5, 1.0, 0.4])
        stripes = np.sin(xx * rng.uniform(60, 90) + rng.uniform(0, 6)) * 0.04
        img += stripes[..., None] * np.array([0.3, 1.0, 0.3])
    elif name == "sand":
        img[:] = (0.88, 0.78, 0.55)
        img += rng.normal(0, 0.035, (n, n, 1))
        img += (np.sin(yy * rng.uniform(20, 35) + xx * 4 + rng.uniform(0, 6)) * 0.04)[..., None]
    elif name == "night":
        img[:] = (0.04, 0.05, 0.18)
        img += (yy * 0.08)[..., None] * np.array([0.2, 0.3, 1.0])
        stars = rng.random((n, n)) > 0.9985
        img[stars] = (0.95, 0.95, 0.8)
    elif name == "brick":
        img[:] = (0.62, 0.24, 0.16)
        img += rng.normal(0, 0.03, (n, n, 1))
        rows = 6.0
        row = np.floor(yy * rows)
        mortar_h = (yy * rows - row) < 0.14
        offset = (row % 2) * 0.5 / 3
        mortar_v = ((xx + offset) * 3 % 1.0) < 0.05
        img[mortar_h | mortar_v] = (0.78, 0.74, 0.68)
    else:
        raise ValueError(f"unknown background {name!r}")
    return np.clip(img, 0, 1)


def shape_mask(shape: str, cx: float, cy: float, r: float, n: int) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] + 0.5
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if shape == "square":
        h = r * 0.9
        return (np.abs(xx - cx) <= h) & (np.abs(yy - cy) <= h)
    if shape == "triangle":  # upright, apex on top
        top, bottom = cy - r, cy + r * 0.85
        inside_y = (yy >= top) & (yy <= bottom)
        half_width = (yy - top) / (bottom - top) * r * 1.1
        return inside_y & (np.abs(xx - cx) <= half_width)
    raise ValueError(f"unknown shape {shape!r}")
