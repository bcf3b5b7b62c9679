"""Training the world's models on the CPU: resumable, checkpointed, logged, deterministic per step.

Each part (generator = Bob's text encoder + U-Net, captioner = Alice, classifier = the attribute
network behind the perceptual metric) trains in its own folder under the output directory. Every
batch is drawn from an RNG seeded by (seed, part, step), so a resumed run sees the same data as an
uninterrupted one. Checkpoints are safetensors (model, EMA and optimizer moments) plus a JSON state.
`export_weights` writes the shipped package data from the finished parts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from lsc.backends.world import CONTENT_ONLY_RATE, STEP_CAPS, nets, scenes
from lsc.errors import ConfigError

log = logging.getLogger("lsc.world.train")

PARTS = ("classifier", "perceptual", "captioner", "generator")  # the world's models (a default `lsc world train`)
POLICY = "policy"  # Alice's ordering policy (scheme `learned`): trained only when asked, in a call of its own
# Parts trained only when asked for, each in a call of its own: they need a finished weights folder
# (flow_fast distils its generator; the policy traces lowest_lpips with it).
# vqvae and prior (the vqvae_ar receiver, lsc.backends.world.vqvae_ar) train apart from the others, in that order.
VQVAE_AR_PARTS = ("vqvae", "prior")
EXTRA_PARTS = ("flow_fast", POLICY, *VQVAE_AR_PARTS)
ALL_PARTS = PARTS + EXTRA_PARTS
# Data-stream ids; flow_fast and policy were trained apart with 5 each, kept so both stay reproducible.
_PART_ID = {"classifier": 1, "captioner": 2, "generator": 3, "perceptual": 4, "policy": 5, "flow_fast": 5, "vqvae": 6, "prior": 7}
TRAIN_SEED_OFFSET = 10**6  # training scenes never share an RNG stream with study scenes

BOB_VOCAB = nets.WordVocab(scenes.BOB_WORDS)
ALICE_VOCAB = nets.WordVocab(scenes.ALICE_WORDS)


to_tensor = nets.to_tensor  # images -> the nets' input, as at inference


def partial_prompt_indices(n: int, rng: np.random.Generator) -> list[int | None]:
    """What Bob may receive mid-transmission, as indices into the caption's n words (None = a word
    Bob does not know): the mix that teaches him partial and shuffled prompts.

    10% empty (also the unconditional branch of classifier-free guidance), 10% a prefix, 25% a random
    subset in caption order, 15% a random subset in random order (half of them the whole caption),
    40% the full caption; and 10% of prompts get one word unknown to Bob, so that words he never learnt
    are ignored.
    """
    u = rng.random()
    if u < 0.10:
        out: list[int | None] = []
    elif u < 0.20:
        out = list(range(int(rng.integers(1, n + 1))))
    elif u < 0.45:
        keep = rng.random(n) < rng.uniform(0.2, 0.9)
        out = [i for i in range(n) if keep[i]]
    elif u < 0.60:  # half of them every word: the research code's send order is a whole caption shuffled
        keep = rng.random(n) < (rng.uniform(0.2, 0.9) if rng.random() < 0.5 else 1.0)
        out = [i for i in range(n) if keep[i]]
        out = [out[i] for i in rng.permutation(len(out))]
    else:
        out = list(range(n))
    if out and rng.random() < 0.10:
        out.insert(int(rng.integers(len(out) + 1)), None)
    return out


def partial_prompt(words: list[str], rng: np.random.Generator) -> list[str]:
    """`partial_prompt_indices` applied to words ([UNK] for the unknown word)."""
    return ["[UNK]" if i is None else words[i] for i in partial_prompt_indices(len(words), rng)]


ALICE_STYLE_RATE = 0.5  # share of training prompts in Alice's style; the rest are Bob's own
SHUFFLE_OBJECTS_RATE = 0.5  # share of Bob-style prompts whose object phrases come in random order


def without_function_words(words: list[str], roles: list[int]) -> tuple[list[str], list[int]]:
    """A caption and its roles with the function words (scenes.FUNCTION_WORDS) dropped."""
    kept = [i for i, w in enumerate(words) if w not in scenes.FUNCTION_WORDS]
    return [words[i] for i in kept], [roles[i] for i in kept]


def training_prompt(scene: scenes.Scene, rng: np.random.Generator, content_only_rate: float = CONTENT_ONLY_RATE) -> tuple[list[str], scenes.Scene]:
    """One training prompt for a scene and the image it should produce.

    The prompt is Alice's caption or Bob's own phrasing (object phrases sometimes reordered), cut to
    a partial prompt. The target shows only the objects the prompt mentions by a colour, shape or size
    word: a prompt that names fewer objects must not make Bob invent the others, and words that name
    no object leave the scene empty, as a text-to-image model draws what it is told. Objects a partial
    Alice-style prompt names stand where her layout rule puts that many objects given the position
    words received ("a red ball on grass" is one ball in the middle, whatever the full scene held, also
    when "on the left" is what did not arrive): otherwise the same words would mean every slot, and
    Bob would hedge by drawing several.
    A share of captions (`content_only_rate`) lose their function words first, with the same target: the
    meaning is in the content words, so "small orange box grass" is one box, as "a small orange box on
    grass" is, and no scheme has to wait for an article before Bob draws what was said.
    """
    alice = rng.random() < ALICE_STYLE_RATE
    if alice:
        words, roles = scenes.alice_caption_roles(scene)
    else:
        words, roles = scenes.bob_caption_roles(scene, rng, shuffle_objects=rng.random() < SHUFFLE_OBJECTS_RATE)
    if rng.random() < content_only_rate:
        words, roles = without_function_words(words, roles)
    picked = partial_prompt_indices(len(words), rng)
    prompt = ["[UNK]" if i is None else words[i] for i in picked]
    mentioned = {roles[i] for i in picked if i is not None and roles[i] >= 0 and words[i] in scenes.OBJECT_WORDS}
    if any(i is not None and roles[i] == scenes.ROLE_GROUP for i in picked):  # "balls" names every ball of its group
        mentioned |= set(scenes.alice_group(scene))
    kept = tuple(o for j, o in enumerate(scene.objects) if j in mentioned)
    if alice and kept:  # Alice's words place objects by her layout rule: draw them where they say
        said = " ".join(words[i] for i in picked if i is not None and roles[i] == scenes.ROLE_LAYOUT)
        kept = scenes.place_by_layout(kept, said)
    if kept != scene.objects:
        scene = dataclasses.replace(scene, objects=kept)
    return prompt, scene


# ---------------------------------------------------------------------------------- checkpoints
def _save_checkpoint(folder: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer, state: dict) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for k, v in module.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().contiguous().clone()
    for i, group_state in enumerate(opt.state.values()):
        for k, v in group_state.items():
            if torch.is_tensor(v):
                tensors[f"opt.{i}.{k}"] = v.detach().contiguous().clone()
    tmp = folder / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(folder / "checkpoint.safetensors")
    (folder / "state.json.tmp").write_text(json.dumps(state, indent=1))
    (folder / "state.json.tmp").replace(folder / "state.json")


def _load_checkpoint(folder: Path, modules: dict[str, torch.nn.Module], opt: torch.optim.Optimizer) -> dict | None:
    if not (folder / "state.json").exists():
        return None
    tensors = load_file(str(folder / "checkpoint.safetensors"))
    for name, module in modules.items():
        prefix = name + "."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    params = [p for g in opt.param_groups for p in g["params"]]
    step = json.loads((folder / "state.json").read_text())["step"]
    for i, p in enumerate(params):
        keys = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
        if keys:
            opt.state[p] = {k: v for k, v in keys.items()}
            opt.state[p]["step"] = torch.tensor(float(step))
    return json.loads((folder / "state.json").read_text())


def _lr(step: int, base: float, warmup: int = 300, decay: tuple[int, int, float] | None = None) -> float:
    """Linear warm-up, constant, then (optionally) linear decay from step d0 to d1 down to base * floor."""
    lr = base * min(1.0, (step + 1) / warmup)
    if decay is not None:
        d0, d1, floor = decay
        frac = min(1.0, max(0.0, (step - d0) / max(1, d1 - d0)))
        lr *= 1.0 - frac * (1.0 - floor)
    return lr


def _train_loop(
    part: str,
    out_dir: Path,
    minutes: float,
    seed: int,
    modules: dict[str, torch.nn.Module],
    params: list[torch.nn.Parameter],
    loss_fn: Callable[[np.random.Generator, torch.Generator, int], tuple[torch.Tensor, dict]],
    base_lr: float,
    max_steps: int,
    ema: dict[str, torch.nn.Module] | None = None,
    ema_decay: float = 0.999,
    checkpoint_every_s: float = 120.0,
    lr_decay: tuple[int, int, float] | None = None,
    warmup: int = 300,
    extra_state: dict | None = None,
    ema_warmup: bool = False,
) -> dict:
    """Generic loop: resumes from the part's folder, trains until the time budget or max_steps.

    `extra_state` is recorded in a fresh state.json (what the part was trained from). `ema_warmup`: the
    EMA's decay at step s is min(ema_decay, (1 + s) / (10 + s)), so a short run's EMA is not mostly its
    initial weights."""
    folder = out_dir / part
    folder.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.AdamW(params, lr=base_lr, weight_decay=0.0)
    all_modules = {**modules, **{f"ema_{k}": v for k, v in (ema or {}).items()}}
    state = _load_checkpoint(folder, all_modules, opt) or {"step": 0, "elapsed_s": 0.0, "part": part, "seed": seed, **(extra_state or {})}
    step, elapsed = state["step"], state["elapsed_s"]
    logfile = (folder / "train.log").open("a")
    start = time.time()
    last_ckpt = start
    running: dict[str, float] = {}
    while step < max_steps and (time.time() - start) < minutes * 60:
        data_rng = np.random.default_rng([seed + TRAIN_SEED_OFFSET, _PART_ID[part], step])
        noise_gen = torch.Generator().manual_seed(int(data_rng.integers(2**62)))
        for g in opt.param_groups:
            g["lr"] = _lr(step, base_lr, warmup=warmup, decay=lr_decay)
        loss, metrics = loss_fn(data_rng, noise_gen, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema:
            decay = min(ema_decay, (1 + step) / (10 + step)) if ema_warmup else ema_decay
            with torch.no_grad():
                for name, ema_module in ema.items():
                    for pe, p in zip(ema_module.parameters(), modules[name].parameters()):
                        pe.lerp_(p, 1 - decay)
        step += 1
        for k, v in {"loss": loss.item(), **metrics}.items():
            running[k] = 0.98 * running.get(k, v) + 0.02 * v
        now = time.time()
        if step % 50 == 0:
            msg = f"{part} step {step} elapsed {elapsed + now - start:.0f}s " + " ".join(f"{k}={v:.4f}" for k, v in running.items())
            logfile.write(msg + "\n")
            logfile.flush()
            log.info(msg)
        if now - last_ckpt > checkpoint_every_s:
            _save_checkpoint(folder, all_modules, opt, {**state, "step": step, "elapsed_s": elapsed + now - start, "metrics": running})
            last_ckpt = now
    state = {**state, "step": step, "elapsed_s": elapsed + time.time() - start, "metrics": running}
    _save_checkpoint(folder, all_modules, opt, state)
    logfile.close()
    return state


# ----------------------------------------------------------------------------------------- parts
def build_generator() -> tuple[nets.BobTextEncoder, nets.FlowUNet]:
    text = nets.BobTextEncoder(nets.TextEncoderConfig(vocab_size=len(BOB_VOCAB)))
    unet = nets.FlowUNet(nets.UNetConfig())
    return text, unet


def build_captioner() -> nets.AliceCaptioner:
    return nets.AliceCaptioner(nets.CaptionerConfig(vocab_size=len(ALICE_VOCAB)))


def build_classifier() -> nets.AttributeNet:
    return nets.AttributeNet(nets.ClassifierConfig())


def attribute_targets(batch_scenes: list[scenes.Scene]) -> dict[str, torch.Tensor]:
    """Classifier targets: background; per slot shape (0 = empty), colour and size (-100 = ignore)."""
    b = len(batch_scenes)
    bg = torch.tensor([scenes.BACKGROUNDS.index(s.background) for s in batch_scenes])
    shape = torch.zeros(b, 3, dtype=torch.long)
    color = torch.full((b, 3), -100, dtype=torch.long)
    size = torch.full((b, 3), -100, dtype=torch.long)
    for i, s in enumerate(batch_scenes):
        for o in s.objects:
            j = scenes.SLOTS.index(o.slot)
            shape[i, j] = 1 + scenes.SHAPES.index(o.shape)
            color[i, j] = scenes.COLORS.index(o.color)
            size[i, j] = scenes.SIZES.index(o.size)
    return {"background": bg, "shape": shape, "color": color, "size": size}


def classifier_loss(model: nets.AttributeNet, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(images)
    loss = F.cross_entropy(out["background"], targets["background"])
    for key in ("shape", "color", "size"):
        loss = loss + F.cross_entropy(out[key].flatten(0, 1), targets[key].flatten(), ignore_index=-100)
    return loss


def train_classifier(out_dir: Path, minutes: float, seed: int = 0, batch_size: int = 64, max_steps: int = STEP_CAPS["classifier"]) -> dict:
    torch.manual_seed(seed + _PART_ID["classifier"])  # the initial weights, before any resume
    model = build_classifier()

    def loss_fn(rng, gen, step):
        batch = scenes.sample_batch(rng, batch_size)
        images = to_tensor(batch.images)
        # Light noise and blur augmentation: the classifier must also read Bob's (imperfect) images.
        if rng.random() < 0.5:
            images = images + torch.randn(images.shape, generator=gen) * float(rng.uniform(0, 0.15))
        if rng.random() < 0.3:
            images = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        return classifier_loss(model, images, attribute_targets(batch.scenes)), {}

    return _train_loop("classifier", out_dir, minutes, seed, {"model": model}, list(model.parameters()), loss_fn, 1e-3, max_steps)


def init_captioner_from(weights_dir: Path, model: nets.AliceCaptioner) -> None:
    """Start Alice from shipped captioner weights whose vocabulary may differ: each word's embedding
    and output row come from the same word (or, for "an", from "a"); new words start fresh."""
    meta = json.loads((Path(weights_dir) / "world.json").read_text())
    old_index = {w: i for i, w in enumerate(meta["alice_vocab"])}
    state = {k: v.float() for k, v in load_file(str(Path(weights_dir) / "alice.safetensors")).items()}
    fresh = model.state_dict()
    for key in ("embed.weight", "head.weight", "head.bias"):
        rows = fresh[key].clone()
        for i, word in enumerate(ALICE_VOCAB.itos):
            source = word if word in old_index else {"an": "a"}.get(word)
            if source in old_index:
                rows[i] = state[key][old_index[source]]
        state[key] = rows
    model.load_state_dict(state)


CAPTIONER_FINETUNE_LR = 2e-4


def train_captioner(
    out_dir: Path, minutes: float, seed: int = 0, batch_size: int = 48, max_steps: int = STEP_CAPS["captioner"], init_from: Path | None = None
) -> dict:
    """Alice's captioner on her caption style; with `init_from`, fine-tuned from those weights on more
    2- and 3-object scenes (whether neighbours share a plural noun is the hard decision)."""
    torch.manual_seed(seed + _PART_ID["captioner"])
    model = build_captioner()
    base_lr, decay, count_p = 5e-4, None, scenes.COUNT_PROBABILITIES
    if init_from is not None:
        init_captioner_from(init_from, model)
        base_lr, decay, count_p = CAPTIONER_FINETUNE_LR, (int(0.4 * max_steps), max_steps, 0.1), FINETUNE_COUNT_P

    def loss_fn(rng, gen, step):
        batch = scenes.sample_batch(rng, batch_size, count_p)
        captions = [scenes.alice_caption(s, rng).split() for s in batch.scenes]
        tokens = ALICE_VOCAB.tokens(captions, eos=True)
        logits = model.decode(tokens[:, :-1], model.encode_image(to_tensor(batch.images)))
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=nets.PAD_ID)
        return loss, {}

    return _train_loop("captioner", out_dir, minutes, seed, {"model": model}, list(model.parameters()), loss_fn, base_lr, max_steps, lr_decay=decay)


# ------------------------------------------------------------------------------ perceptual weights


def perturb_scene(scene: scenes.Scene, rng: np.random.Generator) -> scenes.Scene:
    """The scene with one thing changed, as a person would notice it: an object's colour, shape, size
    or slot, an object removed or added, or the background; the seed (textures, jitter) is redrawn."""
    objects = list(scene.objects)
    free = [s for s in scenes.SLOTS if s not in {o.slot for o in objects}]
    kinds = ["color", "shape", "size", "remove", "background"] + (["move", "add"] if free else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    j = int(rng.integers(len(objects)))
    o = objects[j]
    if kind == "background":
        background = [b for b in scenes.BACKGROUNDS if b != scene.background][int(rng.integers(len(scenes.BACKGROUNDS) - 1))]
        scene = dataclasses.replace(scene, background=background)
    elif kind == "remove":
        objects.pop(j)
    elif kind == "add":
        objects.append(scenes.WorldObject(scenes.SHAPES[int(rng.integers(3))], scenes.COLORS[int(rng.integers(6))], scenes.SIZES[int(rng.integers(2))], free[int(rng.integers(len(free)))]))
    elif kind == "move":
        objects[j] = dataclasses.replace(o, slot=free[int(rng.integers(len(free)))])
    else:
        values = {"color": scenes.COLORS, "shape": scenes.SHAPES, "size": scenes.SIZES}[kind]
        other = [v for v in values if v != getattr(o, kind)]
        objects[j] = dataclasses.replace(o, **{kind: other[int(rng.integers(len(other)))]})
    objects.sort(key=lambda x: scenes.SLOTS.index(x.slot))
    return dataclasses.replace(scene, objects=tuple(objects), seed=int(rng.integers(2**31)))


def _camera(images: np.ndarray, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
    """Imperfections of a generated picture: light blur, noise, 8-bit levels."""
    x = to_tensor(images)
    if rng.random() < 0.5:
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 0.5 + x * 0.5
    x = x + torch.randn(x.shape, generator=gen) * float(rng.uniform(0, 0.06))
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def train_perceptual(out_dir: Path, minutes: float, seed: int = 0, batch_size: int = 64, max_steps: int = STEP_CAPS["perceptual"],
                     classifier_from: Path | None = None) -> dict:
    """The perceptual metric's linear weights, learnt as LPIPS learnt its own from human judgements.

    LPIPS weights each channel of its trunk by how much people notice differences there (2AFC
    judgements). The world's judge is its ground truth: of two pictures, the one showing the same
    scene as the reference (another seed: other textures and jitter) must be closer than one showing
    a changed scene (one attribute, object or background different). Without these weights the
    distance is dominated by textures and jitter: a re-rendering of the very same scene was often
    further than the scene with an object missing. The JND term (`JNDCut`) makes that hold across
    scenes, not only against one reference, so one success threshold can mean success everywhere.
    """
    from lsc.backends.world.perceptual import LinearWeights

    classifier = build_classifier()
    if classifier_from is not None:
        classifier.load_state_dict({k: v.float() for k, v in load_file(str(Path(classifier_from) / "attributes.safetensors")).items()})
    else:
        tensors = load_file(str(out_dir / "classifier" / "checkpoint.safetensors"))
        classifier.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    classifier.eval().requires_grad_(False)
    lin = LinearWeights(classifier.cfg.channels)
    cut = JNDCut()

    def loss_fn(rng, gen, step):
        refs = [scenes.sample_scene(rng) for _ in range(batch_size)]
        same = [dataclasses.replace(s, seed=int(rng.integers(2**31))) for s in refs]
        diff = [perturb_scene(s, rng) for s in refs]
        removed = [remove_object(s, rng) for s in refs]
        with torch.no_grad():
            f_ref = classifier.features(to_tensor(np.stack([scenes.render(s) for s in refs])))
            f_same, f_diff, f_removed = (
                classifier.features(_camera(np.stack([scenes.render(s) for s in batch]), rng, gen)) for batch in (same, diff, removed)
            )
        d_same, d_diff, d_removed = lin.distance(f_ref, f_same), lin.distance(f_ref, f_diff), lin.distance(f_ref, f_removed)
        two_afc = F.softplus(-lin.scale() * (d_diff - d_same)).mean()
        jnd = cut.loss(d_same, d_diff, d_removed)
        metrics = {"agree": float((d_diff > d_same).float().mean()), "jnd": float(jnd.detach()), "cut": float(cut.bias.detach())}
        return two_afc + jnd, metrics

    params = list(lin.parameters()) + list(cut.parameters())
    return _train_loop("perceptual", out_dir, minutes, seed, {"lin": lin, "cut": cut}, params, loss_fn, 3e-2, max_steps,
                       extra_state={"objective": "2AFC + JND"})


class JNDCut(torch.nn.Module):
    """One distance for every scene that separates "the same scene" from "a changed scene".

    LPIPS was checked on two kinds of human judgement: which of two distortions is closer (2AFC) and
    whether a pair differs at all (JND). 2AFC alone ranks pictures against one reference, so a busy
    scene's re-rendering could be further than a quiet scene with an object missing, and no single
    success threshold could hold across scenes. This logistic term asks every re-rendering to fall
    under one learnt cut and every changed scene (one attribute changed, or an object removed) above it.
    It trains beside the channel weights and is not shipped: the threshold is derived afterwards from
    Bob's images (evaluate.derive_threshold).
    """

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.full((), 0.5))
        self.log_scale = torch.nn.Parameter(torch.zeros(()))

    def loss(self, d_same: torch.Tensor, d_changed: torch.Tensor, d_removed: torch.Tensor) -> torch.Tensor:
        k = self.log_scale.exp() * 4.0
        above = 0.5 * (F.softplus(-k * (d_changed - self.bias)).mean() + F.softplus(-k * (d_removed - self.bias)).mean())
        return F.softplus(k * (d_same - self.bias)).mean() + above


def remove_object(scene: scenes.Scene, rng: np.random.Generator) -> scenes.Scene:
    """The scene with one of its objects taken away (the background alone for a one-object scene); new seed."""
    objects = list(scene.objects)
    objects.pop(int(rng.integers(len(objects))))
    return dataclasses.replace(scene, objects=tuple(objects), seed=int(rng.integers(2**31)))


GENERATOR_LR_DECAY = (8000, 14000, 0.07)  # constant 3e-4 to step 8000, then linear to 2e-5 at 14000
FINETUNE_LR = 2e-4
FINETUNE_COUNT_P = (0.25, 0.4, 0.35)  # fine-tuning sees more 2- and 3-object scenes: binding is the hard part
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


def binding_prompt(scene: scenes.Scene, rng: np.random.Generator, content_only_rate: float = CONTENT_ONLY_RATE) -> tuple[list[str], list[int]]:
    """A full prompt for the binding objective, in either style, with its roles. Alice places objects by her layout rule rather than slot words, so her captions need the
    objective as much as Bob's reordered phrases do: each object word must carry its object's slot."""
    if rng.random() < ALICE_STYLE_RATE:
        words, roles = scenes.alice_caption_roles(scene)
    else:
        words, roles = scenes.bob_caption_roles(scene, rng, shuffle_objects=True)
    if rng.random() < content_only_rate:  # without its function words each word must still carry its object
        words, roles = without_function_words(words, roles)
    return words, roles


def binding_targets(
    batch_scenes: list[scenes.Scene], roles: list[list[int]], width: int
) -> dict[str, torch.Tensor]:
    """Per-token targets (B, width) for BindingHead; -100 where a word says nothing about the key.
    Token 0 is [BOS]; word i of a prompt is token i + 1."""
    b = len(batch_scenes)
    out = {k: torch.full((b, width), -100, dtype=torch.long) for k in ("color", "shape", "size", "slot", "background")}
    for i, (scene, rs) in enumerate(zip(batch_scenes, roles)):
        for w, r in enumerate(rs[: width - 1]):
            if r == scenes.ROLE_BACKGROUND:
                out["background"][i, w + 1] = scenes.BACKGROUNDS.index(scene.background)
            elif r == scenes.ROLE_GROUP:  # a plural noun: the shape its objects share, not one object's slot
                out["shape"][i, w + 1] = scenes.SHAPES.index(scene.objects[scenes.alice_group(scene)[0]].shape)
            elif r >= 0:
                o = scene.objects[r]
                out["color"][i, w + 1] = scenes.COLORS.index(o.color)
                out["shape"][i, w + 1] = scenes.SHAPES.index(o.shape)
                out["size"][i, w + 1] = scenes.SIZES.index(o.size)
                out["slot"][i, w + 1] = scenes.SLOTS.index(o.slot)
    return out


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
    content_only_rate: float = CONTENT_ONLY_RATE,
) -> dict:
    """Bob's text encoder + U-Net: rectified flow on partial prompts, plus the binding objective.

    With `init_from` (a weights folder), fine-tune from those weights: a fresh optimizer, FINETUNE_LR
    with linear decay over the last 60% of `max_steps`, and more multi-object scenes.
    """
    torch.manual_seed(seed + _PART_ID["generator"])
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

    def loss_fn(rng, gen, step):
        batch_scenes = [scenes.sample_scene(rng, count_p) for _ in range(batch_size)]
        full = [binding_prompt(s, rng, content_only_rate) for s in batch_scenes]
        pairs = [training_prompt(s, rng, content_only_rate) for s in batch_scenes]
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
        return flow + BINDING_WEIGHT * bind, {"flow": flow.item(), "bind": bind.item()}

    return _train_loop(
        "generator", out_dir, minutes, seed, {"text": text, "unet": unet, "binding": binding},
        list(text.parameters()) + list(unet.parameters()) + list(binding.parameters()),
        loss_fn, base_lr, max_steps, ema={"text": ema_text, "unet": ema_unet}, lr_decay=decay,
        extra_state={"content_only_rate": content_only_rate},
    )


# ---------------------------------------------------------------------------------- flow_fast
FLOW_FAST_PAIRS = 6144  # (noise, teacher image) pairs, generated once and cached in the part's folder
FLOW_FAST_CHUNK = 256  # pairs generated (and saved) at a time: an interrupted run loses at most one chunk
FLOW_FAST_LR = 1e-4
FLOW_FAST_ON_GRID = 0.75  # share of training times on the student's own sampler times; the rest uniform
FLOW_FAST_EMA = 0.998


def _teacher_record(teacher_dir: Path) -> dict:
    from lsc.backends.world.backend import file_sha256

    meta = json.loads((Path(teacher_dir) / "world.json").read_text())
    return {
        "bob_text_sha256": file_sha256(Path(teacher_dir) / "bob_text.safetensors"),
        "bob_unet_sha256": file_sha256(Path(teacher_dir) / "bob_unet.safetensors"),
        "sampler": meta.get("sampler", {}),
        "generator_training": meta.get("training", {}).get("generator", {}),
    }


def teacher_pairs(
    folder: Path, teacher_dir: Path, n_pairs: int, seed: int, deadline: float, chunk: int = FLOW_FAST_CHUNK,
    logfile=None,
) -> dict | None:
    """The (noise, teacher image, prompt) pairs the student learns from, memory-mapped .npy files in
    `folder`, generated chunk by chunk (resumable; each chunk's data depends on (seed, chunk) only).

    Prompts are drawn as the generator's training prompts are (`training_prompt`: Alice's or Bob's
    phrasing, partial, reordered, empty, with unknown words) on the fine-tuning scene mix; each pair
    has its own noise, and its image is the teacher's guided Euler sample from that noise with the
    teacher's own sampler settings (the `flow` receiver's images). Returns the arrays when every chunk
    is done, None when `deadline` (time.time()) came first.
    """
    from lsc.backends.world.backend import euler_sample, load_models

    teacher = load_models(str(Path(teacher_dir).resolve()))
    sampler = teacher.meta.get("sampler", {})
    steps, guidance = int(sampler.get("steps", 8)), float(sampler.get("guidance", 3.0))
    record = {"pairs": n_pairs, "chunk": chunk, "seed": seed, "teacher_unet_sha256": _teacher_record(teacher_dir)["bob_unet_sha256"],
              "teacher_sampler": {"steps": steps, "guidance": guidance}}
    meta_path = folder / "pairs.json"
    done = 0
    old_pairs = None
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        same = {k: v for k, v in record.items() if k != "pairs"}
        if {k: old.get(k) for k in same} != same:
            raise ConfigError(f"{folder} holds teacher pairs of another teacher, seed or chunk size; distil into a new --out folder")
        done, old_pairs = old["done"], old["pairs"]
    size = scenes.IMAGE_SIZE
    max_len = teacher.text.cfg.max_len
    shapes = {"noise": (np.float32, (3, size, size)), "image": (np.float32, (3, size, size)), "tokens": (np.int32, (max_len,))}
    n_chunks = math.ceil(n_pairs / chunk)
    if old_pairs is not None and old_pairs != n_pairs:
        # Another pair count: a pair depends on (seed, chunk, row) only, so the rows both counts have are kept.
        keep = min(done * chunk, old_pairs, n_pairs)
        for name, (dtype, shape) in shapes.items():
            old_arr = np.load(folder / f"pairs_{name}.npy", mmap_mode="r")
            new_arr = np.lib.format.open_memmap(folder / f"pairs_{name}.tmp.npy", "w+", dtype, (n_pairs, *shape))
            new_arr[:keep] = old_arr[:keep]
            new_arr.flush()
            del old_arr, new_arr
            (folder / f"pairs_{name}.tmp.npy").replace(folder / f"pairs_{name}.npy")
        done = n_chunks if keep >= n_pairs else keep // chunk
        meta_path.write_text(json.dumps({**record, "done": done}))
    mode = "r+" if meta_path.exists() else "w+"
    arrays = {name: np.lib.format.open_memmap(folder / f"pairs_{name}.npy", mode, dtype, (n_pairs, *shape))
              for name, (dtype, shape) in shapes.items()}
    if mode == "w+":
        meta_path.write_text(json.dumps({**record, "done": 0}))
    start = time.time()
    while done < n_chunks:
        if time.time() >= deadline:
            return None
        lo, hi = done * chunk, min(n_pairs, (done + 1) * chunk)
        rng = np.random.default_rng([seed + TRAIN_SEED_OFFSET, _PART_ID["flow_fast"], 0, done])
        # A whole chunk's prompts and noise are drawn even when the last chunk keeps fewer rows, so row r
        # of chunk k is the same pair whatever the pair count.
        prompts = [training_prompt(scenes.sample_scene(rng, FINETUNE_COUNT_P), rng)[0] for _ in range(chunk)][: hi - lo]
        tokens = teacher.bob_vocab.tokens(prompts, max_len)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        noise = torch.randn((chunk, 3, size, size), generator=gen)[: hi - lo].contiguous()
        images = []
        with torch.inference_mode():
            empty = torch.zeros(1, tokens.shape[1], dtype=torch.long)
            empty[0, 0] = nets.BOS_ID
            u_feats, u_pad = teacher.text(empty)
            for i in range(0, hi - lo, 16):  # the sampler's own pass size (backend.CHUNK)
                feats, padding = teacher.text(tokens[i : i + 16])
                b = len(feats)
                uncond = (u_feats.expand(b, -1, -1), u_pad.expand(b, -1))
                images.append(euler_sample(teacher.unet, noise[i : i + b].clone(), feats, padding, steps, guidance, uncond))
        padded = np.zeros((hi - lo, max_len), np.int32)
        padded[:, : tokens.shape[1]] = tokens.numpy()
        arrays["noise"][lo:hi] = noise.numpy()
        arrays["image"][lo:hi] = torch.cat(images).numpy()
        arrays["tokens"][lo:hi] = padded
        done = commit_chunk(arrays, meta_path, record, done, f"flow_fast teacher pairs {hi}/{n_pairs} ({time.time() - start:.0f}s this call)", logfile)
    return arrays


def commit_chunk(arrays: dict[str, np.ndarray], meta_path: Path, record: dict, done: int, message: str, logfile: Any = None) -> int:
    """Make a filled chunk of a memory-mapped training cache durable: flush the arrays, then count the chunk
    in the cache's json (in that order, so a kill never counts a chunk whose rows are not on disk)."""
    for a in arrays.values():
        a.flush()
    done += 1
    meta_path.write_text(json.dumps({**record, "done": done}))
    log.info(message)
    if logfile is not None:
        logfile.write(message + "\n")
        logfile.flush()
    return done


def train_flow_fast(
    out_dir: Path, minutes: float, teacher_dir: Path, seed: int = 0, batch_size: int = 32, max_steps: int = STEP_CAPS["flow_fast"],
    pairs: int = FLOW_FAST_PAIRS, sampler_steps: int = 2, chunk: int = FLOW_FAST_CHUNK,
) -> dict:
    """Bob's flow generator distilled to `sampler_steps` Euler steps with guidance folded in (`flow_fast`).

    The student is the teacher's U-Net architecture, initialised from the teacher's U-Net, reading
    the teacher's frozen text encoder; it predicts the guided velocity itself (no unconditional
    branch: one evaluation per step). It learns the straight path from each pair's noise to the
    teacher's guided 8-step image (rectified-flow reflow): at time t it sees (1 - t) image + t noise
    and regresses noise - image, t mostly on its own sampler's times (1, 1/2 for 2 steps), else
    uniform. The time budget covers generating the pairs (cached, resumable) and training.
    """
    from lsc.backends.world.backend import load_models

    folder = out_dir / "flow_fast"
    folder.mkdir(parents=True, exist_ok=True)
    if sampler_steps < 1 or pairs < 1:
        raise ConfigError("flow_fast needs at least 1 sampler step and 1 teacher pair")
    record = _teacher_record(teacher_dir)
    state_path = folder / "state.json"
    if state_path.exists():
        old = json.loads(state_path.read_text())
        if (old.get("teacher", {}).get("bob_unet_sha256") != record["bob_unet_sha256"] or old.get("sampler_steps") != sampler_steps
                or old.get("pairs") != pairs):
            raise ConfigError(f"{folder} distils another teacher, step count or pair count; use a new --out folder")
    start = time.time()
    logfile = (folder / "train.log").open("a")
    try:
        arrays = teacher_pairs(folder, teacher_dir, pairs, seed, start + minutes * 60, chunk, logfile)
    finally:
        logfile.close()
    if arrays is None:  # the budget ended while generating pairs: resume later
        return json.loads(state_path.read_text()) if state_path.exists() else {"step": 0, "elapsed_s": 0.0, "part": "flow_fast", "seed": seed}
    teacher = load_models(str(Path(teacher_dir).resolve()))
    torch.manual_seed(seed + _PART_ID["flow_fast"])
    student = nets.FlowUNet(nets.UNetConfig())
    student.load_state_dict(teacher.unet.state_dict())
    ema = nets.FlowUNet(nets.UNetConfig())
    ema.load_state_dict(teacher.unet.state_dict())
    student = student.to(memory_format=torch.channels_last).train()
    ema = ema.to(memory_format=torch.channels_last).requires_grad_(False)
    grid = torch.arange(sampler_steps, 0, -1, dtype=torch.float32) / sampler_steps  # 1, ..., 1/steps
    n = len(arrays["noise"])

    def loss_fn(rng, gen, step):
        idx = np.sort(rng.choice(n, size=batch_size, replace=False)) if batch_size <= n else rng.integers(0, n, batch_size)
        noise = torch.from_numpy(np.ascontiguousarray(arrays["noise"][idx]))
        x0 = torch.from_numpy(np.ascontiguousarray(arrays["image"][idx]))
        tokens = torch.from_numpy(np.ascontiguousarray(arrays["tokens"][idx])).long()
        tokens = tokens[:, : max(1, int((tokens != nets.PAD_ID).sum(1).max()))]
        on_grid = torch.from_numpy(rng.random(batch_size) < FLOW_FAST_ON_GRID)
        t = torch.where(on_grid, grid[torch.from_numpy(rng.integers(0, sampler_steps, batch_size))],
                        torch.from_numpy(rng.random(batch_size).astype(np.float32)))
        with torch.no_grad():
            feats, padding = teacher.text(tokens)
        tt = t[:, None, None, None]
        xt = ((1 - tt) * x0 + tt * noise).contiguous(memory_format=torch.channels_last)
        v = student(xt, t, feats, padding)
        loss = F.mse_loss(v, noise - x0)
        with torch.no_grad():
            grid_loss = float(F.mse_loss(v[on_grid], (noise - x0)[on_grid])) if bool(on_grid.any()) else 0.0
        return loss, {"on_grid": grid_loss}

    spent = (time.time() - start) / 60
    return _train_loop(
        "flow_fast", out_dir, max(0.0, minutes - spent), seed, {"unet": student}, list(student.parameters()), loss_fn,
        FLOW_FAST_LR, max_steps, ema={"unet": ema}, ema_decay=FLOW_FAST_EMA, lr_decay=(int(0.4 * max_steps), max_steps, 0.1),
        warmup=min(100, max_steps), extra_state={"teacher": record, "sampler_steps": sampler_steps, "pairs": pairs}, ema_warmup=True,
    )


def train(
    out_dir: Path, minutes: float, parts: tuple[str, ...] = PARTS, seed: int = 0, max_steps: dict[str, int] | None = None,
    init_generator: Path | None = None, init_captioner: Path | None = None, base_weights: Path | None = None,
    policy_options: dict | None = None,
    flow_fast: dict | None = None,
    generator_options: dict | None = None,
    vqvae_ar: dict | None = None,
) -> dict:
    """Train the given parts one after another, splitting the time budget by their needs.

    The policy part (lowest_lpips traces with the generator of `base_weights`, default the shipped weights,
    then the policy; see lsc.backends.world.policy) trains alone: its traces need finished weights.

    A part stops at its time share or at its step cap (`max_steps`), whichever comes first; with caps
    that the budget allows, the result depends on the seed only, not on the machine's speed.
    """
    torch.set_flush_denormal(True)  # denormal floats make CPU training crawl without it
    if POLICY in parts:
        if len(parts) > 1:
            raise ConfigError("train the policy in a call of its own (--part policy), with --base-weights at finished weights")
        from lsc.backends.world.policy import train_policy

        cap = {**STEP_CAPS, **(max_steps or {})}[POLICY]
        return {POLICY: train_policy(Path(out_dir), minutes, seed, cap, weights=base_weights, **(policy_options or {}))}
    if set(parts) & set(VQVAE_AR_PARTS):
        from lsc.backends.world.vqvae_ar import train_vqvae_ar_parts

        return train_vqvae_ar_parts(Path(out_dir), minutes, parts, seed, {**STEP_CAPS, **(max_steps or {})}, base_weights or init_generator,
                                    **(vqvae_ar or {}))
    share = {"classifier": 0.07, "perceptual": 0.01, "captioner": 0.22, "generator": 0.70, "flow_fast": 1.0}
    total = sum(share[p] for p in parts)
    states = {}
    for part in parts:
        budget = minutes * share[part] / total
        if part == "flow_fast":
            teacher = init_generator or base_weights
            if teacher is None:
                raise ConfigError("the flow_fast part distils a finished generator: give its weights folder with --init-generator")
            states[part] = train_flow_fast(Path(out_dir), budget, Path(teacher), seed,
                                           max_steps={**STEP_CAPS, **(max_steps or {})}["flow_fast"], **(flow_fast or {}))
            continue
        fn = {"classifier": train_classifier, "perceptual": train_perceptual, "captioner": train_captioner, "generator": train_generator}[part]
        kwargs: dict = {"max_steps": {**STEP_CAPS, **(max_steps or {})}[part]}
        if part == "perceptual" and not (Path(out_dir) / "classifier" / "state.json").exists():
            if base_weights is None:
                raise ConfigError("the perceptual part needs a classifier: train it in the same folder (--part classifier) or give --base-weights")
            kwargs["classifier_from"] = Path(base_weights)
        if part == "generator" and init_generator is not None:
            kwargs["init_from"] = Path(init_generator)
        if part == "generator":
            kwargs.update(generator_options or {})
        if part == "captioner" and init_captioner is not None:
            kwargs["init_from"] = Path(init_captioner)
        states[part] = fn(Path(out_dir), budget, seed, **kwargs)
    return states


# ----------------------------------------------------------------------------------------- export
def export_weights(train_dir: Path, weights_dir: Path, extra_meta: dict | None = None, base_weights: Path | None = None) -> None:
    """Write the shipped weights (fp16 safetensors + world.json) from finished training folders.

    A part not trained in `train_dir` (a generator-only fine-tune) is copied from `base_weights`,
    the weights folder it started from, with its training record.
    """
    weights_dir.mkdir(parents=True, exist_ok=True)
    files = {"generator": ("bob_text", "bob_unet"), "captioner": ("alice",), "classifier": ("attributes",), "perceptual": ("perceptual",)}
    prefixes = {"bob_text": "ema_text.", "bob_unet": "ema_unet.", "alice": "model.", "attributes": "model.", "perceptual": "lin."}
    base_meta = json.loads((Path(base_weights) / "world.json").read_text()) if base_weights else {}
    training: dict[str, dict] = {}
    for part, names in files.items():
        state_path = train_dir / part / "state.json"
        if state_path.exists():
            tensors = load_file(str(train_dir / part / "checkpoint.safetensors"))
            for name in names:
                prefix = prefixes[name]
                out = {k[len(prefix):]: v.half().contiguous() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith(prefix)}
                save_file(out, str(weights_dir / f"{name}.safetensors"))
            training[part] = json.loads(state_path.read_text())
            training[part].pop("metrics", None)
        elif base_weights is not None and all((Path(base_weights) / f"{n}.safetensors").exists() for n in names):
            for name in names:
                if Path(base_weights).resolve() != weights_dir.resolve():
                    shutil.copyfile(Path(base_weights) / f"{name}.safetensors", weights_dir / f"{name}.safetensors")
            training[part] = {**base_meta.get("training", {}).get(part, {}), "from": "base weights"}
        elif part == "perceptual":
            continue  # weights from before the learnt channel weights: the metric stays LPIPS' baseline
        else:
            raise FileNotFoundError(f"{part} was not trained in {train_dir} and no base weights folder was given")
    if base_weights is not None and (train_dir / "generator" / "state.json").exists():
        training["generator"]["fine_tuned_from"] = base_meta.get("training", {}).get("generator", {})
    meta = {"bob_vocab": BOB_VOCAB.itos, "alice_vocab": ALICE_VOCAB.itos, "training": training, **(extra_meta or {})}
    (weights_dir / "world.json").write_text(json.dumps(meta, indent=1))
