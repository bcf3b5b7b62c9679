"""Alice's style translator on the world (the `seq2seq` SKD engine): training, export, held-out check.

Alice learns Bob's style the way the world lets her: from captions of the same scenes in both styles.
Each training pair is (Alice's caption, Bob's own phrasing) of a scene drawn from the data stream
(seed + 10**6, 8, step) (training.loop.PART_ID): no study draws it (study scenes come from (seed, index, 7919)) and no
other training part does (their stream ids are 1 to 7). She sees caption pairs only, never Bob's
generator or text encoder. The model is `lsc.language.translator.StyleTranslator`; the loop is the
world's generic training loop (resumable, checkpointed, train.log, deterministic per step).

`lsc world train --part skd --out DIR` trains into DIR/skd and exports DIR/weights/skd_translator.safetensors
with its training record and held-out exactness in DIR/weights/skd_translator.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsc.backends.world import caption_parser, scenes
from lsc.language.translator import StyleTranslator, TranslatorConfig, describe, load_translator, save_translator

log = logging.getLogger("lsc.world.skd")

SKD_PART = "skd"
SKD_STEPS = 2400
SKD_BATCH = 64
SKD_LR = 1e-3
SKD_WARMUP = 100
# More two- and three-object scenes than a study draws: ordering and placing phrases is the hard part.
SKD_COUNT_P = (0.2, 0.4, 0.4)
TRANSLATOR_FILE = "skd_translator.safetensors"
RECORD_FILE = "skd_translator.json"
HELD_OUT_SEED = 2024  # `lsc world eval`'s scenes: the check runs on scenes a study draws, never trained on
HELD_OUT_SCENES = 1000


def translator_config() -> TranslatorConfig:
    """Alice's words in, Bob's own words out (his base words: a rewrite uses no synonym)."""
    target = [w for w in scenes.BOB_OWN_WORDS if w not in scenes.SYNONYM_BASE]
    return TranslatorConfig(source_words=list(scenes.ALICE_WORDS), target_words=target)


def training_pair(scene: scenes.Scene) -> tuple[list[str], list[str]]:
    """(Alice's caption, Bob's own phrasing) of one scene, as words."""
    return scenes.alice_caption(scene).split(), scenes.bob_caption(scene).split()


def train_translator(out_dir: Path, minutes: float, seed: int = 0, max_steps: int = SKD_STEPS,
                     batch_size: int = SKD_BATCH) -> dict[str, Any]:
    """Train (or resume) the translator in out_dir/skd until `minutes` or `max_steps`."""
    from lsc.backends.world.training.loop import PART_ID, train_loop

    part_id = PART_ID[SKD_PART]  # the loop draws each step's data by this id
    torch.manual_seed(seed * 100 + part_id)
    model = StyleTranslator(translator_config())

    def loss_fn(rng: np.random.Generator, _gen: torch.Generator, _step: int) -> tuple[torch.Tensor, dict]:
        pairs = [training_pair(scenes.sample_scene(rng, SKD_COUNT_P)) for _ in range(batch_size)]
        loss, accuracy = model.loss(model.source_tokens([a for a, _ in pairs]), model.target_tokens([b for _, b in pairs]))
        return loss, {"token_accuracy": float(accuracy)}

    return train_loop(
        SKD_PART, Path(out_dir), minutes, seed, {"model": model}, list(model.parameters()), loss_fn, SKD_LR, max_steps,
        warmup=SKD_WARMUP, lr_decay=(max_steps // 2, max_steps, 0.05), checkpoint_every_s=60.0,
        extra_state={"batch_size": batch_size, "data_stream": f"[seed + 10**6, {part_id}, step]",
                     "count_probabilities": list(SKD_COUNT_P), "model": describe(model)},
    )


def held_out_check(path: Path, n_scenes: int = HELD_OUT_SCENES, seed: int = HELD_OUT_SEED) -> dict[str, Any]:
    """How the shipped translator does on Alice's true captions of held-out scenes: exact match with
    Bob's own phrasing, and every attribute kept (by the world's caption parser)."""
    model = load_translator(str(path))
    samples = [scenes.world_scene(i, seed) for i in range(n_scenes)]
    outputs = model.translate([scenes.alice_caption(s).split() for s in samples])
    exact = [" ".join(o) == scenes.bob_caption(s) for o, s in zip(outputs, samples)]
    kept = [caption_parser.parse_caption(" ".join(o)) == caption_parser.parse_caption(scenes.alice_caption(s)) for o, s in zip(outputs, samples)]
    wrong = [(scenes.alice_caption(s), " ".join(o)) for o, s, e in zip(outputs, samples, exact) if not e]
    return {"scenes": n_scenes, "seed": seed, "exact": round(float(np.mean(exact)), 4),
            "attributes_kept": round(float(np.mean(kept)), 4), "wrong_examples": wrong[:5]}


def export_translator(out_dir: Path, weights_dir: Path) -> dict[str, Any]:
    """Write weights_dir/skd_translator.safetensors (fp16) and its record (training state, held-out check)."""
    from safetensors.torch import load_file

    folder = Path(out_dir) / SKD_PART
    state = json.loads((folder / "state.json").read_text())
    model = StyleTranslator(translator_config())
    tensors = load_file(str(folder / "checkpoint.safetensors"))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / TRANSLATOR_FILE
    save_translator(model, path)
    load_translator.cache_clear()
    state.pop("metrics", None)
    record = {"training": state, "held_out": held_out_check(path)}
    (weights_dir / RECORD_FILE).write_text(json.dumps(record, indent=1))
    return record


def train_cmd_part(out: Path, minutes: float, parts: tuple[str, ...], seed: int = 0, max_steps: int | None = None,
                   export: bool = True, threads: int | None = None) -> dict[str, Any]:
    """`lsc world train --part skd`: train (or resume), then export when the step cap is reached."""
    from lsc.errors import ConfigError

    if set(parts) != {SKD_PART}:
        raise ConfigError("--part skd trains alone (Alice's style translator): give it in a call of its own")
    max_steps = SKD_STEPS if max_steps is None else max_steps
    if max_steps < 1:
        raise ConfigError(f"--skd-steps must be at least 1, got {max_steps}")
    if threads is not None:
        from lsc.limits import machine_threads

        torch.set_num_threads(machine_threads(threads, "--threads"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_flush_denormal(True)
    state = train_translator(Path(out), minutes, seed, max_steps)
    summary: dict[str, Any] = {SKD_PART: {"step": state["step"], "elapsed_s": round(state["elapsed_s"])}}
    if state["step"] < max_steps:
        summary["note"] = f"translator not finished (step {state['step']} of {max_steps}): run the same command again to continue"
    elif export:
        summary["weights"] = str(Path(out) / "weights" / TRANSLATOR_FILE)
        summary["held_out"] = export_translator(Path(out), Path(out) / "weights")["held_out"]
    return summary
