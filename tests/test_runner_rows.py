"""One definition of a result row: store, export and Parquet columns follow StepRecord and ResultSummary,
a new field is a column everywhere, and run folders written before (other column order, no stored
scheme labels, a column short) still report, export and resume."""

from __future__ import annotations

import csv
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from study_data import make_folder, study_yaml
from lsc.config import load_config
from lsc.protocol.loop import StepRecord
from lsc.runner.export import export_run
from lsc.runner.rows import (STEP_COLUMNS, STEPS_EXPORT, SUMMARY_COLUMNS, SUMMARY_EXPORT, ResultSummary, columns_of,
                             create_table, export_columns)
from lsc.runner.study import run_study

# steps and summary as results.sqlite had them before the columns were derived (kept to test old folders)
OLD_STEPS = """CREATE TABLE steps (
  image_id TEXT NOT NULL, scheme TEXT NOT NULL, cond TEXT NOT NULL, snr_db REAL, step INTEGER NOT NULL,
  word_index INTEGER, word_sent TEXT, word_received TEXT, bits INTEGER, cum_bits INTEGER,
  bit_errors INTEGER, prompt TEXT, lpips REAL, ssim REAL, psnr REAL, image_key TEXT,
  PRIMARY KEY (image_id, scheme, cond, step))"""
OLD_SUMMARY = """CREATE TABLE summary (
  image_id TEXT NOT NULL, scheme TEXT NOT NULL, cond TEXT NOT NULL, snr_db REAL,
  caption TEXT, words_json TEXT, order_json TEXT, n_words INTEGER,
  words_to_threshold INTEGER, bits_to_threshold INTEGER, final_lpips REAL,
  status TEXT NOT NULL, error TEXT, elapsed_s REAL,
  PRIMARY KEY (image_id, scheme, cond))"""


def test_columns_come_from_the_row_dataclasses() -> None:
    from lsc.metrics.registry import stored_columns

    assert [c.name for c in STEP_COLUMNS] == ["image_id", "scheme", "cond", "snr_db"] + [
        f.metadata.get("column", f.name) for f in dataclasses.fields(StepRecord) if f.name != "metrics"] + [
        name for name, _ in stored_columns()]  # StepRecord.metrics: one column per registered metric column
    assert {c.name for c in SUMMARY_COLUMNS} >= {f.name for f in dataclasses.fields(ResultSummary)}
    # the store's column names are a contract with every existing run folder
    assert {c.name for c in STEP_COLUMNS} == {"image_id", "scheme", "cond", "snr_db", "step", "word_index", "word_sent",
                                             "word_received", "bits", "cum_bits", "bit_errors", "prompt", "lpips",
                                             "ssim", "psnr", "image_key",
                                             "attr_background", "attr_count", "attr_position", "attr_color",
                                             "attr_shape", "attr_size", "attr_mean", "attr_all_right", "bleu4",
                                             "rouge_l", "meteor", "cider_d", "recaption", "bertscore_f1", "itm",
                                             "clip_score"}
    assert SUMMARY_EXPORT[2:5] == ("words_to_threshold", "words_to_all_right", "bits_to_threshold")
    assert "cond" not in STEPS_EXPORT and "words_json" not in SUMMARY_EXPORT
    types = {c.name: (c.sql, c.arrow) for c in STEP_COLUMNS}
    assert types["cum_bits"] == ("INTEGER", "int64") and types["word_index"] == ("INTEGER", "int64")
    assert types["psnr"] == ("REAL", "float64") and types["prompt"] == ("TEXT", "string")
    assert types["bleu4"] == ("REAL", "float64") and types["recaption"] == ("TEXT", "string")
    assert STEPS_EXPORT[-2:] == ("clip_score", "snr_db")  # the metric columns, then the SNR


def test_a_new_step_metric_is_one_field() -> None:
    extended = dataclasses.make_dataclass("Extended", [("bleu", "float | None", dataclasses.field(default=None))],
                                          bases=(StepRecord,))
    cols = columns_of(extended)
    assert (cols[-1].name, cols[-1].sql, cols[-1].arrow) == ("bleu", "REAL", "float64")
    assert export_columns(cols)[-2:] == ("bleu", "snr_db")
    assert "bleu REAL" in create_table("steps", cols, ("step",))
    bad = dataclasses.make_dataclass("Bad", [("tags", "list[str]")])
    with pytest.raises(TypeError, match="Bad.tags: a stored column must be int, float or str"):
        columns_of(bad)


def _csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_a_folder_written_before_still_exports_reports_and_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=True)
    # a labelled scheme sorts after the plain one only if labels come from the study, not the store
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, cap, ["random", "{name: nouns, label: z_first}"]))
    out = tmp_path / "run"
    run_study(cfg, out, progress=False)
    want = [_csv(p) for p in export_run(out, "csv", tmp_path / "new")]
    assert [r[1] for r in want[1][1:3]] == ["random", "z_first"]
    # rewrite the store as older lsc left it: columns in the old order, image_key missing, no labels
    con = sqlite3.connect(out / "results.sqlite")
    for table, sql in (("steps", OLD_STEPS), ("summary", OLD_SUMMARY)):
        cols = ", ".join(line.split()[0] for line in sql.split("(", 1)[1].replace("\n", " ").split(", ")
                         if not line.strip().startswith("PRIMARY") and line.split()[0].isidentifier())
        con.executescript(f"ALTER TABLE {table} RENAME TO old; {sql}; INSERT INTO {table} ({cols}) "
                          f"SELECT {cols} FROM old; DROP TABLE old;")
    con.execute("ALTER TABLE steps DROP COLUMN image_key")
    con.execute("DELETE FROM meta WHERE key = 'schemes'")
    con.commit()
    con.close()
    got = [_csv(p) for p in export_run(out, "csv", tmp_path / "old")]
    assert got[1] == want[1]  # summary: same rows, same scheme order (labels from the stored config)
    key = STEPS_EXPORT.index("image_key")  # the old columns; image_key was not there (nor the metric columns,
    # which no step filled, so neither export has them)
    assert [r[:key] for r in got[0]] == [r[:key] for r in want[0]] and all(r[key] == "" for r in got[0][1:])
    assert got[0][0] == want[0][0] and want[0][0][key:key + 2] == ["image_key", "snr_db"]
    from lsc.report import build_report

    assert build_report(out).is_file()
    resumed = run_study(cfg, out, progress=False)  # resuming adds the missing column and finds all done
    assert resumed.skipped == resumed.total
    con = sqlite3.connect(out / "results.sqlite")
    assert "image_key" in {r[1] for r in con.execute("PRAGMA table_info(steps)")}
    con.close()
