"""The runner's commands end to end: run -> report -> export, `lsc schemes`, and their one-line errors."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from study_data import make_folder, study_yaml


def _study(tmp_path: Path, schemes: list[str]) -> tuple[Path, Path]:
    """A study YAML of the fake backend on a folder of four images, and the run folder to use."""
    folder = tmp_path / "imgs"
    return study_yaml(tmp_path / "s.yaml", folder, make_folder(folder, corrupt=False), schemes), tmp_path / "run"
from test_runner_config import lsc_cli


@pytest.mark.slow
def test_run_report_export_cli(tmp_path: Path) -> None:
    cfg, out = _study(tmp_path, ["random", "heads_random"])
    proc = lsc_cli("run", str(cfg), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("8 ok, 0 failed, 0 already done, of 8 transmissions")
    assert "lsc run" in proc.stderr and "100%" in proc.stderr  # the tqdm bar goes to stderr
    assert (out / "report" / "report.html").is_file()
    again = lsc_cli("run", str(cfg), "--out", str(out), "--no-report", "--no-progress")
    assert again.returncode == 0 and again.stdout.startswith("0 ok, 0 failed, 8 already done")
    (out / "report" / "report.html").unlink()
    rep = lsc_cli("report", str(out))
    assert rep.returncode == 0 and rep.stdout.strip() == str(out / "report" / "report.html")
    # progress while it computes, on stderr: each part as it starts, with the seconds so far
    assert re.search(r"report: \[ *[0-9.]+ s\] lpips_vs_words", rep.stderr) and "report.html" in rep.stderr.splitlines()[-1]
    exp = lsc_cli("export", str(out), "--format", "csv", "--out", str(tmp_path / "csv"))
    assert exp.returncode == 0, exp.stderr
    with open(tmp_path / "csv" / "summary.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 8


def test_other_study_same_folder_refused(tmp_path: Path, lsc_main) -> None:
    cfg, out = _study(tmp_path, ["random"])
    assert lsc_main("run", str(cfg), "--out", str(out), "--no-report", "--no-progress").returncode == 0
    proc = lsc_main("run", str(cfg), "--out", str(out), "--set", "prompt_order=caption")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (f"error: {out} holds a different study (config.resolved.yaml differs at "
                                   "'prompt_order'); use another --out or the same config")


def test_missing_capability_fails_before_the_study(tmp_path: Path, lsc_main) -> None:
    cfg, out = _study(tmp_path, ["random", "alice_attention"])
    proc = lsc_main("run", str(cfg), "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("error: backend 'fake' lacks what these schemes need: scheme 'alice_attention' "
                                   "needs alice_grounding")
    assert not out.exists()  # nothing written


def test_report_and_export_errors(lsc_main) -> None:
    for args in (["report", "/nonexistent/run"], ["export", "/nonexistent/run"]):
        proc = lsc_main(*args)
        assert proc.returncode == 2
        assert proc.stderr.strip() == "error: /nonexistent/run is not a run folder (no results.sqlite)"


def test_schemes_table(lsc_main) -> None:
    proc = lsc_main("schemes")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["name", "Alice", "holds", "from", "description"]
    names = [ln.split()[0] for ln in lines[1:]]
    assert names[0] == "random" and "heads_skd" in names and "learned" in names  # then installed plugins, if any
    row = next(ln for ln in lines if ln.startswith("lowest_lpips "))
    assert "all of Bob's model" in row and "lsc (built-in)" in row


def test_unknown_backend_option_one_line(tmp_path: Path, lsc_main) -> None:
    cfg, _ = _study(tmp_path, ["random"])
    proc = lsc_main("run", str(cfg), "--out", str(tmp_path / "run"), "--set", "backend_options.speed=9")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("error: backend_options.speed: unknown option of backend 'lsc.protocol.testing:load_fake_backend'; "
                                   "its options are caption, delay, threshold")
    proc = lsc_main("run", "--set", "backend_options.turbo=1", "--out", str(tmp_path / "w"))
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: backend_options.turbo: unknown option of "
                                                                   "backend 'world'")
