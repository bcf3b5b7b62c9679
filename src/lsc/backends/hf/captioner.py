"""Alice's BLIP models: captioning (BlipForConditionalGeneration) and per-word Grad-CAM grounding on the
image from the image-text matching model's cross-attention (BlipForImageTextRetrieval), as in BLIP's own
Grad-CAM demo that the research code uses (LAVIS compute_gradcam: block 7 of BLIP ITM base, ITM "match"
logit, gradients clamped at zero, averaged over heads). As LAVIS' BlipITM does for the ITM head, the text's
first token is BLIP's `[ENC]` token, not the `[CLS]` that the Hugging Face tokenizer and BLIP ITM use.

Images are preprocessed here (resize, CLIP mean/std) rather than with the transformers image processor,
whose default backend needs torchvision.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from lsc.errors import ConfigError
from lsc.backends.hf.align import max_tokens, merge_maps, word_tokens

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocessor_settings(model_id: str) -> dict[str, Any]:
    """image_mean / image_std from the checkpoint's preprocessor_config.json when it has one."""
    try:
        from transformers.utils import cached_file

        path = cached_file(model_id, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
    except Exception:  # no file, offline, or an older signature: the BLIP defaults apply
        path = None
    if not path:
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


class ImagePreprocessor:
    """(H, W, 3) float images in [0, 1] -> normalised (B, 3, S, S) pixel values for a BLIP vision tower."""

    def __init__(self, size: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> None:
        self.size = int(size)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        out = []
        for img in images:
            arr = np.asarray(img)
            if arr.ndim != 3 or arr.shape[-1] != 3:
                raise ConfigError(f"image must have shape (H, W, 3), got {tuple(arr.shape)}")
            u8 = np.clip(np.rint(arr.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
            pil = Image.fromarray(u8).resize((self.size, self.size), Image.BICUBIC)
            x = (np.asarray(pil, dtype=np.float32) / 255.0 - self.mean) / self.std
            out.append(x.transpose(2, 0, 1))
        return torch.from_numpy(np.stack(out))


def enc_token_id(tokenizer: Any, text_vocab_size: int) -> int:
    """BLIP's `[ENC]` id: the tokenizer's own when it has one, else the last embedding row, where LAVIS'
    tokenizer puts it (bert-base-uncased's 30522 tokens, `[DEC]` 30522, `[ENC]` 30523)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    tid = tokenizer.convert_tokens_to_ids("[ENC]")
    if isinstance(tid, int) and tid != unk and 0 <= tid < text_vocab_size:
        return tid
    if text_vocab_size - 1 >= len(tokenizer):
        return text_vocab_size - 1
    raise ConfigError("the ITM tokenizer has no [ENC] token and the model no spare embedding row for it; "
                      "set backend option itm_first_token=cls")


def decode_captions(tokenizer: Any, ids: Any) -> list[str]:
    """Token ids -> captions, with BERT's clean-up of spaces before punctuation ("man's", not "man ' s").

    Why explicit: transformers 5 no longer cleans up by default (4.x did for BERT tokenizers, as the
    research code's BLIP decoded them), and "man ' s" would be sent as three words.
    """
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)
    return [" ".join(text.split()) for text in texts]


def _preprocessor(model: Any, model_id: str) -> ImagePreprocessor:
    settings = preprocessor_settings(model_id)
    size = model.config.vision_config.image_size
    return ImagePreprocessor(size, settings.get("image_mean", CLIP_MEAN), settings.get("image_std", CLIP_STD))


class BlipCaptioner:
    """The Captioner interface: BLIP captions (batched, deterministic decoding) and ITM Grad-CAM grounding."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_id: str,
        itm_model: Any | None = None,
        itm_tokenizer: Any | None = None,
        itm_model_id: str | None = None,
        itm_block: int = 7,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        prompt: str | None = None,
        generation: dict[str, Any] | None = None,
        batch_size: int = 16,
        itm_first_token: str = "enc",
        first_segment: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.dtype = dtype
        self.prompt = prompt or None
        self.generation = dict(num_beams=3, max_new_tokens=30, min_length=5, do_sample=False, repetition_penalty=1.0)
        self.generation.update({k: v for k, v in (generation or {}).items() if v is not None})
        self.batch_size = max(1, int(batch_size))
        self.first_segment = bool(first_segment)
        self.pre = _preprocessor(model, model_id)
        self.itm_model = itm_model
        self.itm_tokenizer = itm_tokenizer
        self.itm_block = int(itm_block)
        if itm_model is not None:
            layers = itm_model.text_encoder.encoder.layer
            if not 0 <= self.itm_block < len(layers):
                raise ConfigError(f"itm_block must be in 0..{len(layers) - 1} for {itm_model_id}, not {self.itm_block}")
            if not hasattr(layers[self.itm_block], "crossattention"):
                raise ConfigError(f"ITM model {itm_model_id} has no cross-attention in block {self.itm_block}")
            self.itm_pre = _preprocessor(itm_model, itm_model_id or model_id)
            self.itm_limit = max_tokens(itm_tokenizer, itm_model.config.text_config)
            self.itm_dtype = next(itm_model.parameters()).dtype
            if itm_first_token not in ("enc", "cls"):
                raise ConfigError(f"itm_first_token must be enc or cls, not {itm_first_token!r}")
            self.itm_first_id = (enc_token_id(itm_tokenizer, itm_model.config.text_config.vocab_size)
                                 if itm_first_token == "enc" else None)

    # -- captions ---------------------------------------------------------------------------------
    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        captions: list[str] = []
        for i in range(0, len(images), self.batch_size):
            chunk = list(images[i : i + self.batch_size])
            pixels = self.pre(chunk).to(self.device, self.dtype)
            kwargs: dict[str, Any] = dict(self.generation)
            if self.prompt:
                enc = self.tokenizer([self.prompt] * len(chunk), return_tensors="pt")
                kwargs["input_ids"] = enc["input_ids"].to(self.device)
                kwargs["attention_mask"] = enc["attention_mask"].to(self.device)
            with torch.no_grad():
                ids = self.model.generate(pixel_values=pixels, **kwargs)
            for text in decode_captions(self.tokenizer, ids):
                if self.prompt and text.lower().startswith(self.prompt.lower().strip()):
                    text = text[len(self.prompt.strip()) :].strip()
                if self.first_segment:  # CLIP_Tx_I2T.py: interrogate(image).split(',')[0]
                    text = text.split(",")[0].strip()
                captions.append(text)
        return captions

    # -- grounding --------------------------------------------------------------------------------
    def grounding(self, image: np.ndarray, words: Sequence[str]) -> np.ndarray:
        """Grad-CAM of the ITM match logit w.r.t. block `itm_block`'s cross-attention, per word, on the
        vision patch grid (g, g): mean over heads of attention x clamp(gradient, 0), mean over a word's
        tokens."""
        if self.itm_model is None:
            raise NotImplementedError("the hf backend was loaded without an ITM model (itm_model=none)")
        words = list(words)
        grid = self.itm_model.config.vision_config.image_size // self.itm_model.config.vision_config.patch_size
        if not words:
            return np.zeros((0, grid, grid), dtype=np.float32)
        wt = word_tokens(self.itm_tokenizer, words, self.itm_limit, what="ITM text encoder")
        input_ids = torch.tensor([wt.ids], dtype=torch.long, device=self.device)
        if self.itm_first_id is not None:
            input_ids[:, 0] = self.itm_first_id  # LAVIS BlipITM: encoder_input_ids[:, 0] = enc_token_id
        mask = torch.ones_like(input_ids)
        pixels = self.itm_pre([image]).to(self.device, self.itm_dtype)
        captured: dict[str, torch.Tensor] = {}
        target = self.itm_model.text_encoder.encoder.layer[self.itm_block].crossattention.self

        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            captured["attn"] = output[1]

        handle = target.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                out = self.itm_model(input_ids=input_ids, pixel_values=pixels, attention_mask=mask, use_itm_head=True)
                attn = captured["attn"]  # (1, heads, T, 1 + g*g)
                (grad,) = torch.autograd.grad(out.itm_score[:, 1].sum(), attn)
        finally:
            handle.remove()
        cam = (attn.detach().float()[0, :, :, 1:] * grad.float()[0, :, :, 1:].clamp(min=0)).mean(dim=0)
        cam = cam.reshape(cam.shape[0], grid, grid).cpu().numpy()
        return merge_maps(cam, wt.spans)
