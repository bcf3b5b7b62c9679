"""Caption words and their alignment to model tokens.

The protocol counts, orders and sends whitespace words; models see subword tokens. Backends use the
helpers here to merge token-level attention and heat maps back to one value per word, so every scheme
works on the same word indices whatever tokenizer produced them.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

# Tokenizer marks left in captions by some decoders (BERT's '##', BPE's '</w>', sentencepiece's '▁').
_MARKS = re.compile(r"(##|#|</w>|\u2581|\[UNK\]|\[SEP\]|\[CLS\]|\[PAD\]|<\|endoftext\|>|<\|startoftext\|>)")


def clean_words(caption: str) -> list[str]:
    """Whitespace words of a caption: tokenizer marks removed, empty words dropped, adjacent repeats collapsed.

    Captioners sometimes stutter ("a a dog") or leak marks ("##s"); both would waste transmissions.
    Case and punctuation are kept: they are what the sender's model produced.
    """
    words: list[str] = []
    for raw in caption.split():
        word = _MARKS.sub("", raw)
        if not word:
            continue
        if words and words[-1] == word:
            continue
        words.append(word)
    return words


def join_words(words: Sequence[str]) -> str:
    """The prompt Bob reads: words joined by single spaces (empty words skipped)."""
    return " ".join(w for w in words if w)


def merge_token_attention(attention: np.ndarray, word_ids: Sequence[int | None], n_words: int) -> np.ndarray:
    """Merge a token-by-token attention (T, T) into a word-by-word one (n, n).

    Keys (columns) of one word are summed, since attention mass paid to a word is spread over its
    tokens; queries (rows) of one word are averaged, since each token's row already sums to one.
    Tokens with word id None (special tokens, padding) are dropped. A word without tokens gets zeros.
    """
    att = np.asarray(attention, dtype=np.float64)
    if att.ndim != 2 or att.shape[0] != att.shape[1] or att.shape[0] != len(word_ids):
        raise ValueError(f"attention of shape {att.shape} does not match {len(word_ids)} token word ids")
    onehot = _onehot(word_ids, n_words)  # (T, n)
    summed_keys = att @ onehot  # (T, n)
    counts = onehot.sum(axis=0)  # tokens per word
    rows = onehot.T @ summed_keys  # (n, n), summed over query tokens
    with np.errstate(invalid="ignore", divide="ignore"):
        merged = np.where(counts[:, None] > 0, rows / np.maximum(counts[:, None], 1), 0.0)
    return merged


def merge_token_maps(maps: np.ndarray, word_ids: Sequence[int | None], n_words: int, reduce: str = "mean") -> np.ndarray:
    """Merge per-token maps (T, h, w) into per-word maps (n, h, w) by mean (DAAM's choice) or sum."""
    arr = np.asarray(maps, dtype=np.float64)
    if arr.shape[0] != len(word_ids):
        raise ValueError(f"{arr.shape[0]} token maps do not match {len(word_ids)} token word ids")
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', not {reduce!r}")
    onehot = _onehot(word_ids, n_words)  # (T, n)
    flat = arr.reshape(arr.shape[0], -1)
    out = onehot.T @ flat
    if reduce == "mean":
        counts = onehot.sum(axis=0)
        out = out / np.maximum(counts, 1)[:, None]
    return out.reshape((n_words,) + arr.shape[1:])


def _onehot(word_ids: Sequence[int | None], n_words: int) -> np.ndarray:
    onehot = np.zeros((len(word_ids), n_words), dtype=np.float64)
    for t, wid in enumerate(word_ids):
        if wid is not None and 0 <= wid < n_words:
            onehot[t, wid] = 1.0
    return onehot


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (study seed, image id, scheme name), equal across runs and machines.

    Python's hash() is salted per process, so it cannot be used for reproducible randomness.
    """
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def image_key(prompt: str, seed: int) -> str:
    """Stable name of Bob's image for (prompt, seed): a file name and a cache key."""
    return hashlib.sha1(f"{seed}\x1f{prompt}".encode("utf-8")).hexdigest()[:16]
