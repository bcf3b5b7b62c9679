"""The research code's 16-QAM bit error formula (QAM.py) as the analytic channel's `ber_formula: research`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erfc

from lsc.channel.analytic import AnalyticChannel
from lsc.channel.config import ChannelConfig
from lsc.channel.theory import ber_awgn, ber_closed_form, ber_rayleigh


def qam_py(ebno: np.ndarray) -> np.ndarray:
    """QAM.py's lines, transcribed (qam = 16)."""
    qam = 16
    K = np.sqrt(qam)
    M = 2**K
    Pm = (1 - 1 / np.sqrt(M)) * erfc(np.sqrt(3 / 2 / (M - 1) * K * ebno))
    Ps_qam = 1 - (1 - Pm) ** 2
    return Ps_qam / K


def test_research_formula_is_qam_py() -> None:
    ebno = np.logspace(-0.5, 1.2, 9)
    want = qam_py(ebno)
    got = np.array([ber_awgn("qam16", g, "research") for g in ebno])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    default = np.array([ber_awgn("qam16", g) for g in ebno])
    assert np.all(default > got)  # the default (3/8 erfc) differs by P_m^2 / 4
    np.testing.assert_allclose(default - got, (0.75 * erfc(np.sqrt(0.4 * ebno))) ** 2 / 4, rtol=1e-9)
    assert ber_closed_form("qam16", 3.0, formula="research") == pytest.approx(qam_py(np.array(10 ** 0.3))[()], rel=1e-12)


def test_research_formula_rayleigh_average_and_channel() -> None:
    g = 10 ** 0.8
    rng = np.random.default_rng(0)
    fades = rng.exponential(1.0, 400_000)
    mc = qam_py(g * fades).mean()
    assert ber_rayleigh("qam16", g, "research") == pytest.approx(mc, rel=5e-3)
    cfg = ChannelConfig(model="analytic", snr_db=3.0, ber_formula="research")
    assert AnalyticChannel(cfg, np.random.default_rng(0)).p_awgn == pytest.approx(qam_py(np.array(10 ** 0.3))[()], rel=1e-12)
    with pytest.raises(ValueError, match="16-QAM"):
        ChannelConfig(model="analytic", modulation="qpsk", ber_formula="research")
    assert math.isclose(ber_awgn("qam16", g), 3 / 8 * math.erfc(math.sqrt(0.4 * g)), rel_tol=1e-12)
