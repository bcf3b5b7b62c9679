"""The `vqvae_ar` receiver: Bob as a VQ-VAE with a text-conditioned autoregressive prior.

Tiny step counts on untrained weights in the shipped format: both training parts resume bit for bit
(the prior's cached codes included), sampling is deterministic per (prompt, seed) and independent of
the batch, `backend_options.receiver` selects it, `lsc world eval --receiver vqvae_ar` reports the
same fields with its own threshold, and its errors (missing files, another text encoder, a prior
without a VQ-VAE) are one line with exit 2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lsc.backends.world import backend as B
from lsc.backends.world import models as M
from lsc.backends.world.nets import to_tensor
from lsc.backends.world.training.data import PromptMix
from lsc.backends.world.training import loop
from lsc.backends.world.training import vqvae_ar as TV
from lsc.backends.world.training.data import FINETUNE_COUNT_P, training_prompt
from lsc.backends.world.receivers import vqvae_ar as V
from lsc.backends.world.release import write_random_weights
from lsc.errors import CapabilityError, ConfigError


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_random_weights(tmp_path_factory.mktemp("base") / "weights", sampler_steps=2)


@pytest.fixture(scope="module")
def exported(base, tmp_path_factory) -> Path:
    """A weights folder with the receiver, made by the real command: VQ-VAE, prior, export, calibrate."""
    from typer.testing import CliRunner

    from lsc.cli import app

    out = tmp_path_factory.mktemp("vqar")
    result = CliRunner().invoke(app, [
        "world", "train", "--out", str(out), "--part", "vqvae", "--part", "prior", "--base-weights", str(base), "--minutes", "5",
        "--vqvae-steps", "2", "--prior-steps", "2", "--prior-examples", "8", "--eval-scenes", "2", "--threads", "1",
    ])
    assert result.exit_code == 0, result.output
    return out / "weights"


class Killed(BaseException):
    pass


def _die_at_step(monkeypatch, step: int) -> None:
    """Kill the training loop when it reaches `step`, with a checkpoint after every step before it."""
    real_lr, real_loop = loop.learning_rate, loop.train_loop

    def dying_lr(s, *args, **kw):
        if s == step:
            raise Killed
        return real_lr(s, *args, **kw)

    monkeypatch.setattr(loop, "learning_rate", dying_lr)
    monkeypatch.setattr(loop, "train_loop", lambda *a, **kw: real_loop(*a, **{**kw, "checkpoint_every_s": -1.0}))


def test_vqvae_and_prior_resume_exactly_after_interruption(base, tmp_path, monkeypatch):
    torch.set_flush_denormal(True)
    vq_kwargs = dict(minutes=5, batch_size=4, max_steps=4)
    prior_kwargs = dict(minutes=5, base_dir=base, batch_size=4, max_steps=4, examples=8, chunk=4)
    TV.train_vqvae(tmp_path / "a", **vq_kwargs)
    TV.train_prior(tmp_path / "a", **prior_kwargs)

    _die_at_step(monkeypatch, 2)  # the VQ-VAE killed after step 2's checkpoint...
    with pytest.raises(Killed):
        TV.train_vqvae(tmp_path / "b", **vq_kwargs)
    monkeypatch.undo()
    assert not TV.vqvae_finished(tmp_path / "b")
    with pytest.raises(ConfigError, match="needs a finished VQ-VAE"):  # ... so no prior on its unfinished codes
        TV.train_prior(tmp_path / "b", **prior_kwargs)
    assert TV.train_vqvae(tmp_path / "b", **vq_kwargs)["step"] == 4

    real_encode, calls = V.VQVAE.encode, []  # the prior killed inside the second chunk of codes...

    def dying_encode(self, x):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real_encode(self, x)

    monkeypatch.setattr(V.VQVAE, "encode", dying_encode)
    with pytest.raises(Killed):
        TV.train_prior(tmp_path / "b", **prior_kwargs)
    monkeypatch.undo()
    assert json.loads((tmp_path / "b" / "prior" / "codes.json").read_text())["done"] == 1
    encoded = []  # ... resumed without encoding the first chunk again, then killed in training
    monkeypatch.setattr(V.VQVAE, "encode", lambda self, x: encoded.append(len(x)) or real_encode(self, x))
    _die_at_step(monkeypatch, 2)
    with pytest.raises(Killed):
        TV.train_prior(tmp_path / "b", **prior_kwargs)
    assert encoded == [4] and json.loads((tmp_path / "b" / "prior" / "state.json").read_text())["step"] == 2
    monkeypatch.undo()
    state = TV.train_prior(tmp_path / "b", **prior_kwargs)
    assert state["step"] == 4 and state["text"]["bob_text_sha256"] == M.file_sha256(base / "bob_text.safetensors")

    for name in ("prior_codes.npy", "prior_tokens.npy"):
        a, b = np.load(tmp_path / "a" / "prior" / name), np.load(tmp_path / "b" / "prior" / name)
        assert np.array_equal(a, b) and a.any(), name
    for part in ("vqvae", "prior"):
        a = load_file(str(tmp_path / "a" / part / "checkpoint.safetensors"))
        b = load_file(str(tmp_path / "b" / part / "checkpoint.safetensors"))
        assert a.keys() == b.keys() and any(k.startswith("opt.") for k in a)
        for k in a:
            assert torch.equal(a[k], b[k]), (part, k)
    log = (tmp_path / "b" / "prior" / "train.log").read_text()
    assert "prior codes 4/8" in log and "prior codes 8/8" in log


@pytest.mark.parametrize("rate", [0.3, 1.0])
def test_cached_examples_are_the_codes_of_the_training_prompts_targets(base, tmp_path, rate):
    """Example r: the VQ-VAE's codes of the image `training_prompt` says the prompt should produce, its
    prompts stripped of function words at the content-only rate asked for."""
    import time

    torch.manual_seed(0)
    vqvae = V.VQVAE(V.VQConfig()).eval()
    models = M.load_models(str(base.resolve()))
    arrays = TV.code_cache(tmp_path, vqvae, models.bob_vocab, 48, 4, 0, time.time() + 60, chunk=4, mix=PromptMix(content_only_rate=rate))
    rng = np.random.default_rng([loop.TRAIN_SEED_OFFSET, loop.PART_ID["prior"], 0, 0])
    from lsc.backends.world import scenes

    pairs = [training_prompt(scenes.sample_scene(rng, FINETUNE_COUNT_P), rng, PromptMix(content_only_rate=rate)) for _ in range(4)]
    with torch.inference_mode():
        codes = vqvae.encode(to_tensor(np.stack([scenes.render(s) for _, s in pairs])))
    assert np.array_equal(arrays["codes"], codes.numpy())
    tokens = models.bob_vocab.tokens([p for p, _ in pairs], 48).numpy()
    assert np.array_equal(arrays["tokens"][:, : tokens.shape[1]], tokens)


def test_sampling_is_deterministic_and_independent_of_the_batch(exported):
    from lsc.backends import load_backend

    bob = load_backend("world", {"weights": str(exported), "threads": 1, "receiver": "vqvae_ar"}).generator
    assert bob.receiver == "vqvae_ar"
    prompt = "green grass with a large red circle at left"
    alone = bob.generate([prompt], 5)
    others = [f"blue sky with a small {c} square at right" for c in ("red", "blue", "white", "orange", "yellow", "purple")] * 3
    batch = bob.generate(others[:9] + [prompt] + others[9:], 5)  # 19 prompts: two sampler passes
    assert batch.shape == (19, 32, 32, 3) and batch.dtype == np.float32 and 0 <= batch.min() and batch.max() <= 1
    assert np.array_equal(alone[0], batch[9])  # bit-identical alone or in a batch
    assert np.array_equal(alone, bob.generate([prompt], 5))
    assert not np.array_equal(alone, bob.generate([prompt], 6))
    assert bob.calls == 4 and bob.evaluations == (1 + 19 + 1 + 1) * 64 * 2  # one prior step per code, two rows with guidance


def test_receiver_has_cross_attention_maps_but_no_cheaper_sampler(exported):
    bob = B.load_world_backend(str(exported), receiver="vqvae_ar", threads=1)
    maps = bob.generator.cross_attention("a small red ball".split(), 0)
    assert maps.shape == (4, 32, 32) and maps.dtype == np.float32 and maps.sum() > 0
    assert np.array_equal(maps, bob.generator.cross_attention("a small red ball".split(), 0))
    assert bob.default_threshold == json.loads((exported / V.META_FILE).read_text())["threshold"]
    with pytest.raises(CapabilityError, match="no cheaper sampler"):
        bob.generator.with_steps(2)
    with pytest.raises(ConfigError, match="sampler_steps does not apply"):
        B.load_world_backend(str(exported), receiver="vqvae_ar", sampler_steps=4)
    assert B.load_world_backend(str(exported), receiver="vqvae_ar", guidance=1.0).generator.guidance == 1.0


def test_world_eval_reports_vqvae_ar_with_its_own_threshold(exported, lsc_main):
    proc = lsc_main("world", "eval", "--weights", str(exported), "--scenes", "2", "--receiver", "vqvae_ar", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    meta = json.loads((exported / V.META_FILE).read_text())
    assert result.keys() == meta["eval"].keys()  # the same fields as every receiver's evaluation
    assert (result["receiver"], result["unet_evaluations_per_image"]) == ("vqvae_ar", 128.0)
    assert result["threshold_in_use"] == meta["threshold"] == meta["eval"]["derived_threshold"]


def test_exported_receiver_is_fp16_beside_the_base_files_and_records_its_training(exported, base):
    for name in ("bob_text.safetensors", "bob_unet.safetensors", "alice.safetensors", "attributes.safetensors", "world.json"):
        assert (exported / name).read_bytes() == (base / name).read_bytes(), name
    for name in (V.VQVAE_FILE, V.PRIOR_FILE):
        assert all(v.dtype == torch.float16 for v in load_file(str(exported / name)).values()), name
    assert sum(f.stat().st_size for f in exported.glob("*.safetensors")) < 30 * 2**20
    meta = json.loads((exported / V.META_FILE).read_text())
    assert meta["training"]["vqvae"]["step"] == 2 and meta["training"]["prior"]["step"] == 2
    assert meta["text"]["bob_text_sha256"] == M.file_sha256(base / "bob_text.safetensors")
    assert set(meta["sampler"]) == {"guidance", "temperature", "top_k"} and meta["eval"]["receiver"] == "vqvae_ar"


def test_missing_receiver_files_are_one_line_exit_2(base, lsc_main, tmp_path):
    proc = lsc_main("world", "eval", "--weights", str(base), "--receiver", "vqvae_ar", "--scenes", "1")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: backend_options.receiver=vqvae_ar: no vqvae.safetensors, prior.safetensors, vqvae_ar.json"), proc.stderr
    proc = lsc_main("run", "--set", f"backend_options.weights={base}", "--set", "backend_options.receiver=vqvae_ar",
                    "--set", "images.count=1", "--out", str(tmp_path / "run"), "--no-report", "--no-progress")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "vqvae_ar" in proc.stderr, proc.stderr


def test_a_prior_of_another_text_encoder_is_refused(exported, tmp_path, lsc_main):
    copy = tmp_path / "w"
    shutil.copytree(exported, copy)
    meta = json.loads((copy / V.META_FILE).read_text())
    meta["text"]["bob_text_sha256"] = "0" * 64
    (copy / V.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="another text encoder"):
        B.load_world_backend(str(copy), receiver="vqvae_ar")
    proc = lsc_main("world", "eval", "--weights", str(copy), "--receiver", "vqvae_ar", "--scenes", "1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "another text encoder" in proc.stderr, proc.stderr


def test_prior_needs_a_vqvae_and_the_text_encoders_weights_and_trains_apart(base, tmp_path, lsc_main):
    proc = lsc_main("world", "train", "--out", str(tmp_path), "--part", "prior", "--base-weights", str(base), "--minutes", "1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "needs a finished VQ-VAE" in proc.stderr, proc.stderr
    for part in ("prior", "vqvae"):
        proc = lsc_main("world", "train", "--out", str(tmp_path), "--part", part, "--minutes", "1")
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "need --base-weights" in proc.stderr, proc.stderr
    proc = lsc_main("world", "train", "--out", str(tmp_path), "--part", "vqvae", "--part", "generator", "--minutes", "1")
    assert proc.returncode == 2 and "call of their own" in proc.stderr
    proc = lsc_main("run", "--set", "backend_options.receiver=slow", "--dry-run")
    assert proc.returncode == 2 and "'flow', 'flow_fast' or 'vqvae_ar'" in proc.stderr, proc.stderr


def test_a_prior_trained_on_the_base_folders_vqvae_ships_that_vqvae_unchanged(exported, tmp_path, lsc_main):
    """`--part prior --base-weights W` with W's vqvae.safetensors (no vqvae part in DIR): the export copies W's VQ-VAE
    byte for byte and records where it came from, with W's own training record of it."""
    proc = lsc_main("world", "train", "--out", str(tmp_path), "--part", "prior", "--base-weights", str(exported), "--minutes", "5",
                    "--prior-steps", "2", "--prior-examples", "8", "--eval-scenes", "2", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    weights = tmp_path / "weights"
    assert (weights / V.VQVAE_FILE).read_bytes() == (exported / V.VQVAE_FILE).read_bytes()
    record = json.loads((weights / V.META_FILE).read_text())["training"]
    assert record["vqvae"]["from"] == "base weights" and record["vqvae"]["step"] == 2
    assert record["vqvae"]["file_sha256"] == M.file_sha256(exported / V.VQVAE_FILE)
