"""The report's honest statistics, worked by hand: failure-penalised and Kaplan-Meier words to threshold,
paired tests with Holm's correction, areas under LPIPS vs bits, scheme families, strip selection."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from lsc.errors import ConfigError
from lsc.runner.folder import safe_name
from lsc.report.stats import holm, jackknife_ci, km_median, mean_over_bits, paired_p, penalised, sign_flip_p


def test_failures_at_n_plus_one() -> None:
    # two successes (3, 5 words), one failure of a 9-word caption: 10
    assert penalised([3, None, 5], [8, 10, 6]) == [3.0, 10.0, 5.0]


def test_kaplan_meier_median_by_hand() -> None:
    # times 2, 4, fail@6, fail@3, 5: at 2: S = 4/5; at 4 (at risk 4, the failure at 3 left): S = 4/5 * 3/4 = 0.6;
    # at 5 (at risk 2): S = 0.6 * 1/2 = 0.3 <= 0.5 -> median 5
    assert km_median([2, 4, None, None, 5], [9, 9, 6, 3, 9]) == 5
    # fewer than half reach it: no median
    assert km_median([2, None, None], [5, 5, 5]) is None
    # everyone reaches it: the ordinary median (lower of the middle two)
    assert km_median([1, 2, 3, 4], [9, 9, 9, 9]) == 2


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.02, 0.04 -> x3, x2, x1 = 0.03, 0.04, 0.04 (monotone), nan untouched
    got = holm([0.04, 0.01, math.nan, 0.02])
    assert got[1] == pytest.approx(0.03) and got[3] == pytest.approx(0.04) and got[0] == pytest.approx(0.04)
    assert math.isnan(got[2])
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def test_sign_flip_exact_by_hand() -> None:
    # d = (1, 2, 3): 8 sign patterns, |mean| >= 2 only for all + and all -: p = 2/8
    assert sign_flip_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(0.25)
    assert sign_flip_p(np.array([1.0, -1.0])) == 1.0


def test_paired_p_names_its_test() -> None:
    p, test = paired_p([0.0, 0.0])
    assert math.isnan(p) and test == "none"
    p, test = paired_p([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    scipy = pytest.importorskip("scipy.stats")
    assert test == "Wilcoxon signed-rank"
    assert p == pytest.approx(scipy.wilcoxon([1, 2, 3, 4, 5, 6]).pvalue)
    assert p == pytest.approx(2 / 64)  # exact: only all-positive and all-negative rank sums are that extreme


def test_paired_p_without_scipy_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_scipy(name: str, *a: object, **k: object) -> object:
        if name.startswith("scipy"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    p, test = paired_p([1.0, 2.0, 3.0])
    assert test == "sign-flip permutation" and p == pytest.approx(0.25)


def test_mean_over_bits_by_hand() -> None:
    # LPIPS 4 on [0, 10), 2 on [10, 30), 1 on [30, 40] (carried to the horizon 40): (40 + 40 + 10) / 40
    assert mean_over_bits([0, 10, 30], [4.0, 2.0, 1.0], 40) == pytest.approx(90 / 40)
    assert mean_over_bits([0, 10, 30], [4.0, 2.0, 1.0], 30) == pytest.approx(80 / 30)


def test_jackknife_ci_of_the_mean_is_the_t_free_standard_error() -> None:
    vals = np.random.default_rng(3).normal(2.0, 1.5, size=40)
    est, lo, hi = jackknife_ci(len(vals), lambda ix: float(np.mean(vals[ix])))
    se = float(np.std(vals, ddof=1)) / math.sqrt(len(vals))  # the jackknife SE of a mean is exactly this
    assert est == pytest.approx(float(np.mean(vals)), abs=1e-12)
    assert (hi - est) == pytest.approx(1.959963984540054 * se, rel=1e-9) and (est - lo) == pytest.approx(hi - est, rel=1e-9)
    assert math.isnan(jackknife_ci(2, lambda ix: 0.0)[1])

def _study(tmp_path: Path, schemes: list[str]) -> Path:
    from study_data import make_folder, study_yaml

    from lsc.config import load_config
    from lsc.runner.study import run_study

    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=True)
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, cap, schemes), [])
    out = tmp_path / "run"
    run_study(cfg, out, progress=False)
    return out


def test_transmissions_paired_rows_and_oracle_on_a_study(tmp_path: Path) -> None:
    from lsc.report.analysis import oracle_rows, paired_rows, scheme_table, transmissions
    from lsc.report.data import load_run

    out = _study(tmp_path, ["random", "nouns", "heads"])
    data = load_run(out)
    tx = transmissions(data, "")
    db = sqlite3.connect(out / "results.sqlite")
    for (image_id, scheme, n, wtt, final) in db.execute(
            "SELECT image_id, scheme, n_words, words_to_threshold, final_lpips FROM summary WHERE status = 'ok'"):
        t = tx[scheme][image_id]
        assert t.words_penalised == (n + 1 if wtt is None else wtt)
        lp = [r[0] for r in db.execute("SELECT lpips FROM steps WHERE image_id = ? AND scheme = ? AND step > 0 "
                                       "ORDER BY step", (image_id, scheme))]
        assert t.area_words == pytest.approx(np.mean(lp))
        assert t.final_under == (final < data.threshold)
    db.close()
    rows = paired_rows(data, "")
    assert [r.scheme for r in rows] == ["nouns", "heads"] and all(r.n == 4 for r in rows)
    d = [tx["nouns"][i].area_words - tx["random"][i].area_words for i in tx["nouns"]]
    assert rows[0].diffs["area_words"].mean == pytest.approx(np.mean(d))
    for key in rows[0].p:  # Holm never lowers a p-value
        assert all(math.isnan(r.p[key]) or r.p_holm[key] >= r.p[key] for r in rows)
    n, body = oracle_rows(data, "")
    assert n == 4 and body[0][0] == "oracle (caption-order bound)" and [b[0] for b in body[1:]] == ["random", "nouns", "heads"]
    table = {r["scheme"]: r for r in scheme_table(data, "")}
    assert set(table) == {"random", "nouns", "heads"} and "final_success" in table["random"]


def test_scheme_panels_group_families_and_keep_custom_labels() -> None:
    from types import SimpleNamespace

    from lsc.report.plots import scheme_panels

    schemes = ["random", "nouns", "heads", "lowest_lpips", "mine", "nouns_verbs", "heads_random"]
    data = SimpleNamespace(schemes=schemes, scheme_names={"mine": "heads"} | {s: s for s in schemes if s != "mine"})
    panels = scheme_panels(data)  # type: ignore[arg-type]
    assert panels == [("Bob's whole model", ["lowest_lpips"]), ("Parts of speech", ["nouns", "nouns_verbs"]),
                      ("Dependency heads (semantic source coding)", ["heads", "mine", "heads_random"])]
    # a plugin scheme gets a panel of its own (with random and the oracle, as every family), all its labels in it
    data = SimpleNamespace(schemes=["random", "long", "nouns", "long4", "mine"],
                           scheme_names={"random": "random", "nouns": "nouns", "long": "longest_first",
                                         "long4": "longest_first", "mine": "my_pkg.orders:Shortest"})
    assert scheme_panels(data) == [("Parts of speech", ["nouns"]), ("longest_first", ["long", "long4"]),  # type: ignore[arg-type]
                                   ("Shortest (my_pkg.orders)", ["mine"])]


def test_strips_selectable_and_unknown_id_is_one_line(tmp_path: Path) -> None:
    from lsc.report import build_report

    out = _study(tmp_path, ["random"])
    build_report(out, strips=1)
    assert sorted(p.name for p in (out / "report").glob("strip_*")) == [f"strip_{safe_name('a.png')}.png"]
    build_report(out, strip_images=["d.png", "c.png"])
    assert sorted(p.name for p in (out / "report").glob("strip_*")) == sorted(f"strip_{safe_name(i)}.png" for i in ("c.png", "d.png"))
    with pytest.raises(ConfigError, match="--strip-image 'nope.png': no transmitted image"):
        build_report(out, strip_images=["nope.png"])


def test_planning_cost_is_stored_and_drawn_against_the_oracle_gap(tmp_path: Path) -> None:
    """alice_images counts the distinct prompts lowest_lpips' plan asks for (n(n+1)/2 for the caption-order
    greedy) even when another scheme already cached them; schemes without Bob's generator store nothing."""
    from lsc.report.analysis import oracle_images, oracle_rows, search_cost
    from lsc.report.build import build_report
    from lsc.report.data import load_run

    out = _study(tmp_path, ["random", "lowest_lpips", "{name: lowest_lpips, label: again}"])
    db = sqlite3.connect(out / "results.sqlite")
    rows = db.execute("SELECT scheme, n_words, alice_images FROM summary WHERE status = 'ok'").fetchall()
    db.close()
    assert {s for s, _, _ in rows} == {"random", "lowest_lpips", "again"}
    for scheme, n, cost in rows:
        assert cost == (None if scheme == "random" else n * (n + 1) // 2), (scheme, n, cost)
    data = load_run(out)
    cost = {r.scheme: r for r in search_cost(data, "")}
    assert cost["random"].alice_images == 0 and cost["again"].alice_images == cost["lowest_lpips"].alice_images > 0
    ns = [n for s, n, _ in rows if s == "random"]
    assert oracle_images(data) == pytest.approx(np.mean([2**n for n in ns]))
    n, body = oracle_rows(data, "")
    assert body[2][0] == "lowest_lpips" and body[2][4] == f"{cost['lowest_lpips'].alice_images:.1f}"
    build_report(out)
    assert (out / "report" / "gap_vs_images.png").stat().st_size > 0
    assert "Gap to the oracle vs images Alice generated to plan" in (out / "report" / "report.md").read_text()


def test_one_definition_of_area_gap_and_words_with_failures_on_a_worked_example() -> None:
    """The statistics report, compare, step metrics and the search benchmark share (lsc.report.stats)."""
    from lsc.report.stats import area_per_word, gap_to_oracle, words_with_failures

    curve, oracle = [0.9, 0.6, 0.5, 0.2], [0.9, 0.4, 0.2, 0.2]  # after 0..3 words of a 3-word caption
    assert area_per_word(curve) == pytest.approx((0.6 + 0.5 + 0.2) / 3)  # words 1..n; the empty prompt left out
    assert area_per_word([0.7]) == pytest.approx(0.7)
    assert gap_to_oracle(curve, oracle) == pytest.approx((0.2 + 0.3 + 0.0) / 3)
    # a transmission that never got there counts n + 1, n its caption's words (only_heads sent fewer: still n)
    assert words_with_failures([2, None, 0], [3, 5, 4]) == [2.0, 6.0, 0.0]
