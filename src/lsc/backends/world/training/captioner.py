"""Training Alice's captioner on her caption style (from scratch or fine-tuned from shipped weights)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lsc.backends.world import STEP_CAPS, nets, scenes
from lsc.backends.world.nets import to_tensor
from lsc.backends.world.training import loop
from lsc.backends.world.training.data import ALICE_VOCAB, FINETUNE_COUNT_P


def build_captioner() -> nets.AliceCaptioner:
    return nets.AliceCaptioner(nets.CaptionerConfig(vocab_size=len(ALICE_VOCAB)))


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
    torch.manual_seed(seed + loop.PART_ID["captioner"])
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

    return loop.train_loop("captioner", out_dir, minutes, seed, {"model": model}, list(model.parameters()), loss_fn, base_lr, max_steps, lr_decay=decay)
