"""word_erasure: each word is lost whole with probability 1 / (1 + SNR); Bob receives a lost word as '?'."""

import numpy as np

from lsc.channel.blocks import BlockResult
from lsc.channel.config import ChannelConfig


class WordErasure:
    """A channel model: the factory `(ChannelConfig, seed)` is the class itself."""

    def __init__(self, cfg: ChannelConfig, seed: int) -> None:
        self.p_lost = 1.0 / (1.0 + 10 ** (cfg.snr_db / 10))  # snr_db: the study's channel.snr_db
        self.rng = np.random.default_rng(seed)  # deterministic for a seed

    def transmit_blocks(self, u: np.ndarray) -> BlockResult:
        """u: (B, k) bits, one block per word and its separator (8-bit ASCII)."""
        lost = self.rng.random(len(u)) < self.p_lost
        u_hat = u.copy()
        question = np.unpackbits(np.frombuffer(b"?", dtype=np.uint8))
        for i in np.flatnonzero(lost):  # every character becomes '?', the separator stays
            u_hat[i, :-8] = np.tile(question, (u.shape[1] - 8) // 8)
        errors = int((u_hat != u).sum())
        return BlockResult(u_hat=u_hat, channel_bits_per_block=u.shape[1], channel_bit_errors=errors)
