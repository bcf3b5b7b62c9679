"""The settings configs/paper_research.yaml uses to reproduce the research code, each checked against a
transcription of what the research code does (RX_T2I.py's pipeline call, lpips_score.py's resize), on
tiny random models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from hf_tiny import build_sd, hf_options, random_lpips_state  # noqa: F401  (session fixture)


@pytest.fixture(scope="module")
def sd_with_checker(tmp_path_factory) -> Path:
    """The tiny SD pipeline with a tiny safety checker and its feature extractor (as SD 1.5 ships)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    folder = tmp_path_factory.mktemp("sd_checker")
    pipe = StableDiffusionPipeline.from_pretrained(build_sd(folder))
    torch.manual_seed(0)
    tower = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1)
    checker = StableDiffusionSafetyChecker(CLIPConfig(
        text_config=dict(tower, vocab_size=99), vision_config=dict(tower, image_size=32, patch_size=8),
        projection_dim=16)).eval()
    checker.concept_embeds_weights.data.fill_(-10.0)  # every image flagged: the checker's effect is visible
    checker.special_care_embeds_weights.data.fill_(-10.0)
    extractor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pipe.register_modules(safety_checker=checker, feature_extractor=extractor)
    pipe.register_to_config(requires_safety_checker=True)
    pipe.save_pretrained(folder / "sd_checker")
    return folder / "sd_checker"


def test_safety_checker_as_the_research_code(hf_options, sd_with_checker) -> None:
    """RX_T2I.py loads SD 1.5 with its safety checker: flagged images come back black. lsc turns it off
    unless `safety_checker: true`."""
    from lsc.backends.hf import load_hf_backend

    base = {**hf_options, "generator": str(sd_with_checker), "itm_model": "none", "alice_text_encoder": "none"}
    on = load_hf_backend(**base, safety_checker=True)
    assert on.generator.pipe.safety_checker is not None
    assert np.all(on.generator.generate(["a dog on the grass"], 0) == 0.0)  # flagged -> black
    off = load_hf_backend(**base)
    assert off.generator.pipe.safety_checker is None
    assert off.generator.generate(["a dog on the grass"], 0).std() > 0.01


def test_pipeline_noise_is_rx_t2i_s_generator(hf_backend_options_fp32) -> None:
    """`noise: pipeline` with seed 100 is RX_T2I.py's `pipe(prompt, generator=torch.Generator(device)
    .manual_seed(100))` (there on CUDA, here on the CPU): the same initial latents, the same image."""
    from diffusers.utils.torch_utils import randn_tensor

    from lsc.backends.hf import load_hf_backend

    backend = load_hf_backend(**hf_backend_options_fp32, noise="pipeline")
    gen = backend.generator
    pipe = gen.pipe
    want_latents = randn_tensor(gen._latent_shape(), generator=torch.Generator("cpu").manual_seed(100),
                                device=torch.device("cpu"), dtype=gen.dtype)
    assert torch.equal(gen.initial_latents(100), want_latents)
    prompt = "a white dog runs on the grass"
    # Transcription of RX_T2I.Receiver_T2I (steps and size of the tiny model, numpy output).
    generator = torch.Generator("cpu").manual_seed(100)
    want = pipe(prompt, generator=generator, num_inference_steps=gen.num_inference_steps, height=gen.height,
                width=gen.width, guidance_scale=7.5, output_type="np").images[0]
    got = gen.generate(["a dog", prompt], 100)[1]  # batched with another prompt: still the same image
    np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.fixture
def hf_backend_options_fp32(hf_options) -> dict:
    return {**hf_options, "itm_model": "none", "alice_text_encoder": "none", "guidance_scale": 7.5}


def test_lpips_resize_without_antialias_as_lpips_score(hf_options) -> None:
    """lpips_score.py: Normalize then torchvision Resize((256, 256)) on tensors, which before torchvision
    0.17 did not antialias; `lpips_antialias: false` is that resize."""
    from lsc.backends.hf.lpips import LpipsPerceptual, load_lpips

    backbone, linear = random_lpips_state("alex", seed=1)
    model = load_lpips("alex", backbone, linear).eval()
    rng = np.random.default_rng(0)
    ref = rng.random((48, 48, 3), dtype=np.float32)
    gen = rng.random((2, 64, 64, 3), dtype=np.float32)
    research = LpipsPerceptual(model, size=32, antialias=False)
    got = research.distances(research.reference(ref), gen)

    def transcribe(img: np.ndarray) -> torch.Tensor:  # ToTensor-like, Normalize(0.5, 0.5), Resize bilinear
        t = (torch.from_numpy(img).permute(2, 0, 1) - 0.5) / 0.5
        return F.interpolate(t[None], size=(32, 32), mode="bilinear", align_corners=False, antialias=False)

    with torch.no_grad():
        want = [model(transcribe(ref), transcribe(g)).item() for g in gen]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    smooth = LpipsPerceptual(model, size=32)  # lsc's default: antialiased
    assert np.abs(smooth.distances(smooth.reference(ref), gen) - got).max() > 1e-3


def test_research_preprocess_is_main_flicker_s_jpeg_roundtrip(tmp_path) -> None:
    """`images.preprocess: research`: main_flicker.py's FlickrDataset (Resize((256, 256)) on the PIL image,
    ToTensor), ToPILImage and img.save('/content/img.jpg'), read back with Image.open(...).convert('RGB')."""
    from PIL import Image

    from lsc.config import FolderImages
    from lsc.runner.images import folder_images

    rng = np.random.default_rng(0)
    pixels = (rng.random((75, 100, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    spec = FolderImages(source="folder", path=str(tmp_path), preprocess="research")
    got = folder_images(spec)[0].load()
    # Transcription (torchvision's Resize on a PIL image is Pillow's bilinear resize; ToTensor/ToPILImage
    # are exact on 8-bit values, checked for all 256 of them).
    assert all(int(np.float32(np.float32(k) / np.float32(255)) * np.float32(255)) == k for k in range(256))
    small = Image.open(tmp_path / "photo.png").convert("RGB").resize((256, 256), Image.BILINEAR)
    (tmp_path / "content").mkdir()
    small.save(tmp_path / "content" / "img.jpg")
    want = np.asarray(Image.open(tmp_path / "content" / "img.jpg").convert("RGB"), dtype=np.float32) / 255.0
    assert got.shape == (256, 256, 3)
    np.testing.assert_array_equal(got, want)
    plain = folder_images(FolderImages(source="folder", path=str(tmp_path), resize=256))[0].load()
    assert np.abs(plain - want).max() > 0.05  # bicubic without the JPEG round trip: visibly different


def test_paper_research_configs_name_every_research_setting() -> None:
    """paper_research.yaml (and its _clipTX sibling) set what the research code did; paper.yaml stays prose."""
    from lsc.config import load_config

    repo = Path(__file__).resolve().parents[1] / "configs"
    prose = load_config(repo / "paper.yaml")
    for name, captioner in (("paper_research.yaml", "base"), ("paper_research_cliptx.yaml", "large")):
        cfg = load_config(repo / name)
        opts = cfg.backend_options
        assert captioner in opts["captioner"]
        assert (opts["lpips_size"], opts["lpips_antialias"], opts["safety_checker"], opts["noise"]) == (256, False, True, "pipeline")
        assert opts["alice_text_encoder"] == "bert-base-uncased" and opts["attention_dtype"] == "float32"
        assert (cfg.seed, cfg.images.preprocess, cfg.images.resize) == (100, "research", 256)
        assert (cfg.skd.engine, cfg.skd.prompt, cfg.skd.model, cfg.skd.check_meaning) == ("openai", "research", "gpt-3.5-turbo", False)
        by_label = {s.label: s for s in cfg.schemes}
        for label in ("most_attentive", "least_attentive", "heads_attentive"):
            assert by_label[label].options["attention_variant"] == "research"
        for label in ("attention_contribution", "attention_combination"):
            assert by_label[label].options == {"pad_to": 50, "signed": True}
        for label in ("heads", "ssc_only_heads", "heads_attentive", "heads_random", "heads_skd"):
            assert by_label[label].options["head_style"] == "ud"
        assert [s.name for s in cfg.schemes] == [s.name for s in prose.schemes]  # the same 15 schemes
    assert load_config(repo / "paper_research_cliptx.yaml").backend_options["caption_dtype"] == "float32"
    assert prose.seed == 0 and "noise" not in prose.backend_options and prose.images.preprocess == "default"
