"""Four bugs a researcher with the real weights would hit, each reproduced on tiny random models:
BLIP captions decoded with spaces around apostrophes, a full CLIP checkpoint as Bob's text encoder,
.bin-only checkpoints on torch < 2.6 blamed on missing weights, and half-precision word attention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hf_tiny import clip_tokenizer, hf_options  # noqa: F401  (session fixture)
from lsc.errors import ModelUnavailableError


# ---- 1. "man's", not "man ' s" --------------------------------------------------------------------
def test_captions_decode_apostrophes_as_bert_did(hf_options, monkeypatch) -> None:
    """transformers 5 stopped cleaning up BERT's spaces by default: "man ' s" would be three words sent."""
    from transformers import AutoTokenizer, BlipForConditionalGeneration

    from lsc.backends.hf.captioner import BlipCaptioner

    folder = hf_options["captioner"]
    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_tokens(["'"])
    model = BlipForConditionalGeneration.from_pretrained(folder).eval()
    cap = BlipCaptioner(model, tok, folder)
    ids = [tok.convert_tokens_to_ids(t) for t in ["[DEC]", "a", "man", "'", "s", "dog", "[SEP]"]]
    monkeypatch.setattr(model, "generate", lambda **_: torch.tensor([ids]))
    assert cap.caption([np.zeros((32, 32, 3), np.float32)]) == ["a man's dog"]


# ---- 2. a full CLIP checkpoint as Bob's text encoder ---------------------------------------------
@pytest.fixture(scope="module")
def full_clip(tmp_path_factory) -> Path:
    """A tiny full CLIPModel (text and vision towers), saved as openai/clip-vit-large-patch14 is."""
    from transformers import CLIPConfig, CLIPModel

    tok = clip_tokenizer()
    text = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                vocab_size=len(tok), max_position_embeddings=77)
    vision = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32,
                  patch_size=8)
    torch.manual_seed(3)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    path = tmp_path_factory.mktemp("clip_full") / "clip"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_full_clip_checkpoint_loads_only_its_text_model(hf_options, full_clip) -> None:
    """llm_att.py loads CLIPTextModel from openai/clip-vit-large-patch14; AutoModel would build the full
    CLIP model, whose forward asks for pixel values, and every attention scheme failed."""
    from transformers import CLIPTextModel

    from lsc.backends.hf import load_hf_backend

    backend = load_hf_backend(**{**hf_options, "bob_text_encoder": str(full_clip), "alice_text_encoder": "none"})
    words = "a dog runs on the grass".split()
    got = backend.bob_text_encoder.word_attention(words, "research")
    # Independently: CLIPTextModel as llm_att.py loads it, sum over layers of head 2, no start/end tokens.
    text = CLIPTextModel.from_pretrained(full_clip, attn_implementation="eager").eval()
    tok = backend.bob_text_encoder.tokenizer
    ids = torch.tensor([tok.convert_tokens_to_ids(tok.tokenize(" ".join(words)))])
    with torch.no_grad():
        att = text(ids, output_attentions=True).attentions
    want = sum(a[0, 2] for a in att).numpy()
    assert got.shape == (6, 6)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


# ---- 3. .bin-only checkpoints on torch < 2.6 ---------------------------------------------------------
def test_bin_only_checkpoint_on_old_torch_says_why(tmp_path, monkeypatch) -> None:
    """transformers refuses torch.load below torch 2.6 (CVE-2025-32434); the message must say so, not send
    the user to download weights that are there."""
    import transformers.modeling_utils as modeling_utils
    import transformers.utils.import_utils as import_utils
    from transformers import BertConfig, BertModel

    from lsc.backends.hf.hub import bin_only_blocked, load_pretrained

    folder = tmp_path / "bert_bin"
    folder.mkdir()
    config = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    config.save_pretrained(folder)
    torch.save(BertModel(config).state_dict(), folder / "pytorch_model.bin")  # as the older BLIP uploads
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "pytorch_model.bin"]
    real_check = modeling_utils.check_torch_load_is_safe

    def as_on_torch_25() -> None:  # transformers' own check, with torch reported as 2.5.1
        with monkeypatch.context() as m:
            m.setattr(import_utils, "is_torch_greater_or_equal", lambda *a, **k: False)
            real_check()

    monkeypatch.setattr(modeling_utils, "check_torch_load_is_safe", as_on_torch_25)
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(ModelUnavailableError) as info:
        load_pretrained(BertModel.from_pretrained, str(folder), "captioner", "captioner")
    msg = str(info.value)
    assert "\n" not in msg and "only PyTorch .bin weights" in msg and "torch 2.5.1" in msg and "2.6" in msg
    assert "download them" not in msg
    assert bin_only_blocked(str(folder))  # what `lsc doctor` reports before a run
    monkeypatch.undo()
    BertModel.from_pretrained(folder).save_pretrained(folder)  # add model.safetensors: then it loads
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    assert not bin_only_blocked(str(folder))


# ---- 4. word attention in float32, as the research code ran it -------------------------------------
def test_attention_runs_in_float32_when_the_pipeline_is_half(hf_options) -> None:
    """On a GPU the pipeline's CLIP text encoder is float16; llm_att.py ran CLIPTextModel in float32. The
    attention must be the float32 computation of the same weights (float16 differs by ~1e-3: near-ties flip)."""
    from lsc.backends.hf import load_hf_backend

    b16 = load_hf_backend(**{**hf_options, "dtype": "float16"})
    pipe_encoder = b16.generator.pipe.text_encoder
    assert next(pipe_encoder.parameters()).dtype == torch.float16  # the pipeline keeps its half encoder
    words = "two dogs plays with a red ball on the grass".split()
    got = b16.bob_text_encoder.word_attention(words, "research")
    tok = b16.bob_text_encoder.tokenizer
    ids = torch.tensor([tok.convert_tokens_to_ids(tok.tokenize(" ".join(words)))])
    import copy

    ref = copy.deepcopy(pipe_encoder).float()
    ref.set_attn_implementation("eager")
    with torch.no_grad():
        att = ref(ids, output_attentions=True).attentions
    want = sum(a[0, 2] for a in att).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    half = load_hf_backend(**{**hf_options, "dtype": "float16", "attention_dtype": "auto", "caption_dtype": "float32"})
    # _clipTX: CLIP Interrogator 0.5.4 ran BLIP's beam search in float32 (paper_cliptx.yaml's caption_dtype).
    assert next(half.captioner.model.parameters()).dtype == torch.float32 and half.captioner.dtype == torch.float32
    assert np.abs(half.bob_text_encoder.word_attention(words, "research") - want).max() > 1e-5
