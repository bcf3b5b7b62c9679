"""Bob's diffusers text-to-image pipeline behind the Generator interface.

Batching: a list of prompts goes through the pipeline in one call (chunks of `batch_size`), every prompt
starting from the same initial latents for the seed and with its own per-item noise generator (for
stochastic samplers such as LCM), so an image depends only on (prompt, seed), never on its batch-mates.

Per-word cross-attention heat maps (DAAM-style): a capturing attention processor is installed on the
U-Net's cross-attention (`attn2`) modules for one generation of the full prompt; the conditional half of
each attention map is averaged over heads, upsampled to one grid, averaged over layers and steps, and
token maps are merged into words.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from lsc.backends.hf.align import max_tokens, merge_maps, word_tokens
from lsc.errors import ConfigError


class _HeatStore:
    """Running sum of token heat maps (K, h, w) over layers and steps."""

    def __init__(self, latent_hw: tuple[int, int], grid: tuple[int, int]) -> None:
        self.latent_hw = latent_hw
        self.grid = grid
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, probs: torch.Tensor, heads: int) -> None:
        """probs (batch*heads, Q, K): keep the last (conditional) item, mean over heads, upsample."""
        bh, q, k = probs.shape
        per = probs.reshape(bh // heads, heads, q, k)[-1].float().mean(dim=0)  # (Q, K)
        lh, lw = self.latent_hw
        factor = math.sqrt(lh * lw / q)
        h, w = max(1, round(lh / factor)), max(1, round(lw / factor))
        if h * w != q:  # odd sizes: fall back on a square-ish layout
            h = int(math.sqrt(q))
            w = q // h
        maps = per.T.reshape(1, k, h, w)
        maps = F.interpolate(maps, size=self.grid, mode="bilinear", align_corners=False)[0]
        self.total = maps if self.total is None else self.total + maps
        self.count += 1


class CrossAttentionCapture:
    """An attention processor for `attn2` modules that computes attention explicitly and records it."""

    def __init__(self, store: _HeatStore) -> None:
        self.store = store

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        batch_size, sequence_length, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        probs = attn.get_attention_scores(query, key, attention_mask)
        if is_cross:
            self.store.add(probs.detach(), attn.heads)
        hidden_states = torch.bmm(probs, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def capture_word_maps(tokenizer: Any, text_encoder: Any, model: Any, select: Callable[[str], bool],
                      run: Callable[[str], None], words: list[str], latent_hw: tuple[int, int],
                      grid: tuple[int, int]) -> np.ndarray:
    """Per-word maps (n, *grid) of one generation of the joined words: the capturing processor on the
    `model`'s attention processors that `select` picks (it records only calls given text states), the
    original processors restored afterwards, token maps merged into words."""
    wt = word_tokens(tokenizer, words, max_tokens(tokenizer, getattr(text_encoder, "config", None)),
                     what="generator's text encoder")
    prompt = " ".join(words)
    piped = list(tokenizer(prompt, truncation=True, max_length=len(wt.ids))["input_ids"])
    if piped != wt.ids[: len(piped)]:
        warnings.warn("word-by-word tokenization differs from the pipeline's; cross-attention maps may be misaligned",
                      stacklevel=3)
    original = dict(model.attn_processors)
    store = _HeatStore(latent_hw, grid)
    capture = CrossAttentionCapture(store)
    model.set_attn_processor({name: (capture if select(name) else proc) for name, proc in original.items()})
    try:
        run(prompt)
    finally:
        model.set_attn_processor(original)
    if store.total is None:
        return np.zeros((len(words),) + grid, dtype=np.float32)
    tokens = (store.total / store.count).clamp(min=0).cpu().numpy()
    return merge_maps(tokens, wt.spans)


def _accepts(func: Any, name: str) -> bool:
    params = inspect.signature(func).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def steps_view(generator: Any, steps: int) -> Any:
    """A pipeline generator run with `steps` inference steps: a cheaper proxy for multi-fidelity search
    (lowest_lpips' `proxy_steps`). The pipeline is shared; the view counts its own `calls`."""
    if int(steps) != steps or int(steps) < 1:
        raise ConfigError(f"inference steps must be an integer >= 1, not {steps}")
    view = copy.copy(generator)
    view.num_inference_steps = int(steps)
    view.calls = 0
    return view


class DiffusersGenerator:
    """The Generator interface over a diffusers text-to-image pipeline."""

    def __init__(
        self,
        pipe: Any,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        height: int | None = None,
        width: int | None = None,
        batch_size: int = 8,
        heatmap_size: int | None = None,
        extra_call_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.pipe = pipe
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self.vae_scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
        unet = getattr(pipe, "unet", None)
        sample = getattr(getattr(unet, "config", None), "sample_size", None) or 64
        if isinstance(sample, (list, tuple)):
            sample = sample[0]
        self.height = int(height or sample * self.vae_scale)
        self.width = int(width or sample * self.vae_scale)
        self.batch_size = max(1, int(batch_size))
        self.heatmap_size = heatmap_size
        self.extra = dict(extra_call_kwargs or {})
        self.device = getattr(pipe, "_execution_device", None) or getattr(pipe, "device", torch.device("cpu"))
        self.dtype = getattr(unet, "dtype", torch.float32) if unet is not None else torch.float32
        self.calls = 0  # pipeline calls so far (benchmarks count them)
        self.noise = "cpu"  # or "pipeline": see initial_latents
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)

    # -- generation -------------------------------------------------------------------------------
    def _latent_shape(self) -> tuple[int, int, int, int]:
        unet = getattr(self.pipe, "unet", None)
        channels = int(getattr(getattr(unet, "config", None), "in_channels", 4))
        return (1, channels, self.height // self.vae_scale, self.width // self.vae_scale)

    def initial_latents(self, seed: int) -> torch.Tensor:
        """The seed's initial noise (1, C, h, w). noise "cpu": drawn on the CPU in float32, the same on any
        device. noise "pipeline": drawn as the pipeline draws it from torch.Generator(device).manual_seed(seed),
        on the pipeline's device in its dtype (RX_T2I.py's generator on CUDA); the pipeline scales both alike."""
        if self.noise == "pipeline":
            gen = torch.Generator(self.device).manual_seed(int(seed))
            return torch.randn(self._latent_shape(), generator=gen, device=self.device, dtype=self.dtype)
        gen = torch.Generator("cpu").manual_seed(int(seed))
        return torch.randn(self._latent_shape(), generator=gen, dtype=torch.float32)

    def _call(self, prompts: list[str], seed: int) -> Any:
        latents = self.initial_latents(seed).expand(len(prompts), -1, -1, -1).contiguous()
        kwargs: dict[str, Any] = dict(
            prompt=prompts,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            height=self.height,
            width=self.width,
            latents=latents.to(self.device, self.dtype),
            generator=[torch.Generator("cpu").manual_seed(int(seed)) for _ in prompts],
            output_type="np",
        )
        kwargs.update(self.extra)
        kwargs = {k: v for k, v in kwargs.items() if _accepts(self.pipe.__call__, k)}
        self.calls += 1
        with torch.no_grad():
            return self.pipe(**kwargs)

    def generate(self, prompts: Sequence[str], seed: int) -> np.ndarray:
        prompts = [str(p) for p in prompts]
        if not prompts:
            return np.zeros((0, self.height, self.width, 3), dtype=np.float32)
        out = []
        for i in range(0, len(prompts), self.batch_size):
            images = self._call(prompts[i : i + self.batch_size], seed).images
            out.append(np.asarray(images, dtype=np.float32))
        return np.clip(np.concatenate(out), 0.0, 1.0)

    def with_steps(self, steps: int) -> "DiffusersGenerator":
        return steps_view(self, steps)

    # -- cross-attention maps -------------------------------------------------------------------------
    @property
    def has_cross_attention(self) -> bool:
        unet = getattr(self.pipe, "unet", None)
        procs = getattr(unet, "attn_processors", None)
        return bool(procs) and any(name.endswith("attn2.processor") for name in procs) and getattr(self.pipe, "tokenizer", None) is not None

    def cross_attention(self, words: Sequence[str], seed: int) -> np.ndarray:
        if not self.has_cross_attention:
            raise NotImplementedError("this pipeline has no U-Net cross-attention (attn2) to capture")
        words = list(words)
        lh, lw = self._latent_shape()[2:]
        grid = (self.heatmap_size, self.heatmap_size) if self.heatmap_size else (lh, lw)
        if not words:
            return np.zeros((0,) + grid, dtype=np.float32)

        def run(prompt: str) -> None:
            self._call([prompt], seed)

        return capture_word_maps(self.pipe.tokenizer, getattr(self.pipe, "text_encoder", None), self.pipe.unet,
                                 lambda name: name.endswith("attn2.processor"), run, words, (lh, lw), grid)
