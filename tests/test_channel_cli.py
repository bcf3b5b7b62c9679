"""Config validation and the `lsc channel` commands (one-line errors, exit 2)."""

import json
import sys

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from lsc.channel.ber import build_config, measure_ber
from lsc.channel.config import ChannelConfig
from lsc.errors import ConfigError


@pytest.mark.parametrize(
    "values",
    [
        {"modulation": "qam8"},
        {"model": "awgn"},
        {"snr_db": "abc"},
        {"snr_db": float("inf")},
        {"ldpc_rate": 1.0, "model": "phy"},
        {"ldpc_rate": 0.5},  # analytic/none: no LDPC
        {"separator_bits": -1},
        {"correction_max_distance": -1},
        {"scc": {"expand": "verbs"}},
        {"scc": {"min_extra_chars": 0}},
        {"snr": 3},  # unknown key
    ],
)
def test_bad_config_values(values):
    with pytest.raises(ValidationError):
        ChannelConfig(**values)
    with pytest.raises(ConfigError) as info:
        build_config(**values)
    assert "\n" not in str(info.value)


def test_defaults_follow_research_code():
    cfg = ChannelConfig()
    assert (cfg.model, cfg.modulation, cfg.source_code, cfg.separator_bits, cfg.bits_per_symbol) == ("none", "qam16", "ascii", 8, 4)


def test_measure_ber_analytic_and_reproducible():
    cfg = ChannelConfig(model="analytic", snr_db=8)
    a = measure_ber(cfg, 200_000, seed=5)
    assert a == measure_ber(cfg, 200_000, seed=5)
    assert a["bits"] == 209 * 960  # rounded up to whole blocks
    assert a["ber"] == pytest.approx(a["closed_form_ber"], rel=0.1)
    with pytest.raises(ConfigError):
        measure_ber(cfg, -1)
    with pytest.raises(ConfigError):
        measure_ber(ChannelConfig(), 1000)


def test_cli_ber_json():
    from lsc.cli import app

    result = CliRunner().invoke(app, ["channel", "ber", "--model", "analytic", "--modulation", "qam16", "--snr-db", "8", "--bits", "100000", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["modulation"] == "qam16" and data["bits"] == 105 * 960
    assert data["ber"] == pytest.approx(0.00925, rel=0.15)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--bits", "-5"], "--bits"),
        (["--modulation", "qam8"], "modulation"),
        (["--snr-db", "abc"], "--snr-db"),
        (["--model", "analytic", "--ldpc", "0.5"], "ldpc_rate"),
        (["--model", "phy", "--ldpc", "2"], "ldpc_rate"),
    ],
)
def test_cli_bad_values_one_line_exit_2(monkeypatch, capsys, args, fragment):
    from lsc.cli import main

    monkeypatch.setattr(sys, "argv", ["lsc", "channel", "ber", *args])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and fragment in err
