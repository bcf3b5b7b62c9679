"""The hf backend's options (the config's `backend_options`): a light module, so a configuration is
checked against them without importing torch, transformers or diffusers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class HFBackendOptions(BaseModel):
    """Options of the hf backend (the config's `backend_options`)."""

    model_config = ConfigDict(extra="forbid")

    captioner: str = "Salesforce/blip-image-captioning-large"
    caption_prompt: str | None = None
    caption_num_beams: int = Field(3, ge=1)
    caption_max_new_tokens: int = Field(30, ge=1)
    caption_min_length: int = Field(5, ge=0)
    caption_repetition_penalty: float = Field(1.0, gt=0)
    caption_first_segment: bool = False  # keep the text before the first comma (CLIP Interrogator's caption)
    # The captioner's precision; "auto" = `dtype`. CLIP Interrogator 0.5.4 (the _clipTX captions) ran BLIP in float32.
    caption_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    itm_model: str | None = "Salesforce/blip-itm-base-coco"
    itm_block: int = Field(7, ge=0)
    # Grad-CAM products are ~1e-14 on real and tiny models alike: in float16 they underflow to 0.
    itm_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "float32"
    itm_first_token: Literal["enc", "cls"] = "enc"  # LAVIS' BlipITM puts [ENC] first; "cls": Hugging Face's
    alice_text_encoder: str | None = "itm"  # "itm": the ITM model's BERT text encoder (BLIP's language model)
    bob_text_encoder: str | None = None  # None: the generator pipeline's own text encoder
    # Precision of Bob's and Alice's word attention (llm_att.py and bothAtt.py ran it in float32; "auto": the
    # model's own, e.g. the pipeline's float16 text encoder on a GPU, where near-ties can flip the order).
    attention_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "float32"
    # Bob's text-to-image design: "sd" (Stable Diffusion), "lcm" (few-step latent consistency: LCM scheduler,
    # 4 steps, guidance 1; LCM-LoRA on the default SD 1.5), "amused" (VQGAN + masked-token transformer).
    receiver: Literal["sd", "lcm", "amused"] = "sd"
    generator: str | None = None  # None: the receiver's default model (RECEIVER_MODELS)
    scheduler: Literal["default", "lcm", "ddim", "dpm", "euler"] = "default"
    lcm_lora: str | None = None  # unset with receiver lcm on SD 1.5 (the default generator): LCM_LORA_SD15
    # None: 50 steps and guidance 7.5; 4 and 1.0 with LCM (receiver lcm, lcm_lora or scheduler lcm); aMUSEd 12, 10.
    num_inference_steps: int | None = Field(None, ge=1)
    guidance_scale: float | None = None
    # Weight files: "auto" tries the fp16 variant first when the dtype is float16, then the full files.
    variant: str | None = "auto"
    attention_slicing: bool = False
    vae_slicing: bool = False
    cpu_offload: Literal["none", "model", "sequential"] = "none"  # needs accelerate and a CUDA device
    height: int | None = Field(512, ge=8)  # unset with receiver amused: the model's own size
    width: int | None = Field(512, ge=8)
    batch_size: int = Field(8, ge=1)
    heatmap_size: int | None = Field(None, ge=1)
    lpips_net: Literal["alex", "vgg"] = "alex"
    lpips_backbone: str | None = None
    lpips_linear: str | None = None
    lpips_size: int | None = Field(None, ge=16)  # None: Bob's image size; the research code: 256
    # Resizing for LPIPS antialiased (true) or not (false: lpips_score.py's tensor Resize in torchvision < 0.17).
    lpips_antialias: bool = True
    # Initial latents: "cpu" drawn on the CPU in float32 (the same on any device); "pipeline" drawn as the
    # diffusers pipeline draws them from torch.Generator(device).manual_seed(seed) in its dtype (RX_T2I.py's
    # CUDA generator: the research code's exact noise on a GPU).
    noise: Literal["cpu", "pipeline"] = "cpu"
    # The pipeline's own safety checker (RX_T2I.py kept it: flagged images come back black); off by default.
    safety_checker: bool = False
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    threshold: float = 0.6
    skd_examples: list[tuple[str, str]] = Field(default_factory=list)
