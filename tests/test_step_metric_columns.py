"""Step metrics scored during a study (issue 19): the study's `metrics:` are scored at every `metrics_every`-th
step and always at the last (attributes at every step), stored one column each in results.sqlite and the
export, with "words until every attribute is right" in the summary; the report reads the stored values and
computes only what the store lacks; a resumed run stores the numbers of an uninterrupted one."""

from __future__ import annotations

import csv
import dataclasses
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lsc.metrics import registry

pytest.importorskip("sacrebleu")
pytest.importorskip("rouge_score")

SETS = ["images.count=2", "schemes=[random, nouns]", "oracle=false"]
RECAPTION = ("bleu4", "rouge_l", "cider_d", "recaption")


@pytest.fixture(scope="module")
def world_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-scene world study with the default step metrics (attributes, recaption; every 4th step)."""
    from lsc.config import load_config
    from lsc.runner.study import run_study

    out = tmp_path_factory.mktemp("steps") / "run"
    run_study(load_config(None, SETS), out, progress=False)
    return out


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def _rows(db: Path, sql: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql)]
    finally:
        con.close()


def _execute(db: Path, *sql: str) -> None:
    con = sqlite3.connect(db)
    with con:
        for s in sql:
            con.execute(s)
    con.close()


def _transmissions(run: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in _rows(run / "results.sqlite", "SELECT * FROM steps ORDER BY image_id, scheme, step"):
        out.setdefault((r["image_id"], r["scheme"]), []).append(r)
    return out


def test_due_steps_by_hand() -> None:
    recaption, attributes = registry.REGISTRY["recaption"], registry.REGISTRY["attributes"]
    assert registry.due_steps(recaption, 11, 4) == [0, 4, 8, 10]  # steps 0..10: every 4th and the last
    assert registry.due_steps(recaption, 9, 4) == [0, 4, 8]  # the last is a 4th already
    assert registry.due_steps(recaption, 3, 1) == [0, 1, 2] and registry.due_steps(recaption, 1, 4) == [0]
    assert registry.due_steps(recaption, 6, 100) == [0, 5]
    assert registry.due_steps(attributes, 6, 4) == list(range(6))  # cheap: every step
    assert registry.defaults("world") == ["attributes", "recaption"] and registry.defaults("hf") == ["recaption"]


def test_study_stores_the_due_steps_in_columns_export_and_summary(world_run: Path, tmp_path: Path) -> None:
    import yaml

    resolved = yaml.safe_load((world_run / "config.resolved.yaml").read_text())
    assert resolved["metrics"] == ["attributes", "recaption"] and resolved["metrics_every"] == 4
    txs = _transmissions(world_run)
    assert len(txs) == 4
    for (image_id, scheme), rows in txs.items():
        n = len(rows)
        due = sorted(set(range(0, n, 4)) | {n - 1})  # by hand: steps 0, 4, 8, ... and the last, always
        for j, row in enumerate(rows):
            for col in RECAPTION:
                assert (row[col] is not None) == (j in due), (image_id, scheme, j, col)
            assert row["attr_all_right"] in (0.0, 1.0) and row["attr_mean"] is not None  # every step
            assert row["itm"] is None and row["bertscore_f1"] is None  # not selected
        last = rows[-1]
        assert last["recaption"] and 0 <= last["bleu4"] <= 1 + 1e-9 and last["cider_d"] >= 0
        assert last["meteor"] is not None  # WordNet is installed where the tests run
    summary = {(r["image_id"], r["scheme"]): r for r in _rows(world_run / "results.sqlite", "SELECT * FROM summary")}
    for tx, rows in txs.items():
        first = next((j for j, r in enumerate(rows) if r["attr_all_right"] == 1.0), None)
        assert summary[tx]["words_to_all_right"] == first
    assert any(s["words_to_all_right"] is not None for s in summary.values())

    from lsc.runner.export import export_run

    steps_csv, summary_csv = export_run(world_run, "csv", tmp_path / "csv")
    with open(steps_csv, newline="") as f:
        exported = list(csv.DictReader(f))
    stored = [r for rows in txs.values() for r in rows]
    by_key = {(r["image_id"], r["scheme"], int(r["step"])): r for r in exported}
    for r in stored:
        e = by_key[(r["image_id"], r["scheme"], r["step"])]
        for col in (*RECAPTION, "meteor", "attr_all_right", "attr_mean"):
            assert e[col] == ("" if r[col] is None else str(r[col]))
    with open(summary_csv, newline="") as f:
        assert "words_to_all_right" in next(csv.reader(f))
    pq = pytest.importorskip("pyarrow.parquet")
    steps_pq, _ = export_run(world_run, "parquet", tmp_path / "pq")
    table = pq.read_table(steps_pq)
    assert table.column("bleu4").null_count == sum(r["bleu4"] is None for r in stored)
    assert str(table.schema.field("recaption").type) == "string"


def test_stored_values_are_what_the_report_would_compute(world_run: Path, tmp_path: Path) -> None:
    """The same numbers whether the runner scored them or a report computes them from the PNGs (a run
    folder written before the columns existed)."""
    from lsc.report import step_metrics
    from lsc.report.data import load_run

    old = _copy(world_run, tmp_path / "old")
    cols = [name for name, _ in registry.stored_columns()]
    _execute(old / "results.sqlite", f"UPDATE steps SET {', '.join(f'{c} = NULL' for c in cols)}")
    metrics = registry.select(["attributes", "recaption"], "world")
    read: dict[str, int] = {}
    computed: dict[str, int] = {}
    got = step_metrics.compute(load_run(world_run), "", metrics, read)
    again = step_metrics.compute(load_run(old), "", metrics, computed)
    assert read["computed"] == 0 and read["stored"] > 0  # everything came from the store
    assert computed["stored"] == 0 and computed["computed"] == read["stored"]  # everything computed again
    assert got.keys() == again.keys()
    for tx in got:
        assert len(got[tx]) == len(again[tx])
        for a, b in zip(got[tx], again[tx]):
            assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-12) for k in a)


def test_the_report_reads_the_store_and_does_not_recompute(world_run: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from lsc.report import build_report, step_metrics
    from lsc.report.data import load_run

    run = _copy(world_run, tmp_path / "run")
    tx = sorted(_transmissions(run))[0]
    last = max(r["step"] for r in _transmissions(run)[tx])
    _execute(run / "results.sqlite", f"UPDATE steps SET bleu4 = 0.123456 WHERE image_id = '{tx[0]}' AND "
                                     f"scheme = '{tx[1]}' AND step = {last}")

    def boom(batch: Any) -> Any:
        raise AssertionError("computed a step metric the store holds")

    for name in ("attributes", "recaption"):
        monkeypatch.setitem(registry.REGISTRY, name, dataclasses.replace(registry.REGISTRY[name], compute=boom))
    counts: dict[str, int] = {}
    values = step_metrics.compute(load_run(run), "", registry.select(["attributes", "recaption"], "world"), counts)
    assert counts["computed"] == 0 and values[(tx[1], tx[0])][last]["bleu4"] == 0.123456
    build_report(run, strips=0)  # the whole report, default metrics, none computed
    with open(run / "report" / "step_metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["metric"] == "bleu4"]
    assert {(r["image_id"], r["scheme"], int(r["step"])): float(r["value"]) for r in rows}[(tx[0], tx[1], last)] == 0.123456
    assert len(rows) == sum(r["bleu4"] is not None for rs in _transmissions(run).values() for r in rs)
    assert (run / "report" / "bleu4_vs_words.png").is_file() and (run / "report" / "attr_mean_vs_words.png").is_file()
    assert "words until every attribute is right" in (run / "report" / "report.md").read_text()


def test_resumed_run_stores_what_an_uninterrupted_one_did(world_run: Path, tmp_path: Path) -> None:
    """A transmission lost to a kill is scored again on its own (the cache of the schemes before it is gone
    with the process), and a kill before the end-of-study CIDEr-D pass costs nothing: the same rows."""
    from lsc.config import load_config
    from lsc.runner.rows import WALL_TIME_FIELDS
    from lsc.runner.study import run_study

    run = _copy(world_run, tmp_path / "run")
    db = run / "results.sqlite"
    first = sorted(_transmissions(run))[0][0]
    _execute(db, f"DELETE FROM summary WHERE image_id = '{first}' AND scheme = 'nouns'",
             f"DELETE FROM steps WHERE image_id = '{first}' AND scheme = 'nouns'",
             "UPDATE steps SET cider_d = NULL")
    summary = run_study(load_config(None, SETS), run, progress=False)
    assert (summary.ok, summary.skipped) == (1, 3)
    for table, key in (("steps", "image_id, scheme, cond, step"), ("summary", "image_id, scheme, cond")):
        sql = f"SELECT * FROM {table} ORDER BY {key}"
        want = _rows(world_run / "results.sqlite", sql)
        got = _rows(db, sql)
        for r in want + got:
            for name in WALL_TIME_FIELDS:
                r.pop(name, None)
        assert got == want


def test_another_metric_selection_resumes_and_the_report_fills_in(tmp_path: Path) -> None:
    """Which metrics a study scores is not part of its identity: a folder resumes with another selection,
    done transmissions keep what they scored, and the report computes what they lack."""
    from lsc.config import load_config
    from lsc.report import step_metrics
    from lsc.report.data import load_run
    from lsc.runner.study import run_study

    sets = ["images.count=1", "schemes=[random, nouns]", "oracle=false"]
    out = tmp_path / "run"
    run_study(load_config(None, [*sets, "metrics=[attributes]"]), out, progress=False)
    db = out / "results.sqlite"
    assert _rows(db, "SELECT COUNT(*) AS n FROM steps WHERE bleu4 IS NOT NULL")[0]["n"] == 0
    _execute(db, "DELETE FROM summary WHERE scheme = 'nouns'", "DELETE FROM steps WHERE scheme = 'nouns'")
    again = run_study(load_config(None, [*sets, "metrics_every=2"]), out, progress=False)  # default metrics now
    assert (again.ok, again.skipped) == (1, 1)
    txs = _transmissions(out)
    (random,) = [rows for (_, s), rows in txs.items() if s == "random"]
    (nouns,) = [rows for (_, s), rows in txs.items() if s == "nouns"]
    assert all(r["bleu4"] is None for r in random)
    n = len(nouns)
    assert [r["step"] for r in nouns if r["bleu4"] is not None] == sorted(set(range(0, n, 2)) | {n - 1})
    counts: dict[str, int] = {}
    values = step_metrics.compute(load_run(out), "", registry.select(["attributes", "recaption"], "world"), counts)
    n_random = len(random)
    assert counts["computed"] == len(set(range(0, n_random, 2)) | {n_random - 1})  # random's due re-captions
    (image_id,) = {r["image_id"] for r in random}
    assert [j for j, v in enumerate(values[("random", image_id)]) if "bleu4" in v] == sorted(
        set(range(0, n_random, 2)) | {n_random - 1})


def test_scored_metrics_are_frame_columns_and_plot_as_figures(world_run: Path, tmp_path: Path) -> None:
    """A world run's scored metrics are DataFrame columns (the unscored ones absent) and `lsc plot` draws them."""
    import lsc.api as api

    frames = api.load_run(world_run)
    scored = {"attr_mean", "attr_all_right", "bleu4", "rouge_l", "cider_d", "recaption"}
    assert scored <= set(frames.steps.columns) and not {"itm", "bertscore_f1", "clip_score"} & set(frames.steps.columns)
    assert "words_to_all_right" in frames.summary.columns and set(frames.steps["receiver"]) == {"flow_fast"}
    stored = {(r["image_id"], r["scheme"], r["step"]): r["attr_mean"] for r in _rows(world_run / "results.sqlite", "SELECT * FROM steps")}
    got = {(r.image_id, r.scheme, r.step): r.attr_mean for r in frames.steps.itertuples()}
    assert got == pytest.approx(stored)
    path = api.plot([world_run], "attr_mean_vs_words", tmp_path / "attr.svg", format="svg")
    assert path == tmp_path / "attr.svg" and "attribute accuracy" not in path.read_text()  # paper style: no title
    assert "random (n=2)" in path.read_text() and "nouns (n=2)" in path.read_text()
