"""What every channel model shares: the block interface and the bit-budget helpers.

A channel model takes blocks of information bits (B, k) -- one block is one word plus its separator,
or one measurement block in `lsc channel ber` -- and returns the bits the receiver decides, plus how
many bits went over the channel per block (after channel coding and padding to whole symbols).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class BlockResult:
    """Outcome of sending B blocks of k bits."""

    u_hat: np.ndarray  # (B, k) uint8, the receiver's decided information bits
    channel_bits_per_block: int  # bits on the channel per block (coded, padded to whole symbols)
    channel_bit_errors: int  # hard-decision errors on the channel bits, before any decoder


class BitChannel(Protocol):
    """A channel model: `analytic` or `phy`."""

    def transmit_blocks(self, u: np.ndarray) -> BlockResult:
        """Send blocks (B, k) of 0/1 bits; deterministic given the model's seed and call history."""
        ...


def padded_length(n_bits: int, bits_per_symbol: int) -> int:
    """Bits after zero-padding to a whole number of constellation symbols."""
    return -(-n_bits // bits_per_symbol) * bits_per_symbol
