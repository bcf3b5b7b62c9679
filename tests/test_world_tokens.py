"""The world's token ids and image tensors come from one place (nets.py) for inference and training, and
are the ids the shipped weights were trained on."""

from __future__ import annotations

import numpy as np
import torch

from lsc.backends.world import STEP_CAPS, nets, scenes
from lsc.backends.world.training.data import ALICE_VOCAB, BOB_VOCAB


def _old_prompt_ids(vocab: nets.WordVocab, prompts: list[list[str]], max_len: int) -> torch.Tensor:
    """train.encode_prompts as the shipped weights were trained with it."""
    rows = [[2] + vocab.encode(p)[: max_len - 1] for p in prompts]
    out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def test_token_ids_are_the_trained_ones() -> None:
    assert nets.WordVocab(["red"]).itos[:4] == ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    assert (nets.PAD_ID, nets.UNK_ID, nets.BOS_ID, nets.EOS_ID) == (0, 1, 2, 3)
    rng = np.random.default_rng(0)
    words = scenes.BOB_WORDS + ["zebra"]  # an unknown word too
    prompts = [[words[int(i)] for i in rng.integers(len(words), size=int(n))] for n in rng.integers(1, 20, size=16)]
    for max_len in (4, 12, 40):
        assert torch.equal(BOB_VOCAB.tokens(prompts, max_len), _old_prompt_ids(BOB_VOCAB, prompts, max_len))
    captions = [p[:8] for p in prompts]
    got = ALICE_VOCAB.tokens(captions, eos=True)
    for row, cap in zip(got.tolist(), captions):
        ids = [2] + ALICE_VOCAB.encode(cap) + [3]
        assert row == ids + [0] * (len(row) - len(ids))


def test_one_image_to_tensor() -> None:
    img = np.random.default_rng(1).random((32, 32, 3))
    x = nets.to_tensor(img)
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32
    old = torch.from_numpy(np.ascontiguousarray(img[None])).permute(0, 3, 1, 2).float() * 2 - 1  # train.to_tensor
    assert torch.equal(x, old) and torch.equal(nets.to_tensor([img, img]), torch.cat([old, old]))


def test_step_caps_are_the_cli_defaults_and_train_defaults() -> None:
    import inspect

    from typer.testing import CliRunner

    from lsc.schemes import policy_training as P
    from lsc.backends.world.training import captioner, flow_fast, generator, perception
    from lsc.backends.world.training import vqvae_ar as V
    from lsc.cli import app

    help_text = CliRunner().invoke(app, ["world", "train", "--help"], env={"COLUMNS": "200"}).output
    for part, cap in STEP_CAPS.items():
        assert f"--{part.replace('_', '-')}-steps" in help_text
        # the policy's loop lives with the policy, the vqvae_ar receiver's parts in training.vqvae_ar
        fn = getattr(P if part == "policy" else V if part in ("vqvae", "prior") else {"classifier": perception, "perceptual": perception, "captioner": captioner,
                                                                        "generator": generator, "flow_fast": flow_fast}[part], f"train_{part}")
        assert inspect.signature(fn).parameters["max_steps"].default == cap
    assert "14000" in help_text and "3360" in help_text
