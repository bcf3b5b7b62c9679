"""Run folders shared by processes and people: the lock, the study's identity, odd folder names, temp
files, thread counts, and which backend code a study runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from study_data import make_folder, study_yaml
from test_runner_config import lsc_cli

QUIET = ("--no-report", "--no-progress")


def _cfg(tmp: Path, schemes: list[str] | None = None, extra: str = "") -> Path:
    folder = tmp / "imgs"
    cap = make_folder(folder, corrupt=False)
    return study_yaml(tmp / "s.yaml", folder, cap, schemes or ["random"], extra=extra)


@pytest.mark.slow
def test_second_run_on_a_locked_folder_exits_2_while_report_and_export_work(tmp_path: Path) -> None:
    from lsc.runner.folder import RunLock

    cfg, out = _cfg(tmp_path), tmp_path / "run"
    first = lsc_cli("run", str(cfg), "--out", str(out), *QUIET)
    assert first.returncode == 0, first.stderr
    # The custom backend's function is named: a study YAML naming module:function is code.
    assert "backend: calling lsc.protocol.testing.load_fake_backend from " in first.stderr
    lock = RunLock(out).acquire()  # as a running `lsc run` holds it
    try:
        second = lsc_cli("run", str(cfg), "--out", str(out), *QUIET)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1] == (
            f"error: {out} is in use by another `lsc run` (pid {__import__('os').getpid()}); wait for it or use "
            "another --out (report and export work meanwhile)")
        assert "backend: calling" not in second.stderr  # refused before any model loads
        assert lsc_cli("report", str(out)).returncode == 0
        assert lsc_cli("export", str(out), "--out", str(tmp_path / "csv")).returncode == 0
    finally:
        lock.release()
    assert lsc_cli("run", str(cfg), "--out", str(out), *QUIET).returncode == 0  # released: resumes


def test_deleted_resolved_config_is_checked_against_the_store(tmp_path: Path) -> None:
    cfg, out = _cfg(tmp_path), tmp_path / "run"
    assert lsc_cli("run", str(cfg), "--out", str(out), *QUIET).returncode == 0
    (out / "config.resolved.yaml").unlink()
    other = lsc_cli("run", str(cfg), "--out", str(out), "--set", "seed=7", *QUIET)
    assert other.returncode == 2
    assert other.stderr.strip().splitlines()[-1] == (
        f"error: {out} holds a different study (results.sqlite's stored config differs at 'seed'); "
        "use another --out or the same config")
    same = lsc_cli("run", str(cfg), "--out", str(out), *QUIET)
    assert same.returncode == 0 and " 0 failed, 4 already done" in same.stdout
    assert (out / "config.resolved.yaml").is_file()  # written back


@pytest.mark.slow
@pytest.mark.parametrize("name", ["out#1", "what?x=1", "100%done"])
def test_odd_out_names_work_end_to_end(tmp_path: Path, name: str) -> None:
    cfg, out = _cfg(tmp_path), tmp_path / name
    proc = lsc_cli("run", str(cfg), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (out / "report" / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["imgs", "s.yaml", name])  # no stray file


def test_another_process_temp_file_does_not_block_a_write(tmp_path: Path) -> None:
    from lsc.runner.folder import save_png

    target = tmp_path / "x.png"
    (tmp_path / "x.png.tmp").mkdir()  # what another process (or an old version) left mid-write
    save_png(target, np.zeros((4, 4, 3), np.float32))
    assert target.is_file() and not list(tmp_path.glob("x.png.*.tmp"))


def _fake_with_threads():
    """A fake backend loader that takes `threads`, as the world backend's does."""
    from lsc.protocol.testing import load_fake_backend

    def load(threads: int | None = None, **kw):
        load.seen.append(threads)
        return load_fake_backend(**kw)

    load.seen = []
    return load


def test_threads_are_an_execution_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lsc.backends as backends
    from lsc.config import load_config
    from lsc.runner import study, worker

    loader = _fake_with_threads()
    monkeypatch.setattr(backends, "backend_loader", lambda name: loader)
    monkeypatch.setattr(worker, "_BACKENDS", {})
    cfg = _cfg(tmp_path)

    def run(out: Path, threads: int | None):
        extra = [] if threads is None else [f"backend_options.threads={threads}"]
        return study.run_study(load_config(cfg, extra), out, progress=False)

    def numbers(out: Path) -> list[tuple]:
        with sqlite3.connect(out / "results.sqlite") as c:
            return c.execute("SELECT image_id, scheme, step, word_sent, lpips FROM steps ORDER BY 1, 2, 3").fetchall()

    a = run(tmp_path / "a", 2)
    assert a.ok == 4 and loader.seen[-1] == 2
    resumed = run(tmp_path / "a", 1)  # another thread count resumes the same study
    assert resumed.skipped == 4 and resumed.ok == 0 and loader.seen[-1] == 1
    run(tmp_path / "b", 1)
    assert numbers(tmp_path / "a") == numbers(tmp_path / "b")
    import yaml

    assert "threads" not in yaml.safe_load((tmp_path / "a" / "config.resolved.yaml").read_text())["backend_options"]
    run(tmp_path / "c", None)
    assert loader.seen[-1] == worker.default_threads()


def test_default_threads_is_1_on_a_loaded_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from lsc.runner.worker import default_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.0, 1.0))
    assert default_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert default_threads() == 2 and default_threads(workers=2) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert default_threads() == 4


@pytest.mark.slow
def test_skd_command_rewrites_as_a_study_on_the_world_does() -> None:
    from lsc.language.config import SKDConfig
    from lsc.language.skd import LexiconSKD
    from lsc.runner.worker import get_backend

    caption = "there is a big red ball on the left"
    examples = list(get_backend("world", {}).skd_examples)
    study_text = LexiconSKD(SKDConfig()).rewrite(caption, examples).text  # what heads_skd sends
    builtin_text = LexiconSKD(SKDConfig()).rewrite(caption, None).text
    proc = lsc_cli("skd", caption, "--engine", "lexicon")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == study_text and study_text != builtin_text
