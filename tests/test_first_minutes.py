"""What a new user meets first: `lsc --version`, a --help that explains itself, progress that counts what the
summary counts (and moves inside long steps), a study that failed throughout saying so, failure reasons in
the report, own images on the world backend warned about, and file names that never double an extension."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer

from study_data import make_folder, study_yaml
from lsc import progress
from lsc.protocol.context import ImageContext, LoopSettings
from lsc.protocol.testing import FakeGenerator, fake_backend


class Recorder:
    """A progress reporter that remembers what it was told."""

    def __init__(self) -> None:
        self.stages: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def begin(self, label: str, total: int | None, unit: str) -> dict[str, Any]:
        entry = {"label": label, "total": total, "unit": unit, "advances": [], "details": [], "closed": False}
        self.stages.append(entry)
        return entry

    def advance(self, handle: dict[str, Any], n: int, detail: str | None = None) -> None:
        handle["advances"].append(n)
        if detail is not None:
            handle["details"].append(detail)

    def end(self, handle: dict[str, Any]) -> None:
        handle["closed"] = True

    def note(self, text: str) -> None:
        self.notes.append(text)


def _commands() -> list[tuple[list[str], Any]]:
    from lsc.cli import app

    found = []

    def walk(command: Any, path: list[str]) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, path + [name])

    walk(typer.main.get_command(app), [])
    return found


# ---------------------------------------------------------------- the command line explains itself
def test_version(lsc_main) -> None:
    import lsc

    got = lsc_main("--version")
    assert got.returncode == 0 and got.stdout.strip() == f"lsc {lsc.__version__}"


def test_every_option_has_help_and_flags_show_no_type(lsc_main) -> None:
    commands = _commands()
    assert len(commands) > 15  # the walk reached the sub-commands (world, channel)
    for path, command in commands:
        for param in command.params:
            if isinstance(param, typer.core.TyperOption):
                assert param.help, f"lsc {' '.join(path)} {param.opts[0]} has no help line"
        got = lsc_main(*path, "--help")
        assert got.returncode == 0, (path, got.stderr)
        assert "<bool>" not in got.stdout, f"lsc {' '.join(path)} --help shows <bool>"


def test_numbers_are_typed_as_numbers(lsc_main) -> None:
    help_text = lsc_main("channel", "send", "--help").stdout
    for option, kind in (("--snr-db", "<float>"), ("--seed", "<int>"), ("--max-distance", "<int>"), ("--ldpc", "<float>")):
        assert re.search(rf"{option}\s+{kind}", help_text), (option, kind)
    help_text = lsc_main("channel", "ber", "--help").stdout
    for option, kind in (("--snr-db", "<float>"), ("--bits", "<int>"), ("--block-bits", "<int>")):
        assert re.search(rf"{option}\s+{kind}", help_text), (option, kind)
    assert "<str>" not in re.search(r"--snr-db.*", help_text).group(0)


def test_top_help_groups_commands_by_task(lsc_main) -> None:
    text = lsc_main("--help").stdout
    panels = ["Run and read studies", "Inspect language and channel", "World models", "Demo"]
    for panel in panels:
        assert f"─ {panel} ─" in text, panel
    studies = text[text.index("Run and read studies"):text.index("Inspect language and channel")]
    assert all(f"│ {c} " in studies for c in ("run", "report", "export", "compare", "schemes"))
    assert "quick.yaml" in text  # the first command to try


def test_usage_errors_are_one_line_exit_2(lsc_main) -> None:
    for args, fragment in ((["channel", "send", "hi", "--snr-db", "loud"], "--snr-db"),
                           (["run", "--bogus"], "--bogus"), (["bogus"], "bogus")):
        got = lsc_main(*args)
        assert got.returncode == 2, args
        err = got.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err and fragment in err and "--help" in err


# ---------------------------------------------------------------- progress inside long steps
def _context(caption: str) -> ImageContext:
    backend = fake_backend(caption, generator=FakeGenerator(size=4))
    return ImageContext(backend, "img.jpg", np.full((4, 4, 3), 0.5, np.float32), caption, seed=3)


def test_oracle_advances_in_chunks_and_says_once_why_it_is_slow(monkeypatch) -> None:
    from lsc.schemes import oracle

    caption = "one two three four five six seven eight nine"  # 9 words: 512 subsets
    recorder = Recorder()
    with progress.showing(recorder):
        curve = oracle.oracle_curve(_context(caption), max_words=10)
        oracle.oracle_curve(_context(caption), max_words=10)
    first = recorder.stages[0]
    assert first["label"] == "oracle img.jpg" and first["total"] == 512 and first["closed"]
    assert first["advances"] == [oracle.ORACLE_CHUNK] * (512 // oracle.ORACLE_CHUNK)
    assert len(recorder.notes) == 1 and "512 images (2^9)" in recorder.notes[0] and "9-word caption" in recorder.notes[0]
    # chunking changes no number: the same curve from one call of every subset
    monkeypatch.setattr(oracle, "ORACLE_CHUNK", 10_000)
    assert oracle.oracle_curve(_context(caption), max_words=10) == curve


def test_oracle_note_estimates_from_the_rate_so_far() -> None:
    from lsc.schemes import oracle

    ctx = _context("one two three four five six seven eight nine")
    ctx.distances(["one", "two"])  # a rate to estimate from
    recorder = Recorder()
    with progress.showing(recorder):
        oracle.oracle_curve(ctx, max_words=10)
    assert re.search(r"about \d+ (s|min|h) at this image's rate", recorder.notes[0])


def test_no_reporter_shows_nothing_and_small_oracle_no_note() -> None:
    from lsc.schemes import oracle

    assert progress.note_once("x", "never shown") is False
    recorder = Recorder()
    with progress.showing(recorder):
        oracle.oracle_curve(_context("a red ball"), max_words=10)
    assert recorder.notes == [] and recorder.stages[0]["total"] == 8


@pytest.mark.parametrize("options,prompt_order", [({}, "send"), ({"beam": 2}, "caption"), ({"beam": 3}, "send"),
                                                   ({"lookahead": 1}, "send")])
def test_lowest_lpips_progress_total_is_what_it_scores(options: dict, prompt_order: str) -> None:
    from lsc.schemes import get_scheme

    scheme = get_scheme("lowest_lpips", **options)
    caption = "a red ball on green grass"
    recorder = Recorder()
    with progress.showing(recorder):
        scheme.plan(_context(caption), LoopSettings(prompt_order=prompt_order))
    (stage,) = recorder.stages
    assert stage["unit"] == "candidate" and stage["closed"]
    assert sum(stage["advances"]) == stage["total"] == scheme.candidates(6, prompt_order)
    assert len(stage["advances"]) == 6  # one advance per step


def test_greedy_candidates_formula() -> None:
    from lsc.schemes import get_scheme

    assert get_scheme("lowest_lpips").candidates(11, "send") == 66  # 11 + 10 + ... + 1
    assert get_scheme("lowest_lpips", lookahead=1).candidates(3, "send") == 1 + 4 + 9


def test_stage_nesting_and_tick() -> None:
    recorder = Recorder()
    with progress.showing(recorder):
        progress.tick("nobody listens")  # no stage open: nothing
        with progress.stage("outer", 2) as outer:
            with progress.stage("loading", None, unit="model"):
                progress.tick("captioner")
                progress.tick("generator")
            outer.advance()
    outer_entry, inner = recorder.stages
    assert inner["advances"] == [1, 1] and inner["details"] == ["captioner", "generator"] and inner["total"] is None
    assert outer_entry["advances"] == [1] and outer.done == 1
    assert progress.rough_duration(40) == "40 s" and progress.rough_duration(600) == "10 min"


def test_run_bar_counts_transmissions_not_oracles(tmp_path: Path, monkeypatch) -> None:
    from lsc.config import load_config
    from lsc.runner import study

    bars: list[Any] = []

    class Bar:
        def __init__(self, total: int) -> None:
            self.total, self.n = total, 0
            bars.append(self)

        def update(self, n: int = 1) -> None:
            self.n += n

        def set_postfix_str(self, s: str, refresh: bool = True) -> None: ...
        def close(self) -> None: ...

    monkeypatch.setattr(study, "_progress", lambda total, enabled: Bar(total))
    cap = make_folder(tmp_path / "imgs", "flickr8k")  # five images, one of them corrupt
    cfg = load_config(study_yaml(tmp_path / "s.yaml", tmp_path / "imgs", cap, ["random", "nouns"]))  # oracle: true
    summary = study.run_study(cfg, tmp_path / "run", progress=True)
    assert summary.total == 10 and bars[0].total == 10 and bars[0].n == summary.ok + summary.failed == 10



# ---------------------------------------------------------------- failures say why; a study that failed throughout fails
def test_study_where_everything_failed_exits_1_with_count_and_reason(tmp_path: Path, lsc_main) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("x.png", "y.png"):
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    cap = folder / "captions.txt"
    cap.write_text("image,caption\nx.png,a red ball\ny.png,a blue cat\n")
    cfg = study_yaml(tmp_path / "s.yaml", folder, cap, ["random", "nouns"])
    got = lsc_main("run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress")
    assert got.returncode == 1, got.stderr
    error = [line for line in got.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "all 4 failed" in error[0] and "1 other reason in the report" in error[0]
    assert "most common reason (2 of 4): cannot decode image x.png: not a recognised image format;" in error[0]
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "unreadable" not in report and "2 not used: cannot decode image x.png" in report
    for name in ("x.png", "y.png"):  # the failures table counts each reason
        assert f"| cannot decode image {name}: not a recognised image format | 2 |" in report
    # resuming (nothing new to do) still says the study has no success
    again = lsc_main("run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress", "--no-report")
    assert again.returncode == 1 and "all 4 failed" in again.stderr


def test_partly_failed_study_exits_0(tmp_path: Path, lsc_main) -> None:
    cap = make_folder(tmp_path / "imgs", "flickr8k")  # one corrupt image among five
    cfg = study_yaml(tmp_path / "s.yaml", tmp_path / "imgs", cap, ["random"], extra="")
    got = lsc_main("run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress", "--no-report")
    assert got.returncode == 0 and got.stdout.startswith("4 ok, 1 failed")


def load_world_named_fake() -> Any:
    """The test backend under the world's name: what the own-images warning keys on."""
    from lsc.protocol.testing import load_fake_backend

    return dataclasses.replace(load_fake_backend(), name="world")


def test_own_images_on_the_world_backend_warn_once(tmp_path: Path, lsc_main) -> None:
    cap = make_folder(tmp_path / "imgs", "flickr8k", corrupt=False)
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"backend: test_first_minutes:load_world_named_fake\n"
                   f"images: {{source: folder, path: '{tmp_path / 'imgs'}', captions: '{cap}'}}\n"
                   "caption_source: dataset\nschemes: [random]\noracle: false\n")
    got = lsc_main("run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress", "--no-report")
    assert got.returncode == 0, got.stderr
    warnings_shown = [line for line in got.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings_shown) == 1 and "world's scenes" in warnings_shown[0] and "backend: hf" in warnings_shown[0]
    assert got.stdout.startswith("4 ok")  # the study still runs


# ---------------------------------------------------------------- file names never double an extension
IDS = ["cat.jpg", "cat.png", "cat", "cat.JPEG", "a.b.c.png", "2019.07.01", "café.png", "猫.webp", "x/y.png", "x_y.png",
       ".hidden.png", "world-0-00001"]


def test_names_never_double_an_extension_and_stay_distinct() -> None:
    from lsc.runner.folder import safe_name

    names = [safe_name(i) for i in IDS]
    assert len(set(names)) == len(IDS)
    for image_id, name in zip(IDS, names):
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name), name
        assert not re.search(r"\.(png|jpe?g|webp)$", name, re.IGNORECASE), (image_id, name)
    assert safe_name("world-0-00001") == "world-0-00001" and safe_name("2019.07.01") == "2019.07.01"
    assert safe_name("a.b.c.png").startswith("a.b.c-")


def test_originals_and_strips_written_once_named_without_double_extension(tmp_path: Path) -> None:
    from lsc.config import load_config
    from lsc.report import build_report
    from lsc.runner.folder import original_path
    from lsc.runner.study import run_study

    folder = tmp_path / "imgs"
    cap = make_folder(folder, "flickr8k", corrupt=False)
    for old, new in (("b.png", "café.png"), ("a.png", "a.b.png")):
        (folder / old).rename(folder / new)
        cap.write_text(cap.read_text().replace(f"{old},", f"{new},"))
    cfg = load_config(study_yaml(tmp_path / "s.yaml", folder, cap, ["random"], extra="oracle: false\n"))
    run_study(cfg, tmp_path / "run", progress=False)
    build_report(tmp_path / "run", strips=4)
    written = [p.name for p in (tmp_path / "run" / "originals").iterdir()]
    written += [p.name for p in (tmp_path / "run" / "report").glob("strip_*")]
    assert len(written) == 8
    assert not [n for n in written if re.search(r"\.(png|jpe?g)\.png$", n)], written
    assert original_path(tmp_path / "run", "café.png").is_file()


def test_originals_of_older_runs_still_found(tmp_path: Path) -> None:
    from lsc.runner.folder import ORIGINALS_DIR, original_path

    (tmp_path / ORIGINALS_DIR).mkdir()
    legacy = tmp_path / ORIGINALS_DIR / "1000_ab.jpg.png"  # how runs named it before
    legacy.write_bytes(b"png")
    assert original_path(tmp_path, "1000_ab.jpg") == legacy
    legacy.unlink()
    assert original_path(tmp_path, "1000_ab.jpg").name.startswith("1000_ab-")
