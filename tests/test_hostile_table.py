"""Hostile inputs, round two: a table of bad or hostile inputs, each run through the real `lsc` entry point.

For every case the harness asserts what README's guarantees promise:
- the exit code (2 for a refused input, 0 for one that is accepted with a warning or handled);
- stderr holds a single `error:` or `warning:` line (besides the custom-backend notice), never a traceback;
- no file outside the run folder (and the folders the case names as written) was created, changed or removed,
  in particular none behind a symbolic link planted in the run folder;
- a planted key (in the environment variables lsc could read) appears nowhere in what was printed or
  written, raw or JSON-escaped, URL-encoded or base64.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from study_data import FAKE_BACKEND, make_folder

KEY = "sk-planted/key+0123456789=abc"
KEY_FORMS = (KEY, json.dumps(KEY)[1:-1], urllib.parse.quote(KEY, safe=""), base64.b64encode(KEY.encode()).decode())
NOTICE = "backend: calling lsc.protocol.testing.load_fake_backend"


@dataclass
class Case:
    """One hostile input: how to build it (in a scratch folder), and what lsc must answer."""

    id: str
    build: Callable[[Path], list[str]]
    fragment: str  # in the one error/warning line
    code: int = 2
    kind: str = "error"
    writes: tuple[str, ...] = ()  # folders (relative to the scratch folder) besides run/ the command may write
    marks: tuple = field(default_factory=tuple)


# ------------------------------------------------------------------------------------- fixtures
def _study_text(folder: Path, extra: str = "", schemes: str = "[random]") -> str:
    return (f"backend: {FAKE_BACKEND}\nbackend_options: {{threshold: 0.05}}\n"
            f"images: {{source: folder, path: '{folder}', captions: '{folder / 'captions.txt'}'}}\n"
            f"caption_source: dataset\nschemes: {schemes}\noracle: false\nmetrics: []\n{extra}")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished small run (fake backend, 4 images, one scheme): the run folder that export/report cases copy."""
    from lsc.config import load_config
    from lsc.runner.study import run_study

    root = tmp_path_factory.mktemp("finished")
    make_folder(root / "imgs", corrupt=False)
    (root / "s.yaml").write_text(_study_text(root / "imgs"))
    run_study(load_config(root / "s.yaml"), root / "run", progress=False)
    return root


def _user_file(tmp: Path, name: str = "precious.txt") -> Path:
    """A user's file outside the run folder, which nothing may change."""
    target = tmp / "user" / name
    target.parent.mkdir(exist_ok=True)
    target.write_text("the user's own data\n")
    return target


def _study(tmp: Path, extra: str = "", schemes: str = "[random]") -> Path:
    if not (tmp / "imgs").exists():
        make_folder(tmp / "imgs", corrupt=False)
    (tmp / "s.yaml").write_text(_study_text(tmp / "imgs", extra, schemes))
    return tmp / "s.yaml"


def _copy_run(tmp: Path) -> Path:
    shutil.copytree(_FINISHED[0] / "run", tmp / "run")
    return tmp / "run"


_FINISHED: list[Path] = []


def _run(tmp: Path, *more: str) -> list[str]:
    return ["run", str(_study(tmp)), "--out", str(tmp / "run"), "--no-progress", "--no-report", *more]


# ------------------------------------------------------------------------ 1. files lsc does not own
def _link_in_run(name: str, command: str):
    """A run folder where `name` is a symbolic link to a user's file; `command` is run/export/report."""

    def build(tmp: Path) -> list[str]:
        target = _user_file(tmp)
        if command == "run":
            (tmp / "run").mkdir()
            (tmp / "run" / "config.resolved.yaml").write_text("")  # looks like a run folder
        else:
            _copy_run(tmp)
        link = tmp / "run" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists():
            shutil.rmtree(link) if link.is_dir() else link.unlink()
        os.symlink(target if "." in Path(name).name else target.parent, link)
        if command == "run":
            return _run(tmp)
        return [command, str(tmp / "run")]

    return build


def _foreign_folder(tmp: Path) -> list[str]:
    (tmp / "run" / "report").mkdir(parents=True)
    (tmp / "run" / "report" / "report.html").write_text("<p>my notes</p>")
    (tmp / "run" / "images").mkdir()
    return _run(tmp)


def _foreign_store(tmp: Path) -> list[str]:
    import sqlite3

    (tmp / "run").mkdir()
    with sqlite3.connect(tmp / "run" / "results.sqlite") as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER, amount REAL)")
        conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    conn.close()
    return _run(tmp)


def _store_without_version(tmp: Path) -> list[str]:
    import sqlite3

    (tmp / "run").mkdir()
    with sqlite3.connect(tmp / "run" / "results.sqlite") as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.close()
    return _run(tmp)


def _export_to(sub: str, prepare: Callable[[Path], None] = lambda p: None):
    def build(tmp: Path) -> list[str]:
        _copy_run(tmp)
        prepare(tmp)
        return ["export", str(tmp / "run"), "--out", str(tmp / sub) if sub else ""]

    return build


def _plant_file(tmp: Path) -> None:
    (tmp / "afile").write_text("x")


FILE_CASES = [
    Case("lock-is-a-link", _link_in_run(".lsc-run.lock", "run"), ".lsc-run.lock is a symbolic link"),
    Case("store-is-a-link", _link_in_run("results.sqlite", "run"), "results.sqlite is a symbolic link"),
    Case("images-dir-is-a-link", _link_in_run("images", "run"), "images is a symbolic link"),
    Case("resolved-config-is-a-link", _link_in_run("config.resolved.yaml", "run"), "config.resolved.yaml is a symbolic link"),
    Case("originals-dir-is-a-link", _link_in_run("originals", "run"), "originals is a symbolic link"),
    Case("report-dir-is-a-link-run", _link_in_run("report", "run"), "report is a symbolic link"),
    Case("report-dir-is-a-link", _link_in_run("report", "report"), "report is a symbolic link"),
    Case("wal-is-a-link", _link_in_run("results.sqlite-wal", "run"), "results.sqlite-wal is a symbolic link"),
    Case("report-html-is-a-link", _link_in_run("report/report.html", "report"), "", code=0, kind="none"),
    Case("report-md-is-a-link", _link_in_run("report/report.md", "report"), "", code=0, kind="none"),
    Case("export-steps-csv-is-a-link", _link_in_run("steps.csv", "export"), "", code=0, kind="none"),
    Case("export-summary-csv-is-a-link", _link_in_run("summary.csv", "export"), "", code=0, kind="none"),
    Case("foreign-folder", _foreign_folder, "is not an lsc run folder"),
    Case("foreign-results-sqlite", _foreign_store, "was not written by lsc (it has table 'invoices')"),
    Case("results-sqlite-without-version", _store_without_version, "was not written by lsc (it has no lsc schema"),
    Case("run-out-empty", lambda t: ["run", str(_study(t)), "--out", ""], "--out is empty; name a folder"),
    Case("run-out-blank", lambda t: ["run", str(_study(t)), "--out", "  "], "--out is empty; name a folder"),
    Case("export-out-empty", _export_to(""), "--out is empty; name a folder"),
    Case("export-out-is-a-file", _export_to("afile", _plant_file), "exists and is not a folder"),
    Case("export-out-under-a-file", _export_to("afile/sub", _plant_file), "cannot create the folder"),
    Case("export-bad-format", lambda t: ["export", str(_copy_run(t)), "--format", "xlsx"], "--format must be csv"),
]

CASES = FILE_CASES


# ------------------------------------------------------------------------------------- the harness
def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[str, str]]:
    """Every path under root (links not followed) with its kind and content hash, except under `skip`."""
    out: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            p = here / name
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            else:
                try:
                    out[str(p)] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
                except PermissionError:
                    out[str(p)] = ("unreadable", "")
    return out


def _key_nowhere(root: Path, text: str) -> None:
    for form in KEY_FORMS:
        assert form not in text, f"the planted key ({form!r}) was printed"
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink() or not os.access(p, os.R_OK):
                continue
            data = p.read_bytes()
            for form in KEY_FORMS:
                assert form.encode() not in data, f"the planted key ({form!r}) is in {p}"


@pytest.fixture
def hostile_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted key in every variable an SKD engine could be pointed at."""
    for var in ("OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "LSC_PLANTED_KEY"):
        monkeypatch.setenv(var, KEY)


def check_case(case: Case, tmp: Path, lsc_main: Callable) -> None:
    """Build the case, run it, and assert the guarantees (see the module docstring)."""
    argv = case.build(tmp)
    skip = (tmp / "run",) + tuple(tmp / w for w in case.writes)
    before = _snapshot(tmp, skip)
    result = lsc_main(*argv)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith(NOTICE)]
    assert "Traceback" not in result.stderr and "Segmentation" not in result.stderr, result.stderr
    assert result.returncode == case.code, (result.returncode, result.stderr)
    if case.kind == "none":
        assert lines == [], result.stderr
    else:
        assert len(lines) == 1 and lines[0].startswith(f"{case.kind}: "), result.stderr
        assert case.fragment in lines[0], result.stderr
    assert _snapshot(tmp, skip) == before, "a file outside the run folder changed"
    _key_nowhere(tmp, result.stdout + result.stderr)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, finished_run: Path, hostile_env: None, lsc_main) -> None:
    _FINISHED[:] = [finished_run]
    try:
        check_case(case, tmp_path, lsc_main)
    finally:
        for p in tmp_path.rglob("*"):  # let pytest clean up read-only folders
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, 0o755)



# ------------------------------------------------------------------------ cases beyond a command line
def test_spreadsheet_formulas_in_names_are_neutralised(tmp_path: Path) -> None:
    """An image named '=HYPERLINK(...)' must not reach summary.csv as a formula a spreadsheet would run."""
    import csv

    from study_data import save_caption_png
    from lsc.config import load_config
    from lsc.runner.export import export_run
    from lsc.runner.study import run_study

    folder = tmp_path / "imgs"
    folder.mkdir()
    names = {"=HYPERLINK(1).png": "a red ball", "+1.png": "two blue cats", "@x.png": "a dog", "-2.png": "a boat"}
    for name, text in names.items():
        save_caption_png(folder / name, text)
    (folder / "captions.txt").write_text("image,caption\n" + "".join(f"{n},{c}\n" for n, c in names.items()))
    (tmp_path / "s.yaml").write_text(_study_text(folder))
    run_study(load_config(tmp_path / "s.yaml"), tmp_path / "run", progress=False)
    steps, summary = export_run(tmp_path / "run")
    with open(summary, newline="", encoding="utf-8") as fh:
        ids = [row["image_id"] for row in csv.DictReader(fh)]
    assert sorted(ids) == sorted("'" + n for n in names), ids
    assert all(not c.startswith(("=", "+", "-", "@")) for row in csv.reader(open(steps, encoding="utf-8")) for c in row
               if c and not c.lstrip("-").replace(".", "", 1).replace("e-", "", 1).isdigit())


def test_read_only_run_folder_exports_to_a_writable_out(tmp_path: Path, finished_run: Path, monkeypatch) -> None:
    """On read-only storage SQLite cannot create the store's -shm file: the store is opened immutable."""
    from lsc.runner.export import export_run

    run = shutil.copytree(finished_run / "run", tmp_path / "run")
    assert not (run / "results.sqlite-wal").exists()  # a finished run checkpointed its log
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == run and mode & os.W_OK else real(p, mode))
    paths = export_run(run, "csv", tmp_path / "out")
    assert [p.name for p in paths] == ["steps.csv", "summary.csv"] and paths[0].read_text().count("\n") > 4
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in (finished_run / "run").iterdir())


def test_an_interrupted_export_leaves_the_old_file(tmp_path: Path, finished_run: Path, monkeypatch) -> None:
    """Exports go to a temporary name and are renamed: a full disk mid-write keeps the previous export whole."""
    import errno

    import lsc.runner.folder as folder
    from lsc.errors import ConfigError
    from lsc.runner.export import export_run

    run = shutil.copytree(finished_run / "run", tmp_path / "run")
    first = export_run(run)[0].read_bytes()

    def full(path: Path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder, "open_new", full)
    with pytest.raises(ConfigError, match="No space left on device; nothing was changed"):
        export_run(run)
    assert (run / "steps.csv").read_bytes() == first and not list(run.glob("*.tmp"))
