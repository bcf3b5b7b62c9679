"""Loading options of the hf backend on the tiny models: fp16 weight variants (what paper.yaml's download
fetches) with fallback, LCM presets, memory options, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hf_tiny import hf_backend, hf_options  # noqa: F401  (session fixtures)
from lsc.errors import ConfigError, ModelUnavailableError


@pytest.fixture(scope="module")
def fp16_only_sd(hf_options, tmp_path_factory) -> Path:
    """The tiny pipeline saved as fp16 variant files only (`*fp16.safetensors`, as paper.yaml downloads SD)."""
    from diffusers import StableDiffusionPipeline

    out = tmp_path_factory.mktemp("sd_fp16") / "sd"
    pipe = StableDiffusionPipeline.from_pretrained(hf_options["generator"], safety_checker=None,
                                                   requires_safety_checker=False).to(torch.float16)
    pipe.save_pretrained(out, variant="fp16")
    assert not list(out.glob("unet/diffusion_pytorch_model.safetensors"))
    assert list(out.glob("unet/diffusion_pytorch_model.fp16.safetensors"))
    return out


def test_fp16_variant_loads_in_float16_and_fails_in_one_line_without_it(hf_options, fp16_only_sd) -> None:
    from lsc.backends.hf import load_hf_backend

    opts = {**hf_options, "generator": str(fp16_only_sd), "dtype": "float16"}
    b = load_hf_backend(**opts)  # variant auto: fp16 tried first
    assert b.generator.pipe.unet.dtype == torch.float16
    assert np.isfinite(b.generator.generate(["a dog"], seed=0)).all()
    with pytest.raises(ModelUnavailableError) as exc:
        load_hf_backend(**{**opts, "variant": "none"})
    assert "\n" not in str(exc.value) and "generator pipeline" in str(exc.value)


def test_auto_variant_falls_back_to_full_weights(hf_options) -> None:
    from lsc.backends.hf import load_hf_backend
    from lsc.backends.hf.backend import weight_variants

    assert weight_variants("auto", torch.float16) == ["fp16", None]
    assert weight_variants("auto", torch.float32) == [None] and weight_variants("none", torch.float16) == [None]
    b = load_hf_backend(**{**hf_options, "dtype": "float16"})  # tiny SD has no fp16 files: full ones, cast
    assert b.generator.pipe.unet.dtype == torch.float16
    with pytest.raises(ModelUnavailableError, match="generator pipeline"):
        load_hf_backend(**{**hf_options, "variant": "fp16"})


def test_lcm_presets(hf_options) -> None:
    from lsc.backends.hf import load_hf_backend

    base = {k: v for k, v in hf_options.items() if k not in ("num_inference_steps",)}
    lcm = load_hf_backend(**{**base, "scheduler": "lcm"}).generator
    assert (lcm.num_inference_steps, lcm.guidance_scale) == (4, 1.0)
    given = load_hf_backend(**{**base, "scheduler": "lcm", "num_inference_steps": 2, "guidance_scale": 1.5}).generator
    assert (given.num_inference_steps, given.guidance_scale) == (2, 1.5)
    plain = load_hf_backend(**{**base, "scheduler": "ddim"}).generator
    assert (plain.num_inference_steps, plain.guidance_scale) == (50, 7.5)


def test_slicing_keeps_images_and_offload_needs_cuda(hf_options, hf_backend) -> None:
    from lsc.backends.hf import load_hf_backend

    sliced = load_hf_backend(**{**hf_options, "attention_slicing": True, "vae_slicing": True}).generator
    want = hf_backend.generator.generate(["a dog", "a red ball"], seed=2)
    np.testing.assert_allclose(sliced.generate(["a dog", "a red ball"], seed=2), want, rtol=0, atol=1e-5)
    assert sliced.cross_attention(["a", "dog"], seed=2).shape == (2, 16, 16)
    with pytest.raises((ConfigError, ModelUnavailableError), match="cpu_offload"):
        load_hf_backend(**{**hf_options, "cpu_offload": "model"})
    with pytest.raises(ConfigError, match="cpu_offload"):
        load_hf_backend(**{**hf_options, "cpu_offload": "always"})


def test_corrupt_weight_file_is_one_line(hf_options, tmp_path) -> None:
    import shutil

    from lsc.backends.hf import load_hf_backend

    bad = tmp_path / "blip"
    shutil.copytree(hf_options["captioner"], bad)
    for f in bad.glob("*.safetensors"):
        f.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelUnavailableError) as exc:
        load_hf_backend(**{**hf_options, "captioner": str(bad)})
    assert "\n" not in str(exc.value) and "captioner" in str(exc.value)
