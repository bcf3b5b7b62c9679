"""Receiver word correction: distances, ties and limits worked by hand."""

from lsc.channel.correction import WordCorrector, correct_word, edit_distance


def test_edit_distance_classic_values():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("", "abc") == 3
    assert edit_distance("dog", "dog") == 0
    assert edit_distance("kitten", "sitting", limit=1) == 2  # early stop reports limit + 1


def test_known_word_is_kept():
    assert correct_word("cat", {"cat", "bat"}) == "cat"


def test_ties_prefer_same_length_then_alphabetical():
    # 'cat' -> 'bat' (1 substitution, same length) beats 'cart' (1 insertion, length differs)
    assert correct_word("cXt", {"cart", "cot", "bat"}) == "cot"
    assert correct_word("cat", {"cart", "bat"}) == "bat"
    # two substitutions at distance 1, same length: alphabetical first
    assert correct_word("caX", {"cat", "car"}) == "car"
    # 'ca' (deletion) and 'cart' (insertion) both at 1 and both 1 char off: alphabetical
    assert correct_word("car", {"cart", "ca"}) == "ca"


def test_distance_limit():
    vocab = {"circle", "square"}
    assert correct_word("cXrcXX", vocab, max_distance=2) == "cXrcXX"  # 3 edits away: kept
    assert correct_word("cXrcXX", vocab, max_distance=None) == "circle"
    assert correct_word("cXrcle", vocab, max_distance=0) == "cXrcle"
    assert correct_word("cXrcle", vocab, max_distance=1) == "circle"


def test_replacement_characters_count_as_substitutions_and_cache():
    corrector = WordCorrector({"blue", "glue", "red"}, max_distance=2)
    assert corrector.correct("\ufffdlue") == "blue"  # tie blue/glue at 1: alphabetical
    assert corrector.correct("r\ufffdd") == "red"
    assert corrector.correct("r\ufffdd") == "red"  # cached
    assert WordCorrector([], max_distance=2).correct("xyz") == "xyz"
