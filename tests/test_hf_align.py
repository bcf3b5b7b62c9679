"""Token-to-word alignment of the hf backend on the tiny CLIP BPE and BERT WordPiece tokenizers."""

from __future__ import annotations

import numpy as np
import pytest

from hf_tiny import bert_tokenizer, clip_tokenizer
from lsc.backends.hf.align import merge_attention, merge_maps, word_tokens


def test_clip_word_spans_match_joined_tokenization() -> None:
    tok = clip_tokenizer()
    words = ["a", "dog", "zebra", "runs"]
    wt = word_tokens(tok, words, 77)
    # <bos> a</w> dog</w> z e br a</w> runs</w> <eos>: zebra is not in the vocabulary and splits in 4
    assert wt.spans == [(1, 2), (2, 3), (3, 7), (7, 8)]
    assert wt.ids == list(tok(" ".join(words))["input_ids"])
    assert tok.convert_ids_to_tokens(wt.ids[3:7]) == ["z", "e", "br", "a</w>"]
    assert not wt.truncated


def test_bert_word_spans() -> None:
    tok = bert_tokenizer()
    wt = word_tokens(tok, ["Two", "zebra"], 64)
    assert tok.convert_ids_to_tokens(wt.ids) == ["[CLS]", "two", "z", "##e", "##b", "##r", "##a", "[SEP]"]
    assert wt.spans == [(1, 2), (2, 7)]


def test_truncation_warns_and_keeps_a_prefix() -> None:
    tok = clip_tokenizer()
    words = ["dog"] * 80  # 80 tokens + 2 specials > 77
    with pytest.warns(UserWarning, match="kept the first 75 of 80 words"):
        wt = word_tokens(tok, words, 77)
    assert len(wt.ids) == 77 and wt.truncated
    assert wt.spans[74] == (75, 76) and wt.spans[75] is None and wt.spans[79] is None


def test_merge_attention_by_hand() -> None:
    # tokens: [S] w0 w1a w1b [E]; w1 has two tokens
    t = np.array(
        [
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.5, 0.5, 0.0, 0.0, 0.0],
            [0.2, 0.2, 0.6, 0.0, 0.0],
            [0.1, 0.2, 0.3, 0.4, 0.0],
            [0.1, 0.1, 0.1, 0.1, 0.6],
        ]
    )
    w = merge_attention(t, [(1, 2), (2, 4)])
    # row w0 = token 1; row w1 = mean of tokens 2, 3; columns summed over a word's tokens
    expected = np.array([[0.5, 0.0], [(0.2 + 0.2) / 2, (0.6 + 0.0 + 0.3 + 0.4) / 2]])
    np.testing.assert_allclose(w, expected)
    # a truncated word gets zeros
    np.testing.assert_allclose(merge_attention(t, [(1, 2), None]), [[0.5, 0.0], [0.0, 0.0]])


def test_merge_maps_mean_over_tokens() -> None:
    maps = np.arange(4 * 2 * 2, dtype=np.float32).reshape(4, 2, 2)
    out = merge_maps(maps, [(1, 3), None, (3, 4)])
    np.testing.assert_allclose(out[0], (maps[1] + maps[2]) / 2)
    np.testing.assert_allclose(out[1], 0)
    np.testing.assert_allclose(out[2], maps[3])
