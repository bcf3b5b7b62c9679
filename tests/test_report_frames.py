"""Runs as DataFrames (lsc.api.load_run / load_runs): the export's columns, the run's identity, no empty metric."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from study_data import FAKE_BACKEND, make_folder, study_yaml
import lsc.api as api
from lsc.config import load_config
from lsc.errors import ConfigError
from lsc.metrics.registry import stored_columns
from lsc.runner.export import IDENTITY
from lsc.runner.study import run_study

pd = pytest.importorskip("pandas")


def _run(tmp_path: Path, name: str, overrides: list[str] = ()) -> Path:
    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=True) if not (folder / "captions.txt").exists() else folder / "captions.txt"
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, cap, ["random", "nouns"]), list(overrides))
    run_study(cfg, tmp_path / name, progress=False)
    return tmp_path / name


def test_load_run_matches_the_store_with_identity_and_without_empty_metrics(tmp_path: Path) -> None:
    out = _run(tmp_path, "ideal")
    frames = api.load_run(out)
    con = sqlite3.connect(out / "results.sqlite")
    stored = con.execute("SELECT image_id, scheme, step, lpips, cum_bits FROM steps ORDER BY image_id, scheme, step").fetchall()
    got = frames.steps.sort_values(["image_id", "scheme", "step"])
    assert list(got[["image_id", "scheme", "step", "lpips", "cum_bits"]].itertuples(index=False, name=None)) == stored
    summary = con.execute("SELECT COUNT(*), SUM(status = 'ok') FROM summary").fetchone()
    assert len(frames.summary) == summary[0] and int((frames.summary["status"] == "ok").sum()) == summary[1]
    assert len(frames.oracle) == con.execute("SELECT COUNT(*) FROM oracle").fetchone()[0] > 0
    # the fake backend scores no step metric: none of those columns, and no words_to_all_right
    assert not {name for name, _ in stored_columns()} & set(frames.steps.columns)
    assert "words_to_all_right" not in frames.summary.columns
    for frame in (frames.steps, frames.summary, frames.oracle):
        assert list(frame.columns[-len(IDENTITY):]) == list(IDENTITY)
        assert set(frame["label"]) == {"ideal"} and set(frame["backend"]) == {FAKE_BACKEND}
        assert set(frame["channel"]) == {"none"} and set(frame["prompt_order"]) == {"send"} and set(frame["seed"]) == {0}
    assert str(frames.summary["words_to_threshold"].dtype) == "Int64" and frames.summary["snr_db"].dtype == float
    assert frames.runs == {"ideal": {"label": "ideal", "backend": FAKE_BACKEND, "receiver": None, "channel": "none",
                                     "prompt_order": "send", "seed": 0, "distance": "LPIPS"}}


def test_load_runs_concatenates_runs_told_apart_by_identity(tmp_path: Path) -> None:
    ideal = _run(tmp_path, "ideal")
    swept = _run(tmp_path, "swept", ["channel.model=analytic", "channel.snr_db=[0, 20]", "seed=3", "prompt_order=caption"])
    both = api.load_runs([ideal, swept], labels=["A", "B"])
    one, two = api.load_run(ideal), api.load_run(swept)
    assert len(both.steps) == len(one.steps) + len(two.steps) and len(both.summary) == len(one.summary) + len(two.summary)
    b = both.summary[both.summary["label"] == "B"]
    assert set(b["channel"]) == {"analytic"} and set(b["seed"]) == {3} and set(b["prompt_order"]) == {"caption"}
    assert sorted(set(b["snr_db"])) == [0.0, 20.0] and both.summary[both.summary["label"] == "A"]["snr_db"].isna().all()
    assert list(both.runs) == ["A", "B"]
    with pytest.raises(ConfigError, match="labelled 'ideal'"):
        api.load_runs([ideal, ideal])
    with pytest.raises(ConfigError, match="not a run folder"):
        api.load_run(tmp_path / "nowhere")


def test_receiver_is_the_backends_default_when_the_study_names_none() -> None:
    from lsc.runner.export import run_identity

    assert run_identity({"backend": "world"}, "x")["receiver"] == "flow"
    assert run_identity({"backend": "world", "backend_options": {"receiver": "vqvae_ar"}}, "x")["receiver"] == "vqvae_ar"
    assert run_identity({"backend": "hf"}, "x")["receiver"] == "sd"
    assert run_identity({"backend": "hf", "channel": {"model": "sionna"}}, "x")["channel"] == "sionna"
