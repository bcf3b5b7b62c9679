"""The Sionna phy model: BER against the closed form, LDPC gain, bit budget, reproducibility."""

import numpy as np
import pytest

pytest.importorskip("sionna.phy")

from lsc.channel.config import ChannelConfig  # noqa: E402
from lsc.channel.phy import PhyChannel  # noqa: E402
from lsc.channel.theory import ber_closed_form  # noqa: E402


def _ber(cfg: ChannelConfig, n_blocks: int, k: int = 960, seed: int = 1) -> float:
    channel = PhyChannel(cfg, seed)
    rng = np.random.default_rng(seed)
    errors = total = 0
    for _ in range(max(1, n_blocks // 1000)):
        b = min(1000, n_blocks)
        u = rng.integers(0, 2, size=(b, k), dtype=np.uint8)
        errors += int((channel.transmit_blocks(u).u_hat != u).sum())
        total += u.size
    return errors / total


@pytest.mark.parametrize("snr_db,n_blocks", [(4, 300), (8, 1000), (12, 4000)])
def test_uncoded_qam16_matches_closed_form(snr_db, n_blocks):
    # 12 dB: BER 1.4e-4, 3.84 M bits give ~550 errors (standard error ~4%)
    measured = _ber(ChannelConfig(model="phy", snr_db=snr_db), n_blocks)
    expected = ber_closed_form("qam16", snr_db)
    assert abs(measured - expected) / expected < 0.10


def test_bpsk_matches_closed_form():
    measured = _ber(ChannelConfig(model="phy", modulation="bpsk", snr_db=4), 300)
    assert measured == pytest.approx(ber_closed_form("bpsk", 4), rel=0.1)


def test_ldpc_lowers_ber_at_equal_eb_n0():
    uncoded = _ber(ChannelConfig(model="phy", snr_db=4), 30)
    coded = _ber(ChannelConfig(model="phy", snr_db=4, ldpc_rate=0.5), 30)
    assert uncoded > 0.05
    assert coded < uncoded / 100


def test_bit_budget_and_padding():
    ch = PhyChannel(ChannelConfig(model="phy", ldpc_rate=0.5), 0)
    assert ch.channel_bits(48) == 96  # 'green' + separator = 48 bits at rate 1/2 on 16-QAM
    assert ch.channel_bits(8) == 24  # padded to the 12-bit minimum code, 24 coded bits
    ch = PhyChannel(ChannelConfig(model="phy", ldpc_rate=0.7), 0)
    assert ch.channel_bits(48) == 72  # ceil(48/0.7)=69 -> 72, whole 16-QAM symbols
    ch = PhyChannel(ChannelConfig(model="phy", modulation="qam64"), 0)
    assert ch.channel_bits(48) == 48 and ch.channel_bits(40) == 42  # whole 64-QAM symbols


def test_seeded_and_reproducible():
    cfg = ChannelConfig(model="phy", snr_db=2, fading="rayleigh_block")
    u = np.random.default_rng(0).integers(0, 2, size=(50, 48), dtype=np.uint8)
    a = PhyChannel(cfg, 7).transmit_blocks(u).u_hat
    b = PhyChannel(cfg, 7).transmit_blocks(u).u_hat
    c = PhyChannel(cfg, 8).transmit_blocks(u).u_hat
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_rayleigh_block_fading_near_average_closed_form():
    cfg = ChannelConfig(model="phy", snr_db=10, fading="rayleigh_block")
    measured = _ber(cfg, 4000, k=48)
    # the nearest-neighbour formula is a looser approximation under deep fades: within 15%
    assert measured == pytest.approx(ber_closed_form("qam16", 10, fading="rayleigh_block"), rel=0.15)
