"""The analytic channel model: independent bit flips with the closed-form BER (as the research code
flips bits; `ber_formula: research` uses its 16-QAM formula, QAM.py).

Every bit of a block is flipped independently with probability P_b from `lsc.channel.theory` at the
configured SNR. With Rayleigh block fading one fade |h|^2 ~ Exp(1) is drawn per block (per word) and
the block's P_b is that of the instantaneous Eb/N0 = |h|^2 Eb/N0 (perfect CSI). All randomness comes
from the numpy Generator given at construction, so a seed fixes every flip.
"""

from __future__ import annotations

import numpy as np

from lsc.channel.blocks import BlockResult, padded_length
from lsc.channel.config import ChannelConfig
from lsc.channel.theory import ber_awgn, ebn0_linear


class AnalyticChannel:
    """Bit-flip channel with the closed-form bit error probability of the configured modulation."""

    def __init__(self, cfg: ChannelConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self.ebn0 = ebn0_linear(cfg.snr_db, cfg.snr_type, cfg.modulation)
        self.p_awgn = ber_awgn(cfg.modulation, self.ebn0, cfg.ber_formula)

    def flip_probabilities(self, n_blocks: int) -> np.ndarray:
        """Bit error probability of each block (one fade per block under Rayleigh block fading)."""
        if self.cfg.fading == "none":
            return np.full(n_blocks, self.p_awgn)
        fades = self.rng.exponential(1.0, size=n_blocks)
        return np.array([ber_awgn(self.cfg.modulation, self.ebn0 * g, self.cfg.ber_formula) for g in fades])

    def transmit_blocks(self, u: np.ndarray) -> BlockResult:
        """Send blocks of bits (B, k); returns the received bits and the channel bit budget."""
        u = np.asarray(u, dtype=np.uint8)
        p = self.flip_probabilities(u.shape[0])
        flips = self.rng.random(u.shape) < p[:, None]
        u_hat = u ^ flips.astype(np.uint8)
        errors = int(flips.sum())
        return BlockResult(
            u_hat=u_hat,
            channel_bits_per_block=padded_length(u.shape[1], self.cfg.bits_per_symbol),
            channel_bit_errors=errors,
        )


def analytic_channel(cfg: ChannelConfig, seed: int) -> AnalyticChannel:
    """The analytic model as a registered channel factory `(ChannelConfig, seed)`."""
    return AnalyticChannel(cfg, np.random.default_rng(seed))
