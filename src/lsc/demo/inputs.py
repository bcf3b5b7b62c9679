"""What the page sends: a world scene or an upload, checked (size, pixels, decoding) and captioned by Alice.

Why here: an upload is untrusted; it is refused by its file size and header before any pixel is
decoded, then read by the runner's own reader (so the page sees the pixels a study would).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from lsc.demo.session import DemoInputError, Source
from lsc.runner.images import IMAGE_SUFFIXES

DEFAULT_MAX_UPLOAD_MB = 10.0
DEFAULT_MAX_PIXELS = 4096 * 4096


def caption_of(backend: Any, pixels: np.ndarray) -> str:
    """Alice's caption, as the runner writes it with `caption_source: alice`."""
    return str(backend.captioner.caption([pixels])[0])


def world_source(backend: Any, index: Any, seed: Any) -> tuple[np.ndarray, Source]:
    """The index-th scene of a world seed (the same scene `lsc run` uses) and Alice's caption of it."""
    if getattr(backend, "name", None) != "world":
        raise DemoInputError("world scenes need the world backend (`lsc demo --backend world`); upload an image instead")
    i, s = _whole(index, "scene index", 0, 10**9), _whole(seed, "scene seed", -(2**31), 2**31 - 1)
    from lsc.runner.images import world_image

    pixels = world_image(i, s).load()
    return pixels, Source("world", caption_of(backend, pixels), index=i, seed=s)


def _whole(value: Any, what: str, lo: int, hi: int) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise DemoInputError(f"{what} must be a whole number, not {value!r}") from None
    if not f.is_integer() or not lo <= f <= hi:
        raise DemoInputError(f"{what} must be a whole number between {lo} and {hi}, not {value!r}")
    return int(f)


def upload_source(backend: Any, path: str | Path | None, keep_dir: Path, max_bytes: int,
                  max_pixels: int) -> tuple[np.ndarray, Source]:
    """Check an uploaded file, keep a copy in keep_dir (the upload's temp file may go), caption it."""
    from PIL import Image, UnidentifiedImageError

    from lsc.runner.images import ImageReadError, read_image

    if path is None or not Path(path).is_file():
        raise DemoInputError("no image uploaded")
    src = Path(path)
    size = src.stat().st_size
    if size > max_bytes:
        raise DemoInputError(f"upload is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB limit")
    try:
        with Image.open(src) as im:  # reads the header only
            w, h = im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise DemoInputError(f"cannot read the upload {src.name!r}: not an image file") from None
    if w * h > max_pixels:
        raise DemoInputError(f"upload is {w}x{h} ({w * h / 1e6:.1f} Mpx), over the {max_pixels / 1e6:.1f} Mpx limit")
    suffix = src.suffix.lower() if src.suffix.lower() in IMAGE_SUFFIXES else ".png"
    keep_dir.mkdir(parents=True, exist_ok=True)
    kept = keep_dir / f"upload-{uuid.uuid4().hex[:8]}{suffix}"
    shutil.copyfile(src, kept)
    try:
        pixels = read_image(kept, getattr(backend, "image_size", None))
    except ImageReadError as exc:
        kept.unlink(missing_ok=True)
        raise DemoInputError(f"cannot use the upload: {exc}") from None
    return pixels, Source("upload", caption_of(backend, pixels), path=str(kept))
