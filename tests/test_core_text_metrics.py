"""BLEU, ROUGE-L and word recall on hand-worked examples."""

import math

import pytest

from lsc.metrics.text import bleu, rouge_l, word_recall


def test_bleu_identical_and_brevity_penalty():
    assert bleu("a red circle on the left", "a red circle on the left") == pytest.approx(1.0)
    # p1 = 3/3, p2 = 2/2; brevity penalty exp(1 - 6/3)
    assert bleu("the cat sat on the mat", "the cat sat", max_n=2) == pytest.approx(math.exp(-1))


def test_bleu_clipping_and_smoothing():
    # "the" appears once in the reference: clipped precision 1/3; hypothesis longer, no penalty
    assert bleu("the cat", "the the the", max_n=1) == pytest.approx(1 / 3)
    # p1 = 1/2, p2 = 0 -> smoothed 0.1/1: sqrt(0.5 * 0.1)
    assert bleu("the cat", "the dog", max_n=2) == pytest.approx(math.sqrt(0.05))
    assert bleu("the cat", "the dog", max_n=2, smooth_epsilon=0) == 0.0
    assert bleu("the cat", "") == 0.0
    assert bleu("The Cat", "the cat", max_n=2) == pytest.approx(1.0)  # case-insensitive


def test_rouge_l_and_word_recall():
    # LCS("a dog runs on grass", "a dog on grass") = 4: P = 4/4, R = 4/5, F1 = 2 * .8 / 1.8
    assert rouge_l("a dog runs on grass", "a dog on grass") == pytest.approx(1.6 / 1.8)
    assert rouge_l("a dog", "the cat") == 0.0
    # reference words a, dog, and, a, cat: the hypothesis holds one "a" and "cat"
    assert word_recall("a dog and a cat", "a cat") == pytest.approx(2 / 5)
