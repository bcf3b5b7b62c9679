"""WordNet synonyms keep the part of speech; the built-in table answers (with a warning) without WordNet."""

import os
import subprocess
import warnings
from pathlib import Path

import pytest

from lsc.errors import ConfigError
from lsc.language import synonyms as syn
from lsc.language.synonyms import inflect, longer_synonyms, synonyms

REPO = Path(__file__).resolve().parents[1]


def test_wordnet_dog_red_running(wordnet):
    dog = synonyms("dog")
    assert dog.source == "wordnet"
    assert {"domestic dog", "hound"} <= set(dog.by_pos["noun"])
    assert "chase" in dog.by_pos["verb"]
    red = synonyms("red", "adj")
    assert set(red.by_pos) == {"adj"}
    assert {"crimson", "scarlet", "reddish"} <= set(red.by_pos["adj"])
    running = synonyms("running", "VBG")  # a Penn tag; the -ing form is kept
    verbs = running.by_pos["verb"]
    assert {"operating", "going", "flowing"} <= set(verbs)
    assert all(v.split()[0].endswith("ing") for v in verbs)
    assert "run" not in verbs and "running" not in verbs


def test_wordnet_inflection_follows_the_word(wordnet):
    assert "hounds" in synonyms("dogs", "noun").by_pos["noun"]
    jumped = synonyms("jumped", "verb").by_pos["verb"]
    assert {"leapt", "sprang"} <= set(jumped)  # irregular pasts from WordNet's verb.exc


def test_longer_synonyms_for_scc(wordnet):
    out = longer_synonyms("red", "adj", 2)
    assert "crimson" in out and all(len(s) >= 5 and " " not in s for s in out)
    assert longer_synonyms("red", "ADJ", 2, vocabulary={"scarlet", "blue"}) == ["scarlet"]
    assert longer_synonyms("big", "adj", 1) == ["large"]  # dominant sense only by default
    assert longer_synonyms("the", "DET", 1) == []


def test_builtin_fallback_warns_and_keeps_pos(monkeypatch):
    monkeypatch.setattr(syn, "wordnet", lambda: None)
    monkeypatch.setattr(syn, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = synonyms("running", "verb")
    assert res.source == "builtin"
    assert res.by_pos == {"verb": ["sprinting", "racing", "jogging"]}
    assert any(issubclass(w.category, syn.WordNetMissingWarning) for w in caught)
    assert synonyms("dogs").by_pos == {"noun": ["canines", "hounds", "pooches"]}
    assert longer_synonyms("big", "adj", 2) == ["large", "enormous"]


def test_inflection_rules():
    assert [inflect(b, "ing") for b in ["run", "make", "die", "see", "visit", "carry"]] == [
        "running", "making", "dying", "seeing", "visiting", "carrying"]
    assert [inflect(b, "ed") for b in ["stop", "carry", "bake", "jump"]] == ["stopped", "carried", "baked", "jumped"]
    assert [inflect(b, "s") for b in ["box", "city", "dog", "serviceman", "human", "run away"]] == [
        "boxes", "cities", "dogs", "servicemen", "humans", "run aways"]
    assert inflect("run away", "ing") == "running away"


def test_bad_input():
    with pytest.raises(ConfigError):
        synonyms("two words")
    with pytest.raises(ConfigError):
        synonyms("dog", "preposition")


def test_lsc_nltk_data_path_is_searched(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setenv("LSC_NLTK_DATA", str(tmp_path))
    syn.wordnet()
    assert str(tmp_path) in nltk.data.path
    nltk.data.path.remove(str(tmp_path))


def test_install_script_lays_out_an_nltk_corpus(tmp_path):
    src = tmp_path / "debian"
    src.mkdir()
    for name in ["data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "index.verb", "index.adj",
                 "index.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc", "index.sense"]:
        (src / name).write_text("x\n")
    env = {**os.environ, "WORDNET_SRC": str(src)}
    script = str(REPO / "scripts" / "install_wordnet.sh")
    out = subprocess.run(["bash", script, str(tmp_path / "data")], env=env, capture_output=True, text=True, check=True)
    target = tmp_path / "data" / "corpora" / "wordnet"
    assert "installed at" in out.stdout and (target / "index.sense").exists()
    lex = (target / "lexnames").read_text().splitlines()
    assert len(lex) == 45 and lex[0] == "00\tadj.all\t3" and lex[44] == "44\tadj.ppl\t3"
    assert lex[29] == "29\tverb.body\t2"
    again = subprocess.run(["bash", script, str(tmp_path / "data")], env=env, capture_output=True, text=True, check=True)
    assert "already installed" in again.stdout
