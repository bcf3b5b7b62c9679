"""A tiny numpy backend for tests and benchmarks (the way diffusers tests with dummy components).

Its images are functions of the prompt's word set, computed exactly, so tests can work out expected
orders and distances by hand; it counts every call so tests can check what was (not) recomputed.
Not a model of anything: use the world backend for experiments.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np

from lsc.interfaces import (
    CAP_ALICE_ATTENTION,
    CAP_ALICE_GROUNDING,
    CAP_BOB_ATTENTION,
    CAP_BOB_CROSS_ATTENTION,
    CAP_GENERATOR,
    CAP_PERCEPTUAL,
    Backend,
)
from lsc.protocol.words import clean_words, stable_seed


class FakeGenerator:
    """Bob: the image of a prompt depends only on its set of words.

    Flat mode (`values` or `table` given): a constant image whose grey level is `table[frozenset(words)]`
    when listed, else the sum of `values[word]` (unknown words 0). Pattern mode (neither given): each word
    adds its own fixed random pattern, so the full caption's image differs from every partial one.
    `latency_s` / `per_image_s` simulate a model's cost per call and per image.
    """

    def __init__(
        self,
        values: Mapping[str, float] | None = None,
        table: Mapping[frozenset[str], float] | None = None,
        size: int = 4,
        cross_maps: Mapping[str, np.ndarray] | None = None,
        latency_s: float = 0.0,
        per_image_s: float = 0.0,
    ) -> None:
        self.values = dict(values) if values is not None else None
        self.table = dict(table) if table is not None else None
        self.size = size
        self.cross_maps = dict(cross_maps) if cross_maps is not None else None
        self.latency_s = latency_s
        self.per_image_s = per_image_s
        self.calls: list[list[str]] = []
        self.cross_attention_calls = 0
        self.steps: int | None = None  # None: full fidelity; see with_steps
        self.views: list[FakeGenerator] = []

    def _pattern(self, word: str) -> np.ndarray:
        rng = np.random.default_rng(stable_seed("fake-pattern", word))
        return rng.uniform(-0.12, 0.12, size=(self.size, self.size, 3))

    def image(self, prompt: str) -> np.ndarray:
        words = clean_words(prompt)
        if self.values is None and self.table is None:
            img = np.full((self.size, self.size, 3), 0.5) + sum((self._pattern(w) for w in set(words)), np.zeros((self.size, self.size, 3)))
            return np.clip(img, 0.0, 1.0).astype(np.float32)
        key = frozenset(words)
        if self.table is not None and key in self.table:
            value = self.table[key]
        else:
            value = sum((self.values or {}).get(w, 0.0) for w in key)
        return np.full((self.size, self.size, 3), value, dtype=np.float32)

    def generate(self, prompts: Sequence[str], seed: int) -> np.ndarray:
        self.calls.append(list(prompts))
        if self.latency_s or self.per_image_s:
            time.sleep(self.latency_s + self.per_image_s * len(prompts))
        return np.stack([self._sampled(p) for p in prompts])

    def _sampled(self, prompt: str) -> np.ndarray:
        """The exact image, or with fewer steps that image plus a fixed per-prompt error of size 0.05/steps,
        so a proxy ranks candidates almost, not exactly, as the full sampler does."""
        img = self.image(prompt)
        if self.steps is None:
            return img
        rng = np.random.default_rng(stable_seed("fake-proxy", prompt, self.steps))
        return np.clip(img + rng.uniform(-0.05, 0.05, size=img.shape) / self.steps, 0.0, 1.0).astype(np.float32)

    def with_steps(self, steps: int) -> "FakeGenerator":
        """A cheaper sampler's view (see `_sampled`), with its own `calls`; a view's cost is a quarter of the
        simulated latency per image. Views are listed in `views` so tests can count proxy work."""
        if int(steps) != steps or int(steps) < 1:
            raise ValueError(f"sampler steps must be an integer >= 1, not {steps}")
        view = FakeGenerator(self.values, self.table, self.size, self.cross_maps, self.latency_s, self.per_image_s / 4)
        view.steps = int(steps)
        self.views.append(view)
        return view

    def cross_attention(self, words: Sequence[str], seed: int) -> np.ndarray:
        if self.cross_maps is None:
            raise NotImplementedError("this fake generator has no cross-attention maps")
        self.cross_attention_calls += 1
        return np.stack([np.asarray(self.cross_maps[w], dtype=np.float64) for w in words])

    @property
    def generated(self) -> int:
        return sum(len(c) for c in self.calls)


class FakePerceptual:
    """Mean absolute pixel difference, with the reference 'features' (a copy) counted when computed.

    With `size`, images of any size are first box-filtered to size x size (as a perceptual network takes
    one resolution), so a study's originals need not match Bob's resolution.
    """

    def __init__(self, build_s: float = 0.0, size: int | None = None) -> None:
        if build_s:
            time.sleep(build_s)  # a network being built / loaded
        self.size = size
        self.reference_calls = 0
        self.distance_calls = 0

    def _view(self, image: np.ndarray) -> np.ndarray:
        arr = np.asarray(image, dtype=np.float64)
        if self.size is None or arr.shape[:2] == (self.size, self.size):
            return arr
        from lsc.metrics.image import resize

        return np.asarray(resize(arr, self.size, self.size, box=True), dtype=np.float64)

    def reference(self, image: np.ndarray) -> np.ndarray:
        self.reference_calls += 1
        return self._view(image).copy()

    def distances(self, reference: np.ndarray, images: np.ndarray) -> np.ndarray:
        self.distance_calls += 1
        imgs = np.stack([self._view(im) for im in images]) if self.size is not None else np.asarray(images, dtype=np.float64)
        return np.abs(imgs - reference[None]).reshape(len(imgs), -1).mean(axis=1)


class FakeTextEncoder:
    """Returns the given word attention matrix (one per variant, or one for all) and counts calls."""

    def __init__(self, matrix: np.ndarray | Mapping[str, np.ndarray] | None = None) -> None:
        self.matrix = matrix
        self.calls: list[tuple[tuple[str, ...], str]] = []

    def word_attention(self, words: Sequence[str], variant: str = "mean") -> np.ndarray:
        self.calls.append((tuple(words), variant))
        if self.matrix is None:  # a deterministic stand-in: attention falls off with distance
            n = len(words)
            idx = np.arange(n)
            a = 1.0 / (1.0 + np.abs(idx[:, None] - idx[None, :]))
            return a / a.sum(axis=1, keepdims=True)
        m = self.matrix[variant] if isinstance(self.matrix, Mapping) else self.matrix
        return np.asarray(m, dtype=np.float64)


class FakeCaptioner:
    """Alice: a fixed caption, and per-word grounding maps given by word (or none)."""

    def __init__(self, caption: str = "", grounding_maps: Mapping[str, np.ndarray] | None = None) -> None:
        self.text = caption
        self.grounding_maps = dict(grounding_maps) if grounding_maps is not None else None
        self.grounding_calls = 0

    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        return [self.text for _ in images]

    def grounding(self, image: np.ndarray, words: Sequence[str]) -> np.ndarray:
        if self.grounding_maps is None:
            raise NotImplementedError("this fake captioner has no grounding maps")
        self.grounding_calls += 1
        return np.stack([np.asarray(self.grounding_maps[w], dtype=np.float64) for w in words])


def fake_backend(
    caption: str = "",
    generator: FakeGenerator | None = None,
    bob_attention: Any = None,
    alice_attention: Any = None,
    grounding_maps: Mapping[str, np.ndarray] | None = None,
    skd_examples: list[tuple[str, str]] | None = None,
    threshold: float = 0.6,
    with_text_encoders: bool = True,
    perceptual_size: int | None = None,
) -> Backend:
    """A Backend of fakes; capabilities follow what was given (text encoders default to a distance-decay stand-in)."""
    gen = generator or FakeGenerator()
    caps = {CAP_GENERATOR, CAP_PERCEPTUAL}
    bob = alice = None
    if with_text_encoders or bob_attention is not None:
        bob = FakeTextEncoder(bob_attention)
        caps.add(CAP_BOB_ATTENTION)
    if with_text_encoders or alice_attention is not None:
        alice = FakeTextEncoder(alice_attention)
        caps.add(CAP_ALICE_ATTENTION)
    if grounding_maps is not None:
        caps.add(CAP_ALICE_GROUNDING)
    if gen.cross_maps is not None:
        caps.add(CAP_BOB_CROSS_ATTENTION)
    return Backend(
        name="fake",
        captioner=FakeCaptioner(caption, grounding_maps),
        generator=gen,
        perceptual=FakePerceptual(size=perceptual_size),
        bob_text_encoder=bob,
        alice_text_encoder=alice,
        capabilities=frozenset(caps),
        skd_examples=list(skd_examples or []),
        default_threshold=threshold,
    )


def load_fake_backend(caption: str = "a red ball on green grass", delay: float = 0.0, threshold: float = 0.05) -> Backend:
    """The fake as a study's backend (`backend: lsc.protocol.testing:load_fake_backend`): Bob draws 8x8
    word patterns, the distance compares at 8x8 whatever the original's size, Alice says `caption`;
    `delay` seconds per generator call make a run slow enough to kill."""
    return fake_backend(caption, generator=FakeGenerator(size=8, latency_s=delay), threshold=threshold,
                        perceptual_size=8)
