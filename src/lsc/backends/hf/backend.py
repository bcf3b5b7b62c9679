"""`load_hf_backend`: the papers' models (BLIP, Stable Diffusion / LCM, CLIP and BERT attention, LPIPS)
behind lsc's four interfaces. Model ids or local folders are options; nothing is hard-wired."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import ValidationError

from lsc import progress
from lsc.errors import ConfigError, ModelUnavailableError
from lsc.interfaces import (
    CAP_ALICE_ATTENTION,
    CAP_ALICE_GROUNDING,
    CAP_BOB_ATTENTION,
    CAP_BOB_CROSS_ATTENTION,
    CAP_GENERATOR,
    CAP_PERCEPTUAL,
    Backend,
    lpips_distance,
)
from lsc.backends import options_message
from lsc.backends.hf.hub import load_pretrained, load_with_variants
from lsc.backends.hf.options import HFBackendOptions

NONE_VALUES = {"", "none", "null", "off", "false"}


def _none(value: str | None) -> bool:
    return value is None or str(value).strip().lower() in NONE_VALUES


LCM_STEPS, LCM_GUIDANCE = 4, 1.0
DEFAULT_STEPS, DEFAULT_GUIDANCE = 50, 7.5
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
LCM_LORA_SD15 = "latent-consistency/lcm-lora-sdv1-5"
RECEIVER_MODELS = {"sd": SD15, "lcm": SD15, "amused": "amused/amused-256"}


def check_receiver(opts: HFBackendOptions) -> HFBackendOptions:
    """Fill the receiver's defaults (generator, LCM-LoRA, aMUSEd's own size) and refuse options that
    contradict it, so a study never runs a different receiver than the one it names."""
    given = opts.model_fields_set
    update: dict[str, Any] = {}
    if opts.generator is None:
        update["generator"] = RECEIVER_MODELS[opts.receiver]
    if opts.receiver == "lcm":
        if opts.scheduler not in ("default", "lcm"):
            raise ConfigError(f"backend_options: receiver lcm uses the LCM scheduler, not scheduler={opts.scheduler}")
        if "lcm_lora" not in given and opts.generator in (None, SD15):
            update["lcm_lora"] = LCM_LORA_SD15  # SD 1.5's consistency-distilled adapter (paper.yaml names SD 1.5)
    if opts.receiver == "amused":
        if opts.scheduler != "default":
            raise ConfigError(f"backend_options: receiver amused has its own masked-token scheduler; "
                              f"scheduler={opts.scheduler} is for sd/lcm")
        if not _none(opts.lcm_lora):
            raise ConfigError("backend_options: lcm_lora is an adapter of Stable Diffusion, not of receiver amused")
        for side in ("height", "width"):
            if side not in given:
                update[side] = None
    return opts.model_copy(update=update)


def uses_lcm(opts: HFBackendOptions) -> bool:
    """Receiver lcm, LCM-LoRA or the LCM scheduler: a few-step sampler without classifier-free guidance."""
    return opts.receiver == "lcm" or not _none(opts.lcm_lora) or opts.scheduler == "lcm"


def sampler_settings(opts: HFBackendOptions) -> tuple[int, float]:
    """(steps, guidance): the options when given, else LCM's 4 / 1.0, aMUSEd's 12 / 10.0 or Stable
    Diffusion's 50 / 7.5."""
    from lsc.backends.hf.amused import AMUSED_GUIDANCE, AMUSED_STEPS

    if opts.receiver == "amused":
        steps, guidance = AMUSED_STEPS, AMUSED_GUIDANCE
    elif uses_lcm(opts):
        steps, guidance = LCM_STEPS, LCM_GUIDANCE
    else:
        steps, guidance = DEFAULT_STEPS, DEFAULT_GUIDANCE
    return opts.num_inference_steps or steps, opts.guidance_scale if opts.guidance_scale is not None else guidance


def weight_variants(variant: str | None, dtype: torch.dtype) -> list[str | None]:
    """Variants to try in order: "auto" = fp16 first in float16 (then the full files); none = full files."""
    if _none(variant):
        return [None]
    if str(variant) == "auto":
        return ["fp16", None] if dtype == torch.float16 else [None]
    return [str(variant)]


def transformers_dtype_key() -> str:
    """transformers >= 4.56 takes `dtype` in from_pretrained; older versions only `torch_dtype`."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__).release >= (4, 56) else "torch_dtype"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"bad device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def _scheduler(pipe: Any, name: str) -> None:
    if name == "default":
        return
    import diffusers

    cls = {"lcm": "LCMScheduler", "ddim": "DDIMScheduler", "dpm": "DPMSolverMultistepScheduler",
           "euler": "EulerDiscreteScheduler"}[name]
    pipe.scheduler = getattr(diffusers, cls).from_config(pipe.scheduler.config)


def load_pipeline(opts: HFBackendOptions, device: torch.device, dtype: torch.dtype) -> Any:
    """The diffusers pipeline, safety checker off, optional LCM-LoRA and scheduler swap, on the device."""
    from diffusers import DiffusionPipeline

    from diffusers.pipelines import pipeline_utils

    # diffusers renamed torch_dtype to dtype (0.3x); pass whichever this version understands.
    dtype_key = "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"
    from lsc.backends.hf.amused import is_amused

    generator = str(opts.generator or RECEIVER_MODELS[opts.receiver])
    keep_checker = opts.safety_checker and opts.receiver != "amused"
    extra = {} if opts.receiver == "amused" or keep_checker else dict(safety_checker=None, requires_safety_checker=False)
    pipe = load_with_variants(DiffusionPipeline.from_pretrained, generator, "generator pipeline", "generator",
                              weight_variants(opts.variant, dtype), **extra, **{dtype_key: dtype})
    if opts.receiver == "amused" and not is_amused(pipe):
        raise ConfigError(f"backend_options: receiver amused needs an aMUSEd pipeline (VQ model, UVit2D transformer, "
                          f"AmusedScheduler); generator {generator!r} is a {type(pipe).__name__}")
    if opts.receiver != "amused" and is_amused(pipe):
        raise ConfigError(f"backend_options: generator {generator!r} is an aMUSEd pipeline: set receiver=amused")
    if not _none(opts.lcm_lora):
        try:
            import peft  # noqa: F401  (diffusers' LoRA loading needs it)
        except ImportError as exc:
            raise ModelUnavailableError("lcm_lora needs the 'peft' package: pip install peft") from exc
        load_pretrained(pipe.load_lora_weights, str(opts.lcm_lora), "LCM-LoRA", "lcm_lora")
        pipe.fuse_lora()
    _scheduler(pipe, "lcm" if uses_lcm(opts) and opts.scheduler == "default" else opts.scheduler)
    return place_pipeline(pipe, opts, device)


def place_pipeline(pipe: Any, opts: HFBackendOptions, device: torch.device) -> Any:
    """Memory options, then the device: attention / VAE slicing, or CPU offload (accelerate) instead of .to()."""
    if opts.attention_slicing:
        pipe.enable_attention_slicing()
    if opts.vae_slicing:
        vae = getattr(pipe, "vae", None)
        if vae is not None and hasattr(vae, "enable_slicing"):
            vae.enable_slicing()
        elif hasattr(pipe, "enable_vae_slicing"):
            pipe.enable_vae_slicing()
        else:
            raise ConfigError("vae_slicing: this pipeline has no VAE slicing")
    if opts.cpu_offload == "none":
        return pipe.to(device)
    try:
        import accelerate  # noqa: F401
    except ImportError as exc:
        raise ModelUnavailableError("cpu_offload needs the 'accelerate' package: pip install 'lsc[hf]' or pip install accelerate") from exc
    if device.type != "cuda":
        raise ConfigError(f"cpu_offload moves models to the GPU as they run; it needs a CUDA device, not {device}")
    try:
        if opts.cpu_offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_sequential_cpu_offload(device=device)
    except Exception as exc:  # noqa: BLE001
        raise ModelUnavailableError(f"cpu_offload={opts.cpu_offload} failed: {' '.join(str(exc).split())[:240]}") from exc
    return pipe


def load_hf_backend(**options: Any) -> Backend:
    """Load the hf backend. Every model is an option (hub id or local folder); missing weights raise a
    one-line ModelUnavailableError naming the model and how to get it."""
    try:
        opts = HFBackendOptions(**options)
    except ValidationError as exc:
        raise ConfigError(options_message(exc, "hf", HFBackendOptions)) from None
    opts = check_receiver(opts)
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ModelUnavailableError(f"the hf backend needs transformers and diffusers: pip install 'lsc[hf]' ({exc.name} missing)") from exc
    from transformers import AutoTokenizer, BlipForConditionalGeneration, BlipForImageTextRetrieval

    from lsc.backends.hf.amused import AmusedGenerator
    from lsc.backends.hf.captioner import BlipCaptioner
    from lsc.backends.hf.generator import DiffusersGenerator
    from lsc.backends.hf.lpips import LpipsPerceptual, load_lpips
    from lsc.backends.hf.text_encoder import HFTextEncoder, load_text_encoder

    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    if device.type == "cpu":
        progress.note_once("hf-cpu", "the hf backend runs on the CPU here: each of Bob's images is a full diffusion run "
                                     "(seconds to minutes each); on a GPU machine it picks the GPU (backend_options.device)")
    capabilities = {CAP_GENERATOR, CAP_PERCEPTUAL}

    # Perceptual first: it is the smallest and fails fastest when its weights are missing.
    perceptual = LpipsPerceptual(load_lpips(opts.lpips_net, opts.lpips_backbone, opts.lpips_linear), device=device,
                                 size=opts.lpips_size, antialias=opts.lpips_antialias)

    tkey = transformers_dtype_key()
    cap_dtype = dtype if opts.caption_dtype == "auto" else resolve_dtype(opts.caption_dtype, device)
    cap_model = load_pretrained(BlipForConditionalGeneration.from_pretrained, opts.captioner, "captioner", "captioner", **{tkey: cap_dtype})
    cap_tok = load_pretrained(AutoTokenizer.from_pretrained, opts.captioner, "captioner tokenizer", "captioner")
    itm_model = itm_tok = None
    if not _none(opts.itm_model):
        itm_dtype = dtype if opts.itm_dtype == "auto" else resolve_dtype(opts.itm_dtype, device)
        itm_model = load_pretrained(BlipForImageTextRetrieval.from_pretrained, str(opts.itm_model), "ITM model", "itm_model", **{tkey: itm_dtype})
        itm_tok = load_pretrained(AutoTokenizer.from_pretrained, str(opts.itm_model), "ITM tokenizer", "itm_model")
        itm_model = itm_model.to(device).eval()
        capabilities.add(CAP_ALICE_GROUNDING)
    captioner = BlipCaptioner(
        cap_model.to(device).eval(), cap_tok, opts.captioner, itm_model, itm_tok, opts.itm_model, opts.itm_block,
        device=device, dtype=cap_dtype, prompt=opts.caption_prompt, itm_first_token=opts.itm_first_token,
        first_segment=opts.caption_first_segment,
        generation=dict(num_beams=opts.caption_num_beams, max_new_tokens=opts.caption_max_new_tokens,
                        min_length=opts.caption_min_length, repetition_penalty=opts.caption_repetition_penalty),
    )

    pipe = load_pipeline(opts, device, dtype)
    steps, guidance = sampler_settings(opts)
    gen_cls = AmusedGenerator if opts.receiver == "amused" else DiffusersGenerator
    generator = gen_cls(pipe, steps, guidance, opts.height, opts.width, opts.batch_size, opts.heatmap_size)
    if opts.receiver == "amused":
        if opts.noise != "cpu" or opts.safety_checker:
            raise ConfigError("backend_options: noise=pipeline and safety_checker are Stable Diffusion settings, "
                              "not receiver amused's")
    else:
        generator.noise = opts.noise
    if generator.has_cross_attention:
        capabilities.add(CAP_BOB_CROSS_ATTENTION)

    bob = None
    vocab_source = None
    attention_dtype = None if opts.attention_dtype == "auto" else resolve_dtype(opts.attention_dtype, device)
    if not _none(opts.bob_text_encoder):
        model, tok = load_text_encoder(str(opts.bob_text_encoder), "Bob's text encoder", "bob_text_encoder")
        bob = HFTextEncoder(model.to(device).eval(), tok, "Bob's text encoder", dtype=attention_dtype)
        vocab_source = tok
    elif getattr(pipe, "text_encoder", None) is not None and getattr(pipe, "tokenizer", None) is not None:
        bob = HFTextEncoder(pipe.text_encoder, pipe.tokenizer, "Bob's text encoder", device=device, dtype=attention_dtype)
        vocab_source = pipe.tokenizer
    if bob is not None:
        capabilities.add(CAP_BOB_ATTENTION)

    alice = None
    if not _none(opts.alice_text_encoder):
        aid = str(opts.alice_text_encoder)
        if aid.lower() == "itm":
            if itm_model is not None:
                alice = HFTextEncoder(itm_model.text_encoder, itm_tok, "Alice's text encoder", device=device,
                                      dtype=attention_dtype)
        else:
            model, tok = load_text_encoder(aid, "Alice's text encoder", "alice_text_encoder")
            alice = HFTextEncoder(model.to(device).eval(), tok, "Alice's text encoder", dtype=attention_dtype)
    if alice is not None:
        capabilities.add(CAP_ALICE_ATTENTION)

    return Backend(
        name="hf",
        captioner=captioner,
        generator=generator,
        perceptual=perceptual,
        bob_text_encoder=bob,
        alice_text_encoder=alice,
        capabilities=frozenset(capabilities),
        bob_vocabulary=clip_vocabulary(vocab_source) if vocab_source is not None else None,
        skd_examples=[(a, b) for a, b in opts.skd_examples],
        default_threshold=opts.threshold,
        distance=lpips_distance(opts.lpips_net),
    )


def clip_vocabulary(tokenizer: Any) -> frozenset[str] | None:
    """Whole alphabetic words of a tokenizer's vocabulary (CLIP: entries ending in </w>; WordPiece: no ##)."""
    try:
        vocab = tokenizer.get_vocab()
    except Exception:
        return None
    words = set()
    for tok in vocab:
        if tok.endswith("</w>"):
            w = tok[: -len("</w>")]
        elif tok.startswith("##") or tok.startswith("[") or tok.startswith("<"):
            continue
        else:
            w = tok
        if w.isalpha():
            words.add(w.lower())
    return frozenset(words) or None
