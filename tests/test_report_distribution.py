"""Distribution metrics of Bob's images: FID/KID/IS agree with torchmetrics on the same (injected, tiny)
feature extractor; the world's extractor separates real scenes from noise; the report says when the
sample is too small and names missing Inception weights in one line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lsc.report import distribution as dist

torch = pytest.importorskip("torch")


class TinyFeatures(torch.nn.Module):
    """A fixed random projection of the pixels: the feature extractor torchmetrics is handed in tests."""

    num_features = 6

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w", torch.randn(3 * 8 * 8, self.num_features, generator=g) / 20)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return x.float().flatten(1) @ self.w  # torchmetrics hands a custom module the images as given


def _images(seed: int, n: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.random((n, 8, 8, 3)) * 0.7 + shift, 0, 1).astype(np.float32)


def _feats(module: TinyFeatures, images: np.ndarray) -> np.ndarray:
    return module(torch.from_numpy(images).permute(0, 3, 1, 2)).double().numpy()


def test_fid_and_kid_match_torchmetrics() -> None:
    fid_mod = pytest.importorskip("torchmetrics.image.fid")
    kid_mod = pytest.importorskip("torchmetrics.image.kid")
    module = TinyFeatures()
    real, fake = _images(1, 12), _images(2, 12, shift=0.2)
    fid_tm = fid_mod.FrechetInceptionDistance(feature=module, normalize=True)
    kid_tm = kid_mod.KernelInceptionDistance(feature=module, normalize=True, subsets=1, subset_size=12)
    for metric in (fid_tm, kid_tm):
        metric.update(torch.from_numpy(real).permute(0, 3, 1, 2), real=True)
        metric.update(torch.from_numpy(fake).permute(0, 3, 1, 2), real=False)
    fr, ff = _feats(module, real), _feats(module, fake)
    assert dist.fid(fr, ff) == pytest.approx(float(fid_tm.compute()), rel=1e-4)
    assert dist.kid(fr, ff) == pytest.approx(float(kid_tm.compute()[0]), rel=1e-4)
    assert dist.fid(fr, fr) == pytest.approx(0.0, abs=1e-8)


def test_fid_exact_with_fewer_images_than_dimensions() -> None:
    """The SVD form equals the sqrtm definition even when the covariances are singular (n < d)."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 9)), rng.normal(size=(5, 9)) + 0.5
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * scipy_linalg.sqrtm(s1 @ s2).real)
    assert dist.fid(a, b) == pytest.approx(ref, rel=1e-6)


def test_inception_score_by_hand() -> None:
    # two confident, different classes: KL = log 2 each -> IS 2; identical posteriors -> IS 1
    assert dist.inception_score(np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(2.0)
    assert dist.inception_score(np.array([[0.3, 0.7], [0.3, 0.7]])) == pytest.approx(1.0)


def test_world_features_tell_scenes_from_noise() -> None:
    from lsc.backends.world import scenes

    ex = dist.WorldFeatures()
    real = np.stack([scenes.render(scenes.world_scene(i, seed=5)) for i in range(16)])
    other = np.stack([scenes.render(scenes.world_scene(i, seed=6)) for i in range(16)])
    noise = np.random.default_rng(0).random(real.shape).astype(np.float32)
    fr, pr = ex(real)
    fo, _ = ex(other)
    fn, pn = ex(noise)
    assert fr.shape == (16, ex.dim) and pr.shape == (16, 320) and np.allclose(pr.sum(1), 1.0)
    assert dist.fid(fr, fo) < dist.fid(fr, fn)  # other scenes are closer than noise
    assert dist.inception_score(pr) > dist.inception_score(pn)


def test_cells_jackknife_and_small_sample_note(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(6, 4))
    fakes = {("random", "final"): (real + 0.1, np.full((6, 3), 1 / 3)), ("nouns", "3"): (real + 2.0, np.eye(3)[[0, 1, 2, 0, 1, 2]])}
    cells = dist.metric_cells(real, fakes)
    assert [c.scheme for c in cells] == ["random", "nouns"]
    c = cells[1]
    assert c.n == 6 and c.fid[0] == pytest.approx(dist.fid(real, real + 2.0)) and c.fid[1] <= c.fid[0] <= c.fid[2]
    assert cells[0].inception[0] == pytest.approx(1.0) and c.inception[0] == pytest.approx(3.0)
    head, body = dist.table(cells, "world")
    assert head[3] == "FID-world" and body[0][1] == "the last word" and body[1][1] == "3 words"


def test_interval_is_centred_on_the_estimate_where_a_bootstrap_is_biased() -> None:
    """Two samples of one distribution: resampling with repeats inflates FID (the percentile bootstrap's
    interval lay above the estimate on a real run); the jackknife interval is centred on it."""
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
    (cell,) = dist.metric_cells(real, {("random", "final"): (fake, np.full((60, 3), 1 / 3))})
    est, lo, hi = cell.fid
    assert est == pytest.approx(dist.fid(real, fake)) and lo < est < hi
    assert hi - est == pytest.approx(est - lo, rel=1e-9)
    boot = [dist.fid(real[ix], fake[ix]) for ix in rng.integers(0, 60, size=(200, 60))]
    assert np.quantile(boot, 0.025) > est  # why not a bootstrap: its whole interval misses the estimate


def test_missing_inception_weights_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "torch_fidelity" else real_find(name, *a))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    ex, why = dist.extractor_for({"backend": "hf"})
    assert ex is None and "\n" not in why and dist.INCEPTION_WEIGHTS in why and str(tmp_path) in why
    ex, why = dist.extractor_for({"backend": "lsc.protocol.testing:load_fake_backend"})
    assert ex is None and "no feature extractor" in why


@pytest.fixture(scope="module")
def world_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny stored world study (3 scenes, random and nouns, no oracle), shared by the tests below."""
    from lsc.config import load_config
    from lsc.runner.study import run_study

    cfg = load_config(None, ["images.count=3", "schemes=[random, nouns]", "oracle=false"])
    out = tmp_path_factory.mktemp("world") / "run"
    run_study(cfg, out, progress=False)
    return out


def test_world_run_report_section(world_run: Path) -> None:
    """On a stored world run: a FID-world table and the too-small note (3 images < 128 dimensions)."""
    from lsc.report.data import load_run

    data = load_run(world_run)
    cells, note = dist.run_cells(data, "", dist.WorldFeatures())
    assert {(c.scheme, c.step) for c in cells} == {("random", "3"), ("random", "final"), ("nouns", "3"), ("nouns", "final")}
    assert all(c.n == 3 and not math.isnan(c.fid[0]) for c in cells)
    assert "too small for FID" in note and "3 images per set against 128" in note


def test_embedding_maps(world_run: Path) -> None:
    """--embeddings: one point per stored step, deterministic maps, both figures in the report."""
    pytest.importorskip("sklearn")
    import sqlite3

    from lsc.report import build_report, embeddings
    from lsc.report.data import load_run

    data = load_run(world_run)
    pts = embeddings.points(data, "")
    db = sqlite3.connect(world_run / "results.sqlite")
    assert len(pts) == db.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
    db.close()
    x = embeddings.world_text_embedding(data.config)([p["prompt"] for p in pts])
    assert x.shape == (len(pts), 128)
    full = [i for i, p in enumerate(pts) if p["last"]]
    empty = [i for i, p in enumerate(pts) if p["step"] == 0]
    assert np.allclose(x[empty[0]], x[empty[-1]])  # every empty prompt is the same point
    a, b = embeddings.project(x), embeddings.project(x)
    assert np.array_equal(a[1], b[1]) and a[0].shape == (len(pts), 2)  # seeded t-SNE repeats
    html = build_report(world_run, strips=0, embeddings=True).read_text()
    assert "<h2>Embedding maps</h2>" in html and html.count("Bob&#x27;s text-encoder embedding of each partial prompt: PCA") >= 1
    assert {p.name for p in (world_run / "report").glob("embeddings_*.png")} == {"embeddings_text.png", "embeddings_images.png"}
    assert "FID-world" in html and "too small for FID" in html
    assert full  # the stars have points
