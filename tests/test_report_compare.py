"""`lsc compare`: one scheme across runs (channel variants), SNR by SNR, with the report's statistics."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from lsc.cli import app
from lsc.report.compare import compare_runs, markdown_table
from lsc.report.stats import mean_ci, wilson
from test_report_build import _run
from test_runner_config import lsc_cli


def test_compare_two_runs_by_hand(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", ["heads_random"], ["channel.model=analytic", "channel.snr_db=[0, 30]"])
    b = _run(tmp_path / "b", ["heads_random"], ["channel.model=analytic", "channel.snr_db=[0, 30]", "channel.modulation=bpsk"])
    cells = compare_runs([a, b], "heads_random", ["qam16", "bpsk"])
    assert [(c.run, c.snr_db) for c in cells] == [("qam16", 0.0), ("qam16", 30.0), ("bpsk", 0.0), ("bpsk", 30.0)]
    db = sqlite3.connect(b / "results.sqlite")
    rows = db.execute("SELECT final_lpips, words_to_threshold FROM summary WHERE snr_db = 30 AND status = 'ok'").fetchall()
    db.close()
    cell = cells[3]
    hits = [w for _, w in rows if w is not None]
    assert cell.n == len(rows)
    assert cell.final_lpips.fmt(3) == mean_ci(f for f, _ in rows).fmt(3)
    assert cell.success == wilson(len(hits), len(rows))
    db = sqlite3.connect(b / "results.sqlite")
    last_bits = [r[0] for r in db.execute("SELECT MAX(cum_bits) FROM steps WHERE snr_db = 30 GROUP BY image_id")]
    db.close()
    assert cell.bits.fmt(1) == mean_ci(last_bits).fmt(1)
    table = markdown_table(cells)
    assert table.splitlines()[0] == "| run (heads_random) | 0 dB | 30 dB |"  # the table names its scheme
    assert table.splitlines()[3].startswith("| bpsk | ")


def test_compare_command(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", ["heads_random"], ["channel.model=analytic", "channel.snr_db=[0, 30]"])
    plot = tmp_path / "cmp.png"
    result = CliRunner().invoke(app, ["compare", str(a), str(a), "--scheme", "heads_random", "--label", "x", "--label", "y",
                                      "--plot", str(plot), "--json"])
    assert result.exit_code == 0, result.output
    cells = json.loads(result.output)
    assert len(cells) == 4 and {c["run"] for c in cells} == {"x", "y"}
    assert all(0 <= c["words_with_bit_errors"] <= 1 and c["bits_per_caption"]["mean"] > 0 for c in cells)
    assert cells[0]["words_with_bit_errors"] > cells[1]["words_with_bit_errors"]  # 0 dB flips more than 30 dB
    assert plot.stat().st_size > 0
    # one scheme in the runs: no need to name it; the plot's title names it
    named = lsc_cli("compare", str(a), "--plot", str(tmp_path / "one.svg"))
    assert named.returncode == 0 and named.stdout.startswith("| run (heads_random) |")
    assert "Scheme heads_random" in (tmp_path / "one.svg").read_text()
    several = _run(tmp_path / "c", ["random", "nouns"])
    refused = lsc_cli("compare", str(several), str(several))
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "error: the runs hold several schemes (random, nouns): name the one to compare with --scheme "
        "(repeat it for a scheme x run table)")
    bad = lsc_cli("compare", str(a), "--scheme", "nope")
    assert bad.returncode == 2 and bad.stderr.strip() == f"error: {a}: no scheme 'nope' (it has heads_random)"
    missing = lsc_cli("compare", str(tmp_path / "none"))
    assert missing.returncode == 2 and "not a run folder" in missing.stderr


def test_word_correction_without_a_vocabulary_stops_before_the_study(tmp_path: Path) -> None:
    import pytest

    from lsc.errors import ConfigError

    with pytest.raises(ConfigError, match="needs Bob's vocabulary"):
        _run(tmp_path, ["heads_random"], ["channel.model=analytic", "channel.snr_db=[0]", "channel.word_correction=true"])


def test_api_compare_draws_the_runs_threshold(tmp_path: Path, monkeypatch) -> None:
    import lsc.api
    import lsc.report.compare as compare

    a = _run(tmp_path / "a", ["random"], ["channel.model=analytic", "channel.snr_db=[0, 30]", "threshold=0.07"])
    drawn: list = []
    monkeypatch.setattr(compare, "plot_comparison", lambda cells, path, threshold=None: drawn.append(threshold) or True)
    cells = lsc.api.compare([a], "random", plot=tmp_path / "cmp.png")
    assert [c.threshold for c in cells] == [0.07, 0.07] and drawn == [0.07]
    other = [*cells, compare.Cell("other", 0.0, 1, cells[0].final_lpips, cells[0].words, (1.0, 0.5, 1.0), threshold=0.6)]
    assert compare.common_threshold(other) is None  # runs judged by different thresholds: no single line


def test_scheme_by_run_table(tmp_path: Path) -> None:
    """Several schemes: one cell per (scheme, run) with success, words, area per word and seconds per transmission,
    each computed from the stores as the report computes it (area: report.analysis' transmissions)."""
    from lsc.report.analysis import transmissions
    from lsc.report.compare import scheme_run_table
    from lsc.report.data import load_run

    a = _run(tmp_path / "a", ["random", "nouns"], ["threshold=0.07"])
    b = _run(tmp_path / "b", ["random", "nouns"], ["threshold=0.2"])
    cells = compare_runs([a, b], ["nouns", "random"], ["fast", "slow"])
    assert [(c.scheme, c.run, c.snr_db) for c in cells] == [("nouns", "fast", None), ("nouns", "slow", None),
                                                           ("random", "fast", None), ("random", "slow", None)]
    data = load_run(b)
    t = transmissions(data, "")["random"]
    cell = cells[3]
    assert cell.area.fmt(4) == mean_ci(x.area_words for x in t.values()).fmt(4) and cell.area.n == len(t) > 0
    warm = [s for s in data.ok("", "random") if not s["cold"]]
    assert cell.timing == "transmission" and cell.seconds.n == len(warm) > 0
    assert cell.seconds.fmt(4) == mean_ci(s["transmission_s"] for s in warm).fmt(4)
    assert cell.planning.fmt(4) == mean_ci(s["planning_s"] for s in warm).fmt(4)
    assert (cells[0].threshold, cells[1].threshold) == (0.07, 0.2)
    table = scheme_run_table(cells).splitlines()
    assert table[0] == "| scheme | fast | slow |" and table[2].startswith("| nouns | ") and table[3].startswith("| random | ")
    p, lo, hi = cell.success
    assert table[3].split(" | ")[2] == f"{p:.0%} [{lo:.0%}, {hi:.0%}] / {cell.words.fmt(1)} / {cell.area.fmt(2)} |"
    assert "Thresholds: fast 0.07, slow 0.2." in table[5]
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--scheme", "nouns", "--scheme", "random", "--json",
                                      "--label", "a", "--label", "b", "--plot", str(tmp_path / "bars.png")])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["scheme"], r["run"]) for r in rows] == [("nouns", "a"), ("nouns", "b"), ("random", "a"), ("random", "b")]
    assert rows[3]["area_words"]["mean"] == round(cell.area.mean, 4) and (tmp_path / "bars.png").stat().st_size > 0
    text = CliRunner().invoke(app, ["compare", str(a), str(b), "--scheme", "nouns", "--scheme", "random", "--label", "a", "--label", "b"])
    assert text.exit_code == 0 and text.output.splitlines()[0] == "| scheme | a | b |", text.output
    bad = lsc_cli("compare", str(a), "--scheme", "random", "--scheme", "heads")
    assert bad.returncode == 2 and bad.stderr.strip() == f"error: {a}: no scheme 'heads' (it has random, nouns)"
