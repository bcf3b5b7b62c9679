"""Study inputs for the runner's and report's tests: a folder of caption-drawn PNGs with a captions file
(Flickr8k or COCO style) and a study YAML on the in-package fake backend (`lsc.protocol.testing`).

Each original is the fake Bob's picture of its caption (upscaled), so the full caption comes back to it
and a partial prompt is measurably farther: enough to exercise thresholds, curves and reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from lsc.protocol.testing import FakeGenerator

FAKE_BACKEND = "lsc.protocol.testing:load_fake_backend"

CAPTIONS = {
    "a.png": "a red ball on green grass",
    "b.png": "two blue cats sleep",
    "c.png": "a dog runs fast",
    "d.png": "small boat on the lake",
}


def save_caption_png(path: Path, caption: str, size: int = 16) -> None:
    """An image file whose content is the fake Bob's picture of `caption` (nearest-neighbour upscaled)."""
    arr = (np.clip(FakeGenerator(size=8).image(caption), 0, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(arr).resize((size, size), Image.Resampling.NEAREST).save(path)


def make_folder(root: Path, fmt: str = "flickr8k", corrupt: bool = True) -> Path:
    """A folder of caption-drawn PNGs plus a captions file; with `corrupt`, one unreadable image.

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
        f"backend: {FAKE_BACKEND}\n"
        f"backend_options: {{delay: {delay}, threshold: {threshold}}}\n"
        f"images: {{source: folder, path: '{folder}', captions: '{captions}'}}\n"
        "caption_source: dataset\n"
        f"schemes: [{', '.join(schemes)}]\n"
        "oracle: true\n" + extra
    )
    return path
