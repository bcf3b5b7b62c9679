"""Training the attribute classifier (the perceptual metric's trunk and the attribute reader) and the
perceptual metric's channel weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lsc.backends.world import STEP_CAPS, nets, scenes
from lsc.backends.world.nets import to_tensor
from lsc.backends.world.training import loop
from lsc.backends.world.training.data import attribute_targets, perturb_scene, remove_object


def build_classifier() -> nets.AttributeNet:
    return nets.AttributeNet(nets.ClassifierConfig())


def classifier_loss(model: nets.AttributeNet, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(images)
    loss = F.cross_entropy(out["background"], targets["background"])
    for key in ("shape", "color", "size"):
        loss = loss + F.cross_entropy(out[key].flatten(0, 1), targets[key].flatten(), ignore_index=-100)
    return loss


def train_classifier(out_dir: Path, minutes: float, seed: int = 0, batch_size: int = 64, max_steps: int = STEP_CAPS["classifier"]) -> dict:
    torch.manual_seed(seed + loop.PART_ID["classifier"])  # the initial weights, before any resume
    model = build_classifier()

    def loss_fn(rng, gen, step):
        batch = scenes.sample_batch(rng, batch_size)
        images = to_tensor(batch.images)
        # Light noise and blur augmentation: the classifier must also read Bob's (imperfect) images.
        if rng.random() < 0.5:
            images = images + torch.randn(images.shape, generator=gen) * float(rng.uniform(0, 0.15))
        if rng.random() < 0.3:
            images = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        return classifier_loss(model, images, attribute_targets(batch.scenes)), {}

    return loop.train_loop("classifier", out_dir, minutes, seed, {"model": model}, list(model.parameters()), loss_fn, 1e-3, max_steps)


def _camera(images: np.ndarray, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
    """Imperfections of a generated picture: light blur, noise, 8-bit levels."""
    x = to_tensor(images)
    if rng.random() < 0.5:
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 0.5 + x * 0.5
    x = x + torch.randn(x.shape, generator=gen) * float(rng.uniform(0, 0.06))
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def train_perceptual(out_dir: Path, minutes: float, seed: int = 0, batch_size: int = 64, max_steps: int = STEP_CAPS["perceptual"],
                     classifier_from: Path | None = None) -> dict:
    """The perceptual metric's linear weights, learnt as LPIPS learnt its own from human judgements.

    LPIPS weights each channel of its trunk by how much people notice differences there (2AFC
    judgements). The world's judge is its ground truth: of two pictures, the one showing the same
    scene as the reference (another seed: other textures and jitter) must be closer than one showing
    a changed scene (one attribute, object or background different). Without these weights the
    distance is dominated by textures and jitter: a re-rendering of the very same scene was often
    further than the scene with an object missing. The JND term (`JNDCut`) makes that hold across
    scenes, not only against one reference, so one success threshold can mean success everywhere.
    """
    from lsc.backends.world.perceptual import LinearWeights

    classifier = build_classifier()
    if classifier_from is not None:
        classifier.load_state_dict({k: v.float() for k, v in load_file(str(Path(classifier_from) / "attributes.safetensors")).items()})
    else:
        tensors = load_file(str(out_dir / "classifier" / "checkpoint.safetensors"))
        classifier.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    classifier.eval().requires_grad_(False)
    lin = LinearWeights(classifier.cfg.channels)
    cut = JNDCut()

    def loss_fn(rng, gen, step):
        refs = [scenes.sample_scene(rng) for _ in range(batch_size)]
        same = [dataclasses.replace(s, seed=int(rng.integers(2**31))) for s in refs]
        diff = [perturb_scene(s, rng) for s in refs]
        removed = [remove_object(s, rng) for s in refs]
        with torch.no_grad():
            f_ref = classifier.features(to_tensor(np.stack([scenes.render(s) for s in refs])))
            f_same, f_diff, f_removed = (
                classifier.features(_camera(np.stack([scenes.render(s) for s in batch]), rng, gen)) for batch in (same, diff, removed)
            )
        d_same, d_diff, d_removed = lin.distance(f_ref, f_same), lin.distance(f_ref, f_diff), lin.distance(f_ref, f_removed)
        two_afc = F.softplus(-lin.scale() * (d_diff - d_same)).mean()
        jnd = cut.loss(d_same, d_diff, d_removed)
        metrics = {"agree": float((d_diff > d_same).float().mean()), "jnd": float(jnd.detach()), "cut": float(cut.bias.detach())}
        return two_afc + jnd, metrics

    params = list(lin.parameters()) + list(cut.parameters())
    return loop.train_loop("perceptual", out_dir, minutes, seed, {"lin": lin, "cut": cut}, params, loss_fn, 3e-2, max_steps,
                       extra_state={"objective": "2AFC + JND"})


class JNDCut(torch.nn.Module):
    """One distance for every scene that separates "the same scene" from "a changed scene".

    LPIPS was checked on two kinds of human judgement: which of two distortions is closer (2AFC) and
    whether a pair differs at all (JND). 2AFC alone ranks pictures against one reference, so a busy
    scene's re-rendering could be further than a quiet scene with an object missing, and no single
    success threshold could hold across scenes. This logistic term asks every re-rendering to fall
    under one learnt cut and every changed scene (one attribute changed, or an object removed) above it.
    It trains beside the channel weights and is not shipped: the threshold is derived afterwards from
    Bob's images (evaluate.derive_threshold).
    """

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.full((), 0.5))
        self.log_scale = torch.nn.Parameter(torch.zeros(()))

    def loss(self, d_same: torch.Tensor, d_changed: torch.Tensor, d_removed: torch.Tensor) -> torch.Tensor:
        k = self.log_scale.exp() * 4.0
        above = 0.5 * (F.softplus(-k * (d_changed - self.bias)).mean() + F.softplus(-k * (d_removed - self.bias)).mean())
        return F.softplus(k * (d_same - self.bias)).mean() + above
