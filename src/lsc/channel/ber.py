"""Bit error rate measurement of a channel configuration (what `lsc channel ber` prints).

Random information bits are sent in blocks of `block_bits` (one fade and one LDPC codeword per block);
the count is rounded up to whole blocks and the bits actually simulated are reported. Blocks go in
chunks of about a million bits to bound memory.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import ValidationError

from lsc.channel.config import ChannelConfig
from lsc.channel.link import make_channel
from lsc.channel.theory import ber_awgn, ber_closed_form, ber_rayleigh, ebn0_linear
from lsc.errors import ConfigError, validation_message

CHUNK_BITS = 1 << 20


def build_config(**values: Any) -> ChannelConfig:
    """ChannelConfig from keyword values; validation problems become a one-line ConfigError."""
    try:
        return ChannelConfig(**values)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, "channel")) from None


def measure_ber(cfg: ChannelConfig, n_bits: int, seed: int = 0, block_bits: int = 960) -> dict[str, Any]:
    """Simulate `n_bits` information bits (rounded up to whole blocks) and count errors."""
    if cfg.model == "none":
        raise ConfigError("model 'none' is the ideal channel (BER 0); choose analytic or phy")
    if n_bits <= 0:
        raise ConfigError(f"the bit budget must be a positive number of bits, got {n_bits}")
    if block_bits <= 0:
        raise ConfigError(f"block_bits must be positive, got {block_bits}")
    channel = make_channel(cfg, seed)
    assert channel is not None
    rng = np.random.default_rng(seed + 1_000_003)
    n_blocks = math.ceil(n_bits / block_bits)
    per_chunk = max(1, CHUNK_BITS // block_bits)
    errors = channel_errors = 0
    channel_bits = 0
    done = 0
    while done < n_blocks:
        b = min(per_chunk, n_blocks - done)
        u = rng.integers(0, 2, size=(b, block_bits), dtype=np.uint8)
        result = channel.transmit_blocks(u)
        errors += int((result.u_hat != u).sum())
        channel_errors += result.channel_bit_errors
        channel_bits += b * result.channel_bits_per_block
        done += b
    simulated = n_blocks * block_bits
    rate = simulated / channel_bits
    # Closed form of the uncoded channel bits: Eb/N0 per channel bit is rate * Eb/N0 per info bit.
    ebn0_channel = ebn0_linear(cfg.snr_db, cfg.snr_type, cfg.modulation, rate) * rate
    closed = ber_awgn if cfg.fading == "none" else ber_rayleigh
    out: dict[str, Any] = {
        "model": cfg.model,
        "modulation": cfg.modulation,
        "snr_db": cfg.snr_db,
        "snr_type": cfg.snr_type,
        "fading": cfg.fading,
        "ldpc_rate": cfg.ldpc_rate,
        "seed": seed,
        "bits": simulated,
        "channel_bits": channel_bits,
        "effective_rate": rate,
        "bit_errors": errors,
        "ber": errors / simulated,
        "channel_bit_errors": channel_errors,
        "channel_ber": channel_errors / channel_bits,
        "closed_form_channel_ber": closed(cfg.modulation, ebn0_channel, cfg.ber_formula),
    }
    if cfg.ldpc_rate is None:
        out["closed_form_ber"] = ber_closed_form(cfg.modulation, cfg.snr_db, cfg.snr_type, cfg.fading, cfg.ber_formula)
    return out
