"""A kill inside a transmission loses at most the generator call in flight (issue 18, item 6).

lowest_lpips generates n(n+1)/2 images before its result exists; every generator call is journaled in
results.sqlite as it returns, and a resumed run starts from the journal: it generates exactly what the
killed run had not, and gives the same steps as an uninterrupted run, bit for bit.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from study_data import make_folder, study_yaml
from lsc.config import load_config
from lsc.runner.export import export_tables
from lsc.runner.store import GenerationJournal, ResultStore, decode_pixels, encode_pixels
from lsc.runner.study import run_study
from lsc.runner.worker import get_backend

REPO = Path(__file__).resolve().parents[1]


class Killed(BaseException):
    """Stands for SIGKILL in-process: not an Exception, so nothing records it as a failed transmission."""


def count(db: Path, sql: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def counting(monkeypatch: pytest.MonkeyPatch, generator: Any, kill_at_call: int | None = None) -> list[int]:
    """Wrap a generator: the returned list grows by each call's image count; `kill_at_call` raises Killed."""
    real = generator.generate
    sizes: list[int] = []

    def generate(prompts: Any, seed: int) -> np.ndarray:
        if kill_at_call is not None and len(sizes) + 1 == kill_at_call:
            raise Killed
        out = real(prompts, seed)
        sizes.append(len(prompts))
        return out

    monkeypatch.setattr(generator, "generate", generate)
    return sizes


def test_pixels_round_trip_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    levels = (rng.integers(0, 256, (4, 5, 3)).astype(np.float32) / np.float32(255.0))  # the world's 8-bit images
    floats = rng.random((4, 5, 3), dtype=np.float32)
    odd = np.array([[[np.nan, -0.0, 1e-30]]], np.float32)  # kept as they are, without a warning
    for img in (levels, floats, np.zeros((2, 2, 3), np.float32), odd):
        back = decode_pixels(encode_pixels(img))
        assert back.dtype == np.float32 and np.array_equal(back.view(np.uint32), img.view(np.uint32))
    assert len(encode_pixels(levels)) < len(encode_pixels(floats))  # 8-bit levels stored as bytes


def test_journal_returns_what_it_got_and_gives_dropped_pages_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = [rng.random((64, 64, 3), dtype=np.float32) for _ in range(6)]  # incompressible: 48 KB each
    with ResultStore(tmp_path / "results.sqlite") as store:
        journal = GenerationJournal(store)
        journal.record("img", [(f"k{i}", f"p {i}", 0.5 + i, im) for i, im in enumerate(images)])
        journal.record("img", [("k9", "p 9", 1.25, None)])
        got = journal.load("img")
        assert [(k, p, d) for k, p, d, _ in got] == [(f"k{i}", f"p {i}", 0.5 + i) for i in range(6)] + [("k9", "p 9", 1.25)]
        assert all(np.array_equal(a, b) for a, b in zip(images, [im for *_, im in got]))
        assert journal.load("other") == []
        pages = count(tmp_path / "results.sqlite", "PRAGMA page_count")
        journal.drop_pixels_of("img")
        assert [im for *_, im in journal.load("img")] == [None] * 7
        assert store.conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert store.conn.execute("PRAGMA page_count").fetchone()[0] <= pages - 60  # 288 KB given back


def test_injected_kill_inside_lowest_lpips_loses_only_the_call_in_flight(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=False)
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, cap, ["lowest_lpips"]), ["oracle=false"])
    gen = get_backend(cfg.backend, cfg.backend_options).generator

    scratch = counting(monkeypatch, gen)
    run_study(cfg, tmp_path / "clean", progress=False)
    monkeypatch.undo()

    killed = tmp_path / "killed"
    before = counting(monkeypatch, gen, kill_at_call=11)  # inside the second image's transmission
    with pytest.raises(Killed):
        run_study(cfg, killed, progress=False)
    monkeypatch.undo()
    db = killed / "results.sqlite"
    assert count(db, "SELECT COUNT(*) FROM summary") == 1  # the first image's transmission only
    journaled = count(db, "SELECT COUNT(*) FROM generated WHERE pixels IS NOT NULL")
    assert journaled > 0  # the in-flight transmission's completed calls, with their images

    resumed = counting(monkeypatch, gen)
    summary = run_study(cfg, killed, progress=False)
    monkeypatch.undo()
    assert (summary.ok, summary.skipped) == (3, 1)
    # Nothing generated before the kill is generated again; before the journal, the resumed run
    # redid every call of the transmission in flight.
    assert sum(resumed) == sum(scratch) - sum(before) and sum(resumed) < sum(scratch)
    assert export_tables(killed) == export_tables(tmp_path / "clean")
    assert count(db, "SELECT COUNT(*) FROM generated WHERE pixels IS NOT NULL") == 0  # done work keeps no pixels


@pytest.mark.slow
def test_kill_minus_9_inside_a_world_lowest_lpips_transmission(tmp_path: Path, monkeypatch) -> None:
    """A real `lsc run` on the world (random, then lowest_lpips on one 7-word caption), killed with
    SIGKILL two steps into lowest_lpips; the resumed run generates only what was not journaled and its
    steps equal an uninterrupted run's. The world's images depend on their batch in rare last bits, so
    this also checks that the resumed image context holds exactly the killed one's images (random's
    included) rather than generating them again in other batches."""
    sets = ["images.count=1", "images.seed=1", "caption_source=dataset", "schemes=[random, lowest_lpips]", "oracle=false",
            "backend_options.sampler_steps=1", "backend_options.threads=1"]
    killed = tmp_path / "killed"
    args = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lsc.cli", "run", *args, "--out", str(killed), "--no-report",
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = killed / "results.sqlite"
    deadline = time.time() + 240
    journaled = done = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            if db.exists():
                done = count(db, "SELECT COUNT(*) FROM summary")
                journaled = count(db, "SELECT COUNT(*) FROM generated")
        except sqlite3.OperationalError:
            pass
        if done == 1 and journaled >= 8 + 10:  # random's 8 images, then two steps of lowest_lpips
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read() if proc.stderr else ''}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    journaled = count(db, "SELECT COUNT(*) FROM generated")
    assert count(db, "SELECT COUNT(*) FROM summary") == 1 and journaled >= 18  # killed inside lowest_lpips

    cfg = load_config(overrides=sets)
    gen = get_backend(cfg.backend, cfg.backend_options).generator
    resumed = counting(monkeypatch, gen)
    assert run_study(cfg, killed, progress=False).ok == 1  # lowest_lpips; random was done
    monkeypatch.undo()
    scratch = counting(monkeypatch, gen)
    run_study(cfg, tmp_path / "clean", progress=False)
    monkeypatch.undo()
    assert sum(resumed) == sum(scratch) - journaled  # before the journal: every lowest_lpips image again
    assert export_tables(killed) == export_tables(tmp_path / "clean")
    assert sorted(p.name for p in (killed / "images").iterdir()) == sorted(p.name for p in (tmp_path / "clean" / "images").iterdir())
    # the journal's images are gone once the image is done
    assert count(db, "SELECT COUNT(*) FROM generated WHERE pixels IS NOT NULL") == 0
    with ResultStore(db) as store:  # the journal's distances are the ones the steps report
        journal = {r["prompt"]: r["lpips"] for r in store.rows("SELECT prompt, lpips FROM generated")}
        for step in store.steps():
            assert journal[step["prompt"]] == step["lpips"]
