"""`lsc channel ...`: check the channel from the command line.

Options are typed (a value that is not a number is one line, `error: ...`, exit 2, through `lsc.cli.main`);
what a type cannot say (a positive count, a finite SNR) is checked here, one line too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import typer

from lsc.errors import ConfigError
from lsc.limits import check_seed, check_text

channel_app = typer.Typer(no_args_is_help=True, help="Words as bits over a simulated physical layer.")


def _finite(value: float, name: str) -> float:
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    return value


# Upper bounds on --bits: the analytic channel simulates about 5e7 bits a second, the phy one far fewer;
# a typo of a few zeros must not become a silent hours-long run.
MAX_BITS = {"analytic": 1_000_000_000, "phy": 100_000_000}


def _positive(value: int, name: str) -> int:
    if value <= 0:
        raise ConfigError(f"{name} must be a positive whole number, got {value}")
    return value


def _count(text: str, name: str) -> int:
    """A count written as 1000000, 1_000_000 or 1e6."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {text!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {text!r}")
    return _positive(int(value), name)


@channel_app.command("ber")
def ber_command(
    model: str = typer.Option("analytic", "--model", help="analytic (closed-form bit flips) or phy (Sionna)"),
    modulation: str = typer.Option("qam16", "--modulation", help="bpsk, qpsk, qam16 or qam64"),
    snr_db: float = typer.Option(8.0, "--snr-db", help="SNR in dB (Eb/N0 unless --snr-type esn0)"),
    snr_type: str = typer.Option("ebn0", "--snr-type", help="ebn0 (per information bit) or esn0 (per symbol)"),
    bits: str = typer.Option("1000000", "--bits", metavar="<int>", help="information bits to simulate (1e6 and 1_000_000 work too)"),
    ldpc: Optional[float] = typer.Option(None, "--ldpc", help="5G LDPC code rate in (0,1) (phy only); omitted: uncoded"),
    fading: str = typer.Option("none", "--fading", help="none or rayleigh_block"),
    block_bits: int = typer.Option(960, "--block-bits", help="bits per block (one fade / codeword)"),
    seed: int = typer.Option(0, "--seed", help="random seed of the noise and fades"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Measure the bit error rate of a channel and compare it with the closed form."""
    from lsc.channel.ber import build_config, measure_ber

    values: dict[str, Any] = {
        "model": model,
        "modulation": modulation,
        "snr_db": _finite(snr_db, "--snr-db"),
        "snr_type": snr_type,
        "fading": fading,
        "ldpc_rate": None if ldpc is None else _finite(ldpc, "--ldpc"),
    }
    cfg = build_config(**values)
    n_bits = _count(bits, "--bits")
    limit = MAX_BITS.get(cfg.model)
    if limit is not None and n_bits > limit:
        raise ConfigError(f"--bits {bits}: at most {limit:.0e} bits on the {cfg.model} channel "
                          "(1e6 already measures a BER of 1e-4 to about 10%)")
    result = measure_ber(cfg, n_bits, seed=check_seed(seed, "--seed"), block_bits=_positive(block_bits, "--block-bits"))
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(
        f"{cfg.model} {cfg.modulation} {cfg.snr_type}={cfg.snr_db:g} dB fading={cfg.fading}: "
        f"{result['bits']} bits on {result['channel_bits']} channel bits"
    )
    if cfg.ldpc_rate is None:
        typer.echo(f"  BER {result['ber']:.4e}   closed form {result['closed_form_ber']:.4e}")
    else:
        typer.echo(
            f"  coded BER {result['ber']:.4e}   channel (uncoded) BER {result['channel_ber']:.4e}"
            f"   closed form {result['closed_form_channel_ber']:.4e}"
        )


@channel_app.command("send")
def send_command(
    text: str = typer.Argument(..., help="words to send, e.g. 'a red circle on green grass'"),
    model: str = typer.Option("analytic", "--model", help="analytic (closed-form bit flips) or phy (Sionna)"),
    modulation: str = typer.Option("qam16", "--modulation", help="bpsk, qpsk, qam16 or qam64"),
    snr_db: float = typer.Option(4.0, "--snr-db", help="SNR in dB (Eb/N0)"),
    ldpc: Optional[float] = typer.Option(None, "--ldpc", help="5G LDPC code rate in (0,1) (phy only); omitted: uncoded"),
    fading: str = typer.Option("none", "--fading", help="none or rayleigh_block"),
    seed: int = typer.Option(0, "--seed", help="random seed of the noise and fades"),
    vocabulary: Optional[Path] = typer.Option(None, "--vocabulary", help="file with Bob's words, one a line"),
    correct: bool = typer.Option(False, "--correct", help="correct received words to the vocabulary"),
    max_distance: Optional[int] = typer.Option(2, "--max-distance", help="largest edit distance corrected (with --correct)"),
    scc: bool = typer.Option(False, "--scc", help="semantic channel coding of head words (needs the parser)"),
    map_back: bool = typer.Option(False, "--map-back", help="Bob maps SCC synonyms back"),
) -> None:
    """Send words over a channel and show what Bob receives (word, bits, bit errors)."""
    check_text(text, "the text")
    from lsc.channel.ber import build_config
    from lsc.channel.link import WordLink

    if not text.split():
        raise ConfigError("nothing to send: the text is empty")
    vocab = None
    if vocabulary is not None:
        path = vocabulary
        if not path.is_file():
            raise ConfigError(f"vocabulary file not found: {vocabulary}")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"vocabulary file {vocabulary} cannot be read: {' '.join(str(exc).split())}") from None
        vocab = frozenset(line.strip() for line in lines if line.strip())
    cfg = build_config(
        model=model,
        modulation=modulation,
        snr_db=_finite(snr_db, "--snr-db"),
        fading=fading,
        ldpc_rate=None if ldpc is None else _finite(ldpc, "--ldpc"),
        word_correction=correct,
        correction_max_distance=max_distance,
        scc={"enabled": scc, "map_back": map_back},
    )
    link = WordLink(cfg, seed=check_seed(seed, "--seed"), vocabulary=vocab)
    words = text.split()
    link.prepare(words)
    for tx in link.send_all(words):
        shown = tx.sent if tx.sent == tx.original else f"{tx.original}={tx.sent}"
        typer.echo(f"{shown}\t->\t{tx.received}\t{tx.bits} bits\t{tx.bit_errors} errors")


def register(app: typer.Typer, panel: str | None = None) -> None:
    """Mount `lsc channel` on the main app."""
    app.add_typer(channel_app, name="channel", rich_help_panel=panel)
