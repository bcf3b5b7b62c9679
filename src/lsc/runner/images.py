"""Where a study's images come from: the embedded world, or a folder plus a captions file.

Images are listed up front (ids and captions, cheap) but their pixels are read only when the runner
processes them, so a resumed study does not decode what it skips, and one unreadable file becomes a
failed record instead of stopping the study.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path, PurePath
from typing import Any, Callable

import numpy as np

from lsc.config import FolderImages, StudyConfig, WorldImages
from lsc.errors import ConfigError, LscWarning
from lsc.limits import check_captions_size, load_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class ImageReadError(Exception):
    """An image file could not be decoded; the message is the reason recorded in the store."""


class StudyImage:
    """One image of a study: its id, reference captions, ground truth, and a loader for its pixels.

    `details`, when given, computes (captions, attributes) on first use: a 100 000-scene world study
    lists its ids at once but draws each scene only when the runner reaches it.
    """

    def __init__(self, image_id: str, loader: Callable[[], np.ndarray], captions: list[str] | None = None,
                 attributes: dict[str, Any] | None = None,
                 details: Callable[[], tuple[list[str], dict[str, Any] | None]] | None = None) -> None:
        self.image_id = image_id
        self.loader = loader
        self._captions = list(captions or [])
        self._attributes = attributes
        self._details = details

    def _resolve(self) -> None:
        if self._details is not None:
            self._captions, self._attributes = self._details()
            self._details = None

    @property
    def captions(self) -> list[str]:
        self._resolve()
        return self._captions

    @property
    def attributes(self) -> dict[str, Any] | None:
        self._resolve()
        return self._attributes

    def load(self) -> np.ndarray:
        """Pixels as float32 (H, W, 3) in [0, 1]; raises ImageReadError with a one-line reason."""
        return self.loader()


def list_images(cfg: StudyConfig) -> list[StudyImage]:
    """The study's images in a stable order (resume relies on it)."""
    if isinstance(cfg.images, WorldImages):
        return _world_images(cfg.images)
    return folder_images(cfg.images, need_captions=cfg.caption_source == "dataset")


class _WorldScene:
    """The index-th scene of a world study, drawn on first use (same content as `world_samples`)."""

    __slots__ = ("index", "seed", "_scene")

    def __init__(self, index: int, seed: int) -> None:
        self.index, self.seed, self._scene = index, seed, None

    def scene(self) -> Any:
        from lsc.backends.world import scenes

        if self._scene is None:
            self._scene = scenes.world_scene(self.index, self.seed)
        return self._scene

    def pixels(self) -> np.ndarray:
        from lsc.backends.world import scenes

        return np.asarray(scenes.render(self.scene()), dtype=np.float32)

    def details(self) -> tuple[list[str], dict[str, Any] | None]:
        from lsc.backends.world import scenes

        s = self.scene()
        return [scenes.alice_caption(s), scenes.bob_caption(s)], s.attributes()


def world_image(index: int, seed: int) -> StudyImage:
    """The index-th scene of the world as a StudyImage whose scene is drawn only when used."""
    w = _WorldScene(index, seed)
    return StudyImage(f"world-{seed}-{index:05d}", w.pixels, details=w.details)


def _world_images(spec: WorldImages) -> list[StudyImage]:
    return [world_image(i, spec.seed) for i in range(spec.start, spec.start + spec.count)]


def folder_images(spec: FolderImages, need_captions: bool = False) -> list[StudyImage]:
    """Images of a folder, with captions from a Flickr8k `captions.txt` or COCO `captions_*.json`."""
    root = Path(spec.path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"images.path: folder {str(root)!r} not found")
    if spec.captions is None:
        if need_captions:
            raise ConfigError("caption_source 'dataset' needs images.captions (a captions file)")
        names = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        undecodable = [n for n in names if not _is_text(n)]
        if undecodable:
            _notice(f"images.path: {len(undecodable)} file name(s) are not valid UTF-8 (e.g. "
                    f"{undecodable[0].encode('utf-8', 'surrogateescape')!r}); skipped: rename them to use them")
        table: dict[str, list[str]] = {n: [] for n in names if _is_text(n)}
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
        StudyImage(name, _file_loader(root / name, spec.resize, spec.preprocess), table[name])
        for name in names
    ]


class DatasetWarning(LscWarning):
    """Something in a captions file was skipped; the CLI prints it as one `warning: ...` line."""


def _notice(message: str) -> None:
    import warnings

    warnings.warn(message, DatasetWarning, stacklevel=3)


def _is_text(name: str) -> bool:
    """A name that is valid Unicode text (an undecodable byte or a lone surrogate cannot be stored or printed)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_image_name(name: str, path: Path, where: str) -> None:
    """An image name from a captions file must stay inside images.path (no absolute path, no '..') and be text."""
    if not _is_text(name):
        raise ConfigError(f"images.captions: {str(path)!r} {where}: image name {name.encode('utf-8', 'replace')!r} "
                          "is not valid UTF-8, not a file name")
    p = PurePath(name)
    if p.is_absolute() or ".." in p.parts or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise ConfigError(f"images.captions: {str(path)!r} {where}: image name {name!r} points outside "
                          "images.path (names must be relative, without '..')")


def read_flickr8k_captions(path: Path) -> dict[str, list[str]]:
    """Flickr8k `captions.txt`: a CSV `image,caption` with a header; several captions per image."""
    table: dict[str, list[str]] = {}
    start = 1
    check_captions_size(path, f"images.captions: {str(path)!r}")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                return table
            cols = [h.strip().lower() for h in header]
            if "image" not in cols or "caption" not in cols:
                raise ConfigError(
                    f"images.captions: {str(path)!r} is not Flickr8k format (expected header 'image,caption')"
                )
            i_img, i_cap = cols.index("image"), cols.index("caption")
            start = reader.line_num + 1
            for row in reader:
                line, start = start, reader.line_num + 1
                if reader.line_num > line or any("\n" in c or "\r" in c for c in row):
                    raise ConfigError(f"images.captions: {str(path)!r} line {line}: unbalanced quote "
                                      f"(the row runs over lines {line}-{reader.line_num})")
                if not row or not any(c.strip() for c in row):
                    continue
                if len(row) <= max(i_img, i_cap):
                    raise ConfigError(f"images.captions: {str(path)!r} line {line}: expected "
                                      f"{max(i_img, i_cap) + 1} columns, got {len(row)}")
                name, caption = row[i_img].strip(), " ".join(row[i_cap].split())
                if not name:
                    raise ConfigError(f"images.captions: {str(path)!r} line {line}: empty image name")
                check_image_name(name, path, f"line {line}")
                if not caption:
                    _notice(f"images.captions: line {line}: empty caption for image {name!r}; skipped")
                    continue
                table.setdefault(name, []).append(caption)
    except csv.Error as exc:
        raise ConfigError(f"images.captions: {str(path)!r} line {start}: bad CSV, e.g. an unbalanced quote "
                          f"({_line(exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"images.captions: cannot read {str(path)!r}: {_line(exc)}") from None
    return table


def read_coco_captions(path: Path) -> dict[str, list[str]]:
    """COCO `captions_*.json`: `images` (id, file_name) and `annotations` (image_id, caption)."""
    where = f"images.captions: {str(path)!r}"
    check_captions_size(path, where)
    try:
        data = load_json(path.read_text(encoding="utf-8"), where)
        files: dict[Any, str] = {}
        for img in data["images"]:
            name = img["file_name"]
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{where}: image id {img.get('id')!r} has file_name {name!r}, not a file name")
            check_image_name(name, path, f"image id {img.get('id')!r}")
            files[img["id"]] = name
        table: dict[str, list[str]] = {}
        for img_id in sorted(files, key=lambda i: (str(type(i)), i)):  # COCO order: by image id
            table[files[img_id]] = []
        for ann in sorted(data["annotations"], key=lambda a: (str(a["image_id"]), a.get("id", 0) or 0)):
            name = files.get(ann["image_id"])
            if name is None:
                continue
            caption = ann.get("caption")
            if not isinstance(caption, str):
                _notice(f"images.captions: annotation {ann.get('id')!r} of {name!r} has caption {caption!r}, "
                        "not text; skipped")
                continue
            if not caption.strip():
                _notice(f"images.captions: annotation {ann.get('id')!r}: empty caption for image {name!r}; skipped")
                continue
            table[name].append(" ".join(caption.split()))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"images.captions: cannot read {str(path)!r}: {_line(exc)}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where} is not COCO captions format (missing or wrong {exc})") from None
    return table


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _file_loader(path: Path, resize: int | None, preprocess: str = "default") -> Callable[[], np.ndarray]:
    def _load() -> np.ndarray:
        if preprocess == "research":
            return research_roundtrip(read_image(path), resize or RESEARCH_SIZE)
        return read_image(path, resize)

    return _load


RESEARCH_SIZE = 256  # main_flicker.py's transforms.Resize((256, 256))
RESEARCH_JPEG_QUALITY = 75  # Pillow's default quality for img.save("/content/img.jpg")


def research_roundtrip(image: np.ndarray, size: int = RESEARCH_SIZE) -> np.ndarray:
    """The research code's input: the image squashed to size x size (torchvision Resize on a PIL image =
    Pillow's bilinear resize), saved as JPEG at Pillow's default quality and read back, as main_flicker.py
    does before captioning, Grad-CAM and LPIPS. (ToTensor/ToPILImage in between are exact on 8-bit values.)"""
    import io

    from PIL import Image

    u8 = np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    small = Image.fromarray(u8).resize((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=RESEARCH_JPEG_QUALITY)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


# Decoding bounds: a folder may hold anything, and one huge file must not take the study down.
MIN_SIDE = 8  # smaller images carry no picture to score (and match images.resize's lower bound)
MAX_DECODE_PIXELS = 100_000_000  # larger files are refused before decoding (about 300 MB as RGB)
MAX_UNRESIZED_PIXELS = 4096 * 4096  # without images.resize, larger images are refused (float32 copy)


def read_image(path: Path, resize: int | None = None) -> np.ndarray:
    """Decode an image file to float32 RGB in [0, 1]; any failure becomes ImageReadError.

    Why the care: 16-bit and float modes keep their real range (Pillow's RGB conversion clips them),
    EXIF orientation is applied (what a viewer shows is what is scored), JPEGs are decoded at reduced
    scale when only a small image is wanted, and sizes are checked before the pixels are decoded.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ImageReadError(f"file not found: {path.name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limits apply below
            with Image.open(path) as im:
                return _decode(im, path.name, resize)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot decode image {path.name}: not a recognised image format") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"image {path.name} is too large to decode safely") from None
    except (OSError, ValueError, SyntaxError, MemoryError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageReadError(f"cannot decode image {path.name}: {msg}") from None


def _decode(im: Any, name: str, resize: int | None) -> np.ndarray:
    from PIL import Image

    w, h = im.size
    if min(w, h) < MIN_SIDE:
        raise ImageReadError(f"image {name} is {w}x{h}, smaller than {MIN_SIDE} pixels a side; not scored")
    if resize is not None and im.format == "JPEG":
        im.draft("RGB", (resize, resize))  # decode at 1/2, 1/4 or 1/8 scale: bounded memory
    dw, dh = im.size
    if dw * dh > MAX_DECODE_PIXELS:
        raise ImageReadError(f"image {name} is {w}x{h} ({w * h / 1e6:.0f} Mpx), over the "
                             f"{MAX_DECODE_PIXELS / 1e6:.0f} Mpx decoding limit; shrink the file")
    if resize is None and dw * dh > MAX_UNRESIZED_PIXELS:
        raise ImageReadError(f"image {name} is {w}x{h}, over {MAX_UNRESIZED_PIXELS / 1e6:.1f} Mpx; "
                             "set images.resize (e.g. 512) to scale images down")
    orientation = im.getexif().get(0x0112, 1)
    im.load()
    rgb = _to_rgb(im)
    if orientation not in (None, 1):
        rgb = _orient(rgb, int(orientation))
    if resize is not None:
        rgb = rgb.resize((resize, resize), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _orient(im: Any, orientation: int) -> Any:
    """Apply an EXIF orientation tag (2-8) so pixels are the right way up."""
    from PIL import Image

    t = Image.Transpose
    ops = {2: [t.FLIP_LEFT_RIGHT], 3: [t.ROTATE_180], 4: [t.FLIP_TOP_BOTTOM], 5: [t.TRANSPOSE],
           6: [t.ROTATE_270], 7: [t.TRANSVERSE], 8: [t.ROTATE_90]}.get(orientation, [])
    for op in ops:
        im = im.transpose(op)
    return im


def _to_rgb(im: Any) -> Any:
    """8-bit RGB with each mode's real range: 16-bit and 32-bit modes are scaled, not clipped."""
    from PIL import Image

    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode == "F":
            top = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        elif mode.startswith("I;16"):
            top = 65535.0
        else:  # 32-bit integer: 16-bit PNGs decode to "I" on some Pillow versions
            top = 65535.0 if int(arr.max(initial=0)) > 255 else 255.0
        u8 = (np.clip(np.nan_to_num(arr.astype(np.float64) / top), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(u8, "L").convert("RGB")
    if mode == "RGB":
        return im
    return im.convert("RGB")
