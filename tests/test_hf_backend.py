"""The hf backend on tiny random models loaded back from folders with from_pretrained: captions,
Grad-CAM grounding, word attention, batched generation independent of batch-mates, DAAM-style
cross-attention maps, capabilities, and one-line errors for missing weights or bad options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hf_tiny import hf_backend, hf_options  # noqa: F401  (session fixtures)
from lsc.errors import ConfigError, ModelUnavailableError
from lsc.interfaces import (
    CAP_ALICE_ATTENTION,
    CAP_ALICE_GROUNDING,
    CAP_BOB_ATTENTION,
    CAP_BOB_CROSS_ATTENTION,
    CAP_GENERATOR,
    CAP_PERCEPTUAL,
    Captioner,
    Generator,
    Perceptual,
    TextEncoder,
)

WORDS = ["a", "dog", "runs", "on", "the", "grass"]  # every word one token in both tiny vocabularies


def _image(seed: int = 0, h: int = 40, w: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def test_capabilities_and_interfaces(hf_backend) -> None:
    assert hf_backend.name == "hf"
    assert hf_backend.capabilities == {CAP_GENERATOR, CAP_PERCEPTUAL, CAP_BOB_ATTENTION, CAP_ALICE_ATTENTION,
                                       CAP_ALICE_GROUNDING, CAP_BOB_CROSS_ATTENTION}
    assert isinstance(hf_backend.captioner, Captioner) and isinstance(hf_backend.generator, Generator)
    assert isinstance(hf_backend.perceptual, Perceptual) and isinstance(hf_backend.bob_text_encoder, TextEncoder)
    assert {"dog", "grass", "brown"} <= hf_backend.bob_vocabulary and "zebra" not in hf_backend.bob_vocabulary
    assert hf_backend.default_threshold == 0.6


def test_capabilities_follow_loaded_models(hf_options) -> None:
    from lsc.backends.hf import load_hf_backend

    b = load_hf_backend(**{**hf_options, "itm_model": "none", "alice_text_encoder": "itm"})
    assert CAP_ALICE_GROUNDING not in b.capabilities and CAP_ALICE_ATTENTION not in b.capabilities
    assert b.alice_text_encoder is None
    with pytest.raises(NotImplementedError):
        b.captioner.grounding(_image(), WORDS)


def test_captions_batched_and_deterministic(hf_backend) -> None:
    imgs = [_image(0), _image(1, 64, 64), _image(2)]
    caps = hf_backend.captioner.caption(imgs)
    assert len(caps) == 3 and all(isinstance(c, str) and c for c in caps)
    assert caps == hf_backend.captioner.caption(imgs)
    assert [hf_backend.captioner.caption([im])[0] for im in imgs] == caps  # batch-mates do not matter


def _reference_gradcam(cap, img: np.ndarray, block: int, first_id: int) -> np.ndarray:
    """Grad-CAM written independently: retain_grad + backward instead of autograd.grad, tokens spelt out by
    hand, the first token replaced by `first_id` as LAVIS' BlipITM does; per-token maps (T, 4, 4)."""
    tok = cap.itm_tokenizer
    ids = tok("a zebra on grass", return_tensors="pt")["input_ids"]
    assert tok.convert_ids_to_tokens(ids[0]) == ["[CLS]", "a", "z", "##e", "##b", "##r", "##a", "on", "grass", "[SEP]"]
    ids[0, 0] = first_id
    store = {}
    layer = cap.itm_model.text_encoder.encoder.layer[block].crossattention.self

    def keep(_m, _i, o) -> None:  # a forward hook must return None to leave the output alone
        o[1].retain_grad()
        store["a"] = o[1]

    handle = layer.register_forward_hook(keep)
    try:
        out = cap.itm_model(input_ids=ids, pixel_values=cap.itm_pre([img]), attention_mask=torch.ones_like(ids))
        out.itm_score[0, 1].backward()
    finally:
        handle.remove()
        cap.itm_model.zero_grad(set_to_none=True)
    a = store["a"]
    return (a[0, :, :, 1:] * a.grad[0, :, :, 1:].clamp(min=0)).mean(0).detach().reshape(-1, 4, 4).numpy()


def _close(got: np.ndarray, want: np.ndarray, rel: float = 1e-5) -> bool:
    """Equal up to `rel` of the expected maps' own scale (Grad-CAM values are ~1e-14 on tiny models)."""
    scale = float(np.abs(want).max())
    return scale > 0 and float(np.abs(got - want).max()) <= rel * scale


def test_grounding_is_gradcam_of_itm_cross_attention(hf_backend) -> None:
    cap = hf_backend.captioner
    img = _image(3)
    words = ["a", "zebra", "on", "grass"]
    maps = cap.grounding(img, words)
    assert maps.shape == (4, 4, 4)  # 32 px image, 8 px patches
    assert np.all(maps >= 0) and np.all(maps.reshape(4, -1).max(1) > 0)
    enc = cap.itm_tokenizer.convert_tokens_to_ids("[ENC]")
    assert cap.itm_first_id == enc != cap.itm_tokenizer.cls_token_id
    cam = _reference_gradcam(cap, img, 0, enc)
    expected = np.stack([cam[1], cam[2:7].mean(0), cam[7], cam[8]])
    assert _close(maps, expected)
    # the comparison can fail: reversed words, all-zero maps, [CLS] first, the wrong block
    assert not _close(maps, expected[::-1]) and not _close(np.zeros_like(maps), expected)
    cls = _reference_gradcam(cap, img, 0, cap.itm_tokenizer.cls_token_id)
    assert not _close(maps, np.stack([cls[1], cls[2:7].mean(0), cls[7], cls[8]]))


def test_grounding_of_the_wrong_block_fails_the_check(hf_backend) -> None:
    cap = hf_backend.captioner
    img = _image(3)
    maps = cap.grounding(img, ["a", "zebra", "on", "grass"])
    old = cap.itm_block
    cap.itm_block = 1
    try:
        wrong = cap.grounding(img, ["a", "zebra", "on", "grass"])
    finally:
        cap.itm_block = old
    cam = _reference_gradcam(cap, img, 0, cap.itm_first_id)
    expected = np.stack([cam[1], cam[2:7].mean(0), cam[7], cam[8]])
    assert _close(maps, expected) and not _close(wrong, expected)


def test_grounding_in_float16_underflows_and_warns(hf_options) -> None:
    """itm_dtype float32 (default) keeps the maps whatever the backend dtype; a float16 ITM model gives
    all-zero maps, which the grounding schemes report once, naming the image."""
    from lsc.backends.hf import load_hf_backend
    from lsc.protocol.loop import ImageContext
    from lsc.schemes.grounding import alice_grounding

    b32 = load_hf_backend(**{**hf_options, "itm_dtype": "float32"})
    b16 = load_hf_backend(**{**hf_options, "itm_dtype": "float16"})
    assert next(b16.captioner.itm_model.parameters()).dtype == torch.float16
    img = _image(3)
    words = ["a", "dog", "on", "grass"]
    assert np.all(b32.captioner.grounding(img, words).reshape(4, -1).max(1) > 0)
    ctx = ImageContext(b16, "img-7", img, " ".join(words))
    with pytest.warns(UserWarning, match="grounding maps of image 'img-7' are all zero") as rec:
        maps = alice_grounding(ctx)
        alice_grounding(ctx)  # memoised: no second warning
    assert not np.any(maps) and len([w for w in rec if "all zero" in str(w.message)]) == 1


def test_bad_itm_block(hf_options) -> None:
    from lsc.backends.hf import load_hf_backend

    with pytest.raises(ConfigError, match="itm_block must be in 0..1"):
        load_hf_backend(**{**hf_options, "itm_block": 5})


def test_bob_word_attention_is_clip_attention(hf_backend, hf_options) -> None:
    from transformers import CLIPTextModel

    enc = hf_backend.bob_text_encoder
    att = enc.word_attention(WORDS)
    assert att.shape == (6, 6)
    model = CLIPTextModel.from_pretrained(Path(hf_options["generator"]) / "text_encoder", attn_implementation="eager")
    ids = enc.tokenizer(" ".join(WORDS), return_tensors="pt")["input_ids"]
    assert ids.shape[1] == 8  # <bos> six words <eos>
    with torch.no_grad():
        layers = model(ids, output_attentions=True).attentions
    full = torch.stack([x[0] for x in layers])  # (L, H, 8, 8)
    np.testing.assert_allclose(att, full.mean((0, 1))[1:7, 1:7].numpy(), atol=1e-6)
    np.testing.assert_allclose(enc.word_attention(WORDS, "layer_sum_head0"), full[:, 0].sum(0)[1:7, 1:7].numpy(), atol=1e-6)
    assert np.allclose(np.triu(att, 1), 0)  # CLIP's text encoder is causal
    # the pipeline's encoder goes back to its fast attention after the call
    assert enc.model.config._attn_implementation != "eager" or hf_backend.generator.pipe.text_encoder is not enc.model
    with pytest.raises(ConfigError, match="variant"):
        enc.word_attention(WORDS, "max")


def test_alice_word_attention_merges_subwords(hf_backend) -> None:
    enc = hf_backend.alice_text_encoder
    one = enc.word_attention(["two", "zebra"])  # [CLS] two z ##e ##b ##r ##a [SEP]
    t = enc.token_attention(enc.tokenizer("two zebra")["input_ids"])
    expected = np.array([[t[1, 1], t[1, 2:7].sum()], [t[2:7, 1].mean(), t[2:7, 2:7].sum(1).mean()]])
    np.testing.assert_allclose(one, expected, atol=1e-9)
    assert np.all(one.sum(1) < 1.0)  # specials dropped, rows were softmax over all tokens


def test_long_caption_truncated_with_warning(hf_backend) -> None:
    words = (["dog", "runs"] * 45)[:90]
    with pytest.warns(UserWarning, match="75 of 90 words"):
        att = hf_backend.bob_text_encoder.word_attention(words)
    assert att.shape == (90, 90) and np.all(att[75:] == 0) and np.all(att[:, 75:] == 0) and att[:75, :75].sum() > 0
    with pytest.warns(UserWarning, match="75 of 90 words"):
        maps = hf_backend.generator.cross_attention(words, seed=0)
    assert maps.shape == (90, 16, 16) and np.all(maps[75:] == 0)


def test_generation_independent_of_batch_mates(hf_backend) -> None:
    gen = hf_backend.generator
    batch = gen.generate(["a dog", "a red ball on grass", ""], seed=7)
    assert batch.shape == (3, 32, 32, 3) and batch.dtype == np.float32
    assert batch.min() >= 0 and batch.max() <= 1
    alone = gen.generate(["a red ball on grass"], seed=7)
    np.testing.assert_allclose(alone[0], batch[1], atol=1e-5)
    assert np.abs(batch[0] - batch[1]).max() > 1e-4  # prompts matter
    assert np.abs(gen.generate(["a dog"], seed=8)[0] - batch[0]).max() > 1e-3  # seeds matter
    old = gen.batch_size
    gen.batch_size = 2  # chunked into two pipeline calls: same images
    try:
        calls = gen.calls
        np.testing.assert_allclose(gen.generate(["a dog", "a red ball on grass", ""], seed=7), batch, atol=1e-5)
        assert gen.calls - calls == 2
    finally:
        gen.batch_size = old
    assert gen.generate([], seed=0).shape == (0, 32, 32, 3)


def test_with_steps_is_a_cheaper_view_of_the_same_pipeline(hf_backend) -> None:
    """lowest_lpips' proxy_steps samples with fewer inference steps; the full generator is untouched."""
    gen = hf_backend.generator
    view = gen.with_steps(1)
    assert view.pipe is gen.pipe and view.num_inference_steps == 1 and view.calls == 0
    assert gen.num_inference_steps != 1
    full = gen.generate(["a dog"], seed=7)
    rough = view.generate(["a dog"], seed=7)
    assert view.calls == 1 and rough.shape == full.shape
    assert np.abs(rough - full).max() > 1e-4
    np.testing.assert_allclose(gen.generate(["a dog"], seed=7), full, atol=1e-6)
    with pytest.raises(ConfigError, match="steps"):
        gen.with_steps(0)


def test_cross_attention_maps(hf_backend) -> None:
    gen = hf_backend.generator
    procs_before = {k: type(v) for k, v in gen.pipe.unet.attn_processors.items()}
    before = gen.generate(["a dog runs"], seed=1)
    maps = gen.cross_attention(["a", "zebra", "runs"], seed=1)
    assert maps.shape == (3, 16, 16) and maps.dtype == np.float32
    assert np.all(maps >= 0) and np.all(maps.sum((1, 2)) > 0)
    assert not np.allclose(maps[0], maps[2])
    assert {k: type(v) for k, v in gen.pipe.unet.attn_processors.items()} == procs_before
    np.testing.assert_allclose(gen.generate(["a dog runs"], seed=1), before, atol=1e-6)
    np.testing.assert_allclose(gen.cross_attention(["a", "zebra", "runs"], seed=1), maps, atol=1e-6)


def test_perceptual_on_generated_images(hf_backend) -> None:
    imgs = hf_backend.generator.generate(["a dog", "a cat"], seed=0)
    ref = hf_backend.perceptual.reference(_image(5, 64, 64))
    d = hf_backend.perceptual.distances(ref, imgs)
    assert d.shape == (2,) and np.all(d > 0)
    assert hf_backend.perceptual.distances(hf_backend.perceptual.reference(imgs[0]), imgs[:1])[0] == pytest.approx(0, abs=1e-7)


def test_missing_weights_one_line(hf_options, monkeypatch) -> None:
    from lsc.backends.hf import load_hf_backend

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as exc:
        load_hf_backend(**{**hf_options, "captioner": "lsc-test-org/no-such-blip"})
    msg = str(exc.value)
    assert "\n" not in msg and "'lsc-test-org/no-such-blip'" in msg
    assert "huggingface-cli download lsc-test-org/no-such-blip" in msg and "HF_HUB_OFFLINE" in msg
    with pytest.raises(ModelUnavailableError, match="generator pipeline .*no-such-sd"):
        load_hf_backend(**{**hf_options, "generator": "lsc-test-org/no-such-sd"})
    with pytest.raises(ModelUnavailableError, match="local folder '/nonexistent/blip' does not exist"):
        load_hf_backend(**{**hf_options, "captioner": "/nonexistent/blip"})


def test_bad_options_are_config_errors(hf_options) -> None:
    from lsc.backends.hf import load_hf_backend

    with pytest.raises(ConfigError, match="backend_options.generater: unknown option of backend 'hf'; its options are captioner, "):
        load_hf_backend(**{**hf_options, "generater": "x"})
    with pytest.raises(ConfigError, match="lpips_net"):
        load_hf_backend(**{**hf_options, "lpips_net": "squeeze"})


def test_lcm_scheduler_stochastic_steps_stay_batch_independent(hf_options) -> None:
    """LCM injects fresh noise at every step: per-prompt generators keep images independent of batch-mates."""
    from lsc.backends.hf import load_hf_backend

    b = load_hf_backend(**{**hf_options, "scheduler": "lcm", "num_inference_steps": 3, "guidance_scale": 1.0})
    gen = b.generator
    assert type(gen.pipe.scheduler).__name__ == "LCMScheduler"
    batch = gen.generate(["a dog", "two cats on a bike", "a red ball"], seed=3)
    alone = gen.generate(["two cats on a bike"], seed=3)
    np.testing.assert_allclose(alone[0], batch[1], atol=1e-5)
    assert np.abs(batch[0] - batch[2]).max() > 1e-4


def test_lcm_lora_needs_peft(hf_options) -> None:
    from lsc.backends.hf import load_hf_backend

    try:
        import peft  # noqa: F401
    except ImportError:
        with pytest.raises(ModelUnavailableError, match="pip install peft"):
            load_hf_backend(**{**hf_options, "lcm_lora": "latent-consistency/lcm-lora-sdv1-5"})
    else:  # pragma: no cover - peft installed: the adapter id is simply missing offline
        with pytest.raises(ModelUnavailableError, match="lcm-lora-sdv1-5"):
            load_hf_backend(**{**hf_options, "lcm_lora": "latent-consistency/lcm-lora-sdv1-5"})


def test_cross_attention_equals_independent_recomputation(hf_backend) -> None:
    """DAAM maps recomputed from the default processors' inputs: forward hooks on every attn2 module keep
    (hidden states, text states); softmax(q k^T * scale) per head written out here, the conditional
    (second) half of the classifier-free-guidance batch, mean over heads, bilinear to the latent grid,
    mean over modules and steps, word = its token (one token per word)."""
    from torch.nn import functional as F

    gen = hf_backend.generator
    words = ["a", "dog", "runs", "on", "grass"]
    seen: list[torch.Tensor] = []

    def hook(module, args, kwargs, _out) -> None:
        h = args[0] if args else kwargs["hidden_states"]
        enc = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
        b, q_len, _ = h.shape
        heads = module.heads
        q = module.to_q(h).view(b, q_len, heads, -1).permute(0, 2, 1, 3)
        k = module.to_k(enc).view(b, enc.shape[1], heads, -1).permute(0, 2, 1, 3)
        probs = torch.softmax(q.float() @ k.float().transpose(-1, -2) * module.scale, dim=-1)  # (B, H, Q, K)
        per = probs[-1].mean(0)  # conditional item, mean over heads: (Q, K)
        side = int(round(q_len ** 0.5))
        maps = per.T.reshape(1, -1, side, side)
        seen.append(F.interpolate(maps, size=(16, 16), mode="bilinear", align_corners=False)[0])

    handles = [m.register_forward_hook(hook, with_kwargs=True) for n, m in gen.pipe.unet.named_modules()
               if n.endswith("attn2")]
    try:
        gen._call([" ".join(words)], seed=4)
    finally:
        for h in handles:
            h.remove()
    assert len(seen) >= 2 * gen.num_inference_steps
    tokens = torch.stack(seen).mean(0).clamp(min=0).numpy()  # (K, 16, 16); token 0 is <bos>
    expected = tokens[1 : 1 + len(words)]
    got = gen.cross_attention(words, seed=4)
    assert _close(got, expected, rel=1e-5)
    assert not _close(got, tokens[: len(words)]) and not _close(got, expected[::-1])
