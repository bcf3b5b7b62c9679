"""Honest names and success that means success (issue 32 items 5 and 6): on the world the distance is named
LPIPS-world in the report, tables, compare, export and demo, its scale and the threshold's calibration come
first; the headline table shows "every attribute right" beside "reached the threshold"; a strip marks an
image under the threshold that the attribute reader finds wrong."""

from __future__ import annotations

import csv
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from lsc.backends.world.options import DISTANCE as WORLD
from lsc.interfaces import UNDECLARED_DISTANCE, lpips_distance


@pytest.fixture(scope="module")
def world_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One world scene, random, heads and heads with only_heads (ssc_only), the attribute reader scoring every step."""
    from lsc.config import load_config
    from lsc.runner.study import run_study

    out = tmp_path_factory.mktemp("names") / "run"
    run_study(load_config(None, ["images.count=1", "schemes=[random, heads, {name: heads, only_heads: true, label: ssc_only}]", "oracle=false", "metrics=[attributes]"]),
              out, progress=False)
    return out


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def test_each_backend_declares_its_distance() -> None:
    from lsc.backends import declared_distance

    assert lpips_distance("alex").name == "LPIPS (AlexNet)" and lpips_distance("vgg").name == "LPIPS (VGG)"
    assert declared_distance("hf", {}) == lpips_distance("alex")
    assert declared_distance("hf", {"lpips_net": "vgg"}).name == "LPIPS (VGG)"
    assert declared_distance("world") is WORLD and WORLD.name == "LPIPS-world"
    assert declared_distance("package.module:loader") is None
    assert WORLD.named("final LPIPS") == "final LPIPS-world"


@pytest.mark.slow  # a whole report (figures, FID-world): 14 s on a loaded 2-core machine
def test_the_world_report_names_its_distance_and_says_its_scale_first(world_run: Path, tmp_path: Path) -> None:
    import yaml

    from lsc.report import build_report

    run = _copy(world_run, tmp_path / "run")
    build_report(run, strips=1, step_metrics=[])
    text = (run / "report" / "report.md").read_text()
    threshold = yaml.safe_load((run / "config.resolved.yaml").read_text())["threshold"]
    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert bullets[0] == f"- {WORLD.line(threshold)}"  # the first line: name, scale, calibration
    assert "0 (the same image) to about 5" in bullets[0] and "85%" in bullets[0]
    # every other "LPIPS" of the report is the world's by name (the first line alone names the papers' LPIPS)
    rest = text.replace(bullets[0], "")
    assert re.findall(r"LPIPS(?!-world)", rest) == []
    assert "final LPIPS-world" in rest and "area under LPIPS-world vs words" in rest
    html = (run / "report" / "report.html").read_text()
    assert "LPIPS-world" in html


def test_tables_compare_and_export_name_the_world_distance(world_run: Path, tmp_path: Path) -> None:
    from lsc import api
    from lsc.report.compare import compare_runs, markdown_table
    from lsc.runner.export import export_run

    table = api.table([world_run], format="markdown", metrics=["final_lpips", "area", "all_right"])
    assert "final LPIPS-world" in table and "area under LPIPS-world vs words" in table
    assert "LPIPS-world: 0 (the same image) to about 5" in table
    cells = compare_runs([world_run], scheme="heads")
    assert cells[0].as_dict()["distance"] == "LPIPS-world" and "final LPIPS-world (mean" in markdown_table(cells)
    (steps, _) = export_run(world_run, "csv", tmp_path / "csv")
    with open(steps, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["distance"] for r in rows} == {"LPIPS-world"}
    pq = pytest.importorskip("pyarrow.parquet")
    (steps_pq, _) = export_run(world_run, "parquet", tmp_path / "pq")
    field = pq.read_schema(steps_pq).field("lpips")
    assert field.metadata[b"description"].decode() == f"LPIPS-world: {WORLD.scale}"


def test_a_run_from_before_the_record_is_named_by_its_backend(world_run: Path, tmp_path: Path) -> None:
    from lsc.report.data import load_run

    run = _copy(world_run, tmp_path / "run")
    with sqlite3.connect(run / "results.sqlite") as c:
        c.execute("DELETE FROM meta WHERE key = 'distance'")
    assert load_run(run).distance == WORLD
    with sqlite3.connect(run / "results.sqlite") as c:
        c.execute("UPDATE meta SET value = replace(value, 'backend: world', 'backend: pkg.mod:loader') WHERE key = 'config'")
    assert load_run(run).distance == UNDECLARED_DISTANCE


def test_headline_table_shows_every_attribute_right_beside_the_threshold(world_run: Path) -> None:
    from lsc.report.analysis import success_columns, transmissions
    from lsc.report.build import scheme_table
    from lsc.report.data import load_run
    from lsc.report.stats import mean_ci, wilson

    data = load_run(world_run)
    rows = scheme_table(data, "")
    head, keys = success_columns(rows)
    at = head.index("reached the threshold at some step [95% CI]")
    assert head[at + 1 : at + 3] == ["every attribute right at some step [95% CI]",
                                     "words to every attribute right, failures at n+1"]
    tx = transmissions(data, "")
    for row in rows:
        summaries = [s for s in data.summaries if s["scheme"] == row["scheme"] and s["status"] == "ok"]
        hits = sum(s["words_to_all_right"] is not None for s in summaries)
        p, lo, hi = wilson(hits, len(summaries))
        assert row["all_right"] == f"{p:.0%} [{lo:.0%}, {hi:.0%}]"
        by_hand = [s["words_to_all_right"] if s["words_to_all_right"] is not None else s["n_words"] + 1 for s in summaries]
        assert row["words_all_right_pen"] == mean_ci(by_hand).fmt(2)
        assert all(t.attributes_scored for t in tx[row["scheme"]].values())
    from lsc.report.build import _named, _result_tables

    tables = [_named(b, data.distance) for b in _result_tables(data, "")]
    heads = [h for b in tables if hasattr(b, "head") for h in b.head]
    assert "final LPIPS-world" in heads and "every attribute right at some step [95% CI]" in heads


def test_without_the_attribute_reader_the_columns_are_left_out(world_run: Path, tmp_path: Path) -> None:
    from lsc.report.analysis import SUCCESS_HEAD, success_columns
    from lsc.report.build import scheme_table
    from lsc.report.data import load_run

    run = _copy(world_run, tmp_path / "run")
    with sqlite3.connect(run / "results.sqlite") as c:
        c.execute("UPDATE steps SET attr_all_right = NULL")
    assert success_columns(scheme_table(load_run(run), ""))[0] == SUCCESS_HEAD


def _vermillion_pixels(path: Path) -> int:
    from PIL import Image

    from lsc.report.plots import WRONG_RGB

    arr = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(arr - np.array(WRONG_RGB)).sum(axis=2) < 30).sum())


def test_a_strip_marks_an_image_under_the_threshold_that_is_wrong(world_run: Path, tmp_path: Path) -> None:
    from lsc.report import plots
    from lsc.report.data import load_run

    run = _copy(world_run, tmp_path / "run")
    data = load_run(run)
    image_id = data.image_order[0]
    key = ("", "heads", image_id)
    last = data.steps[key][-1]
    # every step read as right: no mark (whatever the shipped receiver drew under the threshold)
    with sqlite3.connect(run / "results.sqlite") as c:
        c.execute("UPDATE steps SET attr_all_right = 1 WHERE scheme = 'heads'")
    plain = plots.image_strip(plots.one(load_run(run), ""), image_id, tmp_path / "plain.png", schemes=["heads"])
    # then one step under the threshold, read as wrong by the attribute reader, and no other mark anywhere
    with sqlite3.connect(run / "results.sqlite") as c:
        c.execute("UPDATE steps SET lpips = ?, attr_all_right = 0 WHERE image_id = ? AND scheme = 'heads' AND step = ?",
                  (data.threshold / 2, image_id, last["step"]))
    marked = plots.image_strip(plots.one(load_run(run), ""), image_id, tmp_path / "marked.png", schemes=["heads"])
    assert plain is not None and marked is not None
    assert _vermillion_pixels(marked) > 4 * 96 and _vermillion_pixels(plain) == 0


def test_one_n_for_failures_at_n_plus_1_across_the_reports_tables_end_to_end(world_run: Path) -> None:
    """only_heads sends fewer words than its caption holds: the success table and the step-metric table count
    its failures at n+1 with the same n (the caption's words), and agree on every attribute right."""
    from lsc.metrics import registry
    from lsc.report import step_metrics
    from lsc.report.build import scheme_table
    from lsc.report.data import load_run

    data = load_run(world_run)
    (only,) = [s for s in data.summaries if s["scheme"] == "ssc_only"]
    sent = len(data.steps[("", "ssc_only", only["image_id"])]) - 1
    assert sent < only["n_words"]  # the case the definitions disagreed on
    rows = {r["scheme"]: r for r in scheme_table(data, "")}
    head, body = step_metrics.table(data, step_metrics.compute(data, "", registry.select(["attributes"], "world")))
    col = {name: head.index(name) for name in head}
    for line in body:
        row = rows[line[0]]
        assert line[col["words to the LPIPS threshold, failures at n+1"]] == row["words_pen"]
        assert line[col["the same, failures at n+1"]] == row["words_all_right_pen"]
        assert line[col["every attribute right at some step [95% CI]"]] == row["all_right"]
    expected = only["words_to_threshold"] if only["words_to_threshold"] is not None else only["n_words"] + 1
    assert rows["ssc_only"]["words_pen"] == f"{expected:.2f}"
