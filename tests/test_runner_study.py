"""The study runner: folder + captions (Flickr8k, COCO) with a corrupt image, the store, resume,
refusing a different study, kill -9 equivalence, SNR sweeps, and export columns."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study_data import CAPTIONS, FAKE_BACKEND, make_folder, study_yaml
from lsc.config import load_config
from lsc.errors import ConfigError
from lsc.metrics.registry import stored_columns
from lsc.runner.export import IDENTITY, export_run
from lsc.runner.rows import STEPS_EXPORT, SUMMARY_EXPORT
from lsc.runner.images import read_coco_captions, read_flickr8k_captions
from lsc.runner.folder import safe_name
from lsc.runner.study import run_study
from lsc.runner.worker import get_backend

REPO = Path(__file__).resolve().parents[1]


def rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def numbers(run_dir: Path) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Everything a study computes (not timings): summary, steps, oracle."""
    db = run_dir / "results.sqlite"
    summary = rows(db, "SELECT image_id, scheme, cond, snr_db, caption, words_json, order_json, n_words, "
                       "words_to_threshold, bits_to_threshold, final_lpips, status, error FROM summary "
                       "ORDER BY image_id, scheme, cond")
    steps = rows(db, "SELECT * FROM steps ORDER BY image_id, scheme, cond, step")
    oracle = rows(db, "SELECT * FROM oracle ORDER BY image_id, k")
    return summary, steps, oracle


def test_caption_readers(tmp_path: Path) -> None:
    cap = make_folder(tmp_path / "f", "flickr8k")
    table = read_flickr8k_captions(cap)
    assert list(table) == ["a.png", "broken.png", "b.png", "c.png", "d.png"]
    assert table["a.png"] == ["a red ball on green grass", "another, longer caption of a.png"]
    coco = make_folder(tmp_path / "c", "coco")
    table = read_coco_captions(coco)
    assert list(table) == ["a.png", "broken.png", "b.png", "c.png", "d.png"]  # by COCO image id
    assert table["b.png"] == ["two blue cats sleep", "second caption"]


@pytest.mark.parametrize("fmt", ["flickr8k", "coco"])
def test_folder_study_records_corrupt_image_and_goes_on(tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "imgs"
    cap = make_folder(folder, fmt)
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, cap, ["random", "most_attentive"]))
    out = tmp_path / "run"
    summary = run_study(cfg, out, progress=False)
    assert (summary.total, summary.ok, summary.failed, summary.skipped) == (10, 8, 2, 0)
    db = out / "results.sqlite"
    failed = rows(db, "SELECT image_id, scheme, status, error FROM summary WHERE status != 'ok' ORDER BY scheme")
    assert [(r[0], r[1], r[2]) for r in failed] == [("broken.png", "most_attentive", "failed"),
                                                    ("broken.png", "random", "failed")]
    assert failed[0][3].startswith("cannot decode image broken.png")
    assert rows(db, "SELECT status FROM images WHERE image_id = 'broken.png'") == [("failed",)]
    # the dataset caption is the first one of each image; words are its whitespace words
    got = dict(rows(db, "SELECT image_id, caption FROM summary WHERE scheme = 'random' AND status = 'ok'"))
    assert got == CAPTIONS
    # a row per step: the empty prompt then one per word
    n_steps = dict(rows(db, "SELECT image_id, COUNT(*) FROM steps WHERE scheme = 'random' GROUP BY image_id"))
    assert n_steps == {k: len(v.split()) + 1 for k, v in CAPTIONS.items()}
    # ideal channel: a word costs 8 bits per character plus an 8-bit separator
    for word, bits in rows(db, "SELECT word_sent, bits FROM steps WHERE step > 0"):
        assert bits == 8 * len(word) + 8
    # Bob's images are stored once per image key, shared by schemes; originals kept for strips
    keys = {r[0] for r in rows(db, "SELECT image_key FROM steps")}
    assert {p.stem for p in (out / "images").glob("*.png")} == keys
    assert sorted(p.name for p in (out / "originals").glob("*.png")) == sorted(
        f"{safe_name(i)}.png" for i in ("a.png", "b.png", "c.png", "d.png"))  # 'a-<hash>.png', never 'a.png.png'
    # the oracle bound: for every readable image, never above a scheme at the same k (up to rounding)
    assert rows(db, "SELECT COUNT(DISTINCT image_id) FROM oracle") == [(4,)]
    worse = rows(db, "SELECT COUNT(*) FROM steps s JOIN oracle o ON o.image_id = s.image_id AND o.k = s.step "
                     "WHERE o.lpips > s.lpips + 1e-6")  # float32 rounding of the fake
    assert worse == [(0,)]


def test_resume_skips_done_work_and_refuses_other_study(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=False)
    cfg_path = study_yaml(tmp_path / "s.yaml", folder, cap, ["random", "lowest_lpips"], threshold=0.03)
    cfg = load_config(cfg_path)
    out = tmp_path / "run"
    first = run_study(cfg, out, progress=False)
    assert (first.ok, first.skipped) == (8, 0)
    before = numbers(out)
    gen = get_backend(cfg.backend, cfg.backend_options).generator
    calls = gen.calls
    again = run_study(cfg, out, progress=False)
    assert (again.ok, again.failed, again.skipped) == (0, 0, 8)
    assert gen.calls == calls  # nothing generated: every (image, scheme) and oracle was done
    # drop one result (as if the run died before it): only that one is redone, to the same numbers
    con = sqlite3.connect(out / "results.sqlite")
    with con:
        con.execute("DELETE FROM summary WHERE image_id = 'c.png' AND scheme = 'lowest_lpips'")
        con.execute("DELETE FROM steps WHERE image_id = 'c.png' AND scheme = 'lowest_lpips'")
    con.close()
    third = run_study(cfg, out, progress=False)
    assert (third.ok, third.skipped) == (1, 7)
    assert numbers(out) == before
    other = load_config(cfg_path, ["seed=5"])
    with pytest.raises(ConfigError, match=r"holds a different study \(config.resolved.yaml differs at 'seed'\)"):
        run_study(other, out, progress=False)


@pytest.mark.slow
def test_kill_minus_9_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=True)
    cfg_path = study_yaml(tmp_path / "s.yaml", folder, cap, ["random", "most_attentive", "lowest_lpips"], delay=0.03)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # this checkout's sources, as lsc_cli runs them
    cmd = [sys.executable, "-m", "lsc.cli", "run", str(cfg_path), "--no-report", "--no-progress"]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = killed / "results.sqlite"
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                done = rows(db, "SELECT COUNT(*) FROM summary WHERE status = 'ok'")[0][0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 3:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; raise the fake delay"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    partial = rows(db, "SELECT COUNT(*) FROM summary")[0][0]
    assert 3 <= partial < 15

    resumed = subprocess.run(cmd + ["--out", str(killed)], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "already done" in resumed.stdout
    clean = tmp_path / "clean"
    full = subprocess.run(cmd + ["--out", str(clean)], env=env, capture_output=True, text=True, timeout=120)
    assert full.returncode == 0, full.stderr

    a, b = numbers(killed), numbers(clean)
    assert len(a[0]) == 15 and len(a[1]) > 40
    assert a == b
    assert sorted(p.name for p in (killed / "images").iterdir()) == sorted(p.name for p in (clean / "images").iterdir())


def test_snr_sweep_with_analytic_channel(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=False)
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, cap, ["heads_random"]),
                      ["channel.model=analytic", "channel.snr_db=[-2, 30]"])
    out = tmp_path / "run"
    summary = run_study(cfg, out, progress=False)
    assert (summary.total, summary.ok) == (8, 8)
    db = out / "results.sqlite"
    per_snr = dict(rows(db, "SELECT snr_db, SUM(bit_errors) FROM steps GROUP BY snr_db"))
    assert set(per_snr) == {-2.0, 30.0}
    assert per_snr[30.0] == 0 and per_snr[-2.0] > 0
    garbled = rows(db, "SELECT COUNT(*) FROM steps WHERE snr_db = -2 AND word_received != word_sent")[0][0]
    assert garbled > 0
    assert rows(db, "SELECT COUNT(*) FROM steps WHERE snr_db = 30 AND word_received != word_sent") == [(0,)]
    # uncoded 16-QAM ASCII: 8 bits per character plus the 8-bit separator on the channel
    for word, bits in rows(db, "SELECT word_sent, bits FROM steps WHERE step > 0"):
        assert bits == 8 * len(word) + 8


def test_export_csv_and_parquet_columns(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=True)
    # threshold below anything the fake reaches: words/bits to threshold stay empty
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, cap, ["nouns", "random"], threshold=1e-9))
    out = tmp_path / "run"
    run_study(cfg, out, progress=False)
    steps_csv, summary_csv = export_run(out, "csv")
    with open(steps_csv, newline="") as fh:
        steps = list(csv.DictReader(fh))
    with open(summary_csv, newline="") as fh:
        summary = list(csv.DictReader(fh))
    # the fake backend scores no step metric: those columns are left out, the run's identity ends each row
    metrics = {name for name, _ in stored_columns()}
    assert tuple(steps[0]) == tuple(c for c in STEPS_EXPORT if c not in metrics) + IDENTITY
    assert {k: steps[0][k] for k in IDENTITY} == {"label": "run", "backend": FAKE_BACKEND, "receiver": "",
                                                  "channel": "none", "prompt_order": "send", "seed": "0",
                                                  "distance": "LPIPS"}
    assert STEPS_EXPORT[:11] == ("image_id", "scheme", "step", "word_sent", "word_received", "bits", "cum_bits",
                                 "prompt", "lpips", "ssim", "psnr")
    assert tuple(summary[0]) == tuple(c for c in SUMMARY_EXPORT if c != "words_to_all_right") + IDENTITY
    assert SUMMARY_EXPORT[:6] == ("image_id", "scheme", "words_to_threshold", "words_to_all_right", "bits_to_threshold",
                                  "final_lpips")
    # image order of the captions file, schemes in config order
    assert [(r["image_id"], r["scheme"]) for r in summary[:4]] == [
        ("a.png", "nouns"), ("a.png", "random"), ("broken.png", "nouns"), ("broken.png", "random")]
    ok = [r for r in summary if r["status"] == "ok"]
    assert len(ok) == 8
    for r in ok:  # empty exactly where no step got under the threshold
        run = [x for x in steps if x["image_id"] == r["image_id"] and x["scheme"] == r["scheme"]]
        reached = [int(x["step"]) for x in run if float(x["lpips"]) < 1e-9]
        assert r["words_to_threshold"] == (str(reached[0]) if reached else "")
        assert r["bits_to_threshold"] == (run[reached[0]]["cum_bits"] if reached else "")
    assert any(r["words_to_threshold"] == "" for r in ok)
    assert all(r["snr_db"] == "" for r in ok)
    a_nouns = [r for r in steps if r["image_id"] == "a.png" and r["scheme"] == "nouns"]
    assert [r["word_sent"] for r in a_nouns] == ["", "ball", "grass", "a", "red", "on", "green"]
    assert [int(r["cum_bits"]) for r in a_nouns] == [0, 40, 88, 104, 136, 160, 208]
    assert a_nouns[-1]["prompt"] == "ball grass a red on green"

    import pyarrow.parquet as pq

    steps_pq, summary_pq = export_run(out, "parquet", tmp_path / "pq")
    t = pq.read_table(steps_pq)
    assert tuple(t.column_names) == tuple(steps[0]) and t.num_rows == len(steps)
    assert str(t.schema.field("seed").type) == "int64" and t.column("label").to_pylist()[0] == "run"
    assert str(t.schema.field("cum_bits").type) == "int64"
    s = pq.read_table(summary_pq)
    assert s.column("words_to_threshold").null_count == sum(1 for r in summary if r["words_to_threshold"] == "")
    with pytest.raises(ConfigError, match="--format must be csv or parquet"):
        export_run(out, "xlsx")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="is not a run folder"):
        export_run(tmp_path / "nowhere")


@pytest.mark.parametrize("source_code,separator_bits", [("ascii", 8), ("ascii", 0), ("utf8", 8), ("utf8", 0)])
def test_study_bits_follow_the_configured_source_code(tmp_path: Path, source_code: str, separator_bits: int) -> None:
    """On the ideal channel too, a word costs what the configured source code says ('café': 5 UTF-8 bytes)."""
    cfg = load_config(None, ["backend=lsc.protocol.testing:load_fake_backend", "backend_options={caption: 'café on red'}", "schemes=[heads]",
                             "oracle=false", "images.count=1", "prompt_order=send", f"channel.source_code={source_code}",
                             f"channel.separator_bits={separator_bits}"])
    run_study(cfg, tmp_path / "run")
    stored = dict(rows(tmp_path / "run" / "results.sqlite", "SELECT word_sent, bits FROM steps WHERE step > 0"))
    payload = {"café": 40 if source_code == "utf8" else 32, "on": 16, "red": 24}
    assert stored == {w: b + separator_bits for w, b in payload.items()}


def test_worker_hands_the_study_skd_settings_to_schemes_that_need_skd() -> None:
    """heads_skd (requires CAP_SKD) gets the study's `skd` unless its own options set one; heads gets none."""
    from lsc.config import StudyConfig
    from lsc.protocol.testing import fake_backend
    from lsc.runner.worker import ImageWorker

    cfg = StudyConfig(schemes=["heads_skd", "heads", {"name": "heads_skd", "label": "own", "skd": {"min_count": 3}}],
                      threshold=0.5, prompt_order="send", skd={"min_count": 2})
    worker = ImageWorker(cfg, fake_backend("a cat"))
    assert worker.schemes["heads_skd"].skd.min_count == 2
    assert worker.schemes["own"].options()["skd"]["min_count"] == 3
    assert not hasattr(worker.schemes["heads"], "skd")


def test_oracle_max_words_above_the_oracles_default_is_honoured(tmp_path):
    """A study's oracle_max_words (up to 16) is the oracle's limit, not the oracle function's default (11)."""
    from study_data import save_caption_png

    folder = tmp_path / "imgs"
    folder.mkdir()
    caption = "a red ball and a blue box on green grass today now"  # 12 words
    save_caption_png(folder / "long.png", caption)
    cap = folder / "captions.txt"
    cap.write_text(f"image,caption\nlong.png,{caption}\n")
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, cap, ["random"], extra="oracle_max_words: 12\n"))
    run_study(cfg, tmp_path / "run", progress=False)
    db = tmp_path / "run" / "results.sqlite"
    assert rows(db, "SELECT n_words, status, error FROM oracle_status") == [(12, "ok", None)]
    assert rows(db, "SELECT MAX(k) FROM oracle") == [(12,)]


def test_times_are_stored_by_what_they_measure(tmp_path: Path) -> None:
    """Alice's planning, the loop and the step metrics in their own columns; the first transmission of the
    worker (the warm-up) marked cold; an old run's whole time is shown as such by compare."""
    from lsc.report.compare import transmission_times

    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=False)
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, cap, ["random", "lowest_lpips"], delay=0.002))
    run_study(cfg, tmp_path / "run", progress=False)
    got = rows(tmp_path / "run" / "results.sqlite", "SELECT scheme, elapsed_s, planning_s, transmission_s, metrics_s, "
                                                   "cold, n_words FROM summary WHERE status = 'ok' ORDER BY rowid")
    assert len(got) == 8 and [r[5] for r in got] == [1] + [0] * 7  # one worker, one warm-up
    for scheme, whole, plan, loop, metrics, _, n in got:
        assert min(plan, loop, metrics) >= 0 and plan + loop + metrics <= whole + 1e-6
        # the loop asks Bob for at most n + 1 images, lowest_lpips plans with his generator: its plan costs images
        assert loop >= 0.0 and (plan >= 0.002 * n if scheme == "lowest_lpips" else plan < 0.002)
    as_dicts = [{"elapsed_s": r[1], "planning_s": r[2], "transmission_s": r[3], "cold": r[5]} for r in got]
    seconds, planning, measure = transmission_times(as_dicts)
    assert measure == "transmission" and seconds == [r[3] for r in got[1:]] and planning == [r[2] for r in got[1:]]
    old = [{"elapsed_s": r[1]} for r in got]  # a run stored before the split
    assert transmission_times(old) == ([r[1] for r in got], [], "elapsed")


def test_driver_workers_and_executors_import_no_circle() -> None:
    """The worker side (outcomes, worker) imports neither an executor nor the driver, and the in-process
    executor imports neither the driver nor Ray's: a circle among them would be one import away."""
    import ast

    runner = Path(__file__).resolve().parent.parent / "src" / "lsc" / "runner"

    def imports(module: str) -> set[str]:
        tree = ast.parse((runner / f"{module}.py").read_text())
        found = set()
        for node in ast.walk(tree):  # lazy imports inside functions count too
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lsc.runner."):
                found.add(node.module.rsplit(".", 1)[1])
            elif isinstance(node, ast.ImportFrom) and node.module == "lsc.runner":
                found.update(a.name for a in node.names)
        return found

    driver_side = {"study", "executor", "ray_executor"}
    assert not imports("outcomes") & (driver_side | {"worker"})
    assert not imports("worker") & driver_side
    assert not imports("executor") & {"study", "ray_executor"}
    assert not imports("ray_executor") & {"study"}


def test_an_unreadable_image_fails_every_piece_of_its_unit_as_ray_records_it(tmp_path: Path) -> None:
    """The failure outcome is built once: the in-process worker's unreadable image yields exactly what the
    Ray executor records for a unit that failed twice (`failed_unit`)."""
    import numpy as np

    from lsc.config import validate_config
    from lsc.runner.images import StudyImage
    from lsc.runner.outcomes import ImageTask, failed_unit
    from lsc.runner.worker import ImageWorker, resolve

    cfg = validate_config({"backend": "lsc.protocol.testing:load_fake_backend", "schemes": ["random", "heads"],
                           "images": {"source": "world", "count": 1}, "metrics": []})
    backend = get_backend(cfg.backend, {})
    worker = ImageWorker(resolve(cfg, backend), backend)

    def unreadable() -> np.ndarray:
        raise OSError("disk on fire")

    image = StudyImage("broken", unreadable, ["a caption"], None)
    task = ImageTask(3, image, [(c, list(worker.cfg.schemes)) for c in worker.cfg.conditions()], True)
    got = list(worker.run(task))
    assert got == failed_unit(task, "OSError: disk on fire")
    assert [type(o).__name__ for o in got] == ["ImageOutcome", "ResultOutcome", "ResultOutcome", "OracleOutcome",
                                                "DoneOutcome"]
