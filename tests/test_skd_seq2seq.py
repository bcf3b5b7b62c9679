"""SKD by Alice's own style translator (engine seq2seq), the plain `skd` scheme, and the world's SKD report.

Worked example used below: the scene "grass; a large red circle on the left, a small blue square on the
right". Alice says "a red ball and a small blue box on grass" (two objects apart is her usual layout, so no
position words; the large size is unmarked). Bob says "green grass with a large red circle at left and a
small blue square at right".
"""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from lsc.backends.world import scenes
from lsc.backends.world.options import PACKAGED_WEIGHTS
from lsc.backends.world.skd_eval import bob_style, meaning_kept, skd_report
from lsc.backends.world.skd_translator import TRANSLATOR_FILE, train_translator
from lsc.errors import ConfigError
from lsc.language.skd import Seq2SeqSKD, engine_name, make_skd
from lsc.language.config import SKDConfig
from lsc.language.translator import StyleTranslator, TranslatorConfig, load_translator, read_config, save_translator

ALICE = "a red ball and a small blue box on grass"
BOB = "green grass with a large red circle at left and a small blue square at right"
SHIPPED = PACKAGED_WEIGHTS / TRANSLATOR_FILE
EXAMPLES = scenes.skd_example_pairs()


# ------------------------------------------------------------------------------ what the report scores
def test_meaning_kept_worked_examples():
    assert meaning_kept(ALICE, BOB) is True
    assert meaning_kept(ALICE, "a large red circle at left and a small blue square at right with green grass") is True
    assert meaning_kept(ALICE, BOB.replace("small blue", "large blue")) is False  # Alice said small
    assert meaning_kept(ALICE, BOB.replace("at right", "at center")) is False  # her layout puts it on the right
    assert meaning_kept(ALICE, "green grass with a large red circle at left") is False  # an object lost
    assert meaning_kept(ALICE, BOB.replace("green grass", "blue sky")) is False
    assert meaning_kept(ALICE, "") is False
    assert meaning_kept("a dog on a sofa", BOB) is None  # outside the world's grammar: nothing to check


def test_bob_style_worked_examples():
    assert bob_style(BOB)
    assert bob_style("a small blue square at right and a large red circle at left with green grass")  # his other orders
    assert bob_style(BOB.replace("red", "crimson"))  # his synonyms
    assert not bob_style(ALICE)
    assert not bob_style(BOB.replace("a large red", "a red"))  # Bob always states the size
    assert not bob_style(BOB.replace(" with ", " and "))
    assert not bob_style("green grass with a large red circle at left at right")


# ---------------------------------------------------------------------------------------- the model
def _tiny_config() -> TranslatorConfig:
    return TranslatorConfig(source_words=["a", "red", "ball"], target_words=["a", "red", "circle"], dim=16, heads=2, layers=1, ff=32, max_len=8)


def test_translator_file_round_trip_and_foreign_files(tmp_path):
    torch.manual_seed(0)
    model = StyleTranslator(_tiny_config()).eval()
    save_translator(model, tmp_path / "t.safetensors", half=False)
    loaded = load_translator(str(tmp_path / "t.safetensors"))
    assert read_config(tmp_path / "t.safetensors") == model.cfg
    captions = [["a", "red", "ball"], ["ball"], ["a", "green", "ball"]]
    assert loaded.translate(captions) == model.translate(captions)
    assert all(len(t) <= model.cfg.max_len - 1 for t in loaded.translate(captions))
    assert loaded.unknown_words(["a", "green", "ball", "[PAD]"]) == ["green", "[PAD]"]
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not an lsc style translator"):
        read_config(tmp_path / "other.safetensors")
    with pytest.raises(ConfigError, match="is not a style translator"):
        make_skd({"engine": "seq2seq", "translator": str(tmp_path / "other.safetensors")})
    with pytest.raises(ConfigError, match="is not a file"):
        make_skd({"engine": "seq2seq", "translator": str(tmp_path / "none.safetensors")})


def test_translator_training_resumes_to_the_same_weights(tmp_path):
    torch.set_flush_denormal(True)
    train_translator(tmp_path / "a", minutes=5, max_steps=3, batch_size=4)
    train_translator(tmp_path / "b", minutes=5, max_steps=2, batch_size=4)
    train_translator(tmp_path / "b", minutes=5, max_steps=3, batch_size=4)  # resumes at step 2
    a = load_file(str(tmp_path / "a" / "skd" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "b" / "skd" / "checkpoint.safetensors"))
    state = json.loads((tmp_path / "b" / "skd" / "state.json").read_text())
    assert state["step"] == 3 and state["data_stream"] == "[seed + 10**6, 8, step]"
    assert (tmp_path / "b" / "skd" / "train.log").exists()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------- the engine
def test_engine_choice():
    assert engine_name(SKDConfig()) == "lexicon"  # no translator at hand
    assert engine_name(SKDConfig(), "t.safetensors") == "seq2seq"  # the backend's own
    assert engine_name(SKDConfig(engine="lexicon"), "t.safetensors") == "lexicon"
    assert engine_name(SKDConfig(translator="t.safetensors")) == "seq2seq"
    with pytest.raises(ConfigError, match="needs a style translator"):
        make_skd({"engine": "seq2seq"})
    assert isinstance(make_skd(None, SHIPPED), Seq2SeqSKD)


def test_shipped_translator_is_exact_on_held_out_scenes():
    """The shipped file's own record is measured, not assumed: 200 `lsc world eval` scenes (seed 2024)."""
    model = load_translator(str(SHIPPED))
    samples = [scenes.world_scene(i, 2024) for i in range(200)]
    out = [" ".join(w) for w in model.translate([scenes.alice_caption(s).split() for s in samples])]
    exact = np.mean([o == scenes.bob_caption(s) for o, s in zip(out, samples)])
    kept = np.mean([meaning_kept(scenes.alice_caption(s), o) for o, s in zip(out, samples)])
    assert exact >= 0.98 and kept >= 0.98
    record = json.loads((PACKAGED_WEIGHTS / "skd_translator.json").read_text())
    assert record["held_out"]["exact"] >= 0.98 and record["training"]["part"] == "skd"
    assert 1e5 < sum(v.numel() for v in load_file(str(SHIPPED)).values()) < 1e6  # a few hundred thousand parameters


def test_seq2seq_engine_rewrites_in_bobs_style_and_keeps_the_meaning():
    engine = make_skd({"engine": "seq2seq"}, SHIPPED)
    res = engine.rewrite("a yellow ball on the left at night", EXAMPLES)
    assert res.kept and res.engine == "seq2seq"
    assert res.text == "night sky with a large yellow circle at left"
    res = engine.rewrite(ALICE, EXAMPLES)
    assert res.text == BOB and res.proposed == BOB
    unknown = engine.rewrite("a dog on a sofa", EXAMPLES)  # words it never learnt: not translated
    assert not unknown.kept and unknown.text == "a dog on a sofa" and "dog, sofa" in unknown.reason


def test_seq2seq_rewrite_losing_a_head_noun_is_refused(monkeypatch):
    class Lossy:
        def unknown_words(self, words):
            return []

        def translate(self, captions):
            return [["green", "grass", "with", "a", "large", "red", "at", "left"]]  # the ball is gone

    monkeypatch.setattr("lsc.language.translator.load_translator", lambda path: Lossy())
    res = make_skd({"engine": "seq2seq"}, SHIPPED).rewrite("a red ball on the left on grass", EXAMPLES)
    assert not res.kept and res.text == "a red ball on the left on grass"
    assert res.reason.startswith("rewrite dropped head noun(s) ball") and res.proposed.endswith("red at left")
    unchecked = make_skd({"engine": "seq2seq", "check_meaning": False}, SHIPPED).rewrite("a red ball on the left on grass", EXAMPLES)
    assert unchecked.kept and unchecked.text == "green grass with a large red at left"


def test_meaning_check_reads_a_plural_by_its_singulars_substitute():
    from lsc.language.skd import learn_lexicon, missing_head_nouns

    lexicon = learn_lexicon(tuple(EXAMPLES))
    alice = "white and small yellow boxes at night"
    bob = "night sky with a large white square at left and a small yellow square at right"
    assert missing_head_nouns(alice, bob, lexicon) == []
    assert missing_head_nouns(alice, "night sky with a large white at left", lexicon) == ["boxes"]


# -------------------------------------------------------------------------------------- the schemes
def test_skd_scheme_sends_the_rewrite_in_caption_order_and_heads_skd_takes_the_backends_translator():
    from lsc.protocol.loop import ImageContext, LoopSettings
    from lsc.protocol.testing import fake_backend
    from lsc.schemes import get_scheme

    backend = fake_backend(ALICE, skd_examples=EXAMPLES)
    backend.skd_translator = str(SHIPPED)
    ctx = ImageContext(backend, "img", backend.generator.generate([ALICE], 0)[0], ALICE, seed=0)
    plan = get_scheme("skd").plan(ctx, LoopSettings())
    assert plan.words == BOB.split() and plan.order == list(range(len(plan.words)))
    assert plan.info["skd_engine"] == "seq2seq" and plan.info["skd_kept"] is True
    heads = get_scheme("heads_skd").plan(ctx, LoopSettings())
    assert heads.words == BOB.split() and sorted(heads.order) == plan.order and heads.order != plan.order
    lexicon = get_scheme("skd", skd={"engine": "lexicon"}).plan(ctx, LoopSettings())
    assert lexicon.info["skd_engine"] == "lexicon" and lexicon.words != BOB.split()
    backend.skd_translator = None  # a backend without a translator: the lexicon
    ctx2 = ImageContext(backend, "img2", ctx.image, ALICE, seed=0)
    assert get_scheme("skd").plan(ctx2, LoopSettings()).info["skd_engine"] == "lexicon"


# --------------------------------------------------------------------------------------- the report
def test_skd_report_pairs_each_engine_with_alice_and_bob():
    """A stand-in Bob who draws a Bob-style prompt right (distance 0) and anything else wrong (distance 1)."""
    from types import SimpleNamespace

    samples = [scenes.world_scene(i, 2024) for i in range(6)]
    captions = [scenes.alice_caption(s) for s in samples]
    captions[5] = "a dog on a sofa"  # a caption outside the grammar: refused by the translator, not scored
    seen_seeds = []

    def generate(prompts, seed):
        seen_seeds.append(seed)
        return np.stack([np.full((2, 2, 3), 0.0 if bob_style(p) else 1.0) for p in prompts])

    backend = SimpleNamespace(skd_translator=str(SHIPPED), skd_examples=EXAMPLES)
    report = skd_report(backend, samples, captions, generate, lambda i, imgs: imgs.mean(axis=(1, 2, 3)), 0.5, 2024)
    assert seen_seeds == [2024 + i for i in range(6)]
    assert report["bob_success_on_alice"] == 0.0 and report["bob_success_on_bob"] == 1.0
    s2s = report["seq2seq"]
    assert s2s["skd_meaning_scored"] == 5 and s2s["skd_meaning_kept"] == 1.0
    assert s2s["skd_refused"] == 1 and s2s["skd_bob_style"] == round(5 / 6, 4)
    assert s2s["bob_success"] == round(5 / 6, 4) and s2s["scenes_won_vs_alice"] == 5 and s2s["style_gap_closed"] == round(5 / 6, 3)
    assert report["lexicon"]["skd_bob_style"] < s2s["skd_bob_style"]


# ------------------------------------------------------------------------------------------- the CLI
def test_world_train_part_skd_trains_alone(tmp_path):
    from lsc.cli import app

    bad = CliRunner().invoke(app, ["world", "train", "--out", str(tmp_path), "--part", "skd", "--part", "generator"])
    assert isinstance(bad.exception, ConfigError) and str(bad.exception).startswith("--part skd trains alone")
    ok = CliRunner().invoke(app, ["world", "train", "--out", str(tmp_path), "--part", "skd", "--skd-steps", "1", "--no-export"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["skd"]["step"] == 1


@pytest.mark.slow
def test_skd_report_on_the_shipped_world():
    """Real Alice, real Bob (flow_fast), 24 held-out scenes: the translator keeps every fact in Bob's style
    and Bob draws its rewrite at least as well as Alice's caption; the lexicon does neither."""
    from lsc.backends.world.backend import load_world_backend

    backend = load_world_backend(None, receiver="flow_fast")
    samples = [scenes.world_scene(i, 2024) for i in range(24)]
    images = np.stack([scenes.render(s) for s in samples])
    captions = backend.captioner.caption(list(images))

    def distance_to(i, imgs):
        return backend.perceptual.distances(backend.perceptual.reference(images[i]), imgs)

    report = skd_report(backend, samples, captions, backend.generator.generate, distance_to, backend.default_threshold, 2024)
    s2s, lex = report["seq2seq"], report["lexicon"]
    assert s2s["skd_meaning_kept"] == 1.0 and s2s["skd_bob_style"] == 1.0 and s2s["skd_refused"] == 0
    assert s2s["bob_success"] >= report["bob_success_on_alice"] and s2s["scenes_won_vs_alice"] >= s2s["scenes_lost_vs_alice"]
    assert lex["skd_meaning_kept"] < 0.9 and lex["skd_bob_style"] < 0.5


def test_doctor_names_the_skd_engine_a_study_will_run(tmp_path):
    from lsc.config import StudyConfig
    from lsc.runner.doctor import Report, check_skd

    def checked(**cfg):
        report = Report()
        check_skd(report, StudyConfig(**cfg))
        return [(c.status, c.detail) for c in report.checks]

    assert checked(schemes=["heads"]) == []
    assert checked(schemes=["skd"]) == [("ok", "auto engine (offline): the backend's style translator (world: seq2seq), else the lexicon")]
    missing = str(tmp_path / "none.safetensors")
    assert checked(schemes=["heads_skd"], skd={"engine": "seq2seq", "translator": missing}) == [
        ("FAIL", f"seq2seq engine, translator {missing}: not a file")]
    assert checked(schemes=["skd"], skd={"translator": str(SHIPPED)})[0][0] == "ok"
