"""The `flow_fast` receiver: Bob's flow generator distilled to 2 steps with guidance folded in.

Tiny configurations on untrained weights in the shipped format: the distillation resumes bit for bit,
its targets are the teacher's guided samples, `backend_options.receiver` selects the student (8x fewer
U-Net evaluations per image), `lsc world eval --receiver` works, missing student weights are one line
with exit 2, and every scheme runs on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lsc.backends.world import backend as B
from lsc.backends.world import models as M
from lsc.backends.world.receivers import flow as flow_receiver
from lsc.backends.world import nets
from lsc.backends.world.training import loop
from lsc.backends.world.training.data import PromptMix
from lsc.backends.world.training.flow_fast import teacher_pairs, train_flow_fast
from lsc.backends.world.release import write_random_weights


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return write_random_weights(tmp_path_factory.mktemp("teacher") / "weights", sampler_steps=8)


@pytest.fixture(scope="module")
def exported(teacher, tmp_path_factory) -> Path:
    """A weights folder with a (2-step) student, made by the real command: distil, export, calibrate."""
    from typer.testing import CliRunner

    from lsc.cli import app

    out = tmp_path_factory.mktemp("distil")
    result = CliRunner().invoke(app, [
        "world", "train", "--out", str(out), "--part", "flow_fast", "--init-generator", str(teacher), "--minutes", "5",
        "--flow-fast-steps", "2", "--flow-fast-pairs", "8", "--eval-scenes", "2", "--threads", "1",
    ])
    assert result.exit_code == 0, result.output
    return out / "weights"


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_teacher_pairs_and_distillation_resume_exactly_after_interruption(teacher, tmp_path, monkeypatch):
    torch.set_flush_denormal(True)
    kwargs = dict(minutes=5, teacher_dir=teacher, batch_size=4, max_steps=4, pairs=8, chunk=4)
    train_flow_fast(tmp_path / "a", **kwargs)

    class Killed(BaseException):
        pass

    # Killed inside the second chunk of teacher pairs...
    real_sample, calls = flow_receiver.euler_sample, []

    def dying_sample(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real_sample(*args, **kw)

    monkeypatch.setattr(flow_receiver, "euler_sample", dying_sample)
    with pytest.raises(Killed):
        train_flow_fast(tmp_path / "b", **kwargs)
    monkeypatch.undo()
    assert json.loads((tmp_path / "b" / "flow_fast" / "pairs.json").read_text())["done"] == 1
    # ... then inside training, after step 2's checkpoint (a checkpoint after every step here).
    real_lr = loop.learning_rate

    def dying_lr(step, *args, **kw):
        if step == 2:
            raise Killed
        return real_lr(step, *args, **kw)

    monkeypatch.setattr(loop, "learning_rate", dying_lr)
    real_loop = loop.train_loop
    monkeypatch.setattr(loop, "train_loop", lambda *a, **kw: real_loop(*a, **{**kw, "checkpoint_every_s": -1.0}))
    with pytest.raises(Killed):
        train_flow_fast(tmp_path / "b", **kwargs)
    assert json.loads((tmp_path / "b" / "flow_fast" / "state.json").read_text())["step"] == 2
    monkeypatch.undo()
    state = train_flow_fast(tmp_path / "b", **kwargs)
    assert state["step"] == 4 and state["teacher"]["bob_unet_sha256"] and "on_grid" in state["metrics"]

    for name in ("pairs_noise.npy", "pairs_image.npy", "pairs_tokens.npy"):
        assert np.array_equal(np.load(tmp_path / "a" / "flow_fast" / name), np.load(tmp_path / "b" / "flow_fast" / name)), name
    a = _tensors(tmp_path / "a" / "flow_fast" / "checkpoint.safetensors")
    b = _tensors(tmp_path / "b" / "flow_fast" / "checkpoint.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("ema_unet.") for k in a) and any(k.startswith("opt.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = (tmp_path / "b" / "flow_fast" / "train.log").read_text()
    assert "teacher pairs 4/8" in log and "teacher pairs 8/8" in log  # progress inside the pair generation


def test_teacher_pairs_of_another_count_keep_the_rows_both_have(teacher, tmp_path):
    import time

    far = time.time() + 600
    a = teacher_pairs(_mk(tmp_path / "a"), teacher, 8, 0, far, chunk=4)
    b = _mk(tmp_path / "b")
    teacher_pairs(b, teacher, 4, 0, far, chunk=4)
    grown = teacher_pairs(b, teacher, 8, 0, far, chunk=4)  # a larger pool keeps the first chunk, adds the second
    c = _mk(tmp_path / "c")
    teacher_pairs(c, teacher, 8, 0, far, chunk=4)
    shrunk = teacher_pairs(c, teacher, 6, 0, far, chunk=4)  # a smaller one keeps what it needs, generates nothing
    assert json.loads((c / "pairs.json").read_text())["done"] == 2
    for name in ("noise", "image", "tokens"):
        assert np.array_equal(a[name], grown[name]) and np.array_equal(a[name][:6], shrunk[name]), name
    odd = teacher_pairs(_mk(tmp_path / "d"), teacher, 6, 0, far, chunk=4)  # a partial last chunk: the same rows
    assert np.array_equal(a["noise"][:6], odd["noise"]) and np.array_equal(a["tokens"][:6], odd["tokens"])


def _mk(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


def test_student_learns_the_teachers_guided_velocity_on_the_training_pairs(teacher, tmp_path):
    """The cached image of a pair is the teacher's guided 8-step sample from that pair's noise; the
    student, one evaluation per image and no unconditional branch, outputs what the guided velocity
    (and the training target noise - image) is: same shape, for every image of the batch."""
    train_flow_fast(tmp_path, minutes=5, teacher_dir=teacher, batch_size=4, max_steps=1, pairs=4, chunk=4)
    folder = tmp_path / "flow_fast"
    noise = torch.from_numpy(np.load(folder / "pairs_noise.npy"))
    image = torch.from_numpy(np.load(folder / "pairs_image.npy"))
    tokens = torch.from_numpy(np.load(folder / "pairs_tokens.npy")).long()
    m = M.load_models(str(teacher.resolve()))
    tokens = tokens[:, : int((tokens != nets.PAD_ID).sum(1).max())]
    with torch.inference_mode():
        feats, pad = m.text(tokens)
        empty = torch.zeros(1, tokens.shape[1], dtype=torch.long)
        empty[0, 0] = nets.BOS_ID
        u_feats, u_pad = m.text(empty)
        uncond = (u_feats.expand(4, -1, -1), u_pad.expand(4, -1))
        again = flow_receiver.euler_sample(m.unet, noise.clone(), feats, pad, 8, 2.0, uncond)
        torch.testing.assert_close(again, image, atol=1e-4, rtol=1e-4)  # the teacher's guided sample (random teacher: guidance 2)
        t = torch.full((4,), 0.5)
        xt = 0.5 * image + 0.5 * noise
        v = m.unet(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([feats, uncond[0]]), torch.cat([pad, uncond[1]]))
        guided = v[4:] + 2.0 * (v[:4] - v[4:])
        student = nets.FlowUNet(nets.UNetConfig())
        student.load_state_dict({k[len("ema_unet."):]: v for k, v in _tensors(folder / "checkpoint.safetensors").items() if k.startswith("ema_unet.")})
        rows = []
        student.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[0]))
        folded = student(xt, t, feats, pad)
    assert folded.shape == guided.shape == (noise - image).shape == (4, 3, 32, 32)
    assert rows == [4]  # one evaluation per image: guidance is folded in
    assert image.abs().max() > 0 and not torch.equal(noise, image)


def _count_rows(unet: torch.nn.Module) -> list[int]:
    rows: list[int] = []
    unet.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[0]))
    return rows


def test_receiver_option_selects_the_student_with_fewer_network_evaluations(exported):
    from lsc.backends import load_backend

    flow = load_backend("world", {"weights": str(exported), "threads": 1})
    fast = load_backend("world", {"weights": str(exported), "threads": 1, "receiver": "flow_fast"})
    meta = json.loads((exported / "flow_fast.json").read_text())
    assert fast.generator.receiver == "flow_fast" and fast.generator.unet is not flow.generator.unet
    assert fast.default_threshold == meta["threshold"] and meta["sampler"]["steps"] == 2
    assert flow.default_threshold == json.loads((exported / "world.json").read_text())["threshold"]
    slow_rows, fast_rows = _count_rows(flow.generator.unet), _count_rows(fast.generator.unet)
    prompts = ["green grass with a large red circle at left", "blue sky", ""]
    a = flow.generator.generate(prompts, 0)
    b = fast.generator.generate(prompts, 0)
    assert a.shape == b.shape == (3, 32, 32, 3)
    assert sum(slow_rows) == 3 * 8 * 2 and flow.generator.evaluations == 48  # 8 steps, 2 branches
    assert sum(fast_rows) == 3 * 2 and fast.generator.evaluations == 6  # 2 steps, guidance folded: 8x fewer
    assert np.array_equal(b, fast.generator.generate(prompts, 0))
    proxy = fast.generator.with_steps(1)
    assert proxy.receiver == "flow_fast" and proxy.generate(prompts[:1], 0).shape == (1, 32, 32, 3) and proxy.evaluations == 1
    maps = fast.generator.cross_attention("a small red ball".split(), 0)  # the student's own cross-attention
    assert maps.shape == (4, 32, 32) and maps.sum() > 0
    with pytest.raises(Exception, match="guidance"):
        load_backend("world", {"weights": str(exported), "receiver": "flow_fast", "guidance": 2.0})


def test_the_meaning_measures_judge_every_scene_not_only_the_curve_scenes(exported):
    from lsc.backends.world.evaluate import evaluate_world

    backend = B.load_world_backend(str(exported))
    classifier = M.load_models(str(exported)).classifier
    r = evaluate_world(backend, classifier, n_scenes=3, n_curve=1)
    assert r["count_from_noun"]["prompts"] == 5 * 3 and r["judged_prefix_images"] < 40  # curves of one scene only
    r = evaluate_world(backend, classifier, n_scenes=3, n_curve=1, meaning_scenes=2)
    assert r["count_from_noun"]["prompts"] == 5 * 2


def test_world_eval_reports_each_receiver_with_its_own_threshold(exported, lsc_main):
    fast = lsc_main("world", "eval", "--weights", str(exported), "--scenes", "2", "--receiver", "flow_fast", "--json")
    assert fast.returncode == 0, fast.stderr
    flow = lsc_main("world", "eval", "--weights", str(exported), "--scenes", "2", "--json")
    assert flow.returncode == 0, flow.stderr
    fast_r, flow_r = json.loads(fast.stdout), json.loads(flow.stdout)
    assert fast_r.keys() == flow_r.keys()
    assert (fast_r["receiver"], fast_r["unet_evaluations_per_image"]) == ("flow_fast", 2.0)
    assert (flow_r["receiver"], flow_r["unet_evaluations_per_image"]) == ("flow", 16.0)
    assert fast_r["threshold_in_use"] == json.loads((exported / "flow_fast.json").read_text())["threshold"]
    assert flow_r["threshold_in_use"] == json.loads((exported / "world.json").read_text())["threshold"]


def test_exported_folder_keeps_the_teachers_files_and_stays_small(exported, teacher):
    for name in ("bob_text.safetensors", "bob_unet.safetensors", "alice.safetensors", "attributes.safetensors", "world.json"):
        assert (exported / name).read_bytes() == (teacher / name).read_bytes(), name
    student = _tensors(exported / "bob_unet_fast.safetensors")
    assert all(v.dtype == torch.float16 for v in student.values())
    assert sum(f.stat().st_size for f in exported.glob("*.safetensors")) < 30 * 2**20
    meta = json.loads((exported / "flow_fast.json").read_text())
    assert meta["training"]["step"] == 2 and meta["eval"]["receiver"] == "flow_fast"
    assert meta["teacher"]["bob_text_sha256"] == M.file_sha256(teacher / "bob_text.safetensors")


def test_missing_student_weights_is_one_line_exit_2(teacher, lsc_main, tmp_path):
    proc = lsc_main("world", "eval", "--weights", str(teacher), "--receiver", "flow_fast", "--scenes", "1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: backend_options.receiver=flow_fast: no bob_unet_fast.safetensors"), proc.stderr
    proc = lsc_main("run", "--set", f"backend_options.weights={teacher}", "--set", "backend_options.receiver=flow_fast",
                    "--set", "images.count=1", "--out", str(tmp_path / "run"), "--no-report", "--no-progress")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "flow_fast" in proc.stderr, proc.stderr
    proc = lsc_main("world", "eval", "--weights", str(teacher), "--receiver", "slow", "--scenes", "1")
    assert proc.returncode == 2 and "receiver must be one of flow, flow_fast, vqvae_ar" in proc.stderr


def test_a_student_of_another_text_encoder_is_refused(exported, tmp_path):
    import shutil

    copy = tmp_path / "w"
    shutil.copytree(exported, copy)
    meta = json.loads((copy / "flow_fast.json").read_text())
    meta["teacher"]["bob_text_sha256"] = "0" * 64
    (copy / "flow_fast.json").write_text(json.dumps(meta))
    from lsc.errors import ConfigError

    with pytest.raises(ConfigError, match="another text encoder"):
        B.load_world_backend(str(copy), receiver="flow_fast")


def test_flow_fast_part_needs_its_teacher_and_trains_alone(tmp_path, lsc_main):
    proc = lsc_main("world", "train", "--out", str(tmp_path), "--part", "flow_fast", "--minutes", "1")
    assert proc.returncode == 2 and "--init-generator" in proc.stderr
    proc = lsc_main("world", "train", "--out", str(tmp_path), "--part", "flow_fast", "--part", "generator", "--minutes", "1")
    assert proc.returncode == 2 and "trains alone" in proc.stderr


@pytest.mark.parametrize("receiver", ["flow_fast", "vqvae_ar"])
def test_every_scheme_runs_on_each_cheaper_receiver(receiver, exported, tmp_path):
    """flow_fast, and the vqvae_ar receiver (tiny untrained prior files written beside the same weights)."""
    import shutil

    from lsc.config import load_config
    from lsc.runner.study import run_study
    from lsc.schemes.base import scheme_names

    weights = exported
    if receiver == "vqvae_ar":
        from lsc.backends.world.release import write_random_vqvae_ar

        weights = tmp_path / "weights"
        shutil.copytree(exported, weights)
        write_random_vqvae_ar(weights, prior_config={"dim": 32, "layers": 1, "heads": 2})
    cfg = load_config(overrides=[
        f"backend_options.weights={weights}", f"backend_options.receiver={receiver}", "backend_options.threads=1",
        "images.count=1", "caption_source=dataset", "oracle=false", "metrics=[lpips]",
        f"schemes=[{','.join(scheme_names())}]",
    ])
    summary = run_study(cfg, tmp_path / "study", progress=False)
    assert summary.failed == 0 and summary.ok == len(scheme_names()), summary.line()


def test_a_bad_receiver_in_a_study_config_is_one_line(lsc_main):
    proc = lsc_main("run", "--set", "backend_options.receiver=slow", "--dry-run")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: backend_options.receiver: Input should be 'flow', 'flow_fast' or 'vqvae_ar'"), proc.stderr


def test_teacher_pairs_follow_the_content_only_rate_and_refuse_another_rate_on_resume(teacher, tmp_path):
    import time

    from lsc.backends.world import scenes
    from lsc.backends.world.training.data import BOB_VOCAB
    from lsc.errors import ConfigError

    far = time.time() + 600
    function_ids = {BOB_VOCAB.stoi[w] for w in scenes.FUNCTION_WORDS if w in BOB_VOCAB.stoi}
    stripped = teacher_pairs(_mk(tmp_path / "a"), teacher, 16, 0, far, chunk=16, mix=PromptMix(content_only_rate=1.0))
    kept = teacher_pairs(_mk(tmp_path / "b"), teacher, 16, 0, far, chunk=16, mix=PromptMix(content_only_rate=0.0))
    assert not function_ids & set(stripped["tokens"].ravel().tolist())  # every prompt lost its function words
    assert function_ids & set(kept["tokens"].ravel().tolist())
    with pytest.raises(ConfigError, match="content-only rate"):
        teacher_pairs(tmp_path / "a", teacher, 16, 0, far, chunk=16, mix=PromptMix(content_only_rate=0.5))


def test_teacher_pairs_follow_the_shuffled_rate_and_refuse_another_on_resume(teacher, tmp_path):
    import time

    from lsc.errors import ConfigError

    far = time.time() + 600
    plain = teacher_pairs(_mk(tmp_path / "a"), teacher, 16, 0, far, chunk=16)
    shuffled = teacher_pairs(_mk(tmp_path / "b"), teacher, 16, 0, far, chunk=16, mix=PromptMix(shuffled_rate=1.0))
    assert not (plain["tokens"] == shuffled["tokens"]).all()
    assert json.loads((tmp_path / "b" / "pairs.json").read_text())["shuffled_rate"] == 1.0
    assert "shuffled_rate" not in json.loads((tmp_path / "a" / "pairs.json").read_text())  # records of before still match
    with pytest.raises(ConfigError, match="shuffled rate"):
        teacher_pairs(tmp_path / "b", teacher, 16, 0, far, chunk=16)
    with pytest.raises(ConfigError, match="shuffled rate"):
        teacher_pairs(tmp_path / "a", teacher, 16, 0, far, chunk=16, mix=PromptMix(shuffled_rate=0.5))
