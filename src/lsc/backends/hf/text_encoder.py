"""Word-level self-attention of a transformers text encoder (Bob's CLIP text encoder, Alice's BERT).

Attention weights are only returned by the eager attention implementation under transformers 5, so a
model loaded with sdpa (as diffusers loads the pipeline's text encoder) is switched to eager for the
duration of the call and switched back, keeping generation on the fast path.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from lsc.backends.hf.align import max_tokens, merge_attention, word_tokens
from lsc.errors import ConfigError
from lsc.interfaces import RESEARCH_VARIANT, check_attention_variant

# The head llm_att.py keeps (`attentions_np[:, 2, :, :]`) after summing over layers.
RESEARCH_HEAD = 2


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Temporarily use eager attention so that `output_attentions=True` returns the weights."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current in (None, "eager") or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(current)


def combine_heads(attentions: Sequence[torch.Tensor], variant: str) -> np.ndarray:
    """Per-layer (1, heads, T, T) attentions -> (T, T).

    "mean": mean over layers and heads (the papers' prose, and bothAtt.py's CLIP/BERT attention);
    "layer_sum_head0": sum over layers of head 0 (an ablation, not the research code);
    "research": sum over layers of head 2, as llm_att.py's `language_att` keeps it.
    """
    check_attention_variant(variant)
    stacked = torch.stack([a[0].float() for a in attentions])  # (L, H, T, T)
    if variant == "mean":
        return stacked.mean(dim=(0, 1)).cpu().numpy().astype(np.float64)
    head = 0 if variant == "layer_sum_head0" else RESEARCH_HEAD
    if stacked.shape[1] <= head:
        raise ConfigError(f"attention variant {variant!r} reads head {head}, but the model has {stacked.shape[1]} heads")
    return stacked[:, head].sum(dim=0).cpu().numpy().astype(np.float64)


def load_text_encoder(model_id: str, what: str, option: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a text encoder for word attention: only the text tower of a dual encoder.

    Why: `AutoModel` on a CLIP checkpoint such as openai/clip-vit-large-patch14 (the model llm_att.py loads
    with `CLIPTextModel`) builds the full CLIP model, whose forward asks for an image; the text model
    class of the checkpoint's `text_config` loads the same text weights alone, as the research code does.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    from lsc.backends.hf.hub import load_pretrained

    config = load_pretrained(AutoConfig.from_pretrained, model_id, what, option)
    loader = AutoModel.from_pretrained
    text_config = getattr(config, "text_config", None)
    if text_config is not None:
        try:
            loader = MODEL_MAPPING[type(text_config)].from_pretrained
        except KeyError as exc:
            raise ConfigError(f"{what} {model_id!r} is a {type(config).__name__} whose text model transformers "
                              f"cannot load alone; give a text encoder (option {option})") from exc
    model = load_pretrained(loader, model_id, what, option, attn_implementation="eager")
    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, model_id, f"{what} tokenizer", option)
    return model, tokenizer


class HFTextEncoder:
    """The TextEncoder interface over a transformers encoder and its tokenizer.

    `dtype` is the precision attention is computed in (float32 by default, as the research code ran its
    CLIP and BERT attention): a model loaded in another dtype (the pipeline's float16 text encoder on a
    GPU) is copied once in that dtype, so near-ties in the word orders do not flip with half precision.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str = "text encoder", device: str | torch.device | None = None,
                 dtype: torch.dtype | None = torch.float32) -> None:
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        current = next(model.parameters()).dtype
        if dtype is not None and current != dtype:
            import copy

            model = copy.deepcopy(model).to(dtype)  # the pipeline keeps its own (fast, half-precision) encoder
        self.model = model
        self.limit = max_tokens(tokenizer, getattr(model, "config", None))

    def token_attention(self, ids: list[int], variant: str = "mean") -> np.ndarray:
        """(T, T) attention of a token sequence."""
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        mask = torch.ones_like(input_ids)
        with torch.no_grad(), eager_attention(self.model):
            out = self.model(input_ids=input_ids, attention_mask=mask, output_attentions=True)
        attentions = getattr(out, "attentions", None)
        if not attentions:
            raise ConfigError(f"{self.name} returned no attention weights (it needs an eager attention implementation)")
        return combine_heads(attentions, variant)

    def word_attention(self, words: Sequence[str], variant: str = "mean") -> np.ndarray:
        """(n, n) word attention; a word's tokens merged by lsc.protocol.words' rule. With one token per
        word (as for most caption words in CLIP's vocabulary) "research" equals llm_att.py's matrix, which
        indexes tokens by word position."""
        check_attention_variant(variant)
        words = list(words)
        if not words:
            return np.zeros((0, 0), dtype=np.float64)
        # "research": the caption's tokens without start/end tokens (llm_att.py runs
        # tokenizer.tokenize(caption) through the model); the other variants drop them after the run.
        wt = word_tokens(self.tokenizer, words, self.limit, what=self.name, special=variant != RESEARCH_VARIANT)
        return merge_attention(self.token_attention(wt.ids, variant), wt.spans)
