"""A tiny, fast, deterministic backend for the runner's and report's tests.

Bob's "generator" paints each prompt word's colour into one quadrant of an 8x8 image (a word's colour
and quadrant come from a hash of the word); the "perceptual" distance is the mean absolute pixel
difference at 8x8. So the full caption reproduces an image made by `render_caption`, and a partial
prompt is measurably farther: enough to exercise thresholds, curves and reports without any model.
Loadable from a config as `backend: fakes:load_fake_backend` with `tests/` on PYTHONPATH.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from lsc.interfaces import CAP_BOB_ATTENTION, CAP_GENERATOR, CAP_PERCEPTUAL, Backend

SIZE = 8


def _h(word: str) -> int:
    return int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")


def word_colour(word: str) -> np.ndarray:
    h = _h(word)
    return np.array([(h >> 8) % 256, (h >> 16) % 256, (h >> 24) % 256], dtype=np.float32) / 255.0


def word_quadrant(word: str) -> int:
    return _h(word) % 4


def render_caption(prompt: str) -> np.ndarray:
    """Bob's picture of a prompt: each quadrant the mean colour of its words, grey where none."""
    img = np.full((SIZE, SIZE, 3), 0.5, dtype=np.float32)
    buckets: dict[int, list[np.ndarray]] = {}
    for w in prompt.split():
        buckets.setdefault(word_quadrant(w), []).append(word_colour(w))
    half = SIZE // 2
    for q, cols in buckets.items():
        r, c = divmod(q, 2)
        img[r * half : (r + 1) * half, c * half : (c + 1) * half] = np.mean(cols, axis=0)
    return img


def save_caption_png(path: Path, caption: str, size: int = 16) -> None:
    """An image file whose content is Bob's picture of `caption` (nearest-neighbour upscaled)."""
    arr = (render_caption(caption) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(arr).resize((size, size), Image.Resampling.NEAREST).save(path)


class FakeCaptioner:
    def __init__(self, caption: str) -> None:
        self.fixed = caption

    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        return [self.fixed for _ in images]

    def grounding(self, image: np.ndarray, words: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


class FakeGenerator:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    def generate(self, prompts: Sequence[str], seed: int) -> np.ndarray:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return np.stack([render_caption(p) for p in prompts])

    def cross_attention(self, words: Sequence[str], seed: int) -> np.ndarray:
        raise NotImplementedError


def _small(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float32)
    if arr.shape[:2] == (SIZE, SIZE):
        return arr
    u8 = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.asarray(Image.fromarray(u8).resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.float32) / 255.0


class FakePerceptual:
    def __init__(self) -> None:
        self.references = 0

    def reference(self, image: np.ndarray) -> Any:
        self.references += 1
        return _small(image)

    def distances(self, reference: Any, images: np.ndarray) -> np.ndarray:
        return np.array([float(np.mean(np.abs(_small(im) - reference))) for im in images])


class FakeTextEncoder:
    def word_attention(self, words: Sequence[str], variant: str = "mean") -> np.ndarray:
        n = len(words)
        a = np.array([[(_h(words[i] + "|" + words[j]) % 1000) / 1000.0 for j in range(n)] for i in range(n)])
        return a / a.sum(axis=1, keepdims=True)


def load_fake_backend(caption: str = "a red ball on green grass", delay: float = 0.0, threshold: float = 0.05) -> Backend:
    """The fake backend; `delay` seconds per generator call make runs slow enough to kill."""
    return Backend(
        name="fake",
        captioner=FakeCaptioner(caption),
        generator=FakeGenerator(delay),
        perceptual=FakePerceptual(),
        bob_text_encoder=FakeTextEncoder(),
        capabilities=frozenset({CAP_GENERATOR, CAP_PERCEPTUAL, CAP_BOB_ATTENTION}),
        default_threshold=threshold,
    )


CAPTIONS = {
    "a.png": "a red ball on green grass",
    "b.png": "two blue cats sleep",
    "c.png": "a dog runs fast",
    "d.png": "small boat on the lake",
}


def make_folder(root: Path, fmt: str = "flickr8k", corrupt: bool = True) -> Path:
    """A folder of caption-rendered PNGs plus a captions file; with `corrupt`, one unreadable image.

    Returns the captions file path.
    """
    root.mkdir(parents=True, exist_ok=True)
    for name, cap in CAPTIONS.items():
        save_caption_png(root / name, cap)
    entries = list(CAPTIONS.items())
    if corrupt:
        (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
        entries.insert(1, ("broken.png", "a broken picture"))
    if fmt == "flickr8k":
        path = root / "captions.txt"
        lines = ["image,caption"]
        for name, cap in entries:
            lines += [f"{name},{cap}", f'{name},"another, longer caption of {name}"']
        path.write_text("\n".join(lines) + "\n")
    else:
        import json

        path = root / "captions_val2017.json"
        images = [{"id": 10 + i, "file_name": name} for i, (name, _) in enumerate(entries)]
        anns = [{"id": 100 + i, "image_id": 10 + i, "caption": cap} for i, (_, cap) in enumerate(entries)]
        anns += [{"id": 900 + i, "image_id": 10 + i, "caption": "second caption"} for i in range(len(entries))]
        path.write_text(json.dumps({"images": images, "annotations": anns}))
    return path


def study_yaml(path: Path, folder: Path, captions: Path, schemes: list[str], delay: float = 0.0,
               threshold: float = 0.05, extra: str = "") -> Path:
    """Write a study config using the fake backend on a folder; returns its path."""
    path.write_text(
        "backend: fakes:load_fake_backend\n"
        f"backend_options: {{delay: {delay}, threshold: {threshold}}}\n"
        f"images: {{source: folder, path: '{folder}', captions: '{captions}'}}\n"
        "caption_source: dataset\n"
        f"schemes: [{', '.join(schemes)}]\n"
        "oracle: true\n" + extra
    )
    return path
