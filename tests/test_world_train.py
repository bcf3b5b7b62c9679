"""World training: resumable with the same result, and `lsc world train` exports usable weights."""

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from lsc.backends.world.release import export_weights
from lsc.backends.world.training.data import BOB_VOCAB, PromptMix, binding_targets, partial_prompt, training_prompt
from lsc.backends.world.training.generator import build_generator, init_generator_from, train_generator
from lsc.backends.world.training.perception import JNDCut, train_classifier, train_perceptual
from lsc.cli import app


def test_resumed_training_equals_uninterrupted(tmp_path):
    torch.set_flush_denormal(True)
    train_classifier(tmp_path / "a", minutes=5, max_steps=3, batch_size=4)
    train_classifier(tmp_path / "b", minutes=5, max_steps=2, batch_size=4)
    train_classifier(tmp_path / "b", minutes=5, max_steps=3, batch_size=4)  # resumes at step 2
    a = load_file(str(tmp_path / "a" / "classifier" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "b" / "classifier" / "checkpoint.safetensors"))
    assert json.loads((tmp_path / "b" / "classifier" / "state.json").read_text())["step"] == 3
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_partial_prompts_cover_empty_shuffled_and_unknown():
    import numpy as np

    words = "green grass with a large red circle at left".split()
    rng = np.random.default_rng(0)
    seen = [partial_prompt(words, rng) for _ in range(400)]
    assert any(p == [] for p in seen) and any(p == words for p in seen)
    assert any("[UNK]" in p for p in seen)
    assert any([w for w in p if w != "[UNK]"] != [w for w in words if w in p] for p in seen)  # shuffled ones


@pytest.mark.slow
def test_world_train_command_exports_weights(tmp_path):
    out = tmp_path / "train"
    result = CliRunner().invoke(
        app,
        ["world", "train", "--out", str(out), "--minutes", "5", "--generator-steps", "2", "--captioner-steps", "2",
         "--classifier-steps", "2", "--perceptual-steps", "2", "--eval-scenes", "3"],
    )
    assert result.exit_code == 0, result.output
    weights = out / "weights"
    meta = json.loads((weights / "world.json").read_text())
    assert {"threshold", "eval", "sampler", "bob_vocab"} <= set(meta)
    assert meta["training"]["generator"]["step"] == 2
    assert sum(f.stat().st_size for f in weights.glob("*.safetensors")) < 30 * 2**20


def test_world_train_rejects_bad_values(tmp_path):
    result = CliRunner().invoke(app, ["world", "train", "--out", str(tmp_path), "--minutes", "-1"])
    assert result.exit_code != 0
    import subprocess
    import sys

    for flag in ("--shuffled-rate", "--content-only-rate"):
        proc = subprocess.run([sys.executable, "-m", "lsc.cli", "world", "train", "--out", str(tmp_path / "x"), flag, "1.5"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.strip() == f"error: {flag} must be between 0 and 1, got 1.5", proc.stderr
    proc = subprocess.run([sys.executable, "-m", "lsc.cli", "world", "train", "--out", str(tmp_path / "x"), "--count-weight", "-0.1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --count-weight must be at least 0, got -0.1", proc.stderr


def test_count_head_reads_a_prompt_as_a_bag_of_its_words():
    from lsc.backends.world.training.generator import CountHead

    torch.manual_seed(0)
    head = CountHead(8)
    feats = torch.randn(1, 5, 8)
    padding = torch.tensor([[False, False, False, True, True]])
    shuffled = feats[:, [2, 0, 1, 4, 3]]
    garbage = feats.clone()
    garbage[:, 3:] = 100.0  # padded positions say nothing
    torch.testing.assert_close(head(feats, padding), head(shuffled, padding), rtol=0, atol=1e-6)
    torch.testing.assert_close(head(feats, padding), head(garbage, padding), rtol=0, atol=1e-6)
    assert not torch.allclose(head(feats, padding), head(feats, torch.zeros_like(padding)), atol=1e-3)


def test_count_objective_is_off_at_weight_zero_and_reaches_the_text_encoder_when_on(tmp_path):
    torch.set_flush_denormal(True)
    for name, weight in (("off", 0.0), ("on", 0.5)):
        train_generator(tmp_path / name, minutes=5, seed=3, batch_size=4, max_steps=2, mix=PromptMix(shuffled_rate=0.5), count_weight=weight)
    off = load_file(str(tmp_path / "off" / "generator" / "checkpoint.safetensors"))
    on = load_file(str(tmp_path / "on" / "generator" / "checkpoint.safetensors"))
    off_state = json.loads((tmp_path / "off" / "generator" / "state.json").read_text())
    on_state = json.loads((tmp_path / "on" / "generator" / "state.json").read_text())
    assert "count_weight" not in off_state and "count" not in off_state["metrics"] and not any(k.startswith("count.") for k in off)
    assert on_state["count_weight"] == 0.5 and on_state["metrics"]["count"] > 0 and any(k.startswith("count.") for k in on)
    shared = [k for k in off if k.startswith("text.") and "embed" not in k]
    assert shared and all(off[k].shape == on[k].shape for k in shared)
    assert max((off[k] - on[k]).abs().max().item() for k in shared) > 1e-6  # the count loss moved the encoder


def test_binding_targets_label_object_words_with_their_object():
    from lsc.backends.world import scenes

    scene = scenes.Scene("grass", (scenes.WorldObject("circle", "red", "small", "left"), scenes.WorldObject("square", "blue", "large", "right")))
    words, roles = scenes.bob_caption_roles(scene)
    t = binding_targets([scene], [roles], len(words) + 1)
    assert t["color"][0, 0] == -100  # [BOS]
    first, second = words.index("circle") + 1, words.index("square") + 1
    assert t["color"][0, first] == scenes.COLORS.index("red") and t["slot"][0, first] == 0
    assert t["color"][0, second] == scenes.COLORS.index("blue") and t["slot"][0, second] == 2
    assert t["background"][0, 1] == scenes.BACKGROUNDS.index("grass") and t["color"][0, 1] == -100
    assert t["color"][0, words.index("with") + 1] == -100


def test_alice_plural_noun_targets_its_shape_and_names_every_object_of_its_group():
    import numpy as np

    from lsc.backends.world import scenes

    scene = scenes.Scene("night", tuple(scenes.WorldObject("square", c, "large", s) for c, s in zip(("red", "blue"), ("left", "right"))))
    words, roles = scenes.alice_caption_roles(scene)  # red and blue boxes at night
    t = binding_targets([scene], [roles], len(words) + 1)
    noun = words.index("boxes") + 1
    assert t["shape"][0, noun] == scenes.SHAPES.index("square")
    assert t["color"][0, noun] == -100 and t["slot"][0, noun] == -100  # it names both boxes, not one
    assert t["slot"][0, words.index("blue") + 1] == 2
    rng = np.random.default_rng(0)
    drawn = set()
    for _ in range(400):
        prompt, target = training_prompt(scene, rng)
        if "boxes" in prompt and not {"red", "blue"} & set(prompt):
            drawn.add(len(target.objects))
    assert drawn == {2}  # "boxes" alone still means both of them


def test_fine_tuning_starts_new_synonyms_as_their_base_word(tmp_path):
    from lsc.backends.world import scenes
    from lsc.backends.world.release import write_random_weights

    weights = write_random_weights(tmp_path / "w")
    meta = json.loads((weights / "world.json").read_text())
    old_vocab = [w for w in meta["bob_vocab"] if w != "crimson"]  # weights from before "crimson" existed
    state = load_file(str(weights / "bob_text.safetensors"))
    keep = [meta["bob_vocab"].index(w) for w in old_vocab]
    state["embed.weight"] = state["embed.weight"][keep].contiguous()
    from safetensors.torch import save_file

    save_file(state, str(weights / "bob_text.safetensors"))
    (weights / "world.json").write_text(json.dumps({**meta, "bob_vocab": old_vocab}))
    text, unet = build_generator()
    init_generator_from(weights, text, unet)
    row = {w: text.embed.weight[i] for i, w in enumerate(BOB_VOCAB.itos)}
    torch.testing.assert_close(row["crimson"], row["red"])
    torch.testing.assert_close(row["red"], state["embed.weight"][old_vocab.index("red")].float())
    assert scenes.SYNONYM_BASE["crimson"] == "red"


def test_fine_tuning_runs_from_weights(tmp_path):
    from lsc.backends.world.release import write_random_weights

    weights = write_random_weights(tmp_path / "w")
    state = train_generator(tmp_path / "t", minutes=5, max_steps=2, batch_size=4, init_from=weights)
    assert state["step"] == 2 and {"flow", "bind"} <= set(state["metrics"])


@pytest.mark.slow
def test_generator_fine_tune_command_exports_with_the_base_parts(tmp_path):
    from lsc.backends.world.release import write_random_weights

    base = write_random_weights(tmp_path / "base")
    out = tmp_path / "tune"
    result = CliRunner().invoke(
        app,
        ["world", "train", "--out", str(out), "--part", "generator", "--init-generator", str(base), "--minutes", "5",
         "--generator-steps", "2", "--eval-scenes", "3"],
    )
    assert result.exit_code == 0, result.output
    weights = out / "weights"
    assert (weights / "alice.safetensors").read_bytes() == (base / "alice.safetensors").read_bytes()
    assert (weights / "attributes.safetensors").read_bytes() == (base / "attributes.safetensors").read_bytes()
    assert (weights / "bob_unet.safetensors").read_bytes() != (base / "bob_unet.safetensors").read_bytes()
    meta = json.loads((weights / "world.json").read_text())
    assert meta["training"]["generator"]["step"] == 2 and "fine_tuned_from" in meta["training"]["generator"]
    assert meta["training"]["captioner"]["from"] == "base weights" and "threshold" in meta


def test_export_without_a_trained_part_or_base_weights_is_refused(tmp_path):
    import pytest

    train_classifier(tmp_path / "t", minutes=5, max_steps=1, batch_size=2)
    with pytest.raises(FileNotFoundError, match="was not trained"):
        export_weights(tmp_path / "t", tmp_path / "w")


def test_jnd_cut_asks_same_scenes_under_one_cut_and_changed_ones_above():
    cut = JNDCut()
    with torch.no_grad():
        cut.bias.fill_(0.5)
    low, high = torch.full((8,), 0.2), torch.full((8,), 0.9)
    with torch.no_grad():
        separated = float(cut.loss(low, high, high))
        same_too_far = float(cut.loss(high, high, high))
        removed_too_close = float(cut.loss(low, high, low))
    assert separated < 0.5 * same_too_far and separated < 0.5 * removed_too_close


def test_perceptual_training_learns_a_cut_and_exports_only_the_channel_weights(tmp_path):
    from lsc.backends.world.perceptual import LinearWeights
    from lsc.backends.world.release import write_random_weights

    base = write_random_weights(tmp_path / "base")
    state = train_perceptual(tmp_path / "t", minutes=5, max_steps=2, batch_size=4, classifier_from=base)
    assert state["step"] == 2 and {"agree", "jnd", "cut"} <= set(state["metrics"])
    checkpoint = load_file(str(tmp_path / "t" / "perceptual" / "checkpoint.safetensors"))
    assert any(k.startswith("cut.") for k in checkpoint)  # the cut trains (and resumes) with the weights
    export_weights(tmp_path / "t", tmp_path / "w", base_weights=base)
    exported = load_file(str(tmp_path / "w" / "perceptual.safetensors"))
    LinearWeights((32, 64, 128, 128)).load_state_dict({k: v.float() for k, v in exported.items()})  # strict: no cut


def test_content_only_prompts_keep_their_target_and_lose_every_function_word():
    import numpy as np

    from lsc.backends.world import scenes

    scene = scenes.Scene("grass", (scenes.WorldObject("circle", "red", "large", "left"), scenes.WorldObject("square", "blue", "small", "right")))
    rng = np.random.default_rng(3)
    drawn = [training_prompt(scene, rng, PromptMix(content_only_rate=1.0)) for _ in range(300)]
    assert not any(set(p) & scenes.FUNCTION_WORDS for p, _ in drawn)
    whole = [t for p, t in drawn if p == "red ball small blue box grass".split()]
    assert whole and all(t.objects == scene.objects for t in whole)  # the same two objects, where they were
    rng = np.random.default_rng(3)
    assert any(set(p) & scenes.FUNCTION_WORDS for p, _ in (training_prompt(scene, rng, PromptMix(content_only_rate=0.0)) for _ in range(50)))


def test_shuffled_prompts_are_the_whole_caption_in_random_order_with_the_caption_target():
    import numpy as np

    from lsc.backends.world import scenes
    from lsc.backends.world.training.data import partial_prompt_indices

    rng = np.random.default_rng(7)
    assert all(sorted(partial_prompt_indices(9, rng, shuffled_rate=1.0)) == list(range(9)) for _ in range(50))
    # at rate 0 the base mix draws exactly as before the option existed
    a, b = np.random.default_rng(8), np.random.default_rng(8)
    assert [partial_prompt_indices(9, a) for _ in range(200)] == [partial_prompt_indices(9, b, shuffled_rate=0.0) for _ in range(200)]
    def shuffled_whole(rate: float) -> float:
        drawn = [partial_prompt_indices(9, rng, rate) for _ in range(4000)]
        return float(np.mean([None not in p and sorted(p) == list(range(9)) and p != list(range(9)) for p in drawn]))

    base, more = shuffled_whole(0.0), shuffled_whole(0.5)
    assert 0.05 < base < 0.1 and abs(more - (0.5 + 0.5 * base)) < 0.03  # 7.5% in the base mix; the rate adds on top

    scene = scenes.Scene("sand", (scenes.WorldObject("square", "yellow", "small", "left"),))  # "a small yellow box on the left on the beach"
    rng = np.random.default_rng(9)
    for _ in range(200):
        prompt, target = training_prompt(scene, rng, PromptMix(content_only_rate=0.0, shuffled_rate=1.0))
        assert "[UNK]" not in prompt
        if "box" in prompt:  # Alice's words, in any order: one box, on the left, as the caption says
            assert sorted(prompt) == sorted(scenes.alice_caption(scene).split()) and target.objects == scene.objects


def test_a_cache_record_without_a_shuffled_rate_is_one_of_rate_zero():
    from lsc.backends.world.training.data import records_differ

    def mix_record(content_only_rate, shuffled_rate):
        return PromptMix(content_only_rate, shuffled_rate).record()

    assert mix_record(0.5, 0.0) == {"content_only_rate": 0.5}
    assert not records_differ({"seed": 0, "content_only_rate": 0.5}, {"seed": 0, **mix_record(0.5, 0.0)})
    assert records_differ({"seed": 0, "content_only_rate": 0.5, "shuffled_rate": 0.2}, {"seed": 0, **mix_record(0.5, 0.0)})
    assert records_differ({"seed": 0, "content_only_rate": 0.5}, {"seed": 0, **mix_record(0.5, 0.2)})
    assert records_differ({"seed": 1, "content_only_rate": 0.5}, {"seed": 0, **mix_record(0.5, 0.0)})


def test_an_alice_prompt_without_its_position_words_targets_the_usual_layout():
    import numpy as np

    from lsc.backends.world import scenes

    scene = scenes.Scene("grass", (scenes.WorldObject("square", "orange", "small", "left"),))  # "a small orange box on the left on grass"
    rng = np.random.default_rng(4)
    slots = {}
    for _ in range(400):
        prompt, target = training_prompt(scene, rng)
        if "box" in prompt:
            slots.setdefault("left" in prompt, set()).update(o.slot for o in target.objects)
    assert slots == {True: {"left"}, False: {"middle"}}  # unsaid, the position is the usual one, never a blend


def test_a_bob_prompt_without_slot_words_targets_the_usual_layout():
    import numpy as np

    from lsc.backends.world import scenes

    scene = scenes.Scene("grass", (scenes.WorldObject("square", "orange", "small", "left"),
                                   scenes.WorldObject("circle", "blue", "large", "middle")))
    rng = np.random.default_rng(5)
    slots: dict[tuple[bool, int], set] = {}
    for _ in range(1500):
        prompt, target = training_prompt(scene, rng)
        if "square" in prompt:  # Bob's phrasing
            key = (bool(set(prompt) & scenes.BOB_SLOT_WORDS), len(target.objects))
            slots.setdefault(key, set()).add(tuple(o.slot for o in target.objects))
    # no slot word received: one object in the middle, two left and right, never their true slots
    assert slots[(False, 1)] == {("middle",)} and slots[(False, 2)] == {("left", "right")}
    assert slots[(True, 2)] == {("left", "middle")}  # slot words received: where they say


def test_world_train_out_that_is_a_file_or_under_a_file_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    import subprocess
    import sys

    for out in (afile, afile / "sub"):
        result = subprocess.run([sys.executable, "-m", "lsc.cli", "world", "train", "--out", str(out), "--part", "classifier",
                                 "--minutes", "1"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        lines = (result.stdout + result.stderr).strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --out"), lines
    assert afile.read_text() == "mine"
