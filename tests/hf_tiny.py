"""Builders of tiny randomly initialised hf models saved to folders (as transformers/diffusers test
themselves): a tiny BLIP captioner and ITM model with a BERT WordPiece tokenizer, a tiny Stable Diffusion
pipeline with a CLIP BPE tokenizer written here, and random LPIPS backbone / linear weight files.

Nothing is downloaded. `conftest`-style session fixtures live in the test modules that import this.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

WORDS = (
    "a an the two dog dogs cat man woman boy girl red blue green white black brown ball grass field street "
    "water beach horse bike riding runs sits plays jumps with on in of and at near is are small big park"
).split()
LETTERS = list(string.ascii_lowercase)


def clip_tokenizer(model_max_length: int = 77):
    """A CLIP BPE tokenizer whose merges spell every word of WORDS; other words split into letters."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in LETTERS:
        for tok in (ch, ch + "</w>"):
            vocab.setdefault(tok, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        cur = symbols[0]
        for nxt in symbols[1:]:
            merge = (cur, nxt)
            if merge not in merges:
                merges.append(merge)
            cur = cur + nxt
            vocab.setdefault(cur, len(vocab))
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
    return tok


def bert_tokenizer():
    """A BERT WordPiece tokenizer with WORDS, letters and ##letters, and BLIP's [DEC] and [ENC] tokens."""
    from transformers import BertTokenizer

    vocab: dict[str, int] = {}
    for tok in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"] + WORDS + LETTERS + ["##" + c for c in LETTERS]:
        vocab.setdefault(tok, len(vocab))
    tok = BertTokenizer(vocab=vocab, model_max_length=64)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    return tok


def build_blip(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Tiny BLIP captioning and ITM models sharing one config and tokenizer; returns their folders."""
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipForImageTextRetrieval

    tok = bert_tokenizer()
    v = len(tok)
    text = dict(
        vocab_size=v, hidden_size=32, encoder_hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, bos_token_id=tok.convert_tokens_to_ids("[DEC]"),
        sep_token_id=tok.sep_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id,
    )
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=16, image_text_hidden_size=16)
    out = []
    for name, cls in (("blip_caption", BlipForConditionalGeneration), ("blip_itm", BlipForImageTextRetrieval)):
        torch.manual_seed(seed)
        model = cls(config).eval()
        path = folder / name
        model.save_pretrained(path)
        tok.save_pretrained(path)
        out.append(path)
    return out[0], out[1]


def build_bert(folder: Path, seed: int = 0) -> Path:
    """Tiny BERT encoder (Alice's language model) with the WordPiece tokenizer."""
    from transformers import BertConfig, BertModel

    tok = bert_tokenizer()
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=37, max_position_embeddings=64)).eval()
    path = folder / "bert"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_sd(folder: Path, seed: int = 0) -> Path:
    """Tiny Stable Diffusion pipeline (UNet, VAE, CLIP text encoder, DDIM, no safety checker)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=2, attention_head_dim=4,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4, norm_num_groups=2)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, hidden_size=32,
        intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tok),
        max_position_embeddings=77,
    ))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, image_encoder=None,
                                   requires_safety_checker=False)
    path = folder / "sd"
    pipe.save_pretrained(path)
    return path


def build_amused(folder: Path, seed: int = 0) -> Path:
    """Tiny aMUSEd pipeline in diffusers' dummy-component style: a VQGAN of 32 codes (2x downsampling), a
    UVit2D masked-token transformer (downsampling blocks + one transformer layer, all with cross-attention
    to the text), a CLIP text encoder with projection and the CLIP BPE tokenizer written here."""
    from diffusers import AmusedPipeline, AmusedScheduler, UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tok = clip_tokenizer()
    torch.manual_seed(seed)
    transformer = UVit2DModel(
        hidden_size=16, use_bias=False, hidden_dropout=0.0, cond_embed_dim=16, micro_cond_encode_dim=2,
        micro_cond_embed_dim=10, encoder_hidden_size=32, vocab_size=33, codebook_size=32, in_channels=8,
        block_out_channels=16, num_res_blocks=1, downsample=True, upsample=True, block_num_heads=2, num_hidden_layers=1,
        num_attention_heads=2, attention_dropout=0.0, intermediate_size=16, layer_norm_eps=1e-06,
        ln_elementwise_affine=True, sample_size=16,
    )
    torch.manual_seed(seed)
    vqvae = VQModel(
        act_fn="silu", block_out_channels=[8, 8], down_block_types=["DownEncoderBlock2D"] * 2, in_channels=3,
        latent_channels=8, layers_per_block=1, norm_num_groups=8, num_vq_embeddings=32, out_channels=3, sample_size=32,
        up_block_types=["UpDecoderBlock2D"] * 2, mid_block_add_attention=False, lookup_from_codebook=True,
        force_upcast=False,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, hidden_size=32,
        intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tok),
        max_position_embeddings=77, projection_dim=16,
    ))
    pipe = AmusedPipeline(vqvae=vqvae, tokenizer=tok, text_encoder=text_encoder, transformer=transformer,
                          scheduler=AmusedScheduler(mask_token_id=32))
    path = folder / "amused"
    pipe.save_pretrained(path)
    return path


def random_lpips_state(net: str, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Random torchvision-format backbone and lpips-format linear weights (non-negative, as trained ones)."""
    from lsc.backends.hf.lpips import CHANNELS, Trunk

    torch.manual_seed(seed)
    trunk = Trunk(net)
    backbone = {f"features.{k}": v.clone() for k, v in trunk.features.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(2, 2)  # torchvision files also hold the classifier
    linear = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) * 0.1 for k, c in enumerate(CHANNELS[net])}
    return backbone, linear


def build_lpips_files(folder: Path, net: str = "alex", seed: int = 0) -> tuple[Path, Path]:
    """Random backbone (torchvision format) and linear (lpips format) weight files."""
    backbone, linear = random_lpips_state(net, seed)
    folder.mkdir(parents=True, exist_ok=True)
    b = folder / f"{net}_backbone.pth"
    lin = folder / f"{net}_linear.pth"
    torch.save(backbone, b)
    torch.save(linear, lin)
    return b, lin


def test_device() -> str:
    """The torch device the hf tests run the tiny models on: $LSC_TEST_DEVICE (benchmarks/bench_gpu.py sets
    it to cuda on a GPU machine), else the CPU."""
    import os

    return os.environ.get("LSC_TEST_DEVICE", "").strip() or "cpu"


test_device.__test__ = False  # a helper, not a test


def build_all(folder: Path) -> dict[str, str]:
    """Every tiny model; returns the hf backend options pointing at them."""
    folder = Path(folder)
    caption, itm = build_blip(folder)
    bert = build_bert(folder)
    sd = build_sd(folder)
    backbone, linear = build_lpips_files(folder / "lpips", "alex")
    return {
        "captioner": str(caption), "itm_model": str(itm), "alice_text_encoder": str(bert), "generator": str(sd),
        "lpips_backbone": str(backbone), "lpips_linear": str(linear), "num_inference_steps": 2, "height": 32,
        "width": 32, "itm_block": 0, "device": test_device(), "dtype": "float32", "caption_max_new_tokens": 6,
        "caption_num_beams": 1,
    }


_BUILT: dict[str, dict] = {}
_BACKENDS: dict[str, object] = {}


def tiny_options(base: Path) -> dict:
    """Build the tiny models once per test session under `base` (shared by every hf test module)."""
    key = str(base)
    # Tiny models on a shared 2-core machine: one intra-op thread avoids spin contention (measured 20-50x faster).
    torch.set_num_threads(1)
    if key not in _BUILT:
        folder = Path(base) / "hf_tiny_models"
        folder.mkdir(parents=True, exist_ok=True)
        _BUILT[key] = build_all(folder)
    return dict(_BUILT[key])


def tiny_backend(base: Path):
    """The hf backend loaded once per session on the tiny models."""
    key = str(base)
    if key not in _BACKENDS:
        from lsc.backends.hf import load_hf_backend

        _BACKENDS[key] = load_hf_backend(**tiny_options(base))
    return _BACKENDS[key]


try:
    import pytest

    @pytest.fixture(scope="session")
    def hf_options(tmp_path_factory) -> dict:
        """Backend options pointing at the tiny models (built once per session)."""
        return tiny_options(tmp_path_factory.getbasetemp())

    @pytest.fixture(scope="session")
    def hf_backend(tmp_path_factory):
        """The hf backend on the tiny models (loaded once per session)."""
        return tiny_backend(tmp_path_factory.getbasetemp())
except ImportError:  # used outside pytest (benchmarks, scripts)
    pass
