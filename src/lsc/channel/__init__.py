"""The channel: Alice's words as bits over a simulated physical layer, and semantic channel coding.

Small blocks with one job each (Sionna style), composed by `link.WordLink`:

- `config`      ChannelConfig / SCCConfig (validated; model "none" | "analytic" | "phy")
- `source`      word <-> bits (8-bit ASCII as the research code, or UTF-8) and the separator
- `theory`      closed-form BER of Gray BPSK / M-QAM over AWGN and Rayleigh fading
- `analytic`    independent bit flips with the closed-form BER (the research code's channel)
- `phy`         Sionna 2.x: 5G LDPC, QAM mapping, Rayleigh block fading, AWGN, APP demapping
- `correction`  receiver-side snapping of a received word to Bob's vocabulary (edit distance)
- `scc`         semantic channel coding: longer same-POS synonyms Bob knows, optional map-back
- `link`        WordLink: one word at a time through all of the above, with the bits it cost
- `ber`         BER measurement behind `lsc channel ber`

Sionna is imported only when the `phy` model is used.
"""

from lsc.channel.config import ChannelConfig, SCCConfig
from lsc.channel.link import WordLink, WordTransmission
from lsc.channel.scc import SCCResult, map_back, scc_encode

__all__ = ["ChannelConfig", "SCCConfig", "WordLink", "WordTransmission", "SCCResult", "map_back", "scc_encode"]
