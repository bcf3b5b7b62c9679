"""SSIM, PSNR and resizing against hand-worked values."""

import math

import numpy as np
import pytest

from lsc.metrics.image import psnr, resize, ssim


def test_psnr_hand_values():
    ref = np.zeros((4, 4, 3))
    assert psnr(ref, np.full((4, 4, 3), 0.1)) == pytest.approx(20.0)  # mse 0.01 -> 10 log10(1/0.01)
    assert psnr(ref, ref) == math.inf
    with pytest.raises(ValueError):
        psnr(ref, np.zeros((2, 2, 3)))


def test_ssim_of_constant_images_is_luminance_term():
    # constant images: variances and covariance are 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.5, 0.25, 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((16, 16, 3), a), np.full((16, 16, 3), b)) == pytest.approx(expected)
    # and a window larger than the image shrinks instead of failing
    assert ssim(np.full((4, 4, 3), a), np.full((4, 4, 3), b)) == pytest.approx(expected)


def test_ssim_identity_and_negation():
    x = np.random.default_rng(0).random((20, 20, 3))
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, 1.0 - x) < 0.0  # anti-correlated structure


def test_resize_box_is_area_mean():
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(resize(a, 2, 2, box=True), [[2.5, 4.5], [10.5, 12.5]])
    rgb = np.stack([a, 2 * a, 3 * a], axis=-1)
    out = resize(rgb, 2, 2, box=True)
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[..., 2], 3 * np.array([[2.5, 4.5], [10.5, 12.5]]))
