"""Bob as aMUSEd (diffusers' `AmusedPipeline`): a VQGAN whose discrete codes a masked-token transformer
(UVit2DModel) fills in over a few parallel decoding steps, conditioned on a CLIP text encoder. It is the
VQ-based receiver of the hf backend (`backend_options.receiver: amused`).

Why lsc runs its own sampling loop instead of calling the pipeline: the pipeline draws every random
number of a batch (the token samples and the Gumbel noise of re-masking) from one generator, so an image
would depend on its batch-mates. Here the text encoder and the transformer run batched, and each prompt
takes its scheduler step with its own generator seeded by the seed, which gives, for every prompt, exactly
the pipeline's image for that prompt alone (tested) at batched cost.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from lsc.backends.hf.generator import capture_word_maps, steps_view
from lsc.errors import ConfigError

AMUSED_STEPS, AMUSED_GUIDANCE = 12, 10.0  # the pipeline's own defaults (aMUSEd's model cards use them)
TEMPERATURE = (2.0, 0.0)  # re-masking temperature, linear from 2 to 0 over the steps (the pipeline's default)


def is_amused(pipe: Any) -> bool:
    """Whether a loaded pipeline is aMUSEd-shaped (VQ model + masked-token transformer + AmusedScheduler)."""
    return all(getattr(pipe, name, None) is not None for name in ("vqvae", "transformer", "scheduler", "tokenizer")) \
        and type(pipe.scheduler).__name__ == "AmusedScheduler"


class AmusedGenerator:
    """The Generator interface over an aMUSEd pipeline: images depend only on (prompt, seed)."""

    def __init__(
        self,
        pipe: Any,
        num_inference_steps: int = AMUSED_STEPS,
        guidance_scale: float = AMUSED_GUIDANCE,
        height: int | None = None,
        width: int | None = None,
        batch_size: int = 8,
        heatmap_size: int | None = None,
    ) -> None:
        self.pipe = pipe
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self.vae_scale = int(getattr(pipe, "vae_scale_factor", 1) or 1)
        sample = int(pipe.transformer.config.sample_size)
        self.height = int(height or sample * self.vae_scale)
        self.width = int(width or sample * self.vae_scale)
        # The transformer halves the token grid when it downsamples: the grid must stay even then.
        multiple = self.vae_scale * (2 if getattr(pipe.transformer.config, "downsample", False) else 1)
        if self.height % multiple or self.width % multiple:
            raise ConfigError(f"aMUSEd receiver: height and width must be multiples of {multiple}, "
                              f"not {self.height}x{self.width}")
        self.batch_size = max(1, int(batch_size))
        self.heatmap_size = heatmap_size
        self.device = getattr(pipe, "_execution_device", None) or pipe.device
        self.dtype = pipe.transformer.dtype
        self.calls = 0  # batched sampling runs so far (benchmarks count them)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)

    # -- generation -------------------------------------------------------------------------------
    def token_grid(self) -> tuple[int, int]:
        """(rows, cols) of VQ codes the transformer predicts."""
        return self.height // self.vae_scale, self.width // self.vae_scale

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled projected text embedding, penultimate hidden states), as the pipeline conditions on."""
        tok = self.pipe.tokenizer
        ids = tok(prompts, return_tensors="pt", padding="max_length", truncation=True,
                  max_length=tok.model_max_length).input_ids.to(self.device)
        out = self.pipe.text_encoder(ids, return_dict=True, output_hidden_states=True)
        return out.text_embeds, out.hidden_states[-2]

    def _sample(self, prompts: list[str], seed: int) -> np.ndarray:
        """One batched run of the masked-token sampler; (B, H, W, 3) in [0, 1]."""
        pipe, n = self.pipe, len(prompts)
        guided = self.guidance_scale > 1.0
        pooled, hidden = self._encode(prompts)
        if guided:
            neg_pooled, neg_hidden = self._encode([""] * n)
            pooled, hidden = torch.cat([neg_pooled, pooled]), torch.cat([neg_hidden, hidden])
        micro = torch.tensor([self.width, self.height, 0, 0, 6], device=self.device, dtype=hidden.dtype)
        micro = micro.unsqueeze(0).expand(hidden.shape[0], -1)
        rows, cols = self.token_grid()
        latents = torch.full((n, rows, cols), pipe.scheduler.config.mask_token_id, dtype=torch.long, device=self.device)
        pipe.scheduler.set_timesteps(self.num_inference_steps, TEMPERATURE, self.device)
        generators = [torch.Generator("cpu").manual_seed(int(seed)) for _ in prompts]
        for timestep in pipe.scheduler.timesteps:
            logits = pipe.transformer(torch.cat([latents] * 2) if guided else latents, micro_conds=micro,
                                      pooled_text_emb=pooled, encoder_hidden_states=hidden)
            if guided:
                uncond, cond = logits.chunk(2)
                logits = uncond + self.guidance_scale * (cond - uncond)
            latents = torch.cat([
                pipe.scheduler.step(model_output=logits[i : i + 1], timestep=timestep, sample=latents[i : i + 1],
                                    generator=generators[i]).prev_sample
                for i in range(n)
            ])
        vq = pipe.vqvae
        upcast = vq.dtype == torch.float16 and getattr(vq.config, "force_upcast", False)
        if upcast:
            vq.float()
        try:
            images = vq.decode(latents, force_not_quantize=True,
                               shape=(n, rows, cols, vq.config.latent_channels)).sample.clip(0, 1)
        finally:
            if upcast:
                vq.half()
        return np.asarray(pipe.image_processor.postprocess(images, output_type="np"), dtype=np.float32)

    def generate(self, prompts: Sequence[str], seed: int) -> np.ndarray:
        prompts = [str(p) for p in prompts]
        if not prompts:
            return np.zeros((0, self.height, self.width, 3), dtype=np.float32)
        out = []
        with torch.no_grad():
            for i in range(0, len(prompts), self.batch_size):
                self.calls += 1
                out.append(self._sample(prompts[i : i + self.batch_size], seed))
        return np.clip(np.concatenate(out), 0.0, 1.0)

    def with_steps(self, steps: int) -> "AmusedGenerator":
        return steps_view(self, steps)

    # -- cross-attention maps -------------------------------------------------------------------------
    @property
    def has_cross_attention(self) -> bool:
        """Attention modules attending to the text (UVit2D's transformer layers and its blocks' attention)."""
        return getattr(self.pipe, "tokenizer", None) is not None and any(
            getattr(m, "is_cross_attention", False) for m in self.pipe.transformer.modules())

    def cross_attention(self, words: Sequence[str], seed: int) -> np.ndarray:
        """DAAM-style maps as for Stable Diffusion: every attention call given the text states is recorded
        (UVit2D's attn2 and its resolution blocks' attn1/attn2), conditional half, mean over heads, bilinear
        to the token grid (or heatmap_size), mean over calls and steps, a word's tokens averaged."""
        if not self.has_cross_attention:
            raise NotImplementedError("this aMUSEd transformer has no cross-attention to capture")
        words = list(words)
        rows, cols = self.token_grid()
        grid = (self.heatmap_size, self.heatmap_size) if self.heatmap_size else (rows, cols)
        if not words:
            return np.zeros((0,) + grid, dtype=np.float32)

        def run(prompt: str) -> None:
            with torch.no_grad():
                self.calls += 1
                self._sample([prompt], seed)

        return capture_word_maps(self.pipe.tokenizer, self.pipe.text_encoder, self.pipe.transformer, lambda _name: True,
                                 run, words, (rows, cols), grid)
