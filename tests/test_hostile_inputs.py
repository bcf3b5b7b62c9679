"""Hostile but fair inputs: every bad input is one line `error: ...` with exit code 2, never a traceback
and never a silent wrong result. A table of bad inputs (the fuzz-style part), then the cases that
need more than a command line: image files, captions files, run folders, threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from study_data import make_folder, study_yaml
from lsc.errors import ConfigError, LscWarning
from lsc.runner.images import ImageReadError, read_coco_captions, read_flickr8k_captions, read_image

REPO = Path(__file__).resolve().parents[1]


def lsc_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run `lsc ARGS` in this process; (exit code, stderr)."""
    from lsc.cli import main

    monkeypatch.setattr(sys, "argv", ["lsc", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err.strip()


def _study(tmp: Path, captions_text: str | None = None, coco: object = None, extra: str = "") -> Path:
    folder = tmp / "imgs"
    cap = make_folder(folder, corrupt=False)
    if captions_text is not None:
        cap.write_text(captions_text)
    if coco is not None:
        cap = folder / "captions.json"
        cap.write_text(json.dumps(coco))
    return study_yaml(tmp / "s.yaml", folder, cap, ["random"], extra=extra)


def _case_bad_yaml(tmp: Path) -> list[str]:
    (tmp / "bad.yaml").write_text("seed: 1\nschemes: [random,\n  oracle: true\n")
    return ["run", str(tmp / "bad.yaml"), "--dry-run"]


def _case_out_is_file(tmp: Path) -> list[str]:
    (tmp / "afile").write_text("x")
    return ["run", str(_study(tmp)), "--out", str(tmp / "afile")]


def _case_out_under_file(tmp: Path) -> list[str]:
    (tmp / "afile").write_text("x")
    return ["run", str(_study(tmp)), "--out", str(tmp / "afile" / "run")]


def _case_store(content: bytes, command: str):
    def make(tmp: Path) -> list[str]:
        (tmp / "run").mkdir()
        (tmp / "run" / "results.sqlite").write_bytes(content)
        return [command, str(tmp / "run")]

    return make


def _case_examples_dir(tmp: Path) -> list[str]:
    return ["skd", "a dog", "--examples", str(tmp)]


def _case_examples_binary(tmp: Path) -> list[str]:
    (tmp / "ex.json").write_bytes(b"\xff\xfe\x00[")
    return ["skd", "a dog", "--examples", str(tmp / "ex.json")]


def _case_captions(text: str):
    return lambda tmp: ["run", str(_study(tmp, captions_text=text)), "--out", str(tmp / "run")]


def _case_coco(images: list, annotations: list):
    return lambda tmp: ["run", str(_study(tmp, coco={"images": images, "annotations": annotations})),
                        "--out", str(tmp / "run")]


def _case_world_resize(tmp: Path) -> list[str]:
    folder = tmp / "imgs"
    make_folder(folder, corrupt=False)
    return ["run", "--set", "images.source=folder", "--set", f"images.path={folder}", "--set", "images.resize=64",
            "--set", "schemes=[random]", "--out", str(tmp / "run")]


BAD_INPUTS = [
    # (id, argv builder, fragment of the one-line message)
    ("channel-send-empty", lambda t: ["channel", "send", ""], "the text is empty"),
    ("skd-empty", lambda t: ["skd", "  "], "the caption is empty"),
    ("ber-too-many-bits", lambda t: ["channel", "ber", "--bits", "1e12"], "at most 1e+09 bits"),
    ("yaml-line-column", _case_bad_yaml, "(line 4, column 1)"),
    ("out-is-a-file", _case_out_is_file, "exists and is not a folder"),
    ("out-under-a-file", _case_out_under_file, "is a file, not a folder"),
    ("report-empty-store", _case_store(b"", "report"), "is not an lsc results store"),
    ("export-empty-store", _case_store(b"", "export"), "is not an lsc results store"),
    ("report-corrupt-store", _case_store(b"garbage" * 500, "report"), "is not a readable lsc results store"),
    ("export-corrupt-store", _case_store(b"SQLite format 3\x00" + b"\x07" * 5000, "export"), "results store"),
    ("skd-examples-folder", _case_examples_dir, "is not a file"),
    ("skd-examples-not-utf8", _case_examples_binary, "is not UTF-8 text"),
    ("captions-dotdot", _case_captions("image,caption\n../../etc/passwd.png,a cat\n"), "points outside images.path"),
    ("captions-absolute", _case_captions("image,caption\n/etc/hosts,a cat\n"), "points outside images.path"),
    ("captions-unbalanced-quote",
     _case_captions('image,caption\na.png,a red ball\nb.png,"two blue cats\nc.png,a dog runs\nd.png,a boat\n'),
     "line 3: bad CSV, e.g. an unbalanced quote"),
    ("captions-missing-column", _case_captions("image,caption\na.png\n"), "line 2: expected 2 columns"),
    ("coco-numeric-file-name", _case_coco([{"id": 1, "file_name": 123}], []), "has file_name 123, not a file name"),
    ("coco-null-file-name", _case_coco([{"id": 1, "file_name": None}], []), "has file_name None"),
    ("coco-dotdot", _case_coco([{"id": 1, "file_name": "../x.png"}], []), "points outside images.path"),
    ("world-resize-64", _case_world_resize, "set images.resize: 32 (got 64)"),
    ("set-bad-yaml", lambda t: ["run", "--set", "seed=[1", "--dry-run"], "line 1, column"),
]


@pytest.mark.parametrize("build,fragment", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, build, fragment) -> None:
    code, err = lsc_main(monkeypatch, capsys, *build(tmp_path))
    assert code == 2, err
    *notices, last = err.splitlines()
    assert last.startswith("error: ") and "Traceback" not in err, err
    assert all(n.startswith("backend: calling lsc.protocol.testing.load_fake_backend") for n in notices), err
    assert fragment in last, err


def test_read_only_out_fails_before_any_model_loads(tmp_path, monkeypatch, capsys) -> None:
    import lsc.runner.worker as worker

    cfg = _study(tmp_path)
    (tmp_path / "ro").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path / "ro" else real(p, mode))
    monkeypatch.setattr(worker, "get_backend", lambda *a, **k: pytest.fail("a model loaded"))
    code, err = lsc_main(monkeypatch, capsys, "run", str(cfg), "--out", str(tmp_path / "ro" / "run"))
    assert code == 2 and err == f"error: --out {tmp_path / 'ro' / 'run'}: folder {tmp_path / 'ro'} is not writable"


# ----------------------------------------------------------------------------------------- pixels
def _png16_rgb(path: Path, rgb: np.ndarray) -> None:
    """A 48-bit RGB PNG written by hand (Pillow cannot write one)."""
    import struct
    import zlib

    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_pixels_keep_their_range_and_orientation(tmp_path: Path) -> None:
    grey16 = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    a = read_image(tmp_path / "g16.png")
    assert a.shape == (32, 32, 3) and a.mean() == pytest.approx(0.5, abs=0.01)  # not 97% white
    assert a[0, 0, 0] == 0.0 and a[-1, -1, 0] == 1.0

    rgb48 = np.zeros((16, 16, 3), np.uint16)
    rgb48[..., 0], rgb48[..., 1], rgb48[..., 2] = 65535, 32768, 0
    _png16_rgb(tmp_path / "c48.png", rgb48)
    assert read_image(tmp_path / "c48.png")[0, 0] == pytest.approx([1.0, 0.5, 0.0], abs=0.01)

    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30])
    pal.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png")[3, 3] == pytest.approx([10 / 255, 200 / 255, 30 / 255])

    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    assert read_image(tmp_path / "cmyk.jpg")[8, 8] == pytest.approx([1.0, 0.0, 0.0], abs=0.05)

    la = np.stack([np.full((16, 16), 200, np.uint8), np.full((16, 16), 64, np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png")[0, 0] == pytest.approx([200 / 255] * 3)

    left_white = np.zeros((20, 40, 3), np.uint8)
    left_white[:, :20] = 255
    im = Image.fromarray(left_white)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    r = read_image(tmp_path / "rot.jpg")
    assert r.shape == (40, 20, 3) and r[2].mean() > 0.9 and r[-3].mean() < 0.1  # the white half on top


def test_tiny_and_huge_images_are_refused_with_a_reason(tmp_path: Path) -> None:
    Image.new("RGB", (1, 1)).save(tmp_path / "one.png")
    with pytest.raises(ImageReadError, match=r"is 1x1, smaller than 8 pixels"):
        read_image(tmp_path / "one.png", resize=32)
    Image.new("L", (5000, 5000)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="set images.resize"):
        read_image(tmp_path / "big.png")
    assert read_image(tmp_path / "big.png", resize=32).shape == (32, 32, 3)


@pytest.mark.slow
def test_8000_square_png_costs_well_under_1_gb(tmp_path: Path) -> None:
    Image.linear_gradient("L").resize((8000, 8000)).convert("RGB").save(tmp_path / "big.png", compress_level=1)
    code = (
        "import resource, sys; from pathlib import Path; from lsc.runner.images import read_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"a = read_image(Path({str(tmp_path / 'big.png')!r}), resize=32)\n"
        "print(a.shape, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}).stdout.split(")")
    assert out[0] == "(32, 32, 3" and int(out[1]) < 350, out  # MB above the interpreter's own (was 492; 1956 without resize)


def test_world_backend_refuses_other_sizes_naming_images_resize() -> None:
    from lsc.protocol.testing import fake_backend
    from lsc.runner.worker import ImageWorker

    worker = ImageWorker.__new__(ImageWorker)
    worker.backend = fake_backend()
    worker.backend.image_size = 32
    worker._check_size(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ImageReadError, match=r"is 640x480 but the .* backend takes 32x32 images; set images.resize: 32"):
        worker._check_size(np.zeros((480, 640, 3), np.float32))


# -------------------------------------------------------------------------------------- datasets
def test_captions_files_confined_and_explicit(tmp_path: Path) -> None:
    cap = tmp_path / "captions.txt"
    cap.write_text('image,caption\na.png,a cat\nb.png,""\nc.png,  \n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_flickr8k_captions(cap)
    assert table == {"a.png": ["a cat"]}
    notes = [str(w.message) for w in caught if issubclass(w.category, LscWarning)]
    assert notes == ["images.captions: line 3: empty caption for image 'b.png'; skipped",
                     "images.captions: line 4: empty caption for image 'c.png'; skipped"]

    coco = tmp_path / "c.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                "annotations": [{"id": 5, "image_id": 1, "caption": None},
                                                {"id": 6, "image_id": 1, "caption": "a dog"}]}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_coco_captions(coco) == {"a.png": ["a dog"]}  # never the word "None"
    assert any("caption None, not text; skipped" in str(w.message) for w in caught)
    for bad in ("sub/../../x.png", "C:\\x.png", "/abs.png"):
        coco.write_text(json.dumps({"images": [{"id": 1, "file_name": bad}], "annotations": []}))
        with pytest.raises(ConfigError, match="points outside images.path"):
            read_coco_captions(coco)


def test_names_mapping_to_one_safe_name_stay_distinct() -> None:
    from lsc.runner.folder import safe_name

    assert safe_name("a b.png") != safe_name("a_b.png") and safe_name("a/b.png") != safe_name("a_b.png")
    assert safe_name("world-0-00001") == "world-0-00001" and safe_name("1000_ab.jpg").startswith("1000_ab-")


def test_dataset_warning_printed_as_one_line(tmp_path, monkeypatch, capsys) -> None:
    cfg = _study(tmp_path, captions_text="image,caption\na.png,a red ball\nb.png,\n")
    code, err = lsc_main(monkeypatch, capsys, "run", str(cfg), "--out", str(tmp_path / "run"), "--no-report",
                         "--no-progress")
    assert code == 0, err
    assert "warning: images.captions: line 3: empty caption for image 'b.png'; skipped" in err.splitlines()


# -------------------------------------------------------------------------------------------- config
def test_set_images_source_folder_on_the_world_default(tmp_path: Path) -> None:
    from lsc.config import load_config

    cfg = load_config(overrides=["images.source=folder", f"images.path={tmp_path}"])
    assert cfg.images.source == "folder" and cfg.images.path == str(tmp_path)
    cfg = load_config(overrides=[f"images.path={tmp_path}", "images.source=folder", "images.resize=32"])
    assert cfg.images.resize == 32


def test_world_study_lists_100000_scenes_without_drawing_them(monkeypatch) -> None:
    from lsc.backends.world import scenes
    from lsc.config import load_config
    from lsc.runner.images import list_images

    first = scenes.world_samples(2, 5)
    monkeypatch.setattr(scenes, "render", lambda *a, **k: pytest.fail("a scene was drawn while listing"))
    images = list_images(load_config(overrides=["images.count=100000", "images.seed=5"]))
    assert len(images) == 100000 and images[-1].image_id == "world-5-99999"
    monkeypatch.undo()
    for sample, image in zip(first, images):  # the same scenes as world_samples, drawn on use
        assert (image.image_id, image.captions, image.attributes) == (sample.image_id, sample.captions,
                                                                      sample.attributes)
        assert np.array_equal(image.load(), np.asarray(sample.image, np.float32))


def test_names_mapping_to_one_strip_name_get_distinct_strips(tmp_path: Path) -> None:
    """'a.b.png' and 'a_b.png' are different images: each keeps its own original and report strip."""
    from study_data import save_caption_png
    from lsc.config import load_config
    from lsc.report import build_report
    from lsc.runner.study import run_study

    folder = tmp_path / "imgs"
    folder.mkdir()
    captions = {"a.b.png": "a red ball on green grass", "a_b.png": "two blue cats sleep"}
    for name, text in captions.items():
        save_caption_png(folder / name, text)
    (folder / "captions.txt").write_text("image,caption\n" + "".join(f"{n},{c}\n" for n, c in captions.items()))
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, folder / "captions.txt", ["random"]), ["oracle=false"])
    run_study(cfg, tmp_path / "run", progress=False)
    build_report(tmp_path / "run")
    strips = sorted((tmp_path / "run" / "report").glob("strip_*.png"))
    originals = sorted((tmp_path / "run" / "originals").glob("*.png"))
    assert len(strips) == 2 and len(originals) == 2, (strips, originals)
    assert strips[0].read_bytes() != strips[1].read_bytes()


def test_a_captions_file_over_its_bound_is_refused_before_it_is_read(tmp_path):
    """A 600 MB (sparse) COCO captions file or captions.txt: one line naming the bound, nothing read."""
    from lsc.errors import ConfigError
    from lsc.limits import MAX_CAPTIONS_BYTES
    from lsc.runner.images import read_coco_captions, read_flickr8k_captions

    for name, reader in (("captions_big.json", read_coco_captions), ("captions.txt", read_flickr8k_captions)):
        big = tmp_path / name
        with open(big, "wb") as fh:
            fh.truncate(MAX_CAPTIONS_BYTES + 1)
        with pytest.raises(ConfigError, match="bound for a captions file"):
            reader(big)
