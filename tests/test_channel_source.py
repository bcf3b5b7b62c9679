"""Source coding: hand-worked bit patterns, round trips, garbage never crashes."""

import numpy as np
import pytest

from lsc.channel.source import REPLACEMENT, decode_bits, encode_word, separator, word_bits
from lsc.errors import ConfigError


def test_ascii_bits_are_msb_first_bytes():
    # 'A' = 0x41 = 0100 0001, 'b' = 0x62 = 0110 0010
    assert encode_word("Ab").tolist() == [0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0]
    assert word_bits("circle") == 48


@pytest.mark.parametrize("code", ["ascii", "utf8"])
@pytest.mark.parametrize("word", ["dog", "a", "left-most", "x2", ""])
def test_round_trip(code, word):
    assert decode_bits(encode_word(word, code), code) == word


def test_utf8_multibyte_round_trip_and_ascii_replacement():
    assert word_bits("café", "utf8") == 40  # é is two bytes
    assert decode_bits(encode_word("café", "utf8"), "utf8") == "café"
    assert decode_bits(encode_word("café", "ascii"), "ascii") == "caf?"  # not representable in ASCII


def test_single_bit_flip_changes_one_character():
    bits = encode_word("dog")
    bits[8 + 2] ^= 1  # 'o' = 0x6F -> 0x4F 'O'
    assert decode_bits(bits) == "dOg"


def test_garbage_never_crashes_and_stays_one_printable_word():
    rng = np.random.default_rng(0)
    for code in ("ascii", "utf8"):
        for _ in range(200):
            bits = rng.integers(0, 2, size=int(rng.integers(0, 80)), dtype=np.uint8)
            text = decode_bits(bits, code)
            assert all(ch.isprintable() and not ch.isspace() for ch in text)
    # high bit set in ASCII, a control character, a space, a newline: all replaced
    data = np.unpackbits(np.array([0xE9, 0x07, 0x20, 0x0A, 0x61], dtype=np.uint8))
    assert decode_bits(data, "ascii") == REPLACEMENT * 4 + "a"
    # a lone UTF-8 continuation byte and a truncated trailing byte
    assert decode_bits(np.concatenate([np.unpackbits(np.array([0x80, 0x62], dtype=np.uint8)), [1, 0, 1]]), "utf8") == REPLACEMENT + "b"


def test_separator_is_space_code():
    assert separator(8).tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    assert separator(0).size == 0
    assert separator(12).tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    with pytest.raises(ConfigError):
        separator(-1)
    with pytest.raises(ConfigError):
        encode_word("dog", "latin1")
