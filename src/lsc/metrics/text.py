"""Text-side metrics: how close a caption of Bob's image is to Alice's caption (BLEU, ROUGE-L).

The papers' text-side check re-captions Bob's image and compares it with the full caption. These are
plain-Python implementations of the standard definitions (so no metric package and no download is
needed); words are compared lower-cased, split on whitespace.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence


def _tokens(text: str | Sequence[str]) -> list[str]:
    words = text.split() if isinstance(text, str) else list(text)
    return [w.lower() for w in words]


def _ngrams(words: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def bleu(reference: str | Sequence[str], hypothesis: str | Sequence[str], max_n: int = 4, smooth_epsilon: float = 0.1) -> float:
    """Sentence BLEU (Papineni et al. 2002) against one reference, uniform weights over 1..max_n-grams.

    Clipped n-gram precisions, geometric mean, brevity penalty exp(1 - r/c) when c < r. A zero
    n-gram match count is replaced by `smooth_epsilon` (Chen & Cherry's method 1) so that short
    captions do not all score 0; set it to 0 for the unsmoothed definition.
    """
    ref, hyp = _tokens(reference), _tokens(hypothesis)
    if not hyp or not ref:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        hyp_counts = _ngrams(hyp, n)
        total = sum(hyp_counts.values())
        if total == 0:  # hypothesis shorter than n: counted as one n-gram without a match
            total = 1
        ref_counts = _ngrams(ref, n)
        matched = sum(min(c, ref_counts[g]) for g, c in hyp_counts.items())
        if matched == 0:
            if smooth_epsilon <= 0:
                return 0.0
            matched = smooth_epsilon
        log_sum += math.log(matched / total) / max_n
    c, r = len(hyp), len(ref)
    bp = 1.0 if c >= r else math.exp(1.0 - r / c)
    return bp * math.exp(log_sum)


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(reference: str | Sequence[str], hypothesis: str | Sequence[str], beta: float = 1.0) -> float:
    """ROUGE-L F-measure (Lin 2004): longest common subsequence precision and recall, F_beta."""
    ref, hyp = _tokens(reference), _tokens(hypothesis)
    if not ref or not hyp:
        return 0.0
    lcs = _lcs(ref, hyp)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(hyp), lcs / len(ref)
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def word_recall(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    """Share of the reference's words (with multiplicity) that the hypothesis contains."""
    ref, hyp = Counter(_tokens(reference)), Counter(_tokens(hypothesis))
    total = sum(ref.values())
    return sum(min(c, hyp[w]) for w, c in ref.items()) / total if total else 0.0
