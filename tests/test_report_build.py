"""The report: statistics worked by hand, and the files a (full, partial or swept) run's report holds."""

from __future__ import annotations

import base64
import html
import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from study_data import make_folder, study_yaml
from lsc.config import load_config
from lsc.report import build_report
from lsc.report.build import scheme_table
from lsc.report.data import load_run
from lsc.report.stats import mean_ci, pad_forward, step_function_at, success_curve, t975, wilson
from lsc.runner.folder import safe_name
from lsc.runner.study import run_study


def test_mean_ci_by_hand() -> None:
    # values 1, 2, 3, 6: mean 3, sample sd sqrt(((4+1+0+9)/3)) = sqrt(14/3); t(3) = 3.182
    ci = mean_ci([1, 2, 3, 6])
    assert ci.n == 4 and ci.mean == 3.0
    assert ci.half == pytest.approx(3.182 * math.sqrt(14 / 3) / 2)
    assert mean_ci([None, 5.0]).n == 1 and math.isnan(mean_ci([5.0]).half)
    assert mean_ci([]).fmt() == "–"
    assert mean_ci([1, 3]).fmt(1) == "2.0 ± 12.7"  # sd sqrt(2), t(1) = 12.706: 12.706 * sqrt(2) / sqrt(2)
    assert t975(1000) == 1.96


def test_wilson_by_hand() -> None:
    p, lo, hi = wilson(0, 4)
    assert p == 0 and lo == 0.0
    # z = 1.96, n = 4: upper = (z^2/8) / (1 + z^2/4) + z*sqrt(z^2/64)/(1 + z^2/4) = 2 * 0.4802 / 1.9604
    assert hi == pytest.approx((1.96**2 / 8 + 1.96 * 1.96 / 8) / (1 + 1.96**2 / 4))
    p, lo, hi = wilson(2, 4)
    assert p == 0.5 and lo == pytest.approx(1 - hi)


def test_curve_helpers_by_hand() -> None:
    m = pad_forward([[0.9, 0.5], [0.8, 0.6, 0.3, 0.2]])
    assert m.tolist() == [[0.9, 0.5, 0.5, 0.5], [0.8, 0.6, 0.3, 0.2]]
    # after 0 bits: step 0; 40 bits received at 40; 64 at 64
    got = step_function_at([0, 40, 64], [0.9, 0.5, 0.2], np.array([0, 39, 40, 63, 64, 100]))
    assert got.tolist() == [0.9, 0.9, 0.5, 0.5, 0.2, 0.2]
    assert success_curve([1, None, 3, 0], 5).tolist() == [0.25, 0.5, 0.5, 0.75, 0.75]


def _run(tmp_path: Path, schemes: list[str], overrides: list[str] = ()) -> Path:
    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=True)
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, cap, schemes), list(overrides))
    out = tmp_path / "run"
    run_study(cfg, out, progress=False)
    return out


def _embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_files_and_self_contained_html(tmp_path: Path) -> None:
    out = _run(tmp_path, ["random", "nouns"])
    html_path = build_report(out)
    rep = out / "report"
    assert html_path == rep / "report.html"
    names = sorted(p.name for p in rep.iterdir())
    strips = sorted(f"strip_{safe_name(i)}.png" for i in ("a.png", "b.png", "c.png"))  # 'strip_a-<hash>.png'
    assert names == sorted(["gap_vs_images.png", "lpips_vs_bits.png", "lpips_vs_words.png", "paired_difference.png",
                            "report.html", "report.md", *strips, "success_vs_words.png"])
    assert not [n for n in names if n.endswith(".png.png")]
    html = html_path.read_text()
    pngs = _embedded_pngs(html)
    assert len(pngs) == 8 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert "<img" in html and 'src="report/' not in html and "file:" not in html  # nothing external
    assert "broken.png" in html and "cannot decode image" in html  # the failure is listed
    md = (rep / "report.md").read_text()
    assert "![Mean LPIPS vs words sent (95% CI bands), one panel per scheme family](lpips_vs_words.png)" in md
    assert "| random | 4 | 1 |" in md and "| oracle (caption-order bound) | 4 |" in md
    assert "### Paired comparison with random (same images)" in md and "| nouns | 4 |" in md


def test_scheme_table_numbers(tmp_path: Path) -> None:
    out = _run(tmp_path, ["random"])
    data = load_run(out)
    db = sqlite3.connect(out / "results.sqlite")
    wtt = [r[0] for r in db.execute("SELECT words_to_threshold FROM summary WHERE status = 'ok'")]
    finals = [r[0] for r in db.execute("SELECT final_lpips FROM summary WHERE status = 'ok'")]
    per_image = db.execute("SELECT image_id, AVG(lpips) FROM steps WHERE step > 0 GROUP BY image_id").fetchall()
    db.close()
    row = scheme_table(data, "")[0]
    hits = [w for w in wtt if w is not None]
    assert row["n"] == 4 and row["failed"] == 1
    assert row["words"] == f"{mean_ci(hits).fmt(2)} ({len(hits)}/4)"
    assert row["final_lpips"] == mean_ci(finals).fmt(3)
    assert row["mean_lpips"] == mean_ci(v for _, v in per_image).fmt(3)  # area under each curve, per word
    assert row["success"].startswith(f"{len(hits) / 4:.0%} [")


def test_report_of_partial_and_empty_runs(tmp_path: Path) -> None:
    out = _run(tmp_path, ["random", "most_attentive"])
    con = sqlite3.connect(out / "results.sqlite")
    with con:  # as if the study had been stopped early: most_attentive never ran, no oracle yet
        con.execute("DELETE FROM summary WHERE scheme = 'most_attentive'")
        con.execute("DELETE FROM steps WHERE scheme = 'most_attentive'")
        con.execute("DELETE FROM oracle")
    con.close()
    html = build_report(out).read_text()
    assert "most_attentive" not in html.split("<h2>Results</h2>")[1].split("<img")[0]
    assert len(_embedded_pngs(html)) >= 3
    con = sqlite3.connect(out / "results.sqlite")
    with con:
        con.execute("DELETE FROM summary")
        con.execute("DELETE FROM steps")
    con.close()
    assert "No results yet." in build_report(out).read_text()


def test_sweep_report_has_snr_and_rate_perception_plots(tmp_path: Path) -> None:
    out = _run(tmp_path, ["heads_random"], ["channel.model=analytic", "channel.snr_db=[0, 20]"])
    build_report(out)
    names = {p.name for p in (out / "report").iterdir()}
    assert {"lpips_vs_snr.png", "rate_perception.png", "lpips_vs_words_snr_db0.png", "lpips_vs_words_snr_db20.png"} <= names
    html = (out / "report" / "report.html").read_text()
    assert "<h2>SNR sweep</h2>" in html and "Condition snr_db=0" in html


def test_sweep_table_by_hand(tmp_path: Path) -> None:
    out = _run(tmp_path, ["random"], ["channel.model=analytic", "channel.snr_db=[0, 30]"])
    from lsc.report.build import sweep_table

    head, body = sweep_table(load_run(out))
    assert head == ["scheme", "0 dB", "30 dB"]
    db = sqlite3.connect(out / "results.sqlite")
    finals = [r[0] for r in db.execute("SELECT final_lpips FROM summary WHERE snr_db = 30 AND status = 'ok'")]
    hits = [r[0] for r in db.execute("SELECT words_to_threshold FROM summary WHERE snr_db = 30 AND status = 'ok' "
                                     "AND words_to_threshold IS NOT NULL")]
    db.close()
    assert body[0][0] == "random"
    assert body[0][2].startswith(f"LPIPS {mean_ci(finals).fmt(3)}; words over successes {mean_ci(hits).fmt(1)} "
                                 f"({len(hits)}/4 reached), failures at n+1 ")


def test_lpips_after_k_words_takes_the_step_or_the_last_one():
    from types import SimpleNamespace

    from lsc.report.build import lpips_after

    rows = [{"step": i, "lpips": v} for i, v in enumerate([0.9, 0.7, 0.5, 0.4, 0.3])]
    short = [{"step": i, "lpips": v} for i, v in enumerate([0.8, 0.6])]
    data = SimpleNamespace(steps={("c", "heads", "a"): rows, ("c", "heads", "b"): short})
    assert lpips_after(data, "c", "heads", "a", 3) == 0.4
    assert lpips_after(data, "c", "heads", "b", 3) == 0.6  # 1-word caption: its last image
    assert lpips_after(data, "c", "heads", "missing", 3) is None


def test_report_laid_out_once_from_loaded_data_without_the_store(tmp_path: Path) -> None:
    """The blocks come from RunData alone (the store may be gone), and both renderers show every block."""
    from lsc.report.build import Figure, Heading, Table, report_blocks, to_html, to_markdown

    out = _run(tmp_path, ["random"])
    data = load_run(out)
    (out / "results.sqlite").unlink()
    figs = tmp_path / "figs"
    figs.mkdir()
    blocks = report_blocks(data, figs)
    md, page = to_markdown(blocks), to_html(blocks, "t")
    assert "oracle bound (best k-word subset, 2^n generations): 4 images; 0 skipped" in md
    for b in blocks:
        if isinstance(b, Heading):  # the HTML escapes text ("Bob's" -> "Bob&#x27;s")
            assert b.text in md and f"<h{b.level}>{html.escape(b.text)}</h{b.level}>" in page
        elif isinstance(b, Figure):
            assert f"]({b.path.name})" in md and f'alt="{html.escape(b.title)}"' in page
        elif isinstance(b, Table):
            assert "| " + " | ".join(b.head) + " |" in md and page.count("<table>") >= 1
    assert "reason</th></tr>\n<tr><td>broken.png</td>" in page and "text-align:left'>" in page
