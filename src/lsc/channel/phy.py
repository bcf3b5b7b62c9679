"""The `phy` channel model: symbols through a Sionna 2.x (PyTorch) physical layer.

Chain per block (one block = one word + separator, or one measurement block):
  [5G LDPC encoder (optional, rate-matched to `ldpc_rate`)] -> Gray QAM/BPSK mapper -> [Rayleigh
  block fading, one coefficient per block] -> AWGN -> [zero-forcing with perfect CSI] -> soft APP
  demapper (LLRs) -> [5G LDPC BP decoder, 20 iterations] -> hard decisions.

Bit budget: a block of k information bits becomes n channel bits, n = ceil(k / rate / m) * m for
LDPC (m bits per symbol; k < 12 is zero-padded to 12, the smallest 5G code) and the k bits padded to
whole symbols when uncoded. Noise: with snr_type "ebn0" the energy per information bit is fixed, so
No = 1 / (Eb/N0 * (k/n) * m) (Sionna's `ebnodb2no` with the effective rate); with "esn0", No = 1/(Es/N0).

Randomness: every Sionna block here draws from one `torch.Generator` seeded at construction (not
Sionna's global `config.seed`, which would also reseed torch's global generator), so a seed fixes the
channel. Runs on the CPU: word-sized blocks gain nothing from an accelerator. Sionna is imported on
first use (it takes seconds).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lsc.channel.blocks import BlockResult, padded_length
from lsc.channel.config import ChannelConfig
from lsc.errors import ConfigError

LDPC_MIN_K = 12  # smallest information length of the 5G LDPC code
LDPC_MAX_K = 8448
LDPC_MAX_N = 316 * 384
LDPC_ITERATIONS = 20
_DEVICE = "cpu"
# 5G LDPC encoder/decoder pairs are deterministic and stateless: shared by all links of a process.
_CODES: dict[tuple[int, float, int], tuple[Any, Any, int]] = {}


def _seeded(cls: type, generator: torch.Generator) -> Any:
    """A subclass of a Sionna block whose random draws use our generator instead of the global one."""

    class Seeded(cls):  # type: ignore[misc, valid-type]
        @property
        def torch_rng(self) -> torch.Generator:
            return generator

    Seeded.__name__ = f"Seeded{cls.__name__}"
    return Seeded


class PhyChannel:
    """Sionna-based channel: mapping, AWGN, optional Rayleigh block fading and 5G LDPC."""

    def __init__(self, cfg: ChannelConfig, seed: int) -> None:
        from sionna.phy.channel import AWGN, RayleighBlockFading
        from sionna.phy.mapping import Demapper, Mapper

        self.cfg = cfg
        self.m = cfg.bits_per_symbol
        self.generator = torch.Generator(device=_DEVICE)
        self.generator.manual_seed(int(seed) % (2**63))
        kind = "pam" if cfg.modulation == "bpsk" else "qam"  # 1-bit PAM = BPSK on the real axis
        self.mapper = Mapper(kind, self.m, device=_DEVICE)
        self.demapper = Demapper("app", kind, self.m, device=_DEVICE)
        self.awgn = _seeded(AWGN, self.generator)(device=_DEVICE)
        self.fading = None
        if cfg.fading == "rayleigh_block":
            self.fading = _seeded(RayleighBlockFading, self.generator)(1, 1, 1, 1, device=_DEVICE)

    # -- bit budget -------------------------------------------------------------------------------
    def code_for(self, k: int) -> tuple[Any, Any, int]:
        """(encoder, decoder, n) of the 5G LDPC code carrying k information bits (cached per process)."""
        key = (k, float(self.cfg.ldpc_rate or 0.0), self.m)
        if key not in _CODES:
            from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder

            rate = float(self.cfg.ldpc_rate)  # type: ignore[arg-type]
            k_code = max(k, LDPC_MIN_K)
            if k_code > LDPC_MAX_K:
                raise ConfigError(f"a block of {k} bits exceeds the 5G LDPC limit of {LDPC_MAX_K} bits")
            n = padded_length(math.ceil(k_code / rate), self.m)
            if n <= k_code:
                n = padded_length(k_code + 1, self.m)
            if n > LDPC_MAX_N:
                raise ConfigError(f"ldpc_rate {rate} makes a codeword of {n} bits, over the 5G limit {LDPC_MAX_N}")
            enc = LDPC5GEncoder(k_code, n, num_bits_per_symbol=self.m, device=_DEVICE, check_input=False)
            dec = LDPC5GDecoder(enc, hard_out=True, return_infobits=True, num_iter=LDPC_ITERATIONS, device=_DEVICE)
            _CODES[key] = (enc, dec, n)
        return _CODES[key]

    def channel_bits(self, k: int) -> int:
        """Bits on the channel for a block of k information bits."""
        if self.cfg.ldpc_rate is None:
            return padded_length(k, self.m)
        return self.code_for(k)[2]

    def noise_variance(self, k: int) -> float:
        """No for the configured SNR (Es = 1) given the block's information/channel bit ratio."""
        n = self.channel_bits(k)
        if self.cfg.snr_type == "esn0":
            return 10.0 ** (-self.cfg.snr_db / 10.0)
        from sionna.phy.utils import ebnodb2no

        return float(ebnodb2no(self.cfg.snr_db, self.m, k / n, device=_DEVICE))

    # -- transmission -----------------------------------------------------------------------------
    @torch.no_grad()
    def transmit_blocks(self, u: np.ndarray) -> BlockResult:
        """Send blocks (B, k) of bits through the chain; returns decided bits and channel errors."""
        u = np.asarray(u, dtype=np.uint8)
        n_blocks, k = u.shape
        n = self.channel_bits(k)
        no = self.noise_variance(k)
        bits = torch.from_numpy(u.astype(np.float32))
        if self.cfg.ldpc_rate is not None:
            enc, dec, _ = self.code_for(k)
            pad = enc.k - k
            if pad:
                bits = torch.cat([bits, torch.zeros(n_blocks, pad)], dim=1)
            c = enc(bits)
        else:
            c = torch.cat([bits, torch.zeros(n_blocks, n - k)], dim=1) if n > k else bits
        x = self.mapper(c)
        no_eff: torch.Tensor = torch.full((n_blocks, 1), no)
        if self.fading is not None:
            h, _ = self.fading(n_blocks, x.shape[1])
            h = h.reshape(n_blocks, x.shape[1])
            y = self.awgn(h * x, no)
            y = y / h  # zero-forcing with perfect CSI; the noise grows by 1/|h|^2
            no_eff = no / h[:, :1].abs().square()
        else:
            y = self.awgn(x, no)
        llr = self.demapper(y, no_eff)
        channel_errors = int(((llr > 0).float() != c).sum())
        if self.cfg.ldpc_rate is not None:
            u_hat = dec(llr)[:, :k]
        else:
            u_hat = (llr[:, :k] > 0).float()
        return BlockResult(
            u_hat=u_hat.round().to(torch.uint8).numpy(),
            channel_bits_per_block=n,
            channel_bit_errors=channel_errors,
        )
