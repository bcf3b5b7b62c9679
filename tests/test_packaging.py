"""A built wheel (not an editable install) carries everything `lsc run` needs: the default study and
the world's weights are package data."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_runs_the_default_study_dry(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a clean copy: a stale build/ folder in the checkout must not help
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("lsc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "lsc/runner/default.yaml" in names and "lsc/backends/world/weights/world.json" in names
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:  # a wheel is a zip laid out as site-packages: install it by unpacking
        z.extractall(target)
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", "import lsc, sys; from lsc.cli import main; sys.argv = ['lsc', 'run', '--dry-run']; main()"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "heads_skd" in run.stdout and "count: 8" in run.stdout
    check = subprocess.run([sys.executable, "-c", "import lsc; print(lsc.__file__)"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert str(target) in check.stdout  # the wheel's copy ran, not the editable checkout
