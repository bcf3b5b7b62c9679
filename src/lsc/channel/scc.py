"""Semantic channel coding (SCC): lengthen important words before they cross a noisy channel.

Alice replaces each selected word (dependency heads by default, as in the papers; or nouns; or all
words) by a synonym of the same part of speech that is at least `min_extra_chars` longer and that Bob
knows (is in his vocabulary, when he has one). A longer word spreads its meaning over more bits, so a
few character errors are less likely to make it a different word -- in particular with receiver word
correction, where longer vocabulary words lie farther apart.

Choice: the first qualifying synonym in the order the synonym source gives (WordNet: the dominant
sense first), skipping synonyms that already occur in the caption or were already chosen for another
word, so the SCC codebook {synonym: original} is one-to-one and Bob can map back unambiguously. Only
content words (NOUN, PROPN, VERB, ADJ, ADV) are expanded. Bob's optional map-back (`map_back`, done by
`WordLink` when `channel.scc.map_back` is set) replaces a received synonym by the original word: the
codebook is shared knowledge, like the synonym table it derives from.

The parser (`lsc.language.parse.analyze`) and the synonym source
(`lsc.language.synonyms.longer_synonyms`) are imported on first use; both can be injected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lsc.channel.config import ChannelConfig, SCCConfig

CONTENT_POS = frozenset({"NOUN", "PROPN", "VERB", "ADJ", "ADV"})

# synonyms_fn(word, pos, min_extra_chars, vocabulary) -> candidates, best first
SynonymFn = Callable[[str, str | None, int, frozenset[str] | None], list[str]]
# analyze(words) -> one object per word with .pos, .is_head, .is_noun (lsc.language.parse.WordInfo)
AnalyzeFn = Callable[[Sequence[str]], Sequence[Any]]


@dataclass
class SCCResult:
    """Alice's words after SCC and the codebook Bob may use to map synonyms back."""

    words: list[str]
    codebook: dict[str, str] = field(default_factory=dict)  # synonym -> original word
    replaced: list[tuple[int, str, str]] = field(default_factory=list)  # (index, original, synonym)


def _default_synonyms(word: str, pos: str | None, min_extra_chars: int, vocabulary: frozenset[str] | None) -> list[str]:
    from lsc.language.synonyms import longer_synonyms

    return longer_synonyms(word, pos, min_extra_chars, vocabulary)


def _default_analyze(words: Sequence[str]) -> Sequence[Any]:
    from lsc.language.parse import analyze

    return analyze(list(words))


def _scc_cfg(cfg: SCCConfig | ChannelConfig) -> SCCConfig:
    return cfg.scc if isinstance(cfg, ChannelConfig) else cfg


def scc_encode(
    words: Sequence[str],
    cfg: SCCConfig | ChannelConfig,
    vocabulary: frozenset[str] | None = None,
    *,
    infos: Sequence[Any] | None = None,
    head_mask: Sequence[bool] | None = None,
    analyze: AnalyzeFn | None = None,
    synonyms_fn: SynonymFn | None = None,
) -> SCCResult:
    """Apply SCC to a caption's words; returns the new words, the codebook and what was replaced.

    `infos` (one WordInfo-like object per word) is computed with `analyze` when not given.
    `head_mask`, when given, overrides which words count as heads for expand="heads".
    """
    scc = _scc_cfg(cfg)
    words = list(words)
    if not scc.enabled or not words:
        return SCCResult(words)
    if infos is None:
        infos = (analyze or _default_analyze)(words)
    if len(infos) != len(words):
        raise ValueError(f"{len(infos)} word infos for {len(words)} words")
    if head_mask is not None and len(head_mask) != len(words):
        raise ValueError(f"head mask of {len(head_mask)} entries for {len(words)} words")
    synonyms_fn = synonyms_fn or _default_synonyms
    vocab = frozenset(vocabulary) if vocabulary is not None else None
    vocab_lower = {v.lower() for v in vocab} if vocab is not None else None
    taken = {w.lower() for w in words}
    out = list(words)
    result = SCCResult(out)
    for i, (word, info) in enumerate(zip(words, infos)):
        if scc.expand == "heads":
            selected = bool(head_mask[i]) if head_mask is not None else bool(info.is_head)
        elif scc.expand == "nouns":
            selected = bool(info.is_noun)
        else:
            selected = True
        if not selected or info.pos not in CONTENT_POS:
            continue
        if word in result.codebook.values():  # same word again: reuse its synonym
            out[i] = next(s for s, o in result.codebook.items() if o == word)
            result.replaced.append((i, word, out[i]))
            continue
        for candidate in synonyms_fn(word, info.pos, scc.min_extra_chars, vocab):
            if len(candidate) < len(word) + scc.min_extra_chars or any(c.isspace() for c in candidate):
                continue
            if vocab_lower is not None and candidate.lower() not in vocab_lower:
                continue
            if candidate.lower() in taken:
                continue
            out[i] = candidate
            taken.add(candidate.lower())
            result.codebook[candidate] = word
            result.replaced.append((i, word, candidate))
            break
    return result


def map_back(word: str, codebook: dict[str, str]) -> str:
    """Bob's side: the original word of a received SCC synonym (other words unchanged)."""
    return codebook.get(word, word)
