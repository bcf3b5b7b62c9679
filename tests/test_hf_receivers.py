"""Bob's receivers on the hf backend (`backend_options.receiver`), on tiny random models saved to folders and
loaded back: `lcm` (LCM scheduler, 4 steps, guidance 1 unless given) and `amused` (VQGAN + masked-token
transformer): images deterministic per (prompt, seed) and independent of batch-mates, equal to the
aMUSEd pipeline's own image for one prompt, cross-attention maps, one-line errors, and a study end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_tiny import build_amused, hf_backend, hf_options  # noqa: F401  (session fixtures)
from lsc.errors import ConfigError, ModelUnavailableError
from lsc.interfaces import CAP_BOB_ATTENTION, CAP_BOB_CROSS_ATTENTION, Generator

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def amused_folder(tmp_path_factory) -> Path:
    return build_amused(tmp_path_factory.getbasetemp() / "hf_tiny_models")


@pytest.fixture(scope="session")
def amused_options(hf_options, amused_folder) -> dict:
    """The tiny models with Bob as the tiny aMUSEd pipeline at its own size (32 px: 16x16 codes)."""
    opts = {k: v for k, v in hf_options.items() if k not in ("height", "width", "num_inference_steps")}
    return {**opts, "receiver": "amused", "generator": str(amused_folder), "num_inference_steps": 3}


@pytest.fixture(scope="session")
def amused_backend(amused_options):
    from lsc.backends.hf import load_hf_backend

    return load_hf_backend(**amused_options)


def test_amused_receiver_loads_with_its_defaults(amused_backend, amused_options) -> None:
    from lsc.backends.hf import load_hf_backend
    from lsc.backends.hf.amused import AmusedGenerator

    gen = amused_backend.generator
    assert isinstance(gen, AmusedGenerator) and isinstance(gen, Generator)
    assert type(gen.pipe).__name__ == "AmusedPipeline" and type(gen.pipe.scheduler).__name__ == "AmusedScheduler"
    assert (gen.height, gen.width, gen.token_grid()) == (32, 32, (16, 16))  # height unset: the model's own size
    assert {CAP_BOB_ATTENTION, CAP_BOB_CROSS_ATTENTION} <= amused_backend.capabilities
    assert {"dog", "grass"} <= amused_backend.bob_vocabulary
    defaults = {k: v for k, v in amused_options.items() if k != "num_inference_steps"}
    other = load_hf_backend(**{**defaults, "height": 48, "width": 64}).generator
    assert (other.num_inference_steps, other.guidance_scale) == (12, 10.0)  # the aMUSEd pipeline's defaults
    assert other.generate(["a dog"], seed=0).shape == (1, 48, 64, 3)


def test_amused_images_depend_only_on_prompt_and_seed(amused_backend) -> None:
    gen = amused_backend.generator
    prompts = ["a dog", "a red ball on grass", ""]
    batch = gen.generate(prompts, seed=7)
    assert batch.shape == (3, 32, 32, 3) and batch.dtype == np.float32
    assert batch.min() >= 0 and batch.max() <= 1
    np.testing.assert_array_equal(gen.generate(prompts, seed=7), batch)  # deterministic
    alone = gen.generate(["a red ball on grass"], seed=7)
    np.testing.assert_allclose(alone[0], batch[1], atol=1e-4)  # batch-mates do not matter
    assert np.abs(batch[0] - batch[1]).max() > 1e-2  # prompts matter
    assert np.abs(gen.generate(["a dog"], seed=8)[0] - batch[0]).max() > 1e-2  # seeds matter
    old = gen.batch_size
    gen.batch_size = 2
    try:
        calls = gen.calls
        np.testing.assert_allclose(gen.generate(prompts, seed=7), batch, atol=1e-4)
        assert gen.calls - calls == 2
    finally:
        gen.batch_size = old
    assert gen.generate([], seed=0).shape == (0, 32, 32, 3)


def test_amused_one_prompt_equals_the_pipeline(amused_backend) -> None:
    """lsc's sampling loop (batched transformer, per-prompt scheduler steps) gives the aMUSEd pipeline's
    own image for a prompt generated alone with a CPU generator seeded by the seed."""
    gen = amused_backend.generator
    ours = gen.generate(["two cats on a bike"], seed=3)
    with torch.no_grad():
        theirs = gen.pipe(["two cats on a bike"], num_inference_steps=gen.num_inference_steps,
                          guidance_scale=gen.guidance_scale, height=gen.height, width=gen.width,
                          generator=torch.Generator("cpu").manual_seed(3), output_type="np").images
    np.testing.assert_array_equal(ours[0], np.asarray(theirs[0], dtype=np.float32))
    # The pipeline on a batch draws all its randomness from one generator: its images depend on batch-mates,
    # which is why lsc does not call it on batches.
    with torch.no_grad():
        pair = gen.pipe(["a dog", "two cats on a bike"], num_inference_steps=gen.num_inference_steps,
                        guidance_scale=gen.guidance_scale, height=gen.height, width=gen.width,
                        generator=torch.Generator("cpu").manual_seed(3), output_type="np").images
    assert np.abs(pair[1] - ours[0]).max() > 1e-2


def test_amused_cross_attention_maps(amused_backend) -> None:
    from lsc.backends.hf.generator import capture_word_maps

    gen = amused_backend.generator
    transformer = gen.pipe.transformer
    procs_before = {k: type(v) for k, v in transformer.attn_processors.items()}
    assert any(k.startswith("transformer_layers") and k.endswith("attn2.processor") for k in procs_before)
    before = gen.generate(["a dog runs"], seed=1)
    maps = gen.cross_attention(["a", "zebra", "runs"], seed=1)
    assert maps.shape == (3, 16, 16) and maps.dtype == np.float32
    assert np.all(maps >= 0) and np.all(maps.sum((1, 2)) > 0)
    assert not np.allclose(maps[0], maps[2])
    assert {k: type(v) for k, v in transformer.attn_processors.items()} == procs_before
    np.testing.assert_array_equal(gen.generate(["a dog runs"], seed=1), before)
    np.testing.assert_array_equal(gen.cross_attention(["a", "zebra", "runs"], seed=1), maps)
    # The capturing processor computes what the default ones do: the image made while capturing is the same.
    seen: list[np.ndarray] = []

    def run(prompt: str) -> None:
        with torch.no_grad():
            seen.append(gen._sample([prompt], 1))

    capture_word_maps(gen.pipe.tokenizer, gen.pipe.text_encoder, transformer, lambda _n: True, run,
                      ["a", "dog", "runs"], gen.token_grid(), (4, 4))
    np.testing.assert_allclose(seen[0], before, atol=1e-5)
    assert gen.cross_attention([], seed=0).shape == (0, 16, 16)


def test_lcm_receiver_sets_scheduler_steps_and_guidance(hf_options) -> None:
    from lsc.backends.hf import load_hf_backend
    from lsc.backends.hf.backend import LCM_LORA_SD15, SD15, HFBackendOptions, check_receiver

    base = {k: v for k, v in hf_options.items() if k != "num_inference_steps"}
    gen = load_hf_backend(**{**base, "receiver": "lcm"}).generator
    assert type(gen.pipe.scheduler).__name__ == "LCMScheduler"
    assert (gen.num_inference_steps, gen.guidance_scale) == (4, 1.0)
    batch = gen.generate(["a dog", "two cats on a bike", "a red ball"], seed=3)
    np.testing.assert_allclose(gen.generate(["two cats on a bike"], seed=3)[0], batch[1], atol=1e-5)
    assert np.abs(batch[0] - batch[2]).max() > 1e-4
    given = load_hf_backend(**{**base, "receiver": "lcm", "num_inference_steps": 2, "guidance_scale": 1.5}).generator
    assert (given.num_inference_steps, given.guidance_scale) == (2, 1.5)
    # SD 1.5 (the default generator) gets its LCM-LoRA; another generator or lcm_lora: none is left alone.
    assert check_receiver(HFBackendOptions(receiver="lcm")).lcm_lora == LCM_LORA_SD15
    assert check_receiver(HFBackendOptions(receiver="lcm", generator=SD15)).lcm_lora == LCM_LORA_SD15  # paper.yaml's
    assert check_receiver(HFBackendOptions(receiver="lcm", generator="x")).lcm_lora is None
    assert check_receiver(HFBackendOptions(receiver="lcm", lcm_lora="none")).lcm_lora == "none"
    assert check_receiver(HFBackendOptions()).generator == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert check_receiver(HFBackendOptions(receiver="amused")).generator == "amused/amused-256"


def test_receiver_errors_are_one_line(hf_options, amused_options, monkeypatch) -> None:
    from lsc.backends.hf import load_hf_backend

    cases = [
        ({**hf_options, "receiver": "vqgan"}, ConfigError, "receiver"),
        ({**hf_options, "receiver": "amused"}, ConfigError, "receiver amused needs an aMUSEd pipeline"),
        ({**amused_options, "receiver": "sd"}, ConfigError, "is an aMUSEd pipeline: set receiver=amused"),
        ({**amused_options, "scheduler": "ddim"}, ConfigError, "own masked-token scheduler"),
        ({**amused_options, "lcm_lora": "x"}, ConfigError, "lcm_lora is an adapter of Stable Diffusion"),
        ({**hf_options, "receiver": "lcm", "scheduler": "euler"}, ConfigError, "receiver lcm uses the LCM scheduler"),
    ]
    for opts, err, text in cases:
        with pytest.raises(err, match=text) as exc:
            load_hf_backend(**opts)
        assert "\n" not in str(exc.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    opts = {k: v for k, v in amused_options.items() if k != "generator"}
    with pytest.raises(ModelUnavailableError, match="huggingface-cli download amused/amused-256") as exc:
        load_hf_backend(**opts)
    assert "\n" not in str(exc.value)


def _study(tmp_path: Path, options: dict, schemes: list[str]) -> subprocess.CompletedProcess:
    """`lsc run` of a study config written here: 2 random images with captions, the given schemes."""
    import yaml
    from PIL import Image

    images = tmp_path / "Images"
    images.mkdir(parents=True)
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((40, 56, 3)) * 255).astype(np.uint8)).save(images / f"im{i}.jpg")
    captions = tmp_path / "captions.txt"
    captions.write_text("image,caption\nim0.jpg,a brown dog runs on the grass\nim1.jpg,a man riding a horse\n")
    config = {"backend": "hf", "backend_options": options, "schemes": schemes, "seed": 0, "threshold": 0.6,
              "caption_source": "alice",
              "images": {"source": "folder", "path": str(images), "captions": str(captions), "format": "flickr8k",
                         "limit": 2}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "lsc.cli", "run", str(path), "--out", str(tmp_path / "run"),
                           "--no-progress"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("receiver", ["amused", "lcm"])
def test_study_end_to_end_on_each_receiver(hf_options, amused_options, receiver: str, tmp_path: Path) -> None:
    """A study with two schemes (one needing Bob's cross-attention) runs to a report on the receiver."""
    options = dict(amused_options) if receiver == "amused" else {**hf_options, "receiver": "lcm"}
    proc = _study(tmp_path, options, ["nouns", "crossattention_match"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0].startswith("4 ok, 0 failed"), proc.stdout
    assert (tmp_path / "run" / "report" / "report.html").is_file()
    assert f"receiver: {receiver}" in (tmp_path / "run" / "config.resolved.yaml").read_text()


def test_unknown_receiver_in_a_study_exits_2_with_one_line(hf_options, tmp_path: Path) -> None:
    proc = _study(tmp_path, {**hf_options, "receiver": "pixelsnail"}, ["nouns", "random"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "receiver" in line and "pixelsnail" in line, proc.stderr[-800:]


def _close(a: np.ndarray, b: np.ndarray, rel: float = 1e-3) -> bool:
    return a.shape == b.shape and float(np.abs(a - b).max()) <= rel * max(float(np.abs(b).max()), 1e-12)


def test_amused_cross_attention_equals_independent_recomputation(amused_backend) -> None:
    """aMUSEd's maps recomputed from the default processors' inputs: forward hooks on every attention
    module called with text states (the transformer layers' attn2 and the resolution blocks' attn1 and
    attn2 alike); softmax(q k^T * scale) per head written out here, the conditional (second) half of the
    guidance batch, mean over heads, bilinear to the 16x16 code grid, mean over calls and steps."""
    from torch.nn import functional as F

    gen = amused_backend.generator
    words = ["a", "dog", "runs", "on", "grass"]
    seen: list[torch.Tensor] = []
    names: set[str] = set()

    def hook(name: str):
        def run(module, args, kwargs, _out) -> None:
            h = args[0] if args else kwargs["hidden_states"]
            enc = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
            if enc is None:
                return
            names.add(name)
            b, q_len, _ = h.shape
            heads = module.heads
            q = module.to_q(h).view(b, q_len, heads, -1).permute(0, 2, 1, 3)
            k = module.to_k(enc).view(b, enc.shape[1], heads, -1).permute(0, 2, 1, 3)
            probs = torch.softmax(q.float() @ k.float().transpose(-1, -2) * module.scale, dim=-1)
            side = int(round(q_len ** 0.5))
            maps = probs[-1].mean(0).T.reshape(1, -1, side, side)
            seen.append(F.interpolate(maps, size=(16, 16), mode="bilinear", align_corners=False)[0])
        return run

    handles = [m.register_forward_hook(hook(n), with_kwargs=True) for n, m in gen.pipe.transformer.named_modules()
               if type(m).__name__ == "Attention"]
    try:
        with torch.no_grad():
            gen._sample([" ".join(words)], seed=4)
    finally:
        for h in handles:
            h.remove()
    assert {"transformer_layers.0.attn2", "down_block.attention_blocks.0.attn1", "up_block.attention_blocks.0.attn2"} <= names
    tokens = torch.stack(seen).mean(0).clamp(min=0).numpy()  # (K, 16, 16); token 0 is <bos>
    expected = tokens[1 : 1 + len(words)]
    got = gen.cross_attention(words, seed=4)
    assert _close(got, expected, rel=1e-5)
    assert not _close(got, tokens[: len(words)]) and not _close(got, expected[::-1])


@pytest.mark.parametrize("name", ["random", "most_attentive", "lowest_lpips", "crossattention_match", "heads"])
def test_schemes_on_the_amused_receiver(amused_backend, name: str) -> None:
    """Schemes of each kind (Bob's text attention, Bob's images, Bob's cross-attention, the parser) on aMUSEd."""
    from lsc.protocol.loop import ImageContext, LoopSettings, transmit
    from lsc.schemes import check_capabilities, get_scheme

    check_capabilities(amused_backend, [name])
    image = np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)
    ctx = ImageContext(amused_backend, "img0", image, "a brown dog runs on the green grass", seed=0)
    result = transmit(ctx, get_scheme(name), LoopSettings(threshold=0.6))
    assert sorted(result.order) == list(range(len(result.words))) and len(result.steps) == len(result.words) + 1
    lp = np.array([s.lpips for s in result.steps])
    assert np.all(np.isfinite(lp)) and np.all(lp >= 0)
    assert ctx.image_for(result.steps[-1].image_key).shape == (32, 32, 3)


def test_amused_in_float16(amused_options) -> None:
    """float16 weights (as on a GPU): finite images in [0, 1], batch-independent, finite maps."""
    from lsc.backends.hf import load_hf_backend

    gen = load_hf_backend(**{**amused_options, "dtype": "float16"}).generator
    assert gen.pipe.transformer.dtype == torch.float16 and gen.pipe.vqvae.dtype == torch.float16
    batch = gen.generate(["a dog", "a cat runs"], seed=1)
    assert batch.dtype == np.float32 and np.isfinite(batch).all() and batch.min() >= 0 and batch.max() <= 1
    np.testing.assert_allclose(gen.generate(["a cat runs"], seed=1)[0], batch[1], atol=1e-3)
    maps = gen.cross_attention(["a", "dog"], seed=1)
    assert maps.shape == (2, 16, 16) and np.isfinite(maps).all() and np.all(maps.sum((1, 2)) > 0)


def test_amused_with_steps_is_a_cheaper_view(amused_backend) -> None:
    """lowest_lpips' proxy_steps: fewer unmasking steps, the same pipeline, the full generator untouched."""
    gen = amused_backend.generator
    view = gen.with_steps(1)
    assert view.pipe is gen.pipe and view.num_inference_steps == 1 != gen.num_inference_steps
    full = gen.generate(["a dog"], seed=3)
    rough = view.generate(["a dog"], seed=3)
    assert view.calls == 1 and rough.shape == full.shape
    np.testing.assert_allclose(gen.generate(["a dog"], seed=3), full, atol=1e-6)
    with pytest.raises(ConfigError, match="steps"):
        gen.with_steps(0)
