"""The Ray executor on a local Ray instance started here (no external service): the same exported
numbers as the local executor, resume after the driver is killed with -9 (only missing units are
submitted), a worker killed mid-unit (retried, same result), a unit that always kills its worker
(recorded as failed, the study goes on), and the one-line errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from study_data import make_folder, study_yaml
from lsc.config import load_config, validate_config
from lsc.errors import ConfigError
from lsc.runner.executor import ImageTask
from lsc.runner.export import export_run
from lsc.runner.study import run_study

try:
    import ray
except ImportError:  # the optional `ray` extra
    ray = None

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
PLUGIN_SRC = REPO / "examples" / "plugin" / "src"  # the example plugin, importable by the workers
needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed (pip install 'lsc[ray]')")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """One local Ray instance for the module (starting one takes seconds); yields its address.

    Workers inherit the raylet's environment, so PYTHONPATH set here lets them import this checkout's `lsc`
    (with its fake backend, `lsc.protocol.testing`) and this module (the fault hooks), also for a driver
    started in a subprocess.
    """
    assert ray is not None
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO / "src"), str(PLUGIN_SRC)] + ([old] if old else []))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ctx = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2,
                       logging_level="WARNING", log_to_driver=False)
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def exported(run_dir: Path) -> tuple[bytes, bytes]:
    """A run's CSV exports, byte for byte, less the `label` column (the run folder's name, which differs
    between the two folders a test compares)."""
    steps, summary = export_run(run_dir)
    return _without_label(steps.read_bytes()), _without_label(summary.read_bytes())


def _without_label(data: bytes) -> bytes:
    import csv
    import io

    table = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    i = table[0].index("label")
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    for row in table:
        writer.writerow(row[:i] + row[i + 1:])
    return out.getvalue().encode("utf-8")


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def ray_executor(cfg: Any, hook: Any = None) -> Any:
    from lsc.runner.ray_executor import RayExecutor

    return RayExecutor(cfg.executor, unit_hook=hook)


# ---------------------------------------------------------------- fault hooks (run inside the actors)
@dataclass
class RecordUnits:
    """Appends each unit's image id to a file: which units the driver submitted."""

    path: str

    def __call__(self, task: ImageTask) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(task.image.image_id + "\n")


@dataclass
class KillWorker:
    """Kills the worker process (os._exit, no cleanup) on unit `image_id`: once, or on every attempt."""

    image_id: str
    marker: str
    always: bool = False

    def __call__(self, task: ImageTask) -> None:
        if task.image.image_id != self.image_id:
            return
        if self.always or not os.path.exists(self.marker):
            with open(self.marker, "a", encoding="utf-8") as fh:
                fh.write("killed\n")
            os._exit(1)


# ---------------------------------------------------------------- same numbers as local
@needs_ray
@pytest.mark.slow
def test_world_study_on_ray_exports_the_same_bytes_as_local(tmp_path: Path, ray_cluster: str) -> None:
    overrides = ["images.count=2", "schemes=[random, nouns]", "oracle_max_words=4",
                 "backend_options={sampler_steps: 2, threads: 1}"]
    local = run_study(load_config(None, overrides), tmp_path / "local", progress=False)
    cfg = load_config(None, overrides + ["executor={kind: ray, max_in_flight: 2}"])
    remote = run_study(cfg, tmp_path / "ray", progress=False)
    assert (local.ok, local.failed) == (remote.ok, remote.failed) == (4, 0)
    a, b = exported(tmp_path / "local"), exported(tmp_path / "ray")
    assert a[0].count(b"\n") > 10
    assert a == b
    for sub in ("images", "originals"):
        names = sorted(p.name for p in (tmp_path / "local" / sub).iterdir())
        assert names and names == sorted(p.name for p in (tmp_path / "ray" / sub).iterdir())
        assert all((tmp_path / "local" / sub / n).read_bytes() == (tmp_path / "ray" / sub / n).read_bytes() for n in names)
    # The executor is not part of the study: the Ray folder resumes locally (nothing left to do).
    again = run_study(load_config(None, overrides), tmp_path / "ray", progress=False)
    assert (again.skipped, again.ok) == (4, 0)


@needs_ray
@pytest.mark.slow
def test_plugin_scheme_by_import_path_runs_on_ray_as_locally(tmp_path: Path, ray_cluster: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheme named by its import path is imported by each Ray worker too, with the same numbers."""
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=False)
    scheme = "{name: 'lsc_example_plugin.orders:LongestFirst', label: longest, min_length: 3}"
    cfg_path = study_yaml(tmp_path / "s.yaml", folder, cap, ["random", scheme])
    local = run_study(load_config(cfg_path), tmp_path / "local", progress=False)
    remote = run_study(load_config(cfg_path, ["executor={kind: ray, max_in_flight: 2}"]), tmp_path / "ray", progress=False)
    assert (local.ok, local.failed) == (remote.ok, remote.failed) == (8, 0)
    sql = "SELECT image_id, scheme, order_json, final_lpips FROM summary ORDER BY image_id, scheme"
    got = rows(tmp_path / "local" / "results.sqlite", sql)
    assert sum(r[1] == "longest" for r in got) == 4 and got == rows(tmp_path / "ray" / "results.sqlite", sql)


# ---------------------------------------------------------------- resume after the driver is killed
@needs_ray
@pytest.mark.slow
def test_driver_killed_with_minus_9_resumes_with_only_the_missing_units(tmp_path: Path, ray_cluster: str) -> None:
    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=True)
    cfg_path = study_yaml(tmp_path / "s.yaml", folder, cap, ["random", "most_attentive"], delay=0.1)
    ray_sets = ["--set", "executor={kind: ray, address: auto, max_in_flight: 1}"]
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "lsc.cli", "run", str(cfg_path), "--no-report", "--no-progress", "--out", str(killed)]
    proc = subprocess.Popen(cmd + ray_sets, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = killed / "results.sqlite"
    deadline = time.time() + 120
    done: list[str] = []
    while time.time() < deadline and proc.poll() is None:
        try:
            done = [r[0] for r in rows(db, "SELECT DISTINCT image_id FROM summary")] if db.exists() else []
        except sqlite3.OperationalError:
            done = []
        if len(done) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    done = sorted(r[0] for r in rows(db, "SELECT DISTINCT image_id FROM summary"))
    all_ids = sorted(r[0] for r in rows(db, "SELECT image_id FROM images")) or done
    assert 2 <= len(done) < 5

    log = tmp_path / "submitted.txt"
    cfg = load_config(cfg_path, ["executor={kind: ray, max_in_flight: 2}"])
    resumed = run_study(cfg, killed, progress=False, executor=ray_executor(cfg, RecordUnits(str(log))))
    submitted = sorted(log.read_text().split())
    assert set(submitted).isdisjoint(done) and len(submitted) == 5 - len(done), (submitted, done, all_ids)
    assert resumed.skipped == 2 * len(done)

    clean = tmp_path / "clean"
    run_study(load_config(cfg_path), clean, progress=False)
    assert exported(killed) == exported(clean)
    assert sorted(p.name for p in (killed / "images").iterdir()) == sorted(p.name for p in (clean / "images").iterdir())


# ---------------------------------------------------------------- workers that die
@needs_ray
@pytest.mark.slow
def test_worker_killed_mid_unit_is_retried_and_a_unit_failing_twice_is_recorded(
        tmp_path: Path, ray_cluster: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=False)
    cfg_path = study_yaml(tmp_path / "s.yaml", folder, cap, ["random", "most_attentive"])
    clean = tmp_path / "clean"
    run_study(load_config(cfg_path), clean, progress=False)

    once, always = tmp_path / "once.txt", tmp_path / "always.txt"

    def hook(task: ImageTask) -> None:
        KillWorker("a.png", str(once))(task)
        KillWorker("c.png", str(always), always=True)(task)

    cfg = load_config(cfg_path, ["executor={kind: ray, max_in_flight: 2}"])
    out = tmp_path / "ray"
    summary = run_study(cfg, out, progress=True, executor=ray_executor(cfg, hook))
    assert once.read_text().count("killed") == 1  # a.png's worker died once, and the retry succeeded
    assert always.read_text().count("killed") == 2  # c.png: the first attempt and one retry, no more
    assert (summary.ok, summary.failed) == (6, 2)
    failed = rows(out / "results.sqlite", "SELECT image_id, scheme, status, error FROM summary WHERE status != 'ok'")
    assert sorted((r[0], r[1]) for r in failed) == [("c.png", "most_attentive"), ("c.png", "random")]
    assert all("Ray worker died twice" in r[3] for r in failed), failed
    assert rows(out / "results.sqlite", "SELECT status FROM images WHERE image_id = 'c.png'") == [("failed",)]
    # Everything else has the numbers of the local run, a.png (retried) included.
    ray_steps, ray_summary = exported(out)
    ref_steps, ref_summary = exported(clean)
    assert ray_steps == b"".join(line for line in ref_steps.splitlines(keepends=True) if b"c.png" not in line)
    ok_lines = [line for line in ray_summary.splitlines() if b"c.png" not in line]
    assert ok_lines == [line for line in ref_summary.splitlines() if b"c.png" not in line]
    # One progress bar over transmissions (4 images x 2 schemes, as the summary counts them), with its rate.
    err = capsys.readouterr().err
    assert "8/8" in err and ("transmission/s" in err or "s/transmission" in err)

    # Resuming leaves the failed unit failed; --retry-failed submits exactly that unit again.
    log = tmp_path / "submitted.txt"
    again = run_study(cfg, out, progress=False, retry_failed=True, executor=ray_executor(cfg, RecordUnits(str(log))))
    assert log.read_text().split() == ["c.png"] and (again.ok, again.failed) == (2, 0)
    assert exported(out) == exported(clean)


# ---------------------------------------------------------------- one-line errors
@needs_ray
@pytest.mark.slow
def test_a_cluster_without_the_resources_asked_for_is_one_line(tmp_path: Path, ray_cluster: str) -> None:
    cfg = load_config(None, ["images.count=1", "schemes=[random]", "executor={kind: ray, num_gpus_per_task: 1}"])
    with pytest.raises(ConfigError, match=r"executor.num_gpus_per_task=1: the Ray cluster has 0 GPUs"):
        run_study(cfg, tmp_path / "run", progress=False)


def test_executor_config_is_checked_and_is_not_part_of_the_study() -> None:
    with pytest.raises(ConfigError, match="executor.address"):
        validate_config({"executor": {"kind": "ray", "address": "localhost:6379"}})
    with pytest.raises(ConfigError, match="executor.kind"):
        validate_config({"executor": {"kind": "dask"}})
    with pytest.raises(ConfigError, match="executor.max_in_flight"):
        validate_config({"executor": {"kind": "ray", "max_in_flight": 0}})
    plain = validate_config({})
    assert "executor" not in plain.to_dict()
    ray_cfg = validate_config({"executor": {"kind": "ray", "address": "auto", "num_gpus_per_task": 1}})
    assert ray_cfg.to_dict()["executor"]["num_gpus_per_task"] == 1

    from lsc.runner.executor import BackendFacts
    from lsc.runner.worker import resolve

    facts = BackendFacts("world", frozenset(), None, 0.6, "caption", 32)
    assert resolve(ray_cfg, facts).to_dict() == resolve(plain, facts).to_dict()


def test_ray_executor_without_ray_installed_is_one_line_exit_2(tmp_path: Path) -> None:
    # sys.modules['ray'] = None makes `import ray` fail as if the extra were not installed.
    code = ("import sys; sys.modules['ray'] = None; from lsc.cli import main; "
            f"sys.argv = ['lsc', 'run', '--set', 'executor.kind=ray', '--out', {str(tmp_path / 'run')!r}]; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: executor.kind ray needs Ray, which is not installed: "
                                                "pip install 'lsc[ray]'"]
