"""A word link: one word at a time from Alice to Bob over the configured channel.

Composes the blocks: source coding (+ separator) -> channel model (`none` | `analytic` | `phy`) ->
source decoding -> optional word correction to Bob's vocabulary -> optional SCC map-back. Each word
is one block (one fade under Rayleigh block fading, one LDPC codeword). Deterministic for a given
seed and sequence of words: the link owns its random generator.

Bit accounting (`WordTransmission.bits`): bits on the channel for the word including its separator,
after channel coding and padding to whole symbols. For the ideal channel ("none") that is the source
bits, 8 * len(word) + 8 in ASCII. `bit_errors` counts decided information bits that differ from the
sent ones (after the LDPC decoder, if any) over the word and its separator; `channel_bit_errors`
counts hard-decision errors on the channel bits before decoding.

SCC: when `channel.scc.enabled`, the loop calls `link.prepare(words)` once per caption; the link then
sends each selected word's longer synonym in its place (`WordTransmission.sent` is the word on the
channel, `original` the caption word) and, with `scc.map_back`, Bob maps a received synonym back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsc.channel.config import ChannelConfig
from lsc.channel.blocks import BitChannel
from lsc.channel.correction import WordCorrector
from lsc.channel.registry import CHANNELS
from lsc.channel.scc import AnalyzeFn, SCCResult, SynonymFn, map_back, scc_encode
from lsc.channel.source import decode_bits, encode_word, separator
from lsc.errors import ConfigError


@dataclass(frozen=True)
class WordTransmission:
    """What happened to one word on the link."""

    sent: str  # the word on the channel (the SCC synonym when one replaced the caption word)
    received: str  # what Bob uses: after decoding, correction and SCC map-back
    bits: int  # channel bits spent, incl. separator, after coding
    bit_errors: int  # information-bit errors after decoding (word + separator)
    raw_received: str = ""  # the decoded word before correction / map-back
    channel_bit_errors: int = 0  # hard-decision errors on the channel, before the decoder
    original: str = ""  # the caption word Alice meant to send (differs from `sent` under SCC)


def make_channel(cfg: ChannelConfig, seed: int) -> BitChannel | None:
    """The channel model of a configuration (None for the ideal channel)."""
    if cfg.model == "none":
        return None
    channel = CHANNELS.get(cfg.model)(cfg, seed)
    if not callable(getattr(channel, "transmit_blocks", None)):
        raise ConfigError(f"channel model {cfg.model!r} made a {type(channel).__name__}, which has no transmit_blocks(u)")
    return channel


class WordLink:
    """Sends words over the configured channel; see the module docstring for what is counted."""

    def __init__(
        self,
        cfg: ChannelConfig,
        seed: int = 0,
        vocabulary: frozenset[str] | None = None,
        scc_codebook: dict[str, str] | None = None,
        *,
        analyze: AnalyzeFn | None = None,
        synonyms_fn: SynonymFn | None = None,
    ) -> None:
        if cfg.word_correction and not vocabulary:
            raise ConfigError("channel.word_correction needs Bob's vocabulary, and none was given (the backend has none)")
        self.cfg = cfg
        self.seed = seed
        self.vocabulary = vocabulary
        self.channel = make_channel(cfg, seed)
        self.corrector = WordCorrector(vocabulary, cfg.correction_max_distance) if cfg.word_correction and vocabulary else None
        self._separator = separator(cfg.separator_bits)
        # SCC codebook {expanded word: original word}, set per caption by whoever applies SCC.
        self.scc_codebook: dict[str, str] = dict(scc_codebook or {})
        self._substitute: dict[str, str] = {}  # caption word -> SCC synonym, set by `prepare`
        self._analyze = analyze
        self._synonyms = synonyms_fn

    def prepare(self, words: Sequence[str], infos: Sequence[Any] | None = None) -> SCCResult:
        """Start a caption: compute its SCC substitutions (no-op unless channel.scc.enabled).

        `infos` (WordInfo per word) avoids re-parsing when the caller already has them.
        """
        if not self.cfg.scc.enabled:
            self._substitute = {}
            return SCCResult(list(words))
        result = scc_encode(
            words, self.cfg, self.vocabulary, infos=infos, analyze=self._analyze, synonyms_fn=self._synonyms
        )
        self.scc_codebook = dict(result.codebook)
        self._substitute = {original: synonym for synonym, original in result.codebook.items()}
        return result

    def send(self, word: str) -> WordTransmission:
        """Transmit one word (plus separator; its SCC synonym if prepared) and return what Bob receives."""
        original, word = word, self._substitute.get(word, word)
        payload = np.concatenate([encode_word(word, self.cfg.source_code), self._separator])
        n_word = payload.size - self._separator.size
        if self.channel is None or payload.size == 0:
            raw, bits, errors, channel_errors = word, int(payload.size), 0, 0
        else:
            result = self.channel.transmit_blocks(payload[None, :])
            decided = result.u_hat[0]
            raw = decode_bits(decided[:n_word], self.cfg.source_code)
            bits = result.channel_bits_per_block
            errors = int((decided != payload).sum())
            channel_errors = result.channel_bit_errors
        received = raw
        if self.corrector is not None:
            received = self.corrector.correct(received)
        if self.cfg.scc.map_back:
            received = map_back(received, self.scc_codebook)
        return WordTransmission(word, received, bits, errors, raw, channel_errors, original)

    def send_all(self, words: list[str]) -> list[WordTransmission]:
        """Transmit words one after the other (same as calling `send` in order)."""
        return [self.send(w) for w in words]
