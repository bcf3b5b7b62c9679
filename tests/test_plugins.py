"""Plugins (lsc.plugins): a scheme by import path and by an installed package's entry point, run from YAML
alone; one-line refusals (a module that does not import, a missing attribute, not a Scheme, a name that
shadows a built-in or is declared twice); the plugin's version in the study's identity.

An installed package is simulated by a `*.dist-info` folder (METADATA + entry_points.txt) on sys.path beside
the example plugin's source (examples/plugin/src): what `importlib.metadata` reads for a real install.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from study_data import make_folder, study_yaml

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SRC = REPO / "examples" / "plugin" / "src"
LONGEST = "lsc_example_plugin.orders:LongestFirst"


def fake_install(site: Path, dist: str = "lsc-example-plugin", version: str = "0.1.0",
                 entry_points: str = f"[lsc.schemes]\nlongest_first = {LONGEST}\n") -> None:
    """What pip leaves for a distribution that `importlib.metadata` reads: METADATA and entry_points.txt."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)
    (info / "top_level.txt").write_text("lsc_example_plugin\n")


@pytest.fixture
def plugin_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example plugin importable (not installed: no entry points), the registry's caches fresh."""
    from lsc import plugins

    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    plugins.refresh()
    yield
    plugins.refresh()


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin_path: None) -> Path:
    """The example plugin 'installed' (its dist-info on sys.path); returns the site folder."""
    from lsc import plugins

    site = tmp_path / "site"
    fake_install(site)
    monkeypatch.syspath_prepend(str(site))
    plugins.refresh()
    return site


def rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_scheme_by_import_path_runs_from_yaml_with_options_and_label(tmp_path: Path, plugin_path: None, lsc_main) -> None:
    captions = make_folder(tmp_path / "imgs", corrupt=False)
    cfg = study_yaml(tmp_path / "s.yaml", tmp_path / "imgs", captions,
                     ["random", f"{{name: '{LONGEST}', label: longest, min_length: 3}}"])
    out = tmp_path / "run"
    got = lsc_main("run", str(cfg), "--out", str(out), "--set", "oracle=false")
    assert got.returncode == 0, got.stderr
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved["schemes"][1] == {"name": LONGEST, "label": "longest", "min_length": 3}
    assert resolved["plugins"] == {f"scheme:{LONGEST}": {"target": LONGEST}}  # importable, not installed: no version
    # "two blue cats sleep" with min_length 3: the longest first, ties in caption order
    (order, words), = rows(out / "results.sqlite", "SELECT order_json, words_json FROM summary "
                                                   "WHERE scheme='longest' AND caption='two blue cats sleep'")
    assert [yaml.safe_load(words)[i] for i in yaml.safe_load(order)] == ["sleep", "blue", "cats", "two"]
    # resuming the same study finds nothing left to do
    again = lsc_main("run", str(cfg), "--out", str(out), "--set", "oracle=false")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("0 ok, 0 failed, 8 already done")


@pytest.mark.parametrize(("scheme", "expected"), [
    ("no_such_pkg.orders:X", "error: schemes.0 (no_such_pkg.orders:X): scheme 'no_such_pkg.orders:X': module "
                             "'no_such_pkg.orders' cannot be imported"),
    ("lsc_example_plugin.orders:Shortest", "error: schemes.0 (lsc_example_plugin.orders:Shortest): scheme "
                                           "'lsc_example_plugin.orders:Shortest': module 'lsc_example_plugin.orders' has no attribute 'Shortest'"),
    ("lsc_example_plugin.orders:Plan", "is not a scheme: class Plan is not a subclass of lsc.schemes.Scheme"),
    ("{name: 'lsc_example_plugin.orders:LongestFirst', min_length: 0}", "min_length must be an integer >= 1, not 0"),
    ("{name: 'lsc_example_plugin.orders:LongestFirst', max_length: 3}", "has no option 'max_length'; its options are min_length"),
])
def test_bad_import_path_is_one_line_exit_2(plugin_path: None, lsc_main, scheme: str, expected: str) -> None:
    got = lsc_main("run", "--dry-run", "--set", f"schemes=[{scheme}]")
    assert got.returncode == 2
    assert len(got.stderr.strip().splitlines()) == 1, got.stderr
    assert expected in got.stderr


def test_entry_point_scheme_is_usable_by_name_and_listed_with_its_package(installed: Path, lsc_main) -> None:
    listed = lsc_main("schemes")
    assert listed.returncode == 0
    line = next(x for x in listed.stdout.splitlines() if x.startswith("longest_first"))
    assert "lsc-example-plugin 0.1.0" in line and "nothing but the caption" in line
    assert "lsc (built-in)" in next(x for x in listed.stdout.splitlines() if x.startswith("random "))
    from lsc.config import load_config

    cfg = load_config(None, ["schemes=[random, {name: longest_first, min_length: 2}]"])
    assert [s.label for s in cfg.schemes] == ["random", "longest_first[min_length=2]"]
    assert load_config(None, ["schemes=all"]).schemes[-1].name == "longest_first"
    from lsc.demo.app import Demo

    assert Demo.scheme_names(None)[-1] == "longest_first"  # type: ignore[arg-type]  # the demo's scheme list


def test_entry_point_shadowing_a_builtin_or_declared_twice_is_refused(tmp_path: Path, installed: Path,
                                                                       monkeypatch: pytest.MonkeyPatch, lsc_main) -> None:
    from lsc import plugins

    other = tmp_path / "other"
    fake_install(other, "other-plugin", "2.0", f"[lsc.schemes]\nrandom = {LONGEST}\n")
    monkeypatch.syspath_prepend(str(other))
    plugins.refresh()
    got = lsc_main("schemes")
    assert got.returncode == 2 and len(got.stderr.strip().splitlines()) == 1
    assert "package 'other-plugin' declares scheme 'random'" in got.stderr and "built-in" in got.stderr

    fake_install(other, "other-plugin", "2.0", f"[lsc.schemes]\nlongest_first = {LONGEST}\n")
    plugins.refresh()
    got = lsc_main("run", "--dry-run", "--set", "schemes=[longest_first]")
    assert got.returncode == 2
    assert "scheme 'longest_first' is declared by two packages" in got.stderr


def test_plugin_version_is_part_of_the_study_identity(tmp_path: Path, installed: Path, lsc_main) -> None:
    from lsc import plugins

    captions = make_folder(tmp_path / "imgs", corrupt=False)
    cfg = study_yaml(tmp_path / "s.yaml", tmp_path / "imgs", captions, ["random", "longest_first"])
    out = tmp_path / "run"
    assert lsc_main("run", str(cfg), "--out", str(out), "--set", "oracle=false").returncode == 0
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved["plugins"] == {"scheme:longest_first": {"target": LONGEST, "distribution": "lsc-example-plugin",
                                                            "version": "0.1.0"}}
    # the same package, upgraded: the folder refuses to resume, naming both versions
    for info in installed.glob("*.dist-info"):
        info.rename(installed / "lsc_example_plugin-0.2.0.dist-info")
    (installed / "lsc_example_plugin-0.2.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lsc-example-plugin\nVersion: 0.2.0\n")
    plugins.refresh()
    got = lsc_main("run", str(cfg), "--out", str(out), "--set", "oracle=false")
    assert got.returncode == 2 and len(got.stderr.strip().splitlines()) == 1
    assert "was run with scheme 'longest_first' as lsc_example_plugin.orders:LongestFirst from lsc-example-plugin 0.1.0" in got.stderr
    assert "this study uses lsc_example_plugin.orders:LongestFirst from lsc-example-plugin 0.2.0" in got.stderr


# ---------------------------------------------------------------- the contract kit (lsc.testing)
def test_example_plugin_passes_the_contract_kit(plugin_path: None) -> None:
    from lsc.testing import check_channel, check_metric, check_scheme
    from lsc_example_plugin.colourfulness import COLOURFULNESS
    from lsc_example_plugin.erasure import WordErasure

    check_scheme(LONGEST, {"min_length": 3})
    check_metric(COLOURFULNESS)
    check_channel(WordErasure)


def test_the_contract_kit_catches_what_it_promises_to() -> None:
    from lsc.interfaces import CAP_GENERATOR
    from lsc.schemes import Plan, Scheme
    from lsc.testing import check_scheme

    class Twice(Scheme):
        name, description, alice_holds, requires = "twice", "sends word 0 twice", "nothing", frozenset({CAP_GENERATOR})

        def plan(self, ctx, settings):
            return Plan(list(ctx.words), [0, 0])

    class Peeks(Twice):
        name = "peeks"  # reads Bob's attention without declaring it

        def plan(self, ctx, settings):
            ctx.backend.bob_text_encoder.word_attention(ctx.words)
            return Plan(list(ctx.words), list(range(len(ctx.words))))

    class Fickle(Twice):
        name, calls = "fickle", [0]

        def plan(self, ctx, settings):
            Fickle.calls[0] += 1
            order = list(range(len(ctx.words)))
            return Plan(list(ctx.words), order[::-1] if Fickle.calls[0] % 2 else order)

    for cls, message in [(Twice, "sends a word twice"), (Peeks, "only its declared capabilities ['generator']"),
                         (Fickle, "is not deterministic")]:
        with pytest.raises(AssertionError, match=re.escape(message)):
            check_scheme(cls)


# ---------------------------------------------------------------- the example package, installed by pip
@pytest.mark.slow  # pip and a fresh interpreter: about 10 s on an idle 2-core machine
def test_example_plugin_installed_runs_a_study_from_yaml_alone(tmp_path: Path) -> None:
    """pip installs examples/plugin into a target folder; `lsc run` in a fresh process finds its scheme, step
    metric, channel model and backend by the names its entry points declare."""
    import shutil

    src = tmp_path / "plugin"
    shutil.copytree(REPO / "examples" / "plugin", src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(site), str(src)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    captions = make_folder(tmp_path / "imgs", corrupt=False)
    (tmp_path / "study.yaml").write_text(
        "backend: mse_receiver\n"
        f"images: {{source: folder, path: '{tmp_path / 'imgs'}', captions: '{captions}'}}\n"
        "caption_source: dataset\n"
        "schemes: [random, longest_first, {name: longest_first, label: long_words, min_length: 4}]\n"
        "metrics: [colourfulness]\nmetrics_every: 1\n"
        "channel: {model: word_erasure, snr_db: 0}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO / "src")])}
    run = subprocess.run([sys.executable, "-m", "lsc.cli", "run", str(tmp_path / "study.yaml"), "--out",
                          str(tmp_path / "run")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("12 ok, 0 failed")
    resolved = yaml.safe_load((tmp_path / "run" / "config.resolved.yaml").read_text())
    assert sorted(resolved["plugins"]) == ["backend:mse_receiver", "channel:word_erasure", "metric:colourfulness",
                                           "scheme:longest_first"]
    assert {r["version"] for r in resolved["plugins"].values()} == {"0.1.0"}
    db = tmp_path / "run" / "results.sqlite"
    # snr 0 dB: each word is lost with probability 1/2, and a lost word arrives as question marks
    received = [r[0] for r in rows(db, "SELECT word_received FROM steps WHERE step > 0")]
    assert any(set(w) == {"?"} for w in received) and any(set(w) != {"?"} for w in received)
    values = [r[0] for r in rows(db, "SELECT colourfulness FROM steps")]
    assert len(values) == 12 + len(received) and all(v is not None and v >= 0 for v in values)
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "a plugin's scheme in a panel of its own" in report


def test_the_guide_shows_the_example_files_as_they_are_each_under_40_lines() -> None:
    """docs/extending.md's worked examples are the files of examples/plugin, verbatim (so the guide runs)."""
    doc = (REPO / "docs" / "extending.md").read_text()
    shown = re.findall(r"<!-- file: (\S+) -->\n```python\n(.*?)```\n", doc, flags=re.S)
    assert [Path(p).name for p, _ in shown] == ["orders.py", "colourfulness.py", "erasure.py", "receiver.py"]
    for path, text in shown:
        assert text == (REPO / path).read_text(), f"docs/extending.md shows an outdated {path}"
        assert len(text.splitlines()) < 40, path
    readme = (REPO / "README.md").read_text()
    assert "docs/extending.md" in readme
