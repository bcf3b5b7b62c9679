"""WordLink: bit accounting, determinism, correction and SCC map-back on the receiver side."""

import numpy as np
import pytest

from lsc.channel.analytic import AnalyticChannel
from lsc.channel.config import ChannelConfig, SCCConfig
from lsc.channel.link import WordLink
from lsc.errors import ConfigError

WORDS = ["a", "red", "circle", "on", "the", "left", "of", "blue", "square"]


def test_ideal_channel_costs_8_bits_per_char_plus_separator():
    link = WordLink(ChannelConfig())
    tx = link.send("circle")
    assert (tx.sent, tx.received, tx.bits, tx.bit_errors) == ("circle", "circle", 56, 0)
    assert WordLink(ChannelConfig(separator_bits=0)).send("dog").bits == 24
    assert WordLink(ChannelConfig(source_code="utf8")).send("café").bits == 48


def test_analytic_is_deterministic_per_seed():
    cfg = ChannelConfig(model="analytic", snr_db=0)
    a = [(t.received, t.bit_errors) for t in WordLink(cfg, seed=3).send_all(WORDS * 5)]
    b = [(t.received, t.bit_errors) for t in WordLink(cfg, seed=3).send_all(WORDS * 5)]
    c = [(t.received, t.bit_errors) for t in WordLink(cfg, seed=4).send_all(WORDS * 5)]
    assert a == b and a != c
    assert any(r != w for (r, _), w in zip(a, WORDS * 5))  # 0 dB garbles words


def test_analytic_flip_rate_matches_probability():
    cfg = ChannelConfig(model="analytic", snr_db=4)
    ch = AnalyticChannel(cfg, np.random.default_rng(0))
    u = np.zeros((1000, 1000), dtype=np.uint8)
    measured = ch.transmit_blocks(u).u_hat.mean()
    assert measured == pytest.approx(ch.p_awgn, rel=0.02)  # 1e6 bits, ~59k flips, sd 0.4%


def test_high_snr_is_error_free_and_counts_bits():
    for model in ("analytic", "phy"):
        if model == "phy":
            pytest.importorskip("sionna.phy")
        link = WordLink(ChannelConfig(model=model, snr_db=30), seed=0)
        txs = link.send_all(WORDS)
        assert [t.received for t in txs] == WORDS
        assert [t.bits for t in txs] == [8 * len(w) + 8 for w in WORDS]
        assert all(t.bit_errors == 0 for t in txs)


def test_phy_ldpc_word_bits_counted_after_coding():
    pytest.importorskip("sionna.phy")
    link = WordLink(ChannelConfig(model="phy", snr_db=20, ldpc_rate=0.5), seed=0)
    tx = link.send("dog")
    assert tx.bits == 64 and tx.received == "dog"  # (24 + 8) bits at rate 1/2


def test_word_correction_snaps_to_vocabulary():
    vocab = frozenset({"red", "circle", "square", "blue"})
    cfg = ChannelConfig(model="analytic", snr_db=3, word_correction=True, correction_max_distance=2)
    link = WordLink(cfg, seed=1, vocabulary=vocab)
    txs = link.send_all(["circle"] * 40)
    garbled = [t for t in txs if t.raw_received != "circle"]
    assert garbled, "3 dB should garble some words"
    for t in txs:
        if t.raw_received == "circle" or sum(a != b for a, b in zip(t.raw_received, "circle")) <= 2:
            assert t.received == "circle"
    with pytest.raises(ConfigError):
        WordLink(ChannelConfig(word_correction=True), vocabulary=None)


def test_scc_map_back_uses_codebook():
    cfg = ChannelConfig(scc=SCCConfig(enabled=True, map_back=True))
    link = WordLink(cfg, scc_codebook={"rectangle": "square"})
    assert link.send("rectangle").received == "square"
    assert link.send("rectangle").bits == 80  # the longer word is what costs bits
    off = WordLink(ChannelConfig(scc=SCCConfig(enabled=True)), scc_codebook={"rectangle": "square"})
    assert off.send("rectangle").received == "rectangle"


def test_phy_link_is_deterministic_per_seed():
    pytest.importorskip("sionna.phy")
    cfg = ChannelConfig(model="phy", snr_db=2, fading="rayleigh_block")
    a = [(t.received, t.bit_errors) for t in WordLink(cfg, seed=11).send_all(WORDS * 3)]
    b = [(t.received, t.bit_errors) for t in WordLink(cfg, seed=11).send_all(WORDS * 3)]
    c = [(t.received, t.bit_errors) for t in WordLink(cfg, seed=12).send_all(WORDS * 3)]
    assert a == b and a != c
