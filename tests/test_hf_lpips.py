"""LPIPS of the hf backend: equal to an independent re-computation of the published formula on the same
random backbone, torchvision-format weights loading, cached reference, and clear missing-weight errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from hf_tiny import build_lpips_files, random_lpips_state
from lsc.backends.hf.lpips import LpipsPerceptual, load_lpips
from lsc.errors import ModelUnavailableError

# Torchvision's module indices of the conv layers and of the five ReLUs LPIPS reads, written out by hand.
ALEX_CONVS = {0: (4, 2), 3: (1, 2), 6: (1, 1), 8: (1, 1), 10: (1, 1)}  # index -> (stride, padding)
VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
VGG_TAPS_AFTER_CONV = [2, 4, 7, 10, 13]  # 1-based conv count after which the LPIPS ReLU is read


def reference_lpips(net: str, backbone: dict, linear: dict, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 written directly from the paper/lpips code with functional ops, no shared code."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def feats(x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - shift) / scale
        out = []
        if net == "alex":
            for idx, (stride, pad) in ALEX_CONVS.items():
                x = F.relu(F.conv2d(x, backbone[f"features.{idx}.weight"], backbone[f"features.{idx}.bias"], stride, pad))
                out.append(x)
                if idx in (0, 3):
                    x = F.max_pool2d(x, 3, 2)
            return out
        idx, convs = 0, 0
        for v in VGG_CFG:
            if v == "M":
                x = F.max_pool2d(x, 2, 2)
                idx += 1
                continue
            x = F.relu(F.conv2d(x, backbone[f"features.{idx}.weight"], backbone[f"features.{idx}.bias"], 1, 1))
            convs += 1
            idx += 2
            if convs in VGG_TAPS_AFTER_CONV:
                out.append(x)
        return out

    total = torch.zeros(x0.shape[0])
    for k, (a, b) in enumerate(zip(feats(x0), feats(x1))):
        na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = linear[f"lin{k}.model.1.weight"].view(-1)
        total = total + ((na - nb) ** 2 * w.view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
    return total


@pytest.mark.parametrize("net,size", [("alex", 64), ("vgg", 32)])
def test_lpips_matches_independent_formula(net: str, size: int) -> None:
    backbone, linear = random_lpips_state(net, seed=3)
    model = load_lpips(net, backbone, linear)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(3, 3, size, size, generator=g) * 2 - 1
    x1 = torch.rand(3, 3, size, size, generator=g) * 2 - 1
    with torch.no_grad():
        ours = model(x0, x1)
        ref = reference_lpips(net, backbone, linear, x0, x1)
    assert ours.shape == (3,)
    assert torch.all(ref > 0)
    assert torch.allclose(ours.double(), ref.double(), rtol=0, atol=1e-6)
    with torch.no_grad():  # identical images are at distance 0
        assert torch.allclose(model(x0, x0), torch.zeros(3), atol=1e-7)


def test_lpips_loads_torchvision_and_lpips_files(tmp_path) -> None:
    b, lin = build_lpips_files(tmp_path, "alex", seed=5)
    backbone, linear = random_lpips_state("alex", seed=5)
    model = load_lpips("alex", str(b), str(lin))
    assert torch.equal(model.trunk.features[3].weight, backbone["features.3.weight"])
    assert torch.equal(model.lins.lin4.weight, linear["lin4.model.1.weight"])


def test_perceptual_caches_reference_and_batches(tmp_path) -> None:
    backbone, linear = random_lpips_state("alex", seed=2)
    perc = LpipsPerceptual(load_lpips("alex", backbone, linear), batch_size=2)
    rng = np.random.default_rng(0)
    ref_img = rng.random((64, 64, 3)).astype(np.float32)
    imgs = rng.random((5, 64, 64, 3)).astype(np.float32)
    ref = perc.reference(ref_img)
    batched = perc.distances(ref, imgs)
    singles = np.array([perc.distances(ref, imgs[i : i + 1])[0] for i in range(5)])
    assert batched.shape == (5,)
    np.testing.assert_allclose(batched, singles, atol=1e-6)
    assert list(ref.features) == [(64, 64)]  # computed once, reused
    x0 = torch.from_numpy(ref_img).permute(2, 0, 1)[None] * 2 - 1
    x1 = torch.from_numpy(imgs).permute(0, 3, 1, 2) * 2 - 1
    np.testing.assert_allclose(batched, reference_lpips("alex", backbone, linear, x0.expand(5, -1, -1, -1), x1).numpy(), atol=1e-6)
    assert perc.distances(ref, ref_img[None])[0] == pytest.approx(0.0, abs=1e-7)
    # a reference of another size is resized to the compared images' size
    small = perc.distances(perc.reference(ref_img[::2, ::2]), imgs[:, ::2, ::2])
    assert small.shape == (5,) and np.all(small > 0)


def test_missing_lpips_weights_are_one_line_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ModelUnavailableError) as exc:
        load_lpips("alex", None, None)
    msg = str(exc.value)
    assert "\n" not in msg and "alexnet-owt-7be5be79.pth" in msg and "lpips_backbone" in msg
    backbone, _ = random_lpips_state("alex")
    with pytest.raises(ModelUnavailableError) as exc:
        load_lpips("alex", backbone, None)
    assert "lpips_linear" in str(exc.value) and "v0.1/alex.pth" in str(exc.value)
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_lpips("alex", str(tmp_path / "nope.pth"), None)
    _, vgg_linear = random_lpips_state("vgg")
    with pytest.raises(ModelUnavailableError, match="do not fit alex"):
        load_lpips("alex", backbone, vgg_linear)


def test_linear_weights_found_in_installed_lpips_package(tmp_path, monkeypatch) -> None:
    """`pip install lpips --no-deps` puts weights/v0.1/alex.pth beside the package: found without importing it."""
    import sys

    from lsc.backends.hf.lpips import find_linear_weights

    pkg = tmp_path / "site" / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported (it imports torchvision)')\n")
    _, linear = random_lpips_state("alex", seed=9)
    torch.save(linear, pkg / "weights" / "v0.1" / "alex.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "lpips", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert find_linear_weights("alex", None) == pkg / "weights" / "v0.1" / "alex.pth"
    backbone, _ = random_lpips_state("alex")
    model = load_lpips("alex", backbone, None)
    assert torch.equal(model.lins.lin2.weight, linear["lin2.model.1.weight"])


def test_lpips_size_resizes_both_images_the_same_way() -> None:
    """lpips_size=S: Bob's image and the reference both go to S x S (bilinear, antialiased) before LPIPS,
    as the research code's Resize((256, 256)); the distance then differs from LPIPS at Bob's size."""
    backbone, linear = random_lpips_state("alex", seed=4)
    net = load_lpips("alex", backbone, linear)
    perc = LpipsPerceptual(net, size=64)
    rng = np.random.default_rng(1)
    ref_img = rng.random((80, 100, 3)).astype(np.float32)
    imgs = rng.random((2, 48, 48, 3)).astype(np.float32)
    got = perc.distances(perc.reference(ref_img), imgs)

    def resized(a: np.ndarray) -> torch.Tensor:  # written out independently of lsc's helper
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2) * 2 - 1
        return F.interpolate(t, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)

    want = reference_lpips("alex", backbone, linear, resized(ref_img[None]).expand(2, -1, -1, -1), resized(imgs))
    assert np.all(want.numpy() > 0.01)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=0)
    at_bob_size = LpipsPerceptual(net).distances(ref_img, imgs)
    assert np.abs(at_bob_size - got).max() > 1e-3 * got.max()
    with pytest.raises(Exception, match="lpips_size"):
        LpipsPerceptual(net, size=8)
