"""StudyConfig: YAML + --set overrides, SNR sweeps, and one-line errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lsc.config import DEFAULT_CONFIG_PATH, apply_overrides, load_config, parse_override, validate_config
from lsc.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def lsc_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # This checkout's sources first: the tests must exercise the tree they sit in, not an installed lsc.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    return subprocess.run([sys.executable, "-m", "lsc.cli", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)


def test_parse_override_yaml_typed() -> None:
    assert parse_override("channel.snr_db=[0,4,8]") == (["channel", "snr_db"], [0, 4, 8])
    assert parse_override("stop_at_success=true") == (["stop_at_success"], True)
    assert parse_override("threshold=0.5") == (["threshold"], 0.5)
    assert parse_override("backend=world") == (["backend"], "world")
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("threshold")


def test_apply_overrides_nested_and_copy() -> None:
    base = {"channel": {"model": "none"}, "seed": 1}
    out = apply_overrides(base, ["channel.snr_db=4", "images.count=3", "seed=7"])
    assert out == {"channel": {"model": "none", "snr_db": 4}, "seed": 7, "images": {"count": 3}}
    assert base == {"channel": {"model": "none"}, "seed": 1}  # not mutated
    with pytest.raises(ConfigError, match="seed is not a mapping"):
        apply_overrides(base, ["seed.x=1"])


def test_default_config_is_packaged_and_has_all_schemes() -> None:
    assert DEFAULT_CONFIG_PATH.is_file() and not (REPO / "configs" / "default.yaml").exists()  # one default, in the package
    cfg = load_config()
    assert [s.name for s in cfg.schemes] == [
        "random", "most_attentive", "least_attentive", "lowest_lpips", "alice_attention", "attention_contribution",
        "attention_combination", "crossattention_match", "nouns", "nouns_verbs", "heads", "heads_attentive",
        "heads_random", "heads_skd",
    ]
    assert cfg.oracle and cfg.backend == "world" and cfg.images.source == "world" and cfg.images.count == 8 and cfg.prompt_order is None
    assert cfg.backend_options == {"receiver": "flow_fast"}  # the 3-minute default study (docs/world.md); the backend's default is flow


def test_snr_sweep_expands_to_conditions_and_round_trips() -> None:
    cfg = load_config(overrides=["channel.model=analytic", "channel.snr_db=[0, 4.5, 8]"])
    conds = cfg.conditions()
    assert [c.key for c in conds] == ["snr_db=0", "snr_db=4.5", "snr_db=8"]
    assert [c.channel.snr_db for c in conds] == [0.0, 4.5, 8.0]
    assert all(c.channel.model == "analytic" for c in conds)
    again = validate_config(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    assert yaml.safe_load(cfg.to_yaml())["channel"]["snr_db"] == [0.0, 4.5, 8.0]


def test_single_snr_and_ideal_channel_conditions() -> None:
    assert [(c.key, c.snr_db) for c in load_config().conditions()] == [("", None)]
    cfg = load_config(overrides=["channel.model=analytic", "channel.snr_db=6"])
    assert [(c.key, c.snr_db) for c in cfg.conditions()] == [("", 6.0)]


def test_scheme_options_and_labels() -> None:
    cfg = load_config(overrides=["schemes=[heads, {name: heads, only_heads: true}, {name: random, label: rnd}]"])
    assert [s.label for s in cfg.schemes] == ["heads", "heads[only_heads=true]", "rnd"]
    assert cfg.schemes[1].options == {"only_heads": True}
    assert validate_config(yaml.safe_load(cfg.to_yaml())) == cfg


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("bogus=1", "error: unknown config key 'bogus'"),
        ("channel.bogus=1", "error: unknown config key 'channel.bogus'"),
        ("images.count=0", "error: images.count: Input should be greater than or equal to 1 (got 0)"),
        ("schemes=[random, teleport]", "error: schemes: unknown scheme 'teleport' (entry 1); see `lsc schemes`"),
        ("schemes=[random, random]", "error: schemes: scheme 'random' listed twice"),
        ("channel.snr_db=loud", "error: channel.snr_db: Input should be a valid number"),
        ("channel.modulation=qam7", "error: channel.modulation: Input should be"),
        ("prompt_order=backwards", "error: prompt_order: Input should be 'send' or 'caption' (got 'backwards')"),
        ("threshold=-1", "error: threshold: Input should be greater than 0 (got -1)"),
        ("schemes=[{name: heads, wings: 2}]", "error: schemes.0 (heads[wings=2]): scheme 'heads' has no option 'wings'"),
        ("backend=quantum", "error: backend: unknown backend 'quantum'"),
        ("metrics_every=0", "error: metrics_every: Input should be greater than or equal to 1 (got 0)"),
        ("metrics=[attributes, bleu]", "error: unknown step metric 'bleu' (known: attributes, bertscore"),
        ("backend_options.bogus=1", "error: backend_options.bogus: unknown option of backend 'world'; its options are "
                                    "weights, sampler_steps, guidance, threads"),
        ("backend_options.sampler_steps=0", "error: backend_options.sampler_steps: Input should be greater than or equal to 1"),
        ("schemes=[{name: lowest_lpips, proxy_steps: 0}]",
         "error: schemes.0 (lowest_lpips[proxy_steps=0]): scheme 'lowest_lpips': proxy_steps must be an integer >= 1, not 0"),
    ],
)
def test_bad_config_one_line_exit_2(override: str, expected: str, lsc_main) -> None:
    proc = lsc_main("run", "--set", override, "--dry-run")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(expected), lines[0]
    assert "Traceback" not in proc.stderr


def test_bad_config_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("images: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    folder = tmp_path / "folder.yaml"
    folder.write_text("images: {source: folder}\n")
    with pytest.raises(ConfigError, match="^images.path: Field required$"):
        load_config(folder)


def test_dry_run_prints_resolved_yaml(lsc_main) -> None:
    proc = lsc_main("run", "--set", "images.count=2", "--set", "schemes=[random]", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    data = yaml.safe_load(proc.stdout)
    assert data["images"] == {"source": "world", "count": 2, "seed": 0}
    assert data["schemes"] == ["random"]


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.schemes and validate_config(yaml.safe_load(cfg.to_yaml())) == cfg


def _readme_default(key: str) -> str:
    """The configuration reference's table (docs/configuration.md): the `default` cell of the row whose first
    cell names `key`."""
    for line in (REPO / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and f"`{key}`" in cells[0].split(", "):
            return cells[1]
    raise AssertionError(f"docs/configuration.md's table has no row for {key}")


def test_library_defaults_are_readmes_and_the_default_study_sets_only_its_receiver() -> None:
    from lsc.schemes.base import PAPER_SCHEMES

    bare = validate_config({"backend": "world"})
    assert _readme_default("oracle_max_words") == f"true, {bare.oracle_max_words}" == "true, 11"
    assert _readme_default("metrics_every") == str(bare.metrics_every)
    assert _readme_default("seed") == str(bare.seed)
    assert _readme_default("schemes").startswith(f"the papers' {len(PAPER_SCHEMES)} ")
    assert [s.name for s in bare.schemes] == list(PAPER_SCHEMES) and "learned" not in PAPER_SCHEMES
    assert _readme_default("images") == f"world, {bare.images.count} scenes"
    packaged = load_config(None)
    # the packaged study differs from a YAML of `backend: world` in what docs/world.md says it sets, nothing else
    assert packaged.backend_options == {"receiver": "flow_fast"}
    assert packaged.model_copy(update={"backend_options": {}}) == bare


def test_the_oracle_limit_is_one_constant() -> None:
    from lsc.config import DEFAULT_ORACLE_MAX_WORDS, StudyConfig
    from lsc.schemes.oracle import MAX_ORACLE_WORDS

    assert StudyConfig().oracle_max_words == MAX_ORACLE_WORDS == DEFAULT_ORACLE_MAX_WORDS


def test_dry_run_prints_exactly_what_the_run_folder_records(lsc_main, tmp_path: Path) -> None:
    from study_data import make_folder, study_yaml

    folder = tmp_path / "imgs"
    cap = make_folder(folder, corrupt=False)
    cfg_path = study_yaml(tmp_path / "s.yaml", folder, cap, ["random"])
    dry = lsc_main("run", str(cfg_path), "--set", "images.limit=1", "--set", "oracle=false", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    printed = yaml.safe_load(dry.stdout)
    assert printed["threshold"] is not None and printed["metrics"] is not None and printed["prompt_order"]
    out = tmp_path / "run"
    real = lsc_main("run", str(cfg_path), "--set", "images.limit=1", "--set", "oracle=false", "--out", str(out),
                    "--no-report", "--no-progress")
    assert real.returncode == 0, real.stderr
    assert dry.stdout == (out / "config.resolved.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("key", ["oracle", "save_images", "stop_at_success", "channel.word_correction", "channel.scc.enabled",
                                 "skd.check_meaning"])
def test_a_quoted_string_is_not_a_boolean_for_the_studys_own_keys(key: str) -> None:
    """'false' in quotes would have read as true: every boolean key of a study takes a boolean only."""
    from lsc.config import load_config
    from lsc.errors import ConfigError

    with pytest.raises(ConfigError, match="valid boolean"):
        load_config(None, [f'{key}="false"'])
    load_config(None, [f"{key}=false"])  # the YAML boolean is fine
