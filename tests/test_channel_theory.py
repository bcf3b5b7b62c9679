"""Closed-form BER against hand-computed values."""

import math

import pytest

from lsc.channel.theory import ber_awgn, ber_closed_form, ber_rayleigh, ebn0_linear
from lsc.errors import ConfigError


def test_bpsk_and_qpsk_at_0_db():
    # Q(sqrt(2)) = 0.0786496...
    assert ber_awgn("bpsk", 1.0) == pytest.approx(0.0786496, rel=1e-5)
    assert ber_awgn("qpsk", 1.0) == pytest.approx(0.0786496, rel=1e-5)


def test_qam16_is_research_code_formula():
    for db in (0.0, 4.0, 8.0, 12.0):
        g = 10 ** (db / 10)
        assert ber_closed_form("qam16", db) == pytest.approx(3 / 8 * math.erfc(math.sqrt(2 / 5 * g)), rel=1e-12)
    # 16-QAM at 8 dB Eb/N0: 3/8 erfc(sqrt(0.4 * 6.3096)) = 3/8 * 0.024659 = 0.0092472
    assert ber_closed_form("qam16", 8.0) == pytest.approx(0.0092472, rel=1e-4)


def test_qam64_formula():
    # (4/6)(1 - 1/8) Q(sqrt(18/63 * 10)) at 10 dB = 0.58333 * Q(1.690309) = 0.58333 * 0.0454839
    assert ber_closed_form("qam64", 10.0) == pytest.approx(0.58333333 * 0.0454839, rel=1e-4)


def test_esn0_is_ebn0_times_bits_per_symbol():
    assert ebn0_linear(10.0, "esn0", "qam16") == pytest.approx(10.0 / 4)
    assert ber_closed_form("qam16", 10 + 10 * math.log10(4), "esn0") == pytest.approx(ber_closed_form("qam16", 10.0))


def test_rayleigh_average():
    # BPSK over Rayleigh at mean Eb/N0 = 1: (1 - sqrt(1/2)) / 2
    assert ber_rayleigh("bpsk", 1.0) == pytest.approx(0.1464466, rel=1e-6)
    assert ber_closed_form("qam16", 10.0, fading="rayleigh_block") > ber_closed_form("qam16", 10.0)


def test_bad_values():
    with pytest.raises(ConfigError):
        ber_awgn("qam8", 1.0)
    with pytest.raises(ConfigError):
        ebn0_linear(float("nan"), "ebn0", "qam16")
    assert ber_awgn("qam16", 0.0) <= 0.5
