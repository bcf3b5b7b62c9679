"""Aligning model tokens with whitespace words, and merging token-level maps into word-level ones.

Words are tokenized one by one (without special tokens) and concatenated between the tokenizer's own
special prefix and suffix. For the BPE (CLIP) and WordPiece (BERT) tokenizers this gives exactly the
ids of tokenizing the joined caption, because both split on whitespace before sub-word splitting, and it
yields each word's token span without needing offset mappings. Merging token maps into words uses
lsc.protocol.words' shared rule.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from lsc.protocol.words import merge_token_attention, merge_token_maps


@dataclass
class WordTokens:
    """Token ids of a caption with each word's [start, end) span; None for words cut by truncation."""

    ids: list[int]
    spans: list[tuple[int, int] | None]
    truncated: bool


def _special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    probe = "a"
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return full[:i], full[i + len(bare) :]
    return [], []


def max_tokens(tokenizer: Any, model_config: Any | None = None) -> int:
    """The longest token sequence the model accepts (77 for CLIP)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit > 100_000:
        limit = None
    pos = getattr(model_config, "max_position_embeddings", None) if model_config is not None else None
    candidates = [x for x in (limit, pos) if isinstance(x, int) and x > 0]
    return min(candidates) if candidates else 512


def word_tokens(tokenizer: Any, words: Sequence[str], limit: int, what: str = "text encoder",
                special: bool = True) -> WordTokens:
    """Token ids of `words` with special tokens (special=False: without, as `tokenizer.tokenize` of the
    caption gives them), truncated to `limit` tokens with a warning."""
    prefix, suffix = _special_affixes(tokenizer) if special else ([], [])
    budget = max(0, limit - len(prefix) - len(suffix))
    ids = list(prefix)
    spans: list[tuple[int, int] | None] = []
    used = 0
    truncated = False
    for word in words:
        pieces = list(tokenizer(word, add_special_tokens=False)["input_ids"])
        if truncated or not pieces:  # keep words contiguous: nothing after the first cut word
            spans.append(None)
            continue
        if used + len(pieces) > budget:
            truncated = True
            spans.append(None)
            continue
        spans.append((len(ids), len(ids) + len(pieces)))
        ids.extend(pieces)
        used += len(pieces)
    ids.extend(suffix)
    if truncated:
        kept = sum(s is not None for s in spans)
        warnings.warn(
            f"caption longer than the {what}'s {limit}-token limit: kept the first {kept} of {len(words)} words",
            stacklevel=3,
        )
    return WordTokens(ids=ids, spans=spans, truncated=truncated)


def span_word_ids(n_tokens: int, spans: Sequence[tuple[int, int] | None]) -> list[int | None]:
    """The word index of each token (None for special tokens and padding), from word spans."""
    ids: list[int | None] = [None] * n_tokens
    for w, span in enumerate(spans):
        if span is not None:
            for t in range(span[0], span[1]):
                ids[t] = w
    return ids


def merge_attention(tokens: np.ndarray, spans: Sequence[tuple[int, int] | None]) -> np.ndarray:
    """Token-by-token attention (T, T) -> word-by-word (n, n), by lsc.protocol.words' rule.

    A word attends with the mean of its tokens' rows (queries) and is attended as the sum of its tokens'
    columns (keys), so a word split in several tokens keeps the attention mass it receives. Special
    tokens fall outside every span and are dropped; words cut by truncation get zero rows and columns.
    """
    return merge_token_attention(tokens, span_word_ids(tokens.shape[0], spans), len(spans))


def merge_maps(maps: np.ndarray, spans: Sequence[tuple[int, int] | None]) -> np.ndarray:
    """Per-token maps (T, h, w) -> per-word maps (n, h, w): mean over a word's tokens (DAAM), zeros if cut."""
    return merge_token_maps(maps, span_word_ids(maps.shape[0], spans), len(spans), "mean").astype(np.float32)
