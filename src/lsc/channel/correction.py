"""Receiver-side word correction: snap a received word to the nearest word of Bob's vocabulary.

Bob's text encoder only understands words it knows, so a garbled word ("do\ufffd", "dOg") is replaced
by the vocabulary word at the smallest Levenshtein (edit) distance, counting insertions, deletions and
substitutions as 1 each, case-sensitive (a flipped ASCII bit 5 changes case and counts as one edit).

- A word already in the vocabulary is kept.
- Distance limit: candidates farther than `max_distance` edits are not used; when no vocabulary word
  is that close the received word is kept as is. `max_distance=None` means no limit (always snap).
- Ties (several words at the same smallest distance) are broken by, in order: the smallest length
  difference to the received word (bit errors substitute characters, they never add or drop one),
  then lexicographic order, so the choice is deterministic.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


def edit_distance(a: str, b: str, limit: int | None = None) -> int:
    """Levenshtein distance; with `limit`, any value above it is returned as limit + 1 (early stop)."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if limit is not None and len(a) - len(b) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if limit is not None and min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


class WordCorrector:
    """Nearest-vocabulary-word correction with a distance limit and deterministic ties."""

    def __init__(self, vocabulary: Iterable[str], max_distance: int | None = 2) -> None:
        self.vocabulary = frozenset(w for w in vocabulary if w)
        self.max_distance = max_distance
        self._by_length: dict[int, list[str]] = defaultdict(list)
        for word in sorted(self.vocabulary):
            self._by_length[len(word)].append(word)
        self._cache: dict[str, str] = {}

    def _candidates(self, n: int) -> Iterable[tuple[int, str]]:
        """Vocabulary words with their length difference, nearest lengths first."""
        lengths = sorted(self._by_length, key=lambda length: (abs(length - n), length))
        for length in lengths:
            if self.max_distance is not None and abs(length - n) > self.max_distance:
                break
            for word in self._by_length[length]:
                yield abs(length - n), word

    def correct(self, word: str) -> str:
        """The vocabulary word Bob reads for a received word (see module docstring for the rules)."""
        if word in self.vocabulary or not self.vocabulary:
            return word
        if word in self._cache:
            return self._cache[word]
        best: tuple[int, int, str] | None = None
        for length_diff, candidate in self._candidates(len(word)):
            if best is not None and length_diff > best[0]:
                break  # edit distance >= length difference: nothing farther in length can win
            limit = best[0] if best is not None else self.max_distance
            d = edit_distance(word, candidate, limit)
            if limit is not None and d > limit:
                continue
            key = (d, length_diff, candidate)
            if best is None or key < best:
                best = key
        result = best[2] if best is not None else word
        self._cache[word] = result
        return result


def correct_word(word: str, vocabulary: Iterable[str], max_distance: int | None = 2) -> str:
    """One-off correction of a word (builds the index each call; use WordCorrector for many words)."""
    return WordCorrector(vocabulary, max_distance).correct(word)
