"""`lsc parse`, `lsc synonyms`, `lsc skd` through the real CLI app."""

import json

import pytest
from typer.testing import CliRunner

from lsc.cli import app
from lsc.language import synonyms as syn

runner = CliRunner()


def test_parse_json():
    out = runner.invoke(app, ["parse", "Two children are playing on the beach", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["heads"] == ["children", "playing", "on", "beach"]
    assert data["nouns"] == ["children", "beach"]
    assert data["words"][1]["tag"] == "NNS" and data["words"][1]["head_index"] == 3
    ud = json.loads(runner.invoke(app, ["parse", "Two children are playing on the beach", "--json", "--heads", "ud"]).output)
    assert ud["heads"] == ["children", "playing", "beach"]


@pytest.mark.slow
def test_synonyms_json():
    out = runner.invoke(app, ["synonyms", "red", "--pos", "adj", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output[out.output.index("{"):])
    assert data["word"] == "red" and list(data["by_pos"]) == ["adj"]
    expected = "crimson" if data["source"] == "wordnet" else "scarlet"
    assert data["source"] == ("wordnet" if syn.wordnet_available() else "builtin")
    assert expected in data["by_pos"]["adj"]


def test_skd_json_with_examples_file(tmp_path):
    path = tmp_path / "ex.json"
    path.write_text(json.dumps([["a big red ball on the left", "a large red circle at left"],
                                ["a small blue box on the right", "a small blue square at right"],
                                ["a big blue box on the left", "a large blue square at left"],
                                ["a small red ball on the right", "a small red circle at right"]]))
    out = runner.invoke(app, ["skd", "a big blue ball on the right", "--examples", str(path), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["text"] == "a large blue circle at right" and data["kept"] and data["engine"] == "lexicon"


def test_skd_builtin_examples_and_errors(tmp_path):
    out = runner.invoke(app, ["skd", "there is a cat that is laying on the couch", "--backend", "builtin", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["text"] == "a cat lying on a sofa"
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1}')
    from lsc.errors import ConfigError

    res = runner.invoke(app, ["skd", "a dog", "--examples", str(bad)])
    assert isinstance(res.exception, ConfigError) and "list of [alice, bob]" in str(res.exception)
    res = runner.invoke(app, ["skd", "a dog", "--engine", "gpt"])
    assert isinstance(res.exception, ConfigError)
