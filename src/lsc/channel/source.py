"""Source coding: a word to bits and back (one job: the character <-> bit mapping).

- "ascii" (default, the research code): 8 bits per character, most significant bit first. Characters
  outside 7-bit ASCII cannot be represented and are sent as '?' (0x3F).
- "utf8": the word's UTF-8 bytes, 8 bits each, MSB first.

Decoding never raises: bytes that are not valid for the code (ASCII bytes >= 0x80, invalid UTF-8
sequences), control characters and whitespace all become U+FFFD, the replacement character, so a
received word is always one printable, non-empty-if-sent, single whitespace-free word. A trailing
partial byte (fewer than 8 bits) is ignored.

The separator that ends every word on the channel is the space character's code (0x20) repeated to
`separator_bits` bits; the receiver is assumed to keep frame sync, so separator bits cost rate but a
corrupted separator does not merge words.
"""

from __future__ import annotations

import numpy as np

from lsc.errors import ConfigError

REPLACEMENT = "\ufffd"
SOURCE_CODES = ("ascii", "utf8")
_SPACE_BITS = np.unpackbits(np.array([0x20], dtype=np.uint8))


def _check_code(code: str) -> None:
    if code not in SOURCE_CODES:
        raise ConfigError(f"unknown source code {code!r}; choose one of {', '.join(SOURCE_CODES)}")


def encode_word(word: str, code: str = "ascii") -> np.ndarray:
    """Bits (uint8 array of 0/1) of a word under the source code, MSB first per byte."""
    _check_code(code)
    if code == "ascii":
        if not word.isascii():
            _warn_unrepresentable(word)
        data = word.encode("ascii", errors="replace")  # unencodable -> b'?'
    else:
        data = word.encode("utf-8", errors="replace")  # a lone surrogate -> b'?'
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))


_WARNED: list[bool] = []


def _warn_unrepresentable(word: str) -> None:
    """Say once per process that ASCII changed a word: the '?' it sends is a loss no bit error counts."""
    if _WARNED:
        return
    import warnings

    from lsc.errors import LscWarning

    _WARNED.append(True)
    warnings.warn(LscWarning(f"channel.source_code ascii cannot carry {word!r}: characters outside ASCII are sent "
                             "as '?' (not counted as bit errors); set channel.source_code: utf8"), stacklevel=3)


def _sanitize(text: str) -> str:
    """Replace control characters and whitespace by U+FFFD so a received word stays one word."""
    return "".join(REPLACEMENT if (ch.isspace() or not ch.isprintable()) else ch for ch in text)


def decode_bits(bits: np.ndarray, code: str = "ascii") -> str:
    """The word a receiver reads from bits; never raises on garbage (see module docstring)."""
    _check_code(code)
    bits = np.asarray(bits, dtype=np.uint8).ravel() & 1
    n_bytes = bits.size // 8
    data = np.packbits(bits[: n_bytes * 8]).tobytes()
    if code == "ascii":
        text = "".join(chr(b) if b < 0x80 else REPLACEMENT for b in data)
    else:
        text = data.decode("utf-8", errors="replace")
    return _sanitize(text)


def separator(n_bits: int) -> np.ndarray:
    """The separator's bits: the space character (0x20) repeated/truncated to n_bits."""
    if n_bits < 0:
        raise ConfigError(f"separator_bits must be >= 0, got {n_bits}")
    reps = -(-n_bits // 8) if n_bits else 0
    return np.tile(_SPACE_BITS, reps)[:n_bits].astype(np.uint8)


def word_bits(word: str, code: str = "ascii") -> int:
    """Source bits of a word without separator (8 per ASCII character, 8 per UTF-8 byte)."""
    return int(encode_word(word, code).size)
