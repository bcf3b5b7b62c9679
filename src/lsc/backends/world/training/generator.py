"""Training Bob's generator (text encoder + flow U-Net): rectified flow on partial prompts, plus the
binding objective."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from lsc.backends.world import STEP_CAPS, nets, scenes
from lsc.backends.world.nets import to_tensor
from lsc.backends.world.training import loop
from lsc.backends.world.training.data import BOB_VOCAB, FINETUNE_COUNT_P, PromptMix, binding_prompt, binding_targets, training_prompt


def build_generator() -> tuple[nets.BobTextEncoder, nets.FlowUNet]:
    text = nets.BobTextEncoder(nets.TextEncoderConfig(vocab_size=len(BOB_VOCAB)))
    unet = nets.FlowUNet(nets.UNetConfig())
    return text, unet


GENERATOR_LR_DECAY = (8000, 14000, 0.07)  # constant 3e-4 to step 8000, then linear to 2e-5 at 14000
FINETUNE_LR = 2e-4
BINDING_WEIGHT = 0.05


class BindingHead(nn.Module):
    """Training-only probe on Bob's text features: from each word of a full prompt, predict the
    colour, shape, size and slot of the object it describes (or the background).

    Without it the text encoder learns colours as a bag of words and the U-Net paints a prompt's
    colours on the wrong objects; with it every word of an object phrase carries the whole object,
    which is what the U-Net's cross-attention needs to bind. It is not shipped.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.sizes = {"color": len(scenes.COLORS), "shape": len(scenes.SHAPES), "size": len(scenes.SIZES), "slot": len(scenes.SLOTS), "background": len(scenes.BACKGROUNDS)}
        self.proj = nn.Linear(dim, sum(self.sizes.values()))

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.sizes, self.proj(feats).split(list(self.sizes.values()), dim=-1)))


class CountHead(nn.Module):
    """Training-only probe on Bob's text features: from the mean of a prompt's token features, how
    many objects its target image shows (0 to 3).

    The mean does not see word order, so the encoder is told a prompt's object count whatever order
    its words came in: "box left orange beach" names one object, as "orange box left beach" does
    (without it a colour word away from its noun reads as a second object). Weight 0 (the default)
    leaves training exactly as it was. It is not shipped.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, len(scenes.SLOTS) + 1)

    def forward(self, feats: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        keep = (~padding).to(feats.dtype)[..., None]
        return self.proj((feats * keep).sum(1) / keep.sum(1).clamp(min=1.0))


def init_generator_from(weights_dir: Path, text: nets.BobTextEncoder, unet: nets.FlowUNet) -> None:
    """Start from shipped (or exported) generator weights; words new to this vocabulary start as the
    word they are a synonym of (or, for Alice's words, the Bob word they mean), so fine-tuning begins
    from a model that already draws them."""
    meta = json.loads((Path(weights_dir) / "world.json").read_text())
    old_index = {w: i for i, w in enumerate(meta["bob_vocab"])}
    text_state = {k: v.float() for k, v in load_file(str(Path(weights_dir) / "bob_text.safetensors")).items()}
    old_embed = text_state["embed.weight"]
    embed = text.embed.weight.detach().clone()
    for i, word in enumerate(BOB_VOCAB.itos):
        source = word if word in old_index else scenes.SYNONYM_BASE.get(word, scenes.ALICE_TO_BOB.get(word))
        if source in old_index:
            embed[i] = old_embed[old_index[source]]
    text_state["embed.weight"] = embed
    text.load_state_dict(text_state)
    unet.load_state_dict({k: v.float() for k, v in load_file(str(Path(weights_dir) / "bob_unet.safetensors")).items()})


def train_generator(
    out_dir: Path, minutes: float, seed: int = 0, batch_size: int = 32, max_steps: int = STEP_CAPS["generator"], init_from: Path | None = None,
    mix: PromptMix = PromptMix(), count_weight: float = 0.0,
) -> dict:
    """Bob's text encoder + U-Net: rectified flow on partial prompts, plus the binding objective.

    With `init_from` (a weights folder), fine-tune from those weights: a fresh optimizer, FINETUNE_LR
    with linear decay over the last 60% of `max_steps`, and more multi-object scenes. `count_weight` > 0
    adds the CountHead objective on the training prompts (partial and shuffled ones included).
    """
    # A fine-tune's only fresh weights are the binding head's: they start as seed 0's did, whatever the
    # data seed, because the shipped text encoder co-adapted with that head (another init costs a
    # binding-loss transient of ~6 against ~0.1, measured).
    torch.manual_seed((0 if init_from is not None else seed) + loop.PART_ID["generator"])
    text, unet = build_generator()
    binding = BindingHead(text.cfg.dim)
    if init_from is not None:
        init_generator_from(init_from, text, unet)
        base_lr, decay, count_p = FINETUNE_LR, (int(0.4 * max_steps), max_steps, 0.1), FINETUNE_COUNT_P
    else:
        base_lr, decay, count_p = 3e-4, GENERATOR_LR_DECAY, scenes.COUNT_PROBABILITIES
    ema_text, ema_unet = build_generator()
    ema_text.load_state_dict(text.state_dict())
    ema_unet.load_state_dict(unet.state_dict())
    for p in list(ema_text.parameters()) + list(ema_unet.parameters()):
        p.requires_grad_(False)
    heads: dict[str, nn.Module] = {"binding": binding}
    if count_weight:  # built last, so that weight 0 draws every other initial weight as before
        heads["count"] = CountHead(text.cfg.dim)

    def loss_fn(rng, gen, step):
        batch_scenes = [scenes.sample_scene(rng, count_p) for _ in range(batch_size)]
        full = [binding_prompt(s, rng, mix.content_only_rate) for s in batch_scenes]
        pairs = [training_prompt(s, rng, mix) for s in batch_scenes]
        tokens = BOB_VOCAB.tokens([p for p, _ in pairs], text.cfg.max_len)
        x0 = to_tensor(np.stack([scenes.render(target) for _, target in pairs]))
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.sigmoid(torch.randn(batch_size, generator=gen))  # logit-normal time, as SD3
        xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * noise
        feats, padding = text(tokens)
        v = unet(xt, t, feats, padding)
        flow = F.mse_loss(v, noise - x0)
        full_tokens = BOB_VOCAB.tokens([w for w, _ in full], text.cfg.max_len)
        targets = binding_targets(batch_scenes, [r for _, r in full], full_tokens.shape[1])
        logits = binding(text(full_tokens)[0])
        bind = sum(F.cross_entropy(logits[k].flatten(0, 1), targets[k].flatten(), ignore_index=-100) for k in targets)
        logs = {"flow": flow.item(), "bind": bind.item()}
        loss = flow + BINDING_WEIGHT * bind
        if count_weight:
            shown = torch.tensor([len(target.objects) for _, target in pairs])
            count = F.cross_entropy(heads["count"](feats, padding), shown)
            loss, logs["count"] = loss + count_weight * count, count.item()
        return loss, logs

    return loop.train_loop(
        "generator", out_dir, minutes, seed, {"text": text, "unet": unet, **heads},
        list(text.parameters()) + list(unet.parameters()) + [p for head in heads.values() for p in head.parameters()],
        loss_fn, base_lr, max_steps, ema={"text": ema_text, "unet": ema_unet}, lr_decay=decay,
        extra_state={**mix.record(), **({"count_weight": count_weight} if count_weight else {})},
    )
