"""Where a study's images come from: the embedded world, or a folder plus a captions file.

Images are listed up front (ids and captions, cheap) but their pixels are read only when the runner
processes them, so a resumed study does not decode what it skips, and one unreadable file becomes a
failed record instead of stopping the study.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lsc.config import FolderImages, StudyConfig, WorldImages
from lsc.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class ImageReadError(Exception):
    """An image file could not be decoded; the message is the reason recorded in the store."""


@dataclass
class StudyImage:
    """One image of a study: its id, reference captions, ground truth, and a loader for its pixels."""

    image_id: str
    loader: Callable[[], np.ndarray]
    captions: list[str] = field(default_factory=list)
    attributes: dict[str, Any] | None = None

    def load(self) -> np.ndarray:
        """Pixels as float32 (H, W, 3) in [0, 1]; raises ImageReadError with a one-line reason."""
        return self.loader()


def list_images(cfg: StudyConfig) -> list[StudyImage]:
    """The study's images in a stable order (resume relies on it)."""
    if isinstance(cfg.images, WorldImages):
        return _world_images(cfg.images)
    return folder_images(cfg.images, need_captions=cfg.caption_source == "dataset")


def _world_images(spec: WorldImages) -> list[StudyImage]:
    from lsc.backends.world.scenes import world_samples

    out = []
    for sample in world_samples(spec.count, spec.seed):
        pixels = sample.image

        def _load(pixels: np.ndarray | None = pixels, err: str | None = sample.error) -> np.ndarray:
            if pixels is None:
                raise ImageReadError(err or "no pixels")
            return np.asarray(pixels, dtype=np.float32)

        out.append(StudyImage(sample.image_id, _load, list(sample.captions), sample.attributes))
    return out


def folder_images(spec: FolderImages, need_captions: bool = False) -> list[StudyImage]:
    """Images of a folder, with captions from a Flickr8k `captions.txt` or COCO `captions_*.json`."""
    root = Path(spec.path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"images.path: folder {str(root)!r} not found")
    if spec.captions is None:
        if need_captions:
            raise ConfigError("caption_source 'dataset' needs images.captions (a captions file)")
        names = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        table: dict[str, list[str]] = {n: [] for n in names}
    else:
        cap_path = Path(spec.captions).expanduser()
        if not cap_path.is_absolute() and not cap_path.exists() and (root / cap_path).exists():
            cap_path = root / cap_path
        if not cap_path.is_file():
            raise ConfigError(f"images.captions: file {str(cap_path)!r} not found")
        fmt = spec.format
        if fmt == "auto":
            fmt = "coco" if cap_path.suffix.lower() == ".json" else "flickr8k"
        table = read_coco_captions(cap_path) if fmt == "coco" else read_flickr8k_captions(cap_path)
        if not table:
            raise ConfigError(f"images.captions: no captions found in {str(cap_path)!r}")
    names = list(table)
    if spec.limit is not None:
        names = names[: spec.limit]
    if not names:
        raise ConfigError(f"images.path: no images in {str(root)!r}")
    return [
        StudyImage(name, _file_loader(root / name, spec.resize), table[name])
        for name in names
    ]


def read_flickr8k_captions(path: Path) -> dict[str, list[str]]:
    """Flickr8k `captions.txt`: a CSV `image,caption` with a header; several captions per image."""
    table: dict[str, list[str]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return table
            cols = [h.strip().lower() for h in header]
            if "image" not in cols or "caption" not in cols:
                raise ConfigError(
                    f"images.captions: {str(path)!r} is not Flickr8k format (expected header 'image,caption')"
                )
            i_img, i_cap = cols.index("image"), cols.index("caption")
            for row in reader:
                if len(row) <= max(i_img, i_cap):
                    continue
                name, caption = row[i_img].strip(), row[i_cap].strip()
                if name and caption:
                    table.setdefault(name, []).append(caption)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"images.captions: cannot read {str(path)!r}: {exc}") from None
    return table


def read_coco_captions(path: Path) -> dict[str, list[str]]:
    """COCO `captions_*.json`: `images` (id, file_name) and `annotations` (image_id, caption)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = {img["id"]: img["file_name"] for img in data["images"]}
        table: dict[str, list[str]] = {}
        for img_id in sorted(files):  # COCO order: by image id
            table[files[img_id]] = []
        for ann in sorted(data["annotations"], key=lambda a: (a["image_id"], a.get("id", 0))):
            name = files.get(ann["image_id"])
            if name is not None and str(ann["caption"]).strip():
                table[name].append(" ".join(str(ann["caption"]).split()))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"images.captions: cannot read {str(path)!r}: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"images.captions: {str(path)!r} is not COCO captions format (missing {exc})") from None
    return table


def _file_loader(path: Path, resize: int | None) -> Callable[[], np.ndarray]:
    def _load() -> np.ndarray:
        return read_image(path, resize)

    return _load


def read_image(path: Path, resize: int | None = None) -> np.ndarray:
    """Decode an image file to float32 RGB in [0, 1]; any failure becomes ImageReadError."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ImageReadError(f"file not found: {path.name}")
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
            if resize is not None:
                rgb = rgb.resize((resize, resize), Image.Resampling.BICUBIC)
            return np.asarray(rgb, dtype=np.float32) / 255.0
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot decode image {path.name}: not a recognised image format") from None
    except (OSError, ValueError, SyntaxError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageReadError(f"cannot decode image {path.name}: {msg}") from None
