"""One helper words every pydantic validation error the user sees: key path, problem, value, count of the rest."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from lsc.errors import ConfigError, validation_message
from lsc.interfaces import ATTENTION_VARIANTS, check_attention_variant


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: float = 1.0


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: _Inner = _Inner()
    n: int = 0


def _error(**values):
    with pytest.raises(Exception) as info:
        _Outer(**values)
    return info.value


def test_first_problem_with_prefix_value_and_count():
    exc = _error(n="many", inner={"rate": "fast", "bogus": 1})
    assert validation_message(exc, "opts") == (
        "opts.inner.rate: Input should be a valid number, unable to parse string as a number (got 'fast') (and 2 more problems)")


def test_unknown_key_wording_skip_and_rename():
    exc = _error(inner={"bogus": 1})
    assert validation_message(exc) == "inner.bogus: unknown key"
    assert validation_message(exc, unknown="unknown config key {key!r}") == "unknown config key 'inner.bogus'"
    assert validation_message(_error(n="x"), rename={"n": "count"}).startswith("count: Input should be a valid integer")
    assert validation_message(_error(inner={"rate": "x"}), skip={"inner"}).startswith("rate: ")


def test_each_area_uses_it():
    from lsc.channel.ber import build_config
    from lsc.schemes import get_scheme

    with pytest.raises(ConfigError, match=r"^channel\.snr_db: Input should be a valid number.* \(got 'x'\)$"):
        build_config(snr_db="x")
    with pytest.raises(ConfigError, match=r"^scheme 'heads_skd': bad skd option: skd\.min_count: .*\(got 0\)$"):
        get_scheme("heads_skd", skd={"min_count": 0})


def test_attention_variants_checked_in_one_place():
    from lsc.schemes import get_scheme

    assert check_attention_variant("research") == "research"
    for scheme in ("most_attentive", "heads_attentive", "attention_contribution"):
        with pytest.raises(ConfigError, match=f"attention_variant must be one of {', '.join(ATTENTION_VARIANTS)}, not 'max'"):
            get_scheme(scheme, attention_variant="max")
