"""`lsc world calibrate`: each receiver's threshold derived again in place, nothing else touched."""

import json
import shutil

import pytest

from lsc.backends.world.release import write_random_weights


@pytest.fixture()
def weights(tmp_path_factory):
    folder = write_random_weights(tmp_path_factory.mktemp("cal") / "weights")
    meta = json.loads((folder / "world.json").read_text())
    meta["threshold"] = 123.0  # a stale threshold the calibration must replace
    (folder / "world.json").write_text(json.dumps(meta))
    return folder


def test_calibrate_writes_the_derived_threshold_and_keeps_the_weights(weights, lsc_main):
    before = {f.name: f.read_bytes() for f in weights.glob("*.safetensors")}
    result = lsc_main("world", "calibrate", "--weights", str(weights), "--scenes", "3")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    meta = json.loads((weights / "world.json").read_text())
    assert list(out) == ["flow"]  # the only receiver this folder holds
    assert meta["threshold"] == out["flow"]["derived_threshold"] == meta["eval"]["derived_threshold"] != 123.0
    assert meta["eval"]["scenes"] == 3
    assert {f.name: f.read_bytes() for f in weights.glob("*.safetensors")} == before


def test_calibrate_refuses_bad_input_in_one_line(weights, lsc_main, tmp_path):
    bad_receiver = lsc_main("world", "calibrate", "--weights", str(weights), "--receiver", "pixels", "--scenes", "3")
    missing_receiver = lsc_main("world", "calibrate", "--weights", str(weights), "--receiver", "flow_fast", "--scenes", "3")
    empty = tmp_path / "empty"
    empty.mkdir()
    not_weights = lsc_main("world", "calibrate", "--weights", str(empty))
    for result in (bad_receiver, missing_receiver, not_weights):
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "flow_fast.json" in missing_receiver.stderr and "world.json" in not_weights.stderr
    assert json.loads((weights / "world.json").read_text())["threshold"] == 123.0  # refused before any evaluation


def test_calibrating_a_copy_leaves_the_original_alone(weights, lsc_main, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(weights, copy)
    assert lsc_main("world", "calibrate", "--weights", str(copy), "--receiver", "flow", "--scenes", "3").returncode == 0
    assert json.loads((weights / "world.json").read_text())["threshold"] == 123.0
    assert json.loads((copy / "world.json").read_text())["threshold"] != 123.0
