"""From a run to a paper: `lsc plot` (the report's figures, styled, vector) and `lsc table` (LaTeX, Markdown, CSV)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from study_data import make_folder, study_yaml
from lsc.config import load_config
from lsc.report import build_report
from lsc.report.analysis import transmissions
from lsc.report.data import load_run
from lsc.report.figures import FIGURES, STEP_FIGURES
from lsc.report.stats import mean_ci
from lsc.runner.study import run_study


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An ideal-channel run and a two-SNR sweep of the same four images and three schemes."""
    root = tmp_path_factory.mktemp("paper")
    cap = make_folder(root / "imgs", corrupt=False)
    out = []
    for name, sets in (("ideal", []), ("swept", ["channel.model=analytic", "channel.snr_db=[0, 20]"])):
        cfg = load_config(study_yaml(root / f"{name}.yaml", root / "imgs", cap, ["random", "nouns", "heads"]), sets)
        run_study(cfg, root / name, progress=False)
        out.append(root / name)
    return out[0], out[1]


def test_every_report_figure_draws_as_vector_pdf_and_svg(runs: tuple[Path, Path], tmp_path: Path, lsc_main) -> None:
    ideal, swept = runs
    step = {f"{c}_vs_words" for c, _ in STEP_FIGURES}  # the fake backend scores no step metric
    for name in [n for n in FIGURES if n not in step]:
        run = swept if name in ("lpips_vs_snr", "rate_perception") else ideal
        for fmt in ("pdf", "svg") if name in ("lpips_vs_words", "strip") else ("pdf",):
            out = tmp_path / f"{name}.{fmt}"
            res = lsc_main("plot", str(run), "--figure", name, "--format", fmt, "--out", str(out))
            assert res.returncode == 0, res.stderr
            assert res.stdout.strip() == str(out)
            head = out.read_bytes()[:200]
            assert head.startswith(b"%PDF") if fmt == "pdf" else b"<svg" in out.read_bytes()
    svg = (tmp_path / "lpips_vs_words.svg").read_text()
    assert "<image" not in svg and "<text" in svg  # vector, text kept as text


def test_style_sets_width_font_and_drops_the_title_on_paper(runs: tuple[Path, Path], tmp_path: Path, lsc_main) -> None:
    ideal, _ = runs
    png = tmp_path / "w.png"
    assert lsc_main("plot", str(ideal), "--figure", "lpips_vs_words", "--format", "png", "--width-in", "3.5",
                    "--out", str(png)).returncode == 0
    assert Image.open(png).size[0] == 1050  # 3.5 in at the paper style's 300 dpi
    for size, fmt in ((11, "9.163px"), (None, "6.664px")):  # tick and axis labels: 'small', 0.833 x the base size
        svg = tmp_path / f"f{size}.svg"
        args = ["--font-size", str(size)] if size else []
        assert lsc_main("plot", str(ideal), "--figure", "success_vs_words", "--format", "svg", "--out", str(svg), *args).returncode == 0
        sizes = set(re.findall(r"font-size: ([0-9.]+px)", svg.read_text()))
        assert fmt in sizes and max(sizes, key=lambda s: float(s[:-2])) == fmt  # the base size is the largest
    paper, screen = tmp_path / "p.svg", tmp_path / "s.svg"
    lsc_main("plot", str(ideal), "--figure", "success_vs_words", "--format", "svg", "--out", str(paper))
    lsc_main("plot", str(ideal), "--figure", "success_vs_words", "--format", "svg", "--style", "screen", "--out", str(screen))
    assert "Success vs words sent" not in paper.read_text() and "Success vs words sent" in screen.read_text()
    # every line style is explained: solid and dashed say what they mean in the legend
    for text in ("solid: reached within k words (Wilson 95% band)", "dashed: image after k words under the threshold"):
        assert text in paper.read_text()


def test_the_report_and_lsc_plot_draw_the_same_figure(runs: tuple[Path, Path], tmp_path: Path, lsc_main) -> None:
    ideal, _ = runs
    build_report(ideal, strips=1)
    for name in ("lpips_vs_words", "paired_difference", "gap_vs_images"):
        out = tmp_path / f"{name}.png"
        assert lsc_main("plot", str(ideal), "--figure", name, "--format", "png", "--style", "screen", "--out", str(out)).returncode == 0
        assert out.read_bytes() == (ideal / "report" / f"{name}.png").read_bytes()


def test_several_runs_schemes_and_strips_of_long_captions(runs: tuple[Path, Path], tmp_path: Path, lsc_main) -> None:
    from lsc.report.figures import load_views
    from lsc.report.plots import panels_for, strip_rows

    ideal, swept = runs
    views = load_views([ideal, swept], ["A", "B"], snr_db=0)
    assert [v.cond for v in views] == ["", "snr_db=0"]
    panels = panels_for(views, ["heads", "nouns"])
    assert [(p.title, p.schemes) for p in panels] == [("A", ["heads", "nouns"]), ("B (SNR 0 dB)", ["heads", "nouns"])]
    assert panels[0].style("nouns")["color"] == panels[1].style("nouns")["color"] != panels[0].style("heads")["color"]
    rows = strip_rows(views[:1], "a.png", ["nouns"], columns=3)  # 'a red ball on green grass': 7 steps -> 3 + 3 + 1
    assert [(label, len(steps), first) for label, _, steps, first in rows] == [
        ("nouns", 3, True), ("nouns (cont.)", 3, False), ("nouns (cont.)", 1, False)]
    out = tmp_path / "two.pdf"
    res = lsc_main("plot", str(ideal), str(swept), "--figure", "strip", "--schemes", "nouns", "--image", "b.png",
                   "--label", "A", "--label", "B", "--out", str(out))
    assert res.returncode == 0 and out.read_bytes().startswith(b"%PDF")
    for args, message in ((["--figure", "nope"], "--figure 'nope': unknown"),
                          (["--figure", "lpips_vs_words", "--schemes", "nouns,zz"], "--schemes 'zz'"),
                          (["--figure", "lpips_vs_snr"], "needs a run swept over at least two SNRs"),
                          (["--figure", "lpips_vs_words", "--format", "jpg"], "--format must be one of png, pdf, svg"),
                          (["--figure", "strip", "--image", "zz.png"], "--image 'zz.png': no transmitted image")):
        res = lsc_main("plot", str(ideal), *args)
        assert res.returncode == 2 and res.stderr.startswith("error: ") and message in res.stderr and "Traceback" not in res.stderr
    res = lsc_main("plot", str(swept), "--figure", "lpips_vs_words", "--snr", "7")
    assert res.returncode == 2 and "its SNRs: 0, 20" in res.stderr


def test_table_latex_markdown_csv_match_the_reports_numbers(runs: tuple[Path, Path], lsc_main) -> None:
    ideal, swept = runs
    res = lsc_main("table", str(ideal), str(swept), "--snr", "0", "--label", "ideal", "--label", "0 dB")
    assert res.returncode == 0, res.stderr
    tex = res.stdout
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\multicolumn{4}{c}{ideal} & \multicolumn{4}{c}{0 dB}" in tex and r"\cmidrule(lr){2-5} \cmidrule(lr){6-9}" in tex
    body = [line for line in tex.splitlines() if line.startswith(("random &", "nouns &", "heads &"))]
    assert len(body) == 3 and all(line.count("&") == 8 for line in body)
    data = load_run(ideal)
    tx = transmissions(data, "")
    area = {s: mean_ci(t.area_words for t in tx[s].values()) for s in data.schemes}
    best = min(data.schemes, key=lambda s: round(area[s].mean, 3))
    cell = f"${area[best].mean:.3f} \\pm {area[best].half:.3f}$"
    assert r"{\bfseries\boldmath " + cell + "}" in next(line for line in body if line.startswith(best + " &"))
    # CSV: long form, numbers; the same values as the report's definitions
    rows = list(csv.DictReader(io.StringIO(lsc_main("table", str(ideal), "--format", "csv", "--metrics", "area,success").stdout)))
    got = {(r["scheme"], r["metric"]): r for r in rows}
    for s in data.schemes:
        assert float(got[(s, "area")]["value"]) == pytest.approx(area[s].mean, rel=1e-5)
        reached = sum(t.reached for t in tx[s].values())
        assert float(got[(s, "success")]["value"]) == pytest.approx(reached / len(tx[s]), rel=1e-5)
    md = lsc_main("table", str(ideal), str(swept), "--format", "markdown", "--schemes", "heads,random").stdout
    assert md.splitlines()[0].startswith("| scheme | ideal: reached (%) |") and "swept: " in md.splitlines()[0]
    assert [line.split(" | ")[0] for line in md.splitlines()[2:4]] == ["| heads", "| random"]
    res = lsc_main("table", str(ideal), "--metrics", "success,nope")
    assert res.returncode == 2 and "--metrics 'nope': unknown" in res.stderr
    res = lsc_main("table", str(ideal), "--format", "xlsx")
    assert res.returncode == 2 and "--format must be one of latex, markdown, csv" in res.stderr
