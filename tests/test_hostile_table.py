"""Hostile inputs, round two: a table of bad or hostile inputs, each run through the real `lsc` entry point.

For every case the harness asserts what README's guarantees promise:
- the exit code (2 for a refused input, 0 for one that is accepted with a warning or handled);
- stderr holds a single `error:` or `warning:` line (besides the custom-backend notice), never a traceback;
- no file outside the run folder (and the folders the case names as written) was created, changed or removed,
  in particular none behind a symbolic link planted in the run folder;
- a planted key (in the environment variables lsc could read) appears nowhere in what was printed or
  written, raw or JSON-escaped, URL-encoded or base64.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from study_data import FAKE_BACKEND, make_folder

KEY = "sk-planted/key+0123456789=abc"
KEY_FORMS = (KEY, json.dumps(KEY)[1:-1], urllib.parse.quote(KEY, safe=""), base64.b64encode(KEY.encode()).decode())
NOTICES = ("backend: calling lsc.protocol.testing.load_fake_backend", "report: [")  # progress, not problems


@dataclass
class Case:
    """One hostile input: how to build it (in a scratch folder), and what lsc must answer."""

    id: str
    build: Callable[[Path], list[str]]
    fragment: str  # in the one error/warning line
    code: int = 2
    kind: str = "error"
    writes: tuple[str, ...] = ()  # folders (relative to the scratch folder) besides run/ the command may write
    marks: tuple = field(default_factory=tuple)


# ------------------------------------------------------------------------------------- fixtures
def _study_text(folder: Path, extra: str = "", schemes: str = "[random]") -> str:
    return (f"backend: {FAKE_BACKEND}\nbackend_options: {{threshold: 0.05}}\n"
            f"images: {{source: folder, path: '{folder}', captions: '{folder / 'captions.txt'}'}}\n"
            f"caption_source: dataset\nschemes: {schemes}\noracle: false\nmetrics: []\n{extra}")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished small run (fake backend, 4 images, one scheme): the run folder that export/report cases copy."""
    from lsc.config import load_config
    from lsc.runner.study import run_study

    root = tmp_path_factory.mktemp("finished")
    make_folder(root / "imgs", corrupt=False)
    (root / "s.yaml").write_text(_study_text(root / "imgs"))
    run_study(load_config(root / "s.yaml"), root / "run", progress=False)
    return root


def _user_file(tmp: Path, name: str = "precious.txt") -> Path:
    """A user's file outside the run folder, which nothing may change."""
    target = tmp / "user" / name
    target.parent.mkdir(exist_ok=True)
    target.write_text("the user's own data\n")
    return target


def _study(tmp: Path, extra: str = "", schemes: str = "[random]") -> Path:
    if not (tmp / "imgs").exists():
        make_folder(tmp / "imgs", corrupt=False)
    (tmp / "s.yaml").write_text(_study_text(tmp / "imgs", extra, schemes))
    return tmp / "s.yaml"


def _copy_run(tmp: Path) -> Path:
    shutil.copytree(_FINISHED[0] / "run", tmp / "run")
    return tmp / "run"


_FINISHED: list[Path] = []


def _run(tmp: Path, *more: str) -> list[str]:
    return ["run", str(_study(tmp)), "--out", str(tmp / "run"), "--no-progress", "--no-report", *more]


# ------------------------------------------------------------------------ 1. files lsc does not own
def _link_in_run(name: str, command: str):
    """A run folder where `name` is a symbolic link to a user's file; `command` is run/export/report."""

    def build(tmp: Path) -> list[str]:
        target = _user_file(tmp)
        if command == "run":
            (tmp / "run").mkdir()
            (tmp / "run" / "config.resolved.yaml").write_text("")  # looks like a run folder
        else:
            _copy_run(tmp)
        link = tmp / "run" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists():
            shutil.rmtree(link) if link.is_dir() else link.unlink()
        os.symlink(target if "." in Path(name).name else target.parent, link)
        if command == "run":
            return _run(tmp)
        return [command, str(tmp / "run")]

    return build


def _foreign_folder(tmp: Path) -> list[str]:
    (tmp / "run" / "report").mkdir(parents=True)
    (tmp / "run" / "report" / "report.html").write_text("<p>my notes</p>")
    (tmp / "run" / "images").mkdir()
    return _run(tmp)


def _foreign_store(tmp: Path) -> list[str]:
    import sqlite3

    (tmp / "run").mkdir()
    with sqlite3.connect(tmp / "run" / "results.sqlite") as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER, amount REAL)")
        conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    conn.close()
    return _run(tmp)


def _store_without_version(tmp: Path) -> list[str]:
    import sqlite3

    (tmp / "run").mkdir()
    with sqlite3.connect(tmp / "run" / "results.sqlite") as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.close()
    return _run(tmp)


def _export_to(sub: str, prepare: Callable[[Path], None] = lambda p: None):
    def build(tmp: Path) -> list[str]:
        _copy_run(tmp)
        prepare(tmp)
        return ["export", str(tmp / "run"), "--out", str(tmp / sub) if sub else ""]

    return build


def _plant_file(tmp: Path) -> None:
    (tmp / "afile").write_text("x")


FILE_CASES = [
    Case("lock-is-a-link", _link_in_run(".lsc-run.lock", "run"), ".lsc-run.lock is a symbolic link"),
    Case("store-is-a-link", _link_in_run("results.sqlite", "run"), "results.sqlite is a symbolic link"),
    Case("images-dir-is-a-link", _link_in_run("images", "run"), "images is a symbolic link"),
    Case("resolved-config-is-a-link", _link_in_run("config.resolved.yaml", "run"), "config.resolved.yaml is a symbolic link"),
    Case("originals-dir-is-a-link", _link_in_run("originals", "run"), "originals is a symbolic link"),
    Case("report-dir-is-a-link-run", _link_in_run("report", "run"), "report is a symbolic link"),
    Case("report-dir-is-a-link", _link_in_run("report", "report"), "report is a symbolic link"),
    Case("wal-is-a-link", _link_in_run("results.sqlite-wal", "run"), "results.sqlite-wal is a symbolic link"),
    Case("report-html-is-a-link", _link_in_run("report/report.html", "report"), "", code=0, kind="none"),
    Case("report-md-is-a-link", _link_in_run("report/report.md", "report"), "", code=0, kind="none"),
    Case("export-steps-csv-is-a-link", _link_in_run("steps.csv", "export"), "", code=0, kind="none"),
    Case("export-summary-csv-is-a-link", _link_in_run("summary.csv", "export"), "", code=0, kind="none"),
    Case("foreign-folder", _foreign_folder, "is not an lsc run folder"),
    Case("foreign-results-sqlite", _foreign_store, "was not written by lsc (it has table 'invoices')"),
    Case("results-sqlite-without-version", _store_without_version, "was not written by lsc (it has no lsc schema"),
    Case("run-out-empty", lambda t: ["run", str(_study(t)), "--out", ""], "--out is empty; name a folder"),
    Case("run-out-blank", lambda t: ["run", str(_study(t)), "--out", "  "], "--out is empty; name a folder"),
    Case("export-out-empty", _export_to(""), "--out is empty; name a folder"),
    Case("export-out-is-a-file", _export_to("afile", _plant_file), "exists and is not a folder"),
    Case("export-out-under-a-file", _export_to("afile/sub", _plant_file), "cannot create the folder"),
    Case("export-bad-format", lambda t: ["export", str(_copy_run(t)), "--format", "xlsx"], "--format must be csv"),
]

# ------------------------------------------------------------------ 3-5. meaning, types and bounds of a study
def _dry(*sets: str):
    """`lsc run STUDY --set ... --dry-run` on the fake backend's study."""
    def build(tmp: Path) -> list[str]:
        return ["run", str(_study(tmp)), *[a for s in sets for a in ("--set", s)], "--dry-run"]

    return build


def _file(text: str, *more: str):
    """`lsc run FILE --dry-run` of a study file holding `text` (after the fake backend's lines)."""
    def build(tmp: Path) -> list[str]:
        _study(tmp)
        path = tmp / "hostile.yaml"
        path.write_text(_study_text(tmp / "imgs") + text)
        return ["run", str(path), "--dry-run", *more]

    return build


def _raw_file(text: str | bytes):
    def build(tmp: Path) -> list[str]:
        path = tmp / "hostile.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["run", str(path), "--dry-run"]

    return build


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))
DEEP = "[" * 1000 + "]" * 1000
SCHEME_BOMB = ("schemes:\n- name: lowest_lpips\n  penalty: 0\n  extra: &a [x, x, x, x, x, x, x, x, x, x]\n"
               + "".join(f"  e{i}: &{'abcdefghij'[i + 1]} [{', '.join(['*' + 'abcdefghij'[i]] * 10)}]\n" for i in range(8)))

CONFIG_CASES = [
    Case("only-heads-string-false", _dry("schemes=[{name: heads, only_heads: 'false'}]"), "option only_heads must be bool"),
    Case("only-heads-int", _dry("schemes=[{name: heads, only_heads: 1}]"), "option only_heads must be bool"),
    Case("penalty-nan", _dry("schemes=[{name: lowest_lpips, penalty: .nan}]"), "option penalty must be a finite number"),
    Case("penalty-inf", _dry("schemes=[{name: lowest_lpips, penalty: .inf}]"), "option penalty must be a finite number"),
    Case("penalty-string", _dry("schemes=[{name: lowest_lpips, penalty: '1'}]"), "option penalty must be float"),
    Case("penalty-huge", _dry("schemes=[{name: lowest_lpips, penalty: 1.0e+300}]"), "option penalty is at most"),
    Case("beam-billion", _dry("schemes=[{name: lowest_lpips, beam: 1000000000}]"), "option beam is at most 64"),
    Case("beam-float", _dry("schemes=[{name: lowest_lpips, beam: 2.5}]"), "option beam must be int"),
    Case("beam-string", _dry("schemes=[{name: lowest_lpips, beam: '2'}]"), "option beam must be int"),
    Case("beam-bool", _dry("schemes=[{name: lowest_lpips, beam: true}]"), "option beam must be int"),
    Case("proxy-top-huge", _dry("schemes=[{name: lowest_lpips, proxy_steps: 2, proxy_top: 100000000}]"),
         "option proxy_top is at most"),
    Case("proxy-steps-huge", _dry("schemes=[{name: lowest_lpips, proxy_steps: 100000000}]"), "option proxy_steps is at most"),
    Case("signed-string", _dry("schemes=[{name: attention_contribution, signed: 'no'}]"), "option signed must be bool"),
    Case("pad-to-huge", _dry("schemes=[{name: attention_contribution, pad_to: 10000000}]"), "option pad_to is at most"),
    Case("head-style-number", _dry("schemes=[{name: heads, head_style: 5}]"), "option head_style must be str"),
    Case("threshold-inf", _dry("threshold=.inf"), "threshold: Input should be a finite number"),
    Case("threshold-nan", _dry("threshold=.nan"), "threshold: Input should be a finite number"),
    Case("threshold-negative", _dry("threshold=-1"), "threshold: Input should be greater than 0"),
    Case("seed-negative", _dry("seed=-1"), "seed: Input should be greater than or equal to 0"),
    Case("seed-10e30", _dry("seed=1000000000000000000000000000000"), "seed: Input should be less than or equal to 4294967295"),
    Case("seed-5000-digits", _dry("seed=" + "9" * 5000), "--set seed: Exceeds the limit (4300 digits)"),
    Case("images-seed-negative", _dry("images.source=world", "images.seed=-5"), "images.seed: Input should be greater than"),
    Case("images-seed-float", _dry("images.source=world", "images.seed=1.5"), "images.seed: Input should be a valid integer"),
    Case("images-count-zero", _dry("images.source=world", "images.count=0"), "images.count: Input should be greater"),
    Case("images-count-billion", _dry("images.source=world", "images.count=1000000000"), "images.count: Input should be less"),
    Case("snr-sweep-on-ideal-channel", _dry("channel.snr_db=[0, 5]"), "an SNR sweep in channel.snr_db needs a noisy channel"),
    Case("snr-100-points", _dry("channel.model=analytic", "channel.snr_db=[" + ",".join(map(str, range(100))) + "]"),
         "at most 64 SNR values (got 100)"),
    Case("snr-nan-point", _dry("channel.model=analytic", "channel.snr_db=[0, .nan]"), "SNR nan is not a finite number"),
    Case("snr-inf-point", _dry("channel.model=analytic", "channel.snr_db=[.inf]"), "Input should be a finite number"),
    Case("snr-empty-sweep", _dry("channel.model=analytic", "channel.snr_db=[]"), "needs at least one value"),
    Case("snr-twice", _dry("channel.model=analytic", "channel.snr_db=[1, 1]"), "an SNR value is listed twice"),
    Case("snr-scalar-nan", _dry("channel.model=analytic", "channel.snr_db=.nan"), "channel.snr_db: Input should be a finite"),
    Case("separator-bits-billion", _dry("channel.separator_bits=1000000000"), "channel.separator_bits: Input should be less"),
    Case("separator-bits-negative", _dry("channel.separator_bits=-1"), "channel.separator_bits: Input should be greater"),
    Case("ldpc-rate-one", _dry("channel.model=phy", "channel.ldpc_rate=1"), "channel.ldpc_rate: Input should be less"),
    Case("skd-temperature-inf", _dry("skd.temperature=.inf"), "skd.temperature: Input should be a finite number"),
    Case("skd-timeout-huge", _dry("skd.timeout_s=100000000"), "skd.timeout_s: Input should be less than or equal to 3600"),
    Case("skd-retries-huge", _dry("skd.retries=1000000"), "skd.retries: Input should be less than or equal to 20"),
    Case("skd-seed-negative", _dry("skd.seed=-1"), "skd.seed: Input should be greater than or equal to 0"),
    Case("skd-unknown-engine", _dry("skd.engine=shell"), "skd.engine: Input should be 'auto', 'lexicon'"),
    Case("metrics-every-zero", _dry("metrics_every=0"), "metrics_every: Input should be greater than or equal to 1"),
    Case("oracle-words-huge", _dry("oracle_max_words=1000"), "oracle_max_words: Input should be less than or equal"),
    Case("too-many-transmissions",
         _dry("images.source=world", "images.count=100000", "channel.model=analytic",
              "schemes=[random, nouns, heads, nouns_verbs, heads_random]", "channel.snr_db=[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]"),
         "over the cap of 10000000 transmissions"),
    Case("executor-unknown-kind", _dry("executor.kind=slurm"), "executor.kind: Input should be 'local' or 'ray'"),
    Case("executor-bad-address", _dry("executor.kind=ray", "executor.address=http://x"), "is not null, \"auto\""),
    Case("unknown-key", _dry("seeed=1"), "unknown config key 'seeed'"),
    Case("unknown-scheme", _dry("schemes=[rm_rf]"), "unknown scheme 'rm_rf'"),
    Case("unknown-scheme-option", _dry("schemes=[{name: random, shell: ls}]"), "has no option 'shell'"),
    Case("set-without-equals", _dry("seed"), "expected key=value"),
    Case("set-empty-key", _dry("=3"), "empty key"),
    Case("set-key-through-a-value", _dry("backend.x=1"), "backend is not a mapping"),
    Case("set-alias-bomb", _dry("channel=" + "{a: &a [x,x,x,x,x,x,x,x,x], b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], "
                                "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], "
                                "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]}"),
         "--set channel: YAML expands to more than 200000 values"),
    Case("set-deep-nesting", _dry("seed=" + DEEP), "--set seed: YAML nested deeper than 64 levels"),
    Case("file-alias-bomb", _raw_file(BOMB), "YAML expands to more than 200000 values"),
    Case("file-alias-bomb-under-scheme-option", _raw_file(SCHEME_BOMB), "YAML expands to more than 200000 values"),
    Case("file-many-aliases", _raw_file("a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n"), "more than 100 YAML aliases"),
    Case("file-deep-nesting", _raw_file("a: " + DEEP + "\n"), "YAML nested deeper than 64 levels"),
    Case("file-deep-mapping", _raw_file("a: " + "{b: " * 500 + "1" + "}" * 500 + "\n"), "YAML nested deeper than 64"),
    Case("file-too-large", _raw_file("seed: 1\n" + "# padding\n" * 120_000), "larger than 1024 KB"),
    Case("file-not-utf8", _raw_file(b"seed: \xff\xfe\n"), "cannot be read"),
    Case("file-a-list", _raw_file("- 1\n- 2\n"), "must hold a mapping of keys, not list"),
    Case("file-python-tag", _raw_file("seed: !!python/object/apply:os.system ['touch pwned']\n"), "is not valid YAML"),
    Case("file-missing", lambda t: ["run", str(t / "nope.yaml"), "--dry-run"], "not found"),
    Case("file-is-a-folder", lambda t: ["run", str(t), "--dry-run"], "not found"),
    Case("file-skd-steals-a-key", _file("skd: {engine: openai, api_key_env: AWS_SECRET_ACCESS_KEY, base_url: "
                                       "'http://127.0.0.1:9/v1'}\n", ), "the study file would send $AWS_SECRET_ACCESS_KEY"),
    Case("file-skd-moves-the-endpoint", _file("skd: {engine: openai, base_url: 'http://127.0.0.1:9/v1'}\n"),
         "would send $OPENAI_API_KEY to 127.0.0.1"),
    Case("file-scheme-skd-steals-a-key",
         lambda t: ["run", str(_study(t, schemes="[{name: heads_skd, skd: {engine: openai, api_key_env: LSC_PLANTED_KEY}}]")),
                    "--dry-run"], "schemes.0.skd: the study file would send $LSC_PLANTED_KEY"),
    Case("custom-backend-not-callable", _dry("backend=lsc.limits:MAX_SEED"), "is not a loader function"),
    Case("custom-backend-missing", _dry("backend=lsc.nothing_here:load"), "cannot be imported"),
]

# ---------------------------------------------------------------------------- 6. other commands' inputs
def _two_runs_no_common_image(tmp: Path) -> list[str]:
    import sqlite3

    a = _copy_run(tmp)
    b = shutil.copytree(a, tmp / "run" / "other")
    with sqlite3.connect(b / "results.sqlite") as conn:
        for table in ("images", "summary", "steps"):
            conn.execute(f"UPDATE {table} SET image_id = 'x' || image_id")
    conn.close()
    return ["compare", str(a), str(b), "--scheme", "random"]


def _damaged_compare(tmp: Path) -> list[str]:
    run = _copy_run(tmp)
    data = bytearray((run / "results.sqlite").read_bytes())
    data[4096:] = b"\x07" * (len(data) - 4096)
    (run / "results.sqlite").write_bytes(bytes(data))
    return ["compare", str(run), "--scheme", "random"]


def _compare_plot(name: str, prepare: Callable[[Path], None] = lambda p: None):
    def build(tmp: Path) -> list[str]:
        _copy_run(tmp)
        prepare(tmp)
        return ["compare", str(tmp / "run"), "--scheme", "random", "--plot", str(tmp / name) if name else ""]

    return build


def _examples(text: str):
    def build(tmp: Path) -> list[str]:
        (tmp / "ex.json").write_text(text)
        return ["skd", "a dog on grass", "--examples", str(tmp / "ex.json")]

    return build


def _coco_text(text: str):
    def build(tmp: Path) -> list[str]:
        _study(tmp)
        (tmp / "imgs" / "captions.txt").unlink()
        (tmp / "imgs" / "captions.json").write_text(text)
        (tmp / "s.yaml").write_text((tmp / "s.yaml").read_text().replace("captions.txt", "captions.json"))
        return ["run", str(tmp / "s.yaml"), "--out", str(tmp / "run"), "--no-progress", "--no-report"]

    return build


def _mkdir(name: str):
    return lambda tmp: (tmp / name).mkdir()


COMMAND_CASES = [
    Case("usage-unknown-option", lambda t: ["run", "--bogus"], "No such option: --bogus"),
    Case("usage-unknown-command", lambda t: ["bogus"], "No such command 'bogus'"),
    Case("usage-bad-int", lambda t: ["report", str(t), "--strips", "many"], "Invalid value for '--strips'"),
    Case("usage-missing-argument", lambda t: ["export"], "Missing argument"),
    Case("channel-ber-negative-seed", lambda t: ["channel", "ber", "--seed", "-1", "--bits", "1000"],
         "--seed: a seed is an integer from 0 to 4294967295"),
    Case("channel-ber-seed-1e20", lambda t: ["channel", "ber", "--seed", "1e20", "--bits", "1000"],
         "Invalid value for '--seed'"),
    Case("channel-ber-seed-huge", lambda t: ["channel", "ber", "--seed", str(10**30), "--bits", "1000"], "--seed: a seed"),
    Case("channel-ber-seed-nan", lambda t: ["channel", "ber", "--seed", "nan"], "Invalid value for '--seed'"),
    Case("channel-send-negative-seed", lambda t: ["channel", "send", "a dog", "--seed", "-3"], "--seed: a seed"),
    Case("channel-send-not-utf8", lambda t: ["channel", "send", "a d\udcffog"], "the text is not valid UTF-8 text"),
    Case("parse-not-utf8", lambda t: ["parse", "caf\udce9 au lait"], "the caption is not valid UTF-8 text"),
    Case("skd-not-utf8", lambda t: ["skd", "\udcff\udcfe"], "the caption is not valid UTF-8 text"),
    Case("skd-examples-deep-json", _examples("[" * 100_000 + "]" * 100_000), "JSON nested too deep"),
    Case("skd-examples-not-pairs", _examples('[["a", 1]]'), "must be a JSON list of [alice, bob] string pairs"),
    Case("world-sample-negative-seed", lambda t: ["world", "sample", "a red circle", "--seed", "-1",
                                                  "--out", str(t / "x.png")], "--seed: a seed"),
    Case("world-sample-seed-1e20", lambda t: ["world", "sample", "a red circle", "--seed", "1e20"],
         "Invalid value for '--seed'"),
    Case("world-sample-huge-seed", lambda t: ["world", "sample", "a", "--seed", str(10**30), "--out", str(t / "x.png")],
         "--seed: a seed"),
    Case("world-sample-out-wrong-extension", lambda t: ["world", "sample", "a", "--out", str(t / "x.jpg")],
         "the file name must end in .png"),
    Case("world-sample-out-folder", lambda t: (t / "d.png").mkdir() or ["world", "sample", "a", "--out", str(t / "d.png")],
         "is a folder, not a file"),
    Case("world-sample-out-missing-folder", lambda t: ["world", "sample", "a", "--out", str(t / "no" / "x.png")],
         "does not exist"),
    Case("world-sample-out-empty", lambda t: ["world", "sample", "a", "--out", ""], "the file name must end in .png"),
    Case("world-threads-zero", lambda t: ["world", "train", "--out", str(t / "w"), "--threads", "0"],
         "a thread count is an integer >= 1"),
    Case("compare-no-common-image", _two_runs_no_common_image, "the runs share no image"),
    Case("compare-damaged-store", _damaged_compare, "results.sqlite"),
    Case("compare-not-a-run", lambda t: ["compare", str(t), "--scheme", "random"], "not a run folder"),
    Case("compare-unknown-scheme", lambda t: ["compare", str(_copy_run(t)), "--scheme", "nope"], "no scheme 'nope'"),
    Case("compare-plot-wrong-extension", _compare_plot("cmp.txt"), "must end in .png or .pdf or .svg"),
    Case("compare-plot-folder", _compare_plot("d.png", _mkdir("d.png")), "is a folder, not a file"),
    Case("compare-plot-missing-folder", _compare_plot("no/cmp.png"), "does not exist"),
    Case("compare-plot-empty", _compare_plot(""), "the file name must end in .png"),
    Case("report-unknown-step-metric", lambda t: ["report", str(_copy_run(t)), "--step-metrics", "nope"], "nope"),
    Case("report-unknown-strip-image", lambda t: ["report", str(_copy_run(t)), "--strip-image", "nope.png"], "nope.png"),
    Case("report-not-a-run", lambda t: ["report", str(t)], "is not a run folder"),
    Case("report-out-a-users-folder", lambda t: [_user_file(t) and "report", str(_copy_run(t)), "--out", str(t / "user")],
         "holds other files and no earlier report"),
    Case("report-out-empty", lambda t: ["report", str(_copy_run(t)), "--out", ""], "--out is empty"),
    Case("report-out-a-file", lambda t: [_user_file(t) and "report", str(_copy_run(t)), "--out",
                                         str(t / "user" / "precious.txt")], "exists and is not a folder"),
    Case("export-not-a-run", lambda t: ["export", str(t)], "is not a run folder"),
    Case("coco-deep-json", _coco_text("[" * 100_000 + "]" * 100_000), "JSON nested too deep"),
    Case("coco-lone-surrogate", _coco_text('{"images": [{"id": 1, "file_name": "\\ud800.png"}], "annotations": []}'),
         "not a file name"),
    Case("demo-port-too-big", lambda t: ["demo", "--port", "99999"], "--port must be from 1 to 65535"),
    Case("demo-port-negative", lambda t: ["demo", "--port", "-1"], "--port must be from 1 to 65535"),
]

CASES = FILE_CASES + CONFIG_CASES + COMMAND_CASES


# ------------------------------------------------------------------------------------- the harness
def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[str, str]]:
    """Every path under root (links not followed) with its kind and content hash, except under `skip`."""
    out: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            p = here / name
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            else:
                try:
                    out[str(p)] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
                except PermissionError:
                    out[str(p)] = ("unreadable", "")
    return out


def _key_nowhere(root: Path, text: str) -> None:
    for form in KEY_FORMS:
        assert form not in text, f"the planted key ({form!r}) was printed"
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink() or not os.access(p, os.R_OK):
                continue
            data = p.read_bytes()
            for form in KEY_FORMS:
                assert form.encode() not in data, f"the planted key ({form!r}) is in {p}"


@pytest.fixture
def hostile_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted key in every variable an SKD engine could be pointed at."""
    for var in ("OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "LSC_PLANTED_KEY"):
        monkeypatch.setenv(var, KEY)


def check_case(case: Case, tmp: Path, lsc_main: Callable) -> None:
    """Build the case, run it, and assert the guarantees (see the module docstring)."""
    argv = case.build(tmp)
    skip = (tmp / "run",) + tuple(tmp / w for w in case.writes)
    before = _snapshot(tmp, skip)
    result = lsc_main(*argv)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith(NOTICES)]
    assert "Traceback" not in result.stderr and "Segmentation" not in result.stderr, result.stderr
    assert result.returncode == case.code, (result.returncode, result.stderr)
    if case.kind == "none":
        assert lines == [], result.stderr
    else:
        assert len(lines) == 1 and lines[0].startswith(f"{case.kind}: "), result.stderr
        assert case.fragment in lines[0], result.stderr
    assert _snapshot(tmp, skip) == before, "a file outside the run folder changed"
    _key_nowhere(tmp, result.stdout + result.stderr)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, finished_run: Path, hostile_env: None, lsc_main) -> None:
    _FINISHED[:] = [finished_run]
    try:
        check_case(case, tmp_path, lsc_main)
    finally:
        for p in tmp_path.rglob("*"):  # let pytest clean up read-only folders
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, 0o755)



def test_table_covers_at_least_100_inputs() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 100


# ------------------------------------------------------------------------ cases beyond a command line
def test_spreadsheet_formulas_in_names_are_neutralised(tmp_path: Path) -> None:
    """An image named '=HYPERLINK(...)' must not reach summary.csv as a formula a spreadsheet would run."""
    import csv

    from study_data import save_caption_png
    from lsc.config import load_config
    from lsc.runner.export import export_run
    from lsc.runner.study import run_study

    folder = tmp_path / "imgs"
    folder.mkdir()
    names = {"=HYPERLINK(1).png": "a red ball", "+1.png": "two blue cats", "@x.png": "a dog", "-2.png": "a boat"}
    for name, text in names.items():
        save_caption_png(folder / name, text)
    (folder / "captions.txt").write_text("image,caption\n" + "".join(f"{n},{c}\n" for n, c in names.items()))
    (tmp_path / "s.yaml").write_text(_study_text(folder))
    run_study(load_config(tmp_path / "s.yaml"), tmp_path / "run", progress=False)
    steps, summary = export_run(tmp_path / "run")
    with open(summary, newline="", encoding="utf-8") as fh:
        ids = [row["image_id"] for row in csv.DictReader(fh)]
    assert sorted(ids) == sorted("'" + n for n in names), ids
    assert all(not c.startswith(("=", "+", "-", "@")) for row in csv.reader(open(steps, encoding="utf-8")) for c in row
               if c and not c.lstrip("-").replace(".", "", 1).replace("e-", "", 1).isdigit())


def test_read_only_run_folder_exports_to_a_writable_out(tmp_path: Path, finished_run: Path, monkeypatch) -> None:
    """On read-only storage SQLite cannot create the store's -shm file: the store is opened immutable."""
    from lsc.runner.export import export_run

    run = shutil.copytree(finished_run / "run", tmp_path / "run")
    assert not (run / "results.sqlite-wal").exists()  # a finished run checkpointed its log
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == run and mode & os.W_OK else real(p, mode))
    paths = export_run(run, "csv", tmp_path / "out")
    assert [p.name for p in paths] == ["steps.csv", "summary.csv"] and paths[0].read_text().count("\n") > 4
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in (finished_run / "run").iterdir())


def test_read_only_run_folder_reports_to_a_writable_out(tmp_path: Path, finished_run: Path, monkeypatch) -> None:
    from lsc.report import build_report

    run = shutil.copytree(finished_run / "run", tmp_path / "run")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == run and mode & os.W_OK else real(p, mode))
    html = build_report(run, out_dir=tmp_path / "rep")
    assert html == tmp_path / "rep" / "report.html" and html.stat().st_size > 1000
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in (finished_run / "run").iterdir())
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.png").write_bytes(b"x")
    from lsc.errors import ConfigError

    with pytest.raises(ConfigError, match="holds other files and no earlier report"):
        build_report(run, out_dir=tmp_path / "mine")  # it would clear old figures: never a user's folder
    assert (tmp_path / "mine" / "holiday.png").read_bytes() == b"x"


def test_an_interrupted_export_leaves_the_old_file(tmp_path: Path, finished_run: Path, monkeypatch) -> None:
    """Exports go to a temporary name and are renamed: a full disk mid-write keeps the previous export whole."""
    import errno

    import lsc.runner.folder as folder
    from lsc.errors import ConfigError
    from lsc.runner.export import export_run

    run = shutil.copytree(finished_run / "run", tmp_path / "run")
    first = export_run(run)[0].read_bytes()

    def full(path: Path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder, "open_new", full)
    with pytest.raises(ConfigError, match="No space left on device; nothing was changed"):
        export_run(run)
    assert (run / "steps.csv").read_bytes() == first and not list(run.glob("*.tmp"))


def test_thread_counts_beyond_the_machine_are_one_warning_and_the_core_count(monkeypatch) -> None:
    """backend_options.threads: 100000 was a segmentation fault in the math library."""
    import warnings

    from lsc.errors import ConfigError, LscWarning
    from lsc.limits import machine_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert machine_threads(100000) == 2 and machine_threads(2) == 2
    assert [str(w.message) for w in caught if issubclass(w.category, LscWarning)] == [
        "backend_options.threads: 100000 is more than this machine's 2 cores; using 2"]
    for bad in (0, -1, True, "4", 2.0):
        with pytest.raises(ConfigError, match="a thread count is an integer >= 1"):
            machine_threads(bad)


def test_ascii_source_code_says_once_what_it_cannot_carry(monkeypatch) -> None:
    import warnings

    from lsc.channel import source
    from lsc.errors import LscWarning

    monkeypatch.setattr(source, "_WARNED", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for word in ("café", "naïve", "dog"):
            source.encode_word(word, "ascii")
        assert source.decode_bits(source.encode_word("café", "utf8"), "utf8") == "café"
    said = [str(w.message) for w in caught if issubclass(w.category, LscWarning)]
    assert len(said) == 1 and said[0].startswith("channel.source_code ascii cannot carry 'café'"), said


def test_a_folder_image_named_with_undecodable_bytes_is_skipped_with_one_warning(tmp_path: Path) -> None:
    import warnings

    from study_data import save_caption_png
    from lsc.config import FolderImages
    from lsc.errors import LscWarning
    from lsc.runner.images import folder_images

    save_caption_png(tmp_path / "a.png", "a red ball")
    save_caption_png(Path(os.fsdecode(bytes(tmp_path) + b"/\xff\xfe.png")), "a dog")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = folder_images(FolderImages(source="folder", path=str(tmp_path)))
    assert [i.image_id for i in images] == ["a.png"]
    said = [str(w.message) for w in caught if issubclass(w.category, LscWarning)]
    assert said == ["images.path: 1 file name(s) are not valid UTF-8 (e.g. b'\\xff\\xfe.png'); skipped: rename them to use them"]


# --------------------------------------------------------------------------------------- 4. a full disk
def _steps_csv(run: Path) -> bytes:
    from lsc.runner.export import export_run

    return export_run(run, "csv", run.parent / f"{run.name}-export")[0].read_bytes()


@pytest.mark.parametrize("where", ["journal", "store", "png"])
def test_a_full_disk_stops_cleanly_and_the_resume_loses_nothing(tmp_path, monkeypatch, lsc_main, where: str) -> None:
    """The disk fills mid-study (in the journal of Bob's images, the result store, or a PNG): one line names
    the cause, the transmission in flight is not recorded as failed, and the resume gives the uninterrupted
    run's rows exactly."""
    import errno
    import sqlite3

    import lsc.runner.study as study
    from lsc.runner.store import GenerationJournal, ResultStore

    cfg = _study(tmp_path, schemes="[random, heads_random]")
    whole = tmp_path / "whole" / "run"  # the same folder name: the export names its run
    assert lsc_main("run", str(cfg), "--out", str(whole), "--no-progress", "--no-report").returncode == 0

    calls = [0]

    def full_after(n: int, real):
        def fill(*args, **kwargs):
            calls[0] += 1
            if calls[0] > n:
                if where == "png":
                    raise OSError(errno.ENOSPC, "No space left on device")
                raise sqlite3.OperationalError("database or disk is full")
            return real(*args, **kwargs)
        return fill

    target = {"journal": (GenerationJournal, "record", 5), "store": (ResultStore, "record_result", 3),
              "png": (study, "save_png", 40)}[where]
    monkeypatch.setattr(target[0], target[1], full_after(target[2], getattr(target[0], target[1])))
    first = lsc_main("run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress", "--no-report")
    lines = [ln for ln in first.stderr.splitlines() if not ln.startswith(NOTICES)]
    assert first.returncode == 2 and len(lines) == 1, first.stderr
    assert lines[0].startswith("error: the study stopped: the disk is full") and "resume" in lines[0], lines
    with ResultStore(tmp_path / "run" / "results.sqlite", readonly=True) as store:
        assert store.failed_count() == (0, 0) and 0 < len(store.done_keys()) < 8  # some stored, none failed
    monkeypatch.undo()
    again = lsc_main("run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress", "--no-report")
    assert again.returncode == 0 and "0 failed" in again.stdout, again.stderr
    assert _steps_csv(tmp_path / "run") == _steps_csv(whole)


def test_a_resume_says_how_many_failed_transmissions_it_found_and_retries_the_environments(tmp_path, lsc_main) -> None:
    import sqlite3

    from lsc.runner.environment import ENVIRONMENT_PREFIX

    cfg = _study(tmp_path)
    assert lsc_main("run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress", "--no-report").returncode == 0
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as conn:
        ids = [r[0] for r in conn.execute("SELECT image_id FROM summary ORDER BY image_id")]
        conn.execute("UPDATE summary SET status = 'failed', error = 'ValueError: the scheme broke' WHERE image_id = ?",
                     (ids[0],))
        conn.execute("UPDATE summary SET status = 'failed', error = ? WHERE image_id = ?",
                     (ENVIRONMENT_PREFIX + "the Ray worker died twice running this unit", ids[1]))
    conn.close()
    result = lsc_main("run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress", "--no-report")
    assert result.returncode == 0
    assert ("resume: 2 failed transmission(s) found: 1 kept (--retry-failed redoes them), 1 that the environment "
            "caused retried") in result.stderr
    assert result.stdout.startswith("1 ok, 0 failed, 3 already done, of 4 transmissions"), result.stdout


# ------------------------------------------------------------------------- 3. a resume on changed sources
@pytest.mark.parametrize("change", ["image", "caption", "touch"])
def test_a_resume_notices_a_replaced_source_image_or_caption(tmp_path, lsc_main, change: str) -> None:
    from study_data import save_caption_png

    cfg = _study(tmp_path)
    argv = ("run", str(cfg), "--out", str(tmp_path / "run"), "--no-progress", "--no-report")
    assert lsc_main(*argv).returncode == 0
    a = tmp_path / "imgs" / "a.png"
    if change == "image":
        save_caption_png(a, "two blue cats sleep")  # another picture under the same name
    elif change == "caption":
        cap = tmp_path / "imgs" / "captions.txt"
        cap.write_text(cap.read_text().replace("a red ball on green grass", "a blue ball on green grass"))
    else:
        os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))  # touched, same content
    result = lsc_main(*argv)
    if change == "touch":
        assert result.returncode == 0 and "0 ok, 0 failed, 4 already done" in result.stdout, result.stderr
        return
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {a} changed since this run folder recorded its results (content hash differs); restore it or use "
        "another --out" if change == "image" else
        "error: the captions of 'a.png' changed since this run folder recorded its results; restore them or use "
        "another --out")


def test_a_report_says_truthfully_that_stored_images_were_removed(tmp_path: Path, finished_run: Path) -> None:
    """Deleting images/ after a run: the report no longer blames `save_images: false` (which the study did not set)."""
    from types import SimpleNamespace

    from lsc.report.build import _why_no_images

    run = shutil.copytree(finished_run / "run", tmp_path / "run")
    data = SimpleNamespace(config={"save_images": True}, run_dir=run)
    assert _why_no_images(data) == "the others lack a stored image"
    shutil.rmtree(run / "images")
    assert _why_no_images(data) == (f"the study saved its images, but {run / 'images'} is missing: they were removed "
                                    "after the run; run the study again into a new --out to regenerate them")
    assert "save_images: false" in _why_no_images(SimpleNamespace(config={"save_images": False}, run_dir=run))
