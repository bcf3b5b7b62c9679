"""The `world` backend: the shipped world models behind lsc's four interfaces.

Loads the safetensors package data once per process (well under 2 s) and serves Alice's captioner
(with her language-model attention and per-word grounding maps), Bob's text encoder and flow-matching
generator (with per-word cross-attention maps), and the perceptual metric.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lsc.backends.world import nets, scenes
from lsc.backends.world.perceptual import LinearWeights, WorldPerceptual
from lsc.errors import ConfigError, ModelUnavailableError
from lsc.interfaces import (
    CAP_ALICE_ATTENTION,
    CAP_ALICE_GROUNDING,
    CAP_BOB_ATTENTION,
    CAP_BOB_CROSS_ATTENTION,
    CAP_GENERATOR,
    CAP_PERCEPTUAL,
    RESEARCH_VARIANT,
    Backend,
    check_attention_variant,
)

log = logging.getLogger("lsc.world")

from lsc.backends.world.options import PACKAGED_WEIGHTS, world_weights_dir  # noqa: E402,F401  (the folder's one owner)
from lsc.backends.world.options import DISTANCE as WORLD_DISTANCE  # noqa: E402  (the distance's name, declared there)
DEFAULT_SAMPLER_STEPS = 8
DEFAULT_GUIDANCE = 3.0
CHUNK = 16  # prompts per sampler pass
RECEIVERS = ("flow", "flow_fast", "vqvae_ar")
FAST_UNET_FILE = "bob_unet_fast.safetensors"  # the flow_fast student, beside the teacher's weights
FAST_META_FILE = "flow_fast.json"  # its sampler steps, threshold, training and teacher record
DEFAULT_FAST_STEPS = 2


def _to_unit(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) float32 in [0, 1], quantised to 8-bit levels.

    Bob's images are 8-bit pictures: quantising also makes them exactly reproducible across batch
    compositions, whose float rounding differs in the last bits.
    """
    x = ((images.clamp(-1, 1) + 1) * 127.5).round() / 255.0
    return x.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32)


class WorldModels:
    """Every network of the world, loaded once from a weights folder."""

    def __init__(self, weights_dir: Path):
        meta_path = weights_dir / "world.json"
        if not meta_path.exists():
            raise ModelUnavailableError(
                f"world weights not found in {weights_dir}; train them with `lsc world train --out DIR` "
                "and pass --set backend_options.weights=DIR/weights"
            )
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.bob_vocab = nets.WordVocab(self.meta["bob_vocab"][4:])
        self.alice_vocab = nets.WordVocab(self.meta["alice_vocab"][4:])

        def load(module: torch.nn.Module, name: str) -> torch.nn.Module:
            state = {k: v.float() for k, v in load_file(str(weights_dir / name)).items()}
            module.load_state_dict(state)
            return module.eval().requires_grad_(False)

        self.text = load(nets.BobTextEncoder(nets.TextEncoderConfig(vocab_size=len(self.bob_vocab))), "bob_text.safetensors")
        # channels-last convolutions: 17% less time per image on this CPU (oneDNN's preferred layout);
        # an image may differ from the default layout's by one 8-bit level in a few pixels.
        self.unet = load(nets.FlowUNet(nets.UNetConfig()), "bob_unet.safetensors").to(memory_format=torch.channels_last)
        self.captioner = load(nets.AliceCaptioner(nets.CaptionerConfig(vocab_size=len(self.alice_vocab))), "alice.safetensors")
        self.classifier = load(nets.AttributeNet(nets.ClassifierConfig()), "attributes.safetensors")
        self.channel_weights: list[torch.Tensor] | None = None  # LPIPS "lin" weights; None = baseline
        if (weights_dir / "perceptual.safetensors").exists():
            lin = load(LinearWeights(self.classifier.cfg.channels), "perceptual.safetensors")
            self.channel_weights = [w.detach() for w in lin.weights()]
        self.weights_dir = weights_dir
        self._fast: tuple[nets.FlowUNet, dict[str, Any]] | None = None
        self._vqvae_ar: tuple[Any, Any, dict[str, Any]] | None = None

    def flow_fast(self) -> tuple[nets.FlowUNet, dict[str, Any]]:
        """The `flow_fast` receiver: the distilled student U-Net (guidance folded in) and its
        flow_fast.json (sampler steps, threshold), loaded on first use. Missing files, or a student
        distilled against another text encoder than this folder's, are a one-line ConfigError."""
        if self._fast is None:
            folder = self.weights_dir
            if not (folder / FAST_UNET_FILE).exists() or not (folder / FAST_META_FILE).exists():
                raise ConfigError(
                    f"backend_options.receiver=flow_fast: no {FAST_UNET_FILE} and {FAST_META_FILE} in {folder}; "
                    f"distil them with `lsc world train --out DIR --part flow_fast --init-generator {folder}`"
                )
            meta = json.loads((folder / FAST_META_FILE).read_text())
            check_text_encoder(folder, meta.get("teacher", {}).get("bob_text_sha256"),
                               f"backend_options.receiver=flow_fast: {FAST_UNET_FILE} in {folder} was distilled with",
                               "distil it again from these weights")
            state = {k: v.float() for k, v in load_file(str(folder / FAST_UNET_FILE)).items()}
            student = nets.FlowUNet(nets.UNetConfig())
            student.load_state_dict(state)
            self._fast = (student.eval().requires_grad_(False).to(memory_format=torch.channels_last), meta)
        return self._fast

    def vqvae_ar(self) -> tuple[Any, Any, dict[str, Any]]:
        """The `vqvae_ar` receiver: VQ-VAE, autoregressive prior and vqvae_ar.json, loaded on first use
        (see vqvae_ar.load_receiver for its one-line errors)."""
        if self._vqvae_ar is None:
            from lsc.backends.world.vqvae_ar import load_receiver

            self._vqvae_ar = load_receiver(self.weights_dir)
        return self._vqvae_ar


def file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_text_encoder(folder: Path, expected: str | None, what: str, fix: str) -> None:
    """A receiver trained on Bob's text features must meet the same text encoder it was trained with: a
    one-line ConfigError "<what> another text encoder than this folder's bob_text.safetensors; <fix>"."""
    if expected and expected != file_sha256(Path(folder) / "bob_text.safetensors"):
        raise ConfigError(f"{what} another text encoder than this folder's bob_text.safetensors; {fix}")


@lru_cache(maxsize=4)
def load_models(weights_dir: str) -> WorldModels:
    return WorldModels(Path(weights_dir))


_PUNCTUATION = ".,;:!?\"'()[]{}"


def normalise_word(word: str) -> str:
    """A word as the world's tokenizers see it: lower case, surrounding punctuation stripped ("Blue" ->
    "blue", "left." -> "left"), as a real tokenizer would; pure punctuation becomes the unknown token."""
    return word.lower().strip(_PUNCTUATION) or nets.UNK


def _encode(vocab: nets.WordVocab, prompts: Sequence[Sequence[str]], max_len: int) -> torch.Tensor:
    """Token ids of prompts as the world's tokenizers see their words (`normalise_word`), [BOS] first."""
    longest = max(len(words) for words in prompts)
    if longest + 1 > max_len:
        log.warning("prompt of %d words truncated to the model's %d tokens", longest, max_len)
    return vocab.tokens([[normalise_word(w) for w in words] for words in prompts], max_len)


def euler_sample(
    unet: nets.FlowUNet, x: torch.Tensor, text: torch.Tensor, padding: torch.Tensor, steps: int,
    guidance: float | None, uncond: tuple[torch.Tensor, torch.Tensor] | None = None,
    on_step: Any = None,
) -> torch.Tensor:
    """Euler steps of the rectified flow from t=1 (noise `x`) to t=0 (the image).

    With `guidance`, classifier-free guidance: each step evaluates the U-Net on the prompts and on
    `uncond` (the empty prompt's features and padding, one row per image), 2 evaluations per image
    per step. With guidance None (a student that predicts the guided velocity itself), one.
    `on_step(i)` runs after each step's U-Net call (the cross-attention maps are then fresh).
    """
    b = x.shape[0]
    if guidance is not None:
        assert uncond is not None
        text, padding = torch.cat([text, uncond[0]]), torch.cat([padding, uncond[1]])
    ts = torch.linspace(1.0, 0.0, steps + 1)
    for i in range(steps):
        if guidance is None:
            v = unet(x, ts[i].expand(b), text, padding)
        else:
            v = unet(torch.cat([x, x]), ts[i].expand(2 * b), text, padding)
            v_c, v_u = v[:b], v[b:]
            v = v_u + guidance * (v_c - v_u)
        x = x + (ts[i + 1] - ts[i]) * v
        if on_step is not None:
            on_step(i)
    return x


class WorldGenerator:
    """Bob: text encoder + flow-matching U-Net, Euler sampler with classifier-free guidance.

    `receiver="flow_fast"` samples with the distilled student instead: guidance folded into its
    velocity, one U-Net evaluation per image per step and (by default) 2 steps, against the
    teacher's 2 x 8. `evaluations` counts U-Net evaluations per image row (benchmarks, tests).
    """

    def __init__(self, models: WorldModels, sampler_steps: int, guidance: float | None, receiver: str = "flow"):
        if receiver not in RECEIVERS:
            raise ConfigError(f"backend_options.receiver must be one of {', '.join(RECEIVERS)}, not {receiver!r}")
        self.m = models
        self.steps = sampler_steps
        self.receiver = receiver
        self.unet = models.unet if receiver == "flow" else models.flow_fast()[0]
        self.guidance = guidance if receiver == "flow" else None
        self.calls = 0  # batched generate() calls, for benchmarks
        self.evaluations = 0  # U-Net evaluations, one per image row per call

    @torch.inference_mode()
    def _sample(self, prompts: Sequence[str], seed: int, capture: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b = len(prompts)
        tokens = _encode(self.m.bob_vocab, [p.split() for p in prompts], self.m.text.cfg.max_len)
        empty = torch.zeros(1, tokens.shape[1], dtype=torch.long)
        empty[0, 0] = 2
        feats, padding = self.m.text(torch.cat([tokens, empty]))
        cond, cond_pad = feats[:b], padding[:b]
        uncond = (feats[b:].expand(b, -1, -1), padding[b:].expand(b, -1))
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.randn((1, 3, scenes.IMAGE_SIZE, scenes.IMAGE_SIZE), generator=gen).expand(b, -1, -1, -1).clone()
        maps: list[torch.Tensor] = []
        modules = self.unet.cross_attention_modules()
        for m in modules:
            m.capture = capture

        def keep_maps(i: int) -> None:
            if capture:
                maps.extend(m.last_weights[:b] for m in modules)  # (b, heads, HW, L)

        try:
            x = euler_sample(self.unet, x, cond, cond_pad, self.steps, self.guidance, uncond, keep_maps)
        finally:
            for m in modules:
                m.capture = False
        self.evaluations += self.steps * b * (1 if self.guidance is None else 2)
        return x, maps

    def generate(self, prompts: Sequence[str], seed: int) -> np.ndarray:
        """Bob's images for prompts, in chunks of CHUNK: on a CPU one call of 512 prompts took 3.4x as
        long as 32 calls of 16 (the activations of a big batch fall out of cache)."""
        if len(prompts) == 0:
            return np.zeros((0, scenes.IMAGE_SIZE, scenes.IMAGE_SIZE, 3), np.float32)
        self.calls += 1
        prompts = list(prompts)
        return np.concatenate([_to_unit(self._sample(prompts[i : i + CHUNK], seed)[0]) for i in range(0, len(prompts), CHUNK)])

    def with_steps(self, steps: int) -> "WorldGenerator":
        """The same models sampling with `steps` Euler steps: a cheaper proxy for multi-fidelity search
        (lowest_lpips' `proxy_steps`). The view counts its own `calls`; the models are shared, not copied."""
        if int(steps) != steps or int(steps) < 1:
            raise ConfigError(f"sampler steps must be an integer >= 1, not {steps}")
        view = WorldGenerator.__new__(WorldGenerator)
        view.__dict__.update(self.__dict__)
        view.steps, view.calls, view.evaluations = int(steps), 0, 0
        return view

    def cross_attention(self, words: Sequence[str], seed: int) -> np.ndarray:
        """DAAM-style heat maps: cross-attention per word, summed over layers, heads and steps."""
        _, maps = self._sample([" ".join(words)], seed, capture=True)
        size = scenes.IMAGE_SIZE
        total = torch.zeros(len(words), size, size)
        for w in maps:
            hw = w.shape[2]
            side = int(round(hw**0.5))
            per_token = w[0].mean(0).T.reshape(-1, 1, side, side)  # (L, 1, side, side)
            up = F.interpolate(per_token, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
            n = min(len(words), up.shape[0] - 1)
            total[:n] += up[1 : n + 1]  # drop [BOS]
        return total.numpy()


class WorldTextEncoder:
    """Word-level self-attention of Bob's text encoder (one token per word, [BOS] dropped)."""

    def __init__(self, models: WorldModels):
        self.m = models

    @torch.inference_mode()
    def word_attention(self, words: Sequence[str], variant: str = "mean") -> np.ndarray:
        tokens = _encode(self.m.bob_vocab, [list(words)], self.m.text.cfg.max_len)
        self.m.text.set_capture(True)
        try:
            self.m.text(tokens)
            layers = torch.stack([w[0] for w in self.m.text.attention_maps()])  # (layers, heads, L, L)
        finally:
            self.m.text.set_capture(False)
        return _reduce_attention(layers, len(words), variant)


def _reduce_attention(layers: torch.Tensor, n: int, variant: str) -> np.ndarray:
    if check_attention_variant(variant) == RESEARCH_VARIANT:
        raise ConfigError("attention_variant 'research' reproduces the research code's CLIP attention and needs the hf backend; "
                          "the world backend offers 'mean' and 'layer_sum_head0'")
    if variant == "mean":
        a = layers.mean(dim=(0, 1))
    elif variant == "layer_sum_head0":
        a = layers[:, 0].sum(0)
    out = np.zeros((n, n), np.float32)
    k = min(n, a.shape[0] - 1)
    out[:k, :k] = a[1 : k + 1, 1 : k + 1].numpy()
    return out


class WorldCaptioner:
    """Alice: greedy captions; her decoder's cross-attention per word is its grounding map."""

    def __init__(self, models: WorldModels, max_len: int = 36):
        self.m = models
        self.max_len = max_len

    @torch.inference_mode()
    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        if len(images) == 0:
            return []
        model = self.m.captioner
        image_tokens = model.encode_image(nets.to_tensor(images))
        b = image_tokens.shape[0]
        tokens = torch.full((b, 1), nets.BOS_ID, dtype=torch.long)
        done = torch.zeros(b, dtype=torch.bool)
        for _ in range(self.max_len):
            logits = model.decode(tokens, image_tokens)[:, -1]
            logits[:, : nets.EOS_ID] = float("-inf")  # never PAD, UNK or BOS
            nxt = logits.argmax(-1)
            nxt[done] = nets.PAD_ID
            tokens = torch.cat([tokens, nxt[:, None]], 1)
            done |= nxt == nets.EOS_ID
            if bool(done.all()):
                break
        itos = self.m.alice_vocab.itos
        return [" ".join(itos[int(t)] for t in row[1:] if int(t) > nets.EOS_ID) for row in tokens]

    def grounding(self, image: np.ndarray, words: Sequence[str]) -> np.ndarray:
        """Grad-CAM of each word on the image, as lsc computes it for BLIP's image-text model.

        The last decoder layer's cross-attention from the position that predicts word i, times the
        positive part of the gradient of word i's score (its logit) with respect to that attention, averaged over
        heads. A word the image decides ("red", "ball") gets mass; one grammar decides ("a", "on") gets
        little. (A softmax attention map alone sums to the same total for every word.)
        """
        model = self.m.captioner
        tokens = _encode(self.m.alice_vocab, [list(words)], model.cfg.max_len)
        n = min(len(words), tokens.shape[1] - 1)
        last = model.layers[-1].cross
        last.capture, last.keep_graph = True, True
        try:
            with torch.enable_grad():
                logits = model.decode(tokens[:, :n], model.encode_image(nets.to_tensor([image])))
                attn = last.last_weights  # (1, heads, L, 64), in the graph
                score = logits[0, :n].gather(1, tokens[0, 1 : n + 1, None])  # pre-softmax, as Grad-CAM
                (grad,) = torch.autograd.grad(score.sum(), attn)
        finally:
            last.capture, last.keep_graph = False, False
            last.last_weights = None
        cam = (attn.detach() * grad.clamp(min=0))[0].mean(0)[:n].reshape(-1, 1, 8, 8)
        up = F.interpolate(cam, size=(scenes.IMAGE_SIZE,) * 2, mode="bilinear", align_corners=False)[:, 0]
        out = np.zeros((len(words), scenes.IMAGE_SIZE, scenes.IMAGE_SIZE), np.float32)
        out[:n] = up.numpy()
        return out


class AliceTextEncoder:
    """Alice's language-model attention: her caption decoder's (causal) self-attention."""

    def __init__(self, models: WorldModels):
        self.m = models

    @torch.inference_mode()
    def word_attention(self, words: Sequence[str], variant: str = "mean") -> np.ndarray:
        model = self.m.captioner
        tokens = _encode(self.m.alice_vocab, [list(words)], model.cfg.max_len)
        blank = torch.zeros((1, 64, model.cfg.dim))  # language-model attention without an image
        model.set_capture(True)
        try:
            model.decode(tokens, blank)
            layers = torch.stack([layer.attn.last_weights[0] for layer in model.layers])
        finally:
            model.set_capture(False)
        return _reduce_attention(layers, len(words), variant)


def _shipped_translator(weights_dir: Path) -> str | None:
    """Alice's style translator in a weights folder (`lsc world train --part skd`), if it has one."""
    from lsc.backends.world.skd_translator import TRANSLATOR_FILE

    path = Path(weights_dir) / TRANSLATOR_FILE
    return str(path) if path.is_file() else None


def load_world_backend(
    weights: str | None = None,
    sampler_steps: int | None = None,
    guidance: float | None = None,
    threads: int | None = None,
    receiver: str = "flow",
) -> Backend:
    """The world backend from shipped weights (or a `weights` folder written by `lsc world train`).

    `receiver` picks Bob's generator: `flow` (the 8-step guided sampler), `flow_fast` (its distilled
    student, bob_unet_fast.safetensors with flow_fast.json in the same folder: its own steps and
    threshold; guidance is folded into it) or `vqvae_ar` (a VQ-VAE with an autoregressive prior,
    vqvae.safetensors, prior.safetensors and vqvae_ar.json: its own sampler settings and threshold;
    `guidance` overrides its guidance scale)."""
    weights_dir = world_weights_dir(weights)
    if receiver not in RECEIVERS:
        raise ConfigError(f"backend_options.receiver must be one of {', '.join(RECEIVERS)}, not {receiver!r}")
    if threads:
        torch.set_num_threads(int(threads))
    models = load_models(str(weights_dir))
    generator: Any = None
    if receiver == "vqvae_ar":
        if sampler_steps is not None:
            raise ConfigError("backend_options.sampler_steps does not apply to receiver vqvae_ar (one prior step per code)")
        from lsc.backends.world.vqvae_ar import VQARGenerator

        generator = VQARGenerator(models, guidance)
        steps, scale = 1, generator.guidance
        threshold = float(generator.meta.get("threshold", models.meta.get("threshold", 0.5)))
    elif receiver == "flow_fast":
        if guidance is not None:
            raise ConfigError("backend_options.guidance does not apply to receiver flow_fast (its guidance is folded into the student)")
        fast_meta = models.flow_fast()[1]
        steps = int(sampler_steps or fast_meta.get("sampler", {}).get("steps", DEFAULT_FAST_STEPS))
        scale: float | None = None
        threshold = float(fast_meta.get("threshold", models.meta.get("threshold", 0.5)))
    else:
        sampler = models.meta.get("sampler", {})
        steps = int(sampler_steps or sampler.get("steps", DEFAULT_SAMPLER_STEPS))
        scale = float(guidance if guidance is not None else sampler.get("guidance", DEFAULT_GUIDANCE))
        threshold = float(models.meta.get("threshold", 0.5))
    if steps < 1:
        raise ConfigError(f"backend_options.sampler_steps must be at least 1, got {steps}")
    return Backend(
        name="world",
        captioner=WorldCaptioner(models),
        generator=generator or WorldGenerator(models, steps, scale, receiver),
        perceptual=WorldPerceptual(models.classifier, models.channel_weights),
        bob_text_encoder=WorldTextEncoder(models),
        alice_text_encoder=AliceTextEncoder(models),
        capabilities=frozenset(
            {CAP_GENERATOR, CAP_PERCEPTUAL, CAP_BOB_ATTENTION, CAP_ALICE_ATTENTION, CAP_ALICE_GROUNDING, CAP_BOB_CROSS_ATTENTION}
        ),
        bob_vocabulary=frozenset(models.bob_vocab.itos[4:]),  # the words these weights learnt
        skd_examples=scenes.skd_example_pairs(),
        skd_translator=_shipped_translator(weights_dir),
        default_threshold=threshold,
        distance=WORLD_DISTANCE,
        default_prompt_order="caption",  # each word carries its caption position (see protocol.loop.position_bits)
        image_size=scenes.IMAGE_SIZE,
    )
