"""Channel configuration: which physical-layer model carries Alice's words, and how.

One validated object shared by the runner (which expands lists of `snr_db` into sweeps itself), the
`lsc channel` command and `lsc.channel.link.WordLink`. Unknown keys and bad values are pydantic
validation errors that the runner/CLI turn into one-line messages.

SNR convention (`snr_type`):
- "ebn0" (default): `snr_db` is Eb/N0, the energy per *information* bit over the noise density. With
  LDPC at rate R the energy per coded bit is R*Eb, so coding is compared fairly at equal energy per
  information bit (the convention of BER curves and of Sionna's `ebnodb2no`).
- "esn0": `snr_db` is Es/N0, the energy per transmitted symbol over the noise density, i.e. the
  SNR seen by the receiver, independent of modulation order and code rate.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

BUILTIN_MODELS = ("none", "analytic", "phy")
# A built-in model, an installed package's channel (entry point group lsc.channels) or an import path
# 'package.module:factory' (lsc.channel.registry.CHANNELS checks the name).
ChannelModel = str
Modulation = Literal["bpsk", "qpsk", "qam16", "qam64"]

# Bits per symbol of each modulation (Gray-coded constellations).
BITS_PER_SYMBOL: dict[str, int] = {"bpsk": 1, "qpsk": 2, "qam16": 4, "qam64": 6}


class SCCConfig(BaseModel):
    """Semantic channel coding: replace words by longer same-POS synonyms Bob knows, before sending."""

    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool = False
    # Which words to expand: dependency heads (the papers), nouns, or every word with a synonym.
    expand: Literal["heads", "nouns", "all"] = "heads"
    # A synonym qualifies only when it has at least this many more characters than the word.
    min_extra_chars: int = Field(default=1, ge=1)
    # Bob maps a received synonym back to the original word (the SCC codebook is shared knowledge).
    map_back: StrictBool = False


class ChannelConfig(BaseModel):
    """How words cross the channel. model "none" is the ideal channel (no errors)."""

    model_config = ConfigDict(extra="forbid")

    model: ChannelModel = "none"
    snr_db: float = Field(default=10.0, allow_inf_nan=False)
    snr_type: Literal["ebn0", "esn0"] = "ebn0"
    modulation: Modulation = "qam16"  # the research code's modulation
    # Closed-form BER of the analytic model: the nearest-neighbour approximation (3/8 erfc for 16-QAM), or
    # "research": QAM.py's (1 - (1 - P_m)^2) / 4 (16-QAM only).
    ber_formula: Literal["nearest_neighbour", "research"] = "nearest_neighbour"
    # "rayleigh_block": one Rayleigh coefficient per word (a block), perfect CSI at the receiver.
    fading: Literal["none", "rayleigh_block"] = "none"
    # 5G LDPC code rate (phy model only); None = uncoded.
    ldpc_rate: float | None = Field(default=None, gt=0.0, lt=1.0)
    source_code: Literal["ascii", "utf8"] = "ascii"  # 8-bit ASCII as in the research code
    separator_bits: int = Field(default=8, ge=0, le=64)  # bits of the word separator (a space in ASCII)
    # Receiver-side correction of a received word to the nearest word of Bob's vocabulary.
    word_correction: StrictBool = False
    # Largest edit distance corrected; farther words are kept as received. None = no limit.
    correction_max_distance: int | None = Field(default=2, ge=0)
    scc: SCCConfig = Field(default_factory=SCCConfig)

    @field_validator("model")
    @classmethod
    def _model_known(cls, value: str) -> str:
        if value not in BUILTIN_MODELS:
            from lsc.channel.registry import CHANNELS  # imported on use: the plugin machinery is not needed for built-ins

            if not CHANNELS.known(value):
                raise ValueError(f"unknown channel model {value!r}; choose one of {', '.join(CHANNELS.names())} "
                                 "or 'package.module:factory'")
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> "ChannelConfig":
        if self.ldpc_rate is not None and self.model != "phy":
            raise ValueError("ldpc_rate needs model 'phy' (the analytic model has no closed form for LDPC)")
        if self.ldpc_rate is not None and not math.isfinite(self.ldpc_rate):
            raise ValueError("ldpc_rate must be a number in (0, 1)")
        if self.ber_formula == "research" and self.modulation != "qam16":
            raise ValueError("ber_formula 'research' is the research code's 16-QAM formula: use modulation qam16")
        return self

    @property
    def bits_per_symbol(self) -> int:
        """Bits carried by one constellation symbol."""
        return BITS_PER_SYMBOL[self.modulation]
