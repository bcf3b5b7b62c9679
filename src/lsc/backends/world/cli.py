"""`lsc world ...`: train, evaluate and sample the embedded world's models."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from lsc.backends.world import CONTENT_ONLY_RATE, STEP_CAPS
from lsc.errors import ConfigError

world_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The embedded scene world: train, eval, calibrate, sample.")


@world_app.command("train")
def train_cmd(
    out: Path = typer.Option(..., "--out", help="Training folder (checkpoints, logs); weights go to OUT/weights."),
    minutes: float = typer.Option(120.0, "--minutes", help="Time budget for this call, split over the parts."),
    parts: Optional[list[str]] = typer.Option(
        None, "--part", help="classifier, perceptual, captioner, generator (repeatable; default these four); or, in a call of its "
        "own, flow_fast (distil the --init-generator weights into the 2-step flow_fast receiver) or policy (Alice's ordering "
        "policy for scheme `learned`: lowest_lpips traces with the --base-weights generator, then training); or, apart from the "
        "others, vqvae and/or prior (the vqvae_ar receiver: a VQ-VAE of the world's images, then an autoregressive prior over its "
        "codes reading the --base-weights text encoder; exported when the prior is finished); or, in a call of its own, skd "
        "(Alice's style translator, the seq2seq SKD engine, learnt from caption pairs; exported to OUT/weights)."
    ),
    seed: int = typer.Option(0, "--seed", help="Training seed: the data each step draws (scenes, noise)."),
    generator_steps: int = typer.Option(STEP_CAPS["generator"], "--generator-steps", help="Step cap of Bob's generator (batch 32)."),
    content_only_rate: float = typer.Option(
        CONTENT_ONLY_RATE, "--content-only-rate", help="Share of Bob's training captions (and of the flow_fast and prior prompts) stripped of articles, conjunctions and prepositions (same target)."
    ),
    shuffled_rate: float = typer.Option(
        0.0, "--shuffled-rate", help="Further share of those prompts that are a whole caption in random order (the research code's send order; same target)."
    ),
    count_weight: float = typer.Option(
        0.0, "--count-weight", help="Weight of the generator's count objective: the text encoder told how many objects each training prompt's image shows, whatever its word order (0: off)."
    ),
    captioner_steps: int = typer.Option(STEP_CAPS["captioner"], "--captioner-steps", help="Step cap of Alice's captioner (batch 48)."),
    classifier_steps: int = typer.Option(STEP_CAPS["classifier"], "--classifier-steps", help="Step cap of the attribute classifier (batch 64)."),
    perceptual_steps: int = typer.Option(STEP_CAPS["perceptual"], "--perceptual-steps", help="Step cap of the perceptual metric's channel weights (batch 64)."),
    policy_steps: int = typer.Option(STEP_CAPS["policy"], "--policy-steps", help="Step cap of the ordering policy (batch 64 step states)."),
    policy_scenes: int = typer.Option(300, "--policy-scenes", help="World scenes traced with lowest_lpips for the policy (about 8 s each on one thread)."),
    policy_seed: int = typer.Option(7777, "--policy-seed", help="Scene seed of the policy's traces (keep it apart from every study's images.seed)."),
    flow_fast_steps: int = typer.Option(STEP_CAPS["flow_fast"], "--flow-fast-steps", help="Step cap of the flow_fast distillation (batch 32)."),
    flow_fast_pairs: int = typer.Option(6144, "--flow-fast-pairs", help="(noise, teacher image) pairs the flow_fast student learns from."),
    flow_fast_sampler_steps: int = typer.Option(2, "--flow-fast-sampler-steps", help="Euler steps of the flow_fast student."),
    vqvae_steps: int = typer.Option(STEP_CAPS["vqvae"], "--vqvae-steps", help="Step cap of the vqvae_ar receiver's VQ-VAE (batch 32)."),
    prior_steps: int = typer.Option(STEP_CAPS["prior"], "--prior-steps", help="Step cap of the vqvae_ar receiver's prior (batch 32)."),
    prior_examples: int = typer.Option(32768, "--prior-examples", help="(codes, prompt) examples the prior learns from, encoded once and cached."),
    skd_steps: Optional[int] = typer.Option(None, "--skd-steps", help="Step cap of Alice's style translator (batch 64 caption pairs; default: the shipped one's)."),
    export: bool = typer.Option(True, "--export/--no-export", help="Write OUT/weights and calibrate the threshold when all parts exist."),
    eval_scenes: int = typer.Option(200, "--eval-scenes", help="Held-out scenes for the evaluation that calibrates the threshold."),
    init_generator: Optional[Path] = typer.Option(
        None, "--init-generator", help="Fine-tune Bob's generator from this weights folder (e.g. the shipped weights) instead of from scratch."
    ),
    init_captioner: Optional[Path] = typer.Option(
        None, "--init-captioner", help="Fine-tune Alice's captioner from this weights folder instead of from scratch."
    ),
    base_weights: Optional[Path] = typer.Option(
        None, "--base-weights", help="Weights folder the parts not trained here come from (the classifier the perceptual weights are learnt on; "
        "exported as they are). Default: the --init-generator or --init-captioner folder."
    ),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch threads (default: torch's choice)."),
) -> None:
    """Train (or resume training) the world's models on the CPU, then export and calibrate."""
    import torch

    from lsc.backends.world.training import parts as training_parts

    from lsc.runner.folder import ensure_writable_folder

    ensure_writable_folder(out)
    if minutes <= 0:
        raise ConfigError(f"--minutes must be positive, got {minutes}")
    chosen = tuple(parts or training_parts.PARTS)
    if "skd" in chosen:  # Alice's style translator: its own module, trained apart from the world's models
        from lsc.backends.world.skd_translator import train_cmd_part

        typer.echo(json.dumps(train_cmd_part(out, minutes, chosen, seed, skd_steps, export, threads), indent=1))
        return
    unknown = [p for p in chosen if p not in training_parts.ALL_PARTS]
    if unknown:
        raise ConfigError(f"unknown part {unknown[0]!r}; choose from {', '.join(training_parts.ALL_PARTS)}")
    if training_parts.POLICY in chosen and len(chosen) > 1:
        raise ConfigError("train the policy in a call of its own (--part policy), with --base-weights at finished weights")
    if "flow_fast" in chosen and len(chosen) > 1:
        raise ConfigError("--part flow_fast trains alone: it distils a finished weights folder (--init-generator WEIGHTS)")
    if set(chosen) & set(training_parts.VQVAE_AR_PARTS) and set(chosen) - set(training_parts.VQVAE_AR_PARTS):
        raise ConfigError("--part vqvae and --part prior train apart from the world's other parts: give them in a call of their own")
    if set(chosen) & set(training_parts.VQVAE_AR_PARTS) and init_generator is None and base_weights is None:
        raise ConfigError("--part vqvae and --part prior need --base-weights WEIGHTS: the VQ-VAE learns with the world's perceptual "
                          "distance (squared error alone blurs shapes), the prior reads Bob's frozen text encoder")
    if "flow_fast" in chosen and init_generator is None and base_weights is None:
        raise ConfigError("--part flow_fast needs its teacher: --init-generator WEIGHTS (a weights folder, e.g. the shipped one)")
    if policy_scenes < 2:
        raise ConfigError(f"--policy-scenes must be at least 2, got {policy_scenes}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_flush_denormal(True)
    caps = {"generator": generator_steps, "captioner": captioner_steps, "classifier": classifier_steps, "perceptual": perceptual_steps,
            "policy": policy_steps, "flow_fast": flow_fast_steps, "vqvae": vqvae_steps, "prior": prior_steps}
    if flow_fast_pairs < 1 or flow_fast_sampler_steps < 1:
        raise ConfigError("--flow-fast-pairs and --flow-fast-sampler-steps must be at least 1")
    for flag, rate in (("--content-only-rate", content_only_rate), ("--shuffled-rate", shuffled_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"{flag} must be between 0 and 1, got {rate}")
    if count_weight < 0:
        raise ConfigError(f"--count-weight must be at least 0, got {count_weight}")
    if prior_examples < 1:
        raise ConfigError(f"--prior-examples must be at least 1, got {prior_examples}")
    if min(caps.values()) < 1:
        raise ConfigError("step caps must be at least 1")
    base_weights = base_weights or init_generator or init_captioner
    for flag, folder in (("--init-generator", init_generator), ("--init-captioner", init_captioner), ("--base-weights", base_weights)):
        if folder is not None and not (folder / "world.json").exists():
            raise ConfigError(f"{flag} {folder}: no world.json there (expected a weights folder)")
    if threads is not None:
        from lsc.limits import machine_threads

        torch.set_num_threads(machine_threads(threads, "--threads"))
    from lsc.backends.world.training.data import PromptMix

    mix = PromptMix(content_only_rate, shuffled_rate)
    states = training_parts.train(out, minutes, chosen, seed, caps, init_generator=init_generator, init_captioner=init_captioner,
                     base_weights=base_weights, policy_options={"trace_scenes": policy_scenes, "trace_seed": policy_seed},
                     flow_fast={"pairs": flow_fast_pairs, "sampler_steps": flow_fast_sampler_steps, "mix": mix},
                     generator_options={"mix": mix, "count_weight": count_weight}, vqvae_ar={"prior_examples": prior_examples, "mix": mix})
    typer.echo(json.dumps({p: {"step": s["step"], "elapsed_s": round(s["elapsed_s"]), **({"traces": s["traces"]} if "traces" in s else {})}
                           for p, s in states.items()}))
    if training_parts.POLICY in chosen:
        state = states[training_parts.POLICY]
        if not state.get("complete"):
            typer.echo(f"policy not finished ({state['traces']} of {policy_scenes} traces, step {state['step']} of {policy_steps}): "
                       "run the same command again to continue")
        elif export:
            from lsc.schemes.policy_training import export_policy

            typer.echo(str(export_policy(out, out / "weights" / "policy.safetensors")))
        return
    if set(chosen) <= set(training_parts.VQVAE_AR_PARTS):
        # The receiver ships beside the weights whose text encoder the prior reads; world.json is not rewritten.
        prior_state = states.get("prior")
        if "prior" in chosen and (prior_state is None or prior_state["step"] < prior_steps):
            typer.echo("vqvae_ar not finished: run the same command again to continue")
        elif export and prior_state is not None:
            from lsc.backends.world.release import export_vqvae_ar

            result = export_vqvae_ar(out, out / "weights", base_weights, n_scenes=eval_scenes)
            typer.echo(json.dumps(result, indent=1))
        return
    if chosen == ("flow_fast",):
        # The student ships beside its teacher's files (copied as they are); world.json is not rewritten.
        if export and states["flow_fast"]["step"] >= 1:
            from lsc.backends.world.release import export_flow_fast

            result = export_flow_fast(out, out / "weights", base_weights, n_scenes=eval_scenes)
            typer.echo(json.dumps(result, indent=1))
        return
    # A generator fine-tune exports with the other parts taken from the weights it started from.
    base = base_weights
    if export and (base is not None or all((out / p / "state.json").exists() for p in training_parts.PARTS)):
        from lsc.backends.world.release import export_and_calibrate

        result = export_and_calibrate(out, out / "weights", n_scenes=eval_scenes, base_weights=base)
        typer.echo(json.dumps(result, indent=1))


@world_app.command("eval")
def eval_cmd(
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights folder (default: the shipped ones)."),
    scenes_n: int = typer.Option(200, "--scenes", help="Held-out scenes to evaluate."),
    seed: int = typer.Option(2024, "--seed", help="Scene seed of the held-out scenes (apart from training's)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    receiver: str = typer.Option("flow", "--receiver", help="Bob's generator: flow (8 guided steps), flow_fast (the distilled student) or vqvae_ar (VQ-VAE + autoregressive prior)."),
) -> None:
    """Measure captioner and generator fidelity and the perceptual curve on held-out scenes.

    Success rates use the receiver's own threshold (world.json's, or flow_fast.json's / vqvae_ar.json's);
    the threshold this evaluation derives is reported beside it."""
    from lsc.backends.world.backend import load_world_backend
    from lsc.backends.world.models import load_models
    from lsc.backends.world.options import world_weights_dir
    from lsc.backends.world.evaluate import evaluate_world

    if scenes_n < 1:
        raise ConfigError(f"--scenes must be at least 1, got {scenes_n}")
    backend = load_world_backend(str(weights) if weights else None, receiver=receiver)
    classifier = load_models(str(world_weights_dir(weights))).classifier  # the generator's folder, never another
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = evaluate_world(backend, classifier, n_scenes=scenes_n, seed=seed, threshold=backend.default_threshold, progress=True)
    typer.echo(json.dumps(result, indent=None if as_json else 1))


@world_app.command("calibrate")
def calibrate_cmd(
    weights: Path = typer.Option(..., "--weights", help="Weights folder to calibrate in place (a copy of the shipped ones, or OUT/weights)."),
    receivers: Optional[list[str]] = typer.Option(
        None, "--receiver", help="flow, flow_fast or vqvae_ar (repeatable; default: every receiver the folder holds)."
    ),
    scenes_n: int = typer.Option(200, "--scenes", help="Held-out scenes of the evaluation that derives each threshold."),
) -> None:
    """Derive each receiver's success threshold again from the held-out evaluation, without retraining.

    For a change that moves every receiver's distances (new perceptual weights): each receiver's own
    meta file (world.json, flow_fast.json, vqvae_ar.json) gets its new threshold and evaluation."""
    from lsc.backends.world.receivers import RECEIVERS, meta_file
    from lsc.backends.world.release import calibrate_receiver

    if scenes_n < 1:
        raise ConfigError(f"--scenes must be at least 1, got {scenes_n}")
    if not (weights / "world.json").exists():
        raise ConfigError(f"{weights} is not a world weights folder (no world.json)")
    chosen = list(receivers or [r for r in RECEIVERS if (weights / meta_file(r)).exists()])
    for receiver in chosen:
        meta_file(receiver)  # a bad name fails before any evaluation runs
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = {}
    for receiver in chosen:
        result = calibrate_receiver(weights, receiver, scenes_n)
        out[receiver] = {k: result[k] for k in ("derived_threshold", "threshold_precision", "threshold_recall")}
        out[receiver]["bob_reads_alice_success"] = result["bob_reads_alice"]["success_rate"]
    typer.echo(json.dumps(out, indent=1))


@world_app.command("interpolate")
def interpolate_cmd(
    base: Path = typer.Option(..., "--base", help="Weights folder the fine-tunes started from."),
    fine_tuned: list[Path] = typer.Option(..., "--fine-tuned", help="Weights folder of a generator fine-tuned from --base (repeatable: their mean is used)."),
    alpha: float = typer.Option(..., "--alpha", help="How far towards the fine-tunes' mean: 0 is --base, 1 the mean."),
    out: Path = typer.Option(..., "--out", help="New weights folder to write (then calibrated on receiver flow)."),
    scenes_n: int = typer.Option(200, "--scenes", help="Held-out scenes of the evaluation that derives the threshold."),
) -> None:
    """Interpolate Bob's generator between a base and fine-tunes of it (WiSE-FT), then calibrate it.

    flow_fast, the vqvae_ar prior and the learned policy are made from a generator: rebuild them from
    --out (`lsc world train --part flow_fast|prior|policy`)."""
    from lsc.backends.world.release import interpolate_generators

    if scenes_n < 1:
        raise ConfigError(f"--scenes must be at least 1, got {scenes_n}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = interpolate_generators(base, fine_tuned, alpha, out, scenes_n)
    typer.echo(json.dumps({k: result[k] for k in ("derived_threshold", "threshold_precision", "threshold_recall")}, indent=1))


@world_app.command("sample")
def sample_cmd(
    prompt: str = typer.Argument(..., help="Bob-style prompt, e.g. 'green grass with a large red circle at left'."),
    out: Path = typer.Option(Path("sample.png"), "--out", help="PNG file to write."),
    seed: int = typer.Option(0, "--seed", help="Bob's generation seed (the same prompt and seed give the same image)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights folder (default: the shipped ones)."),
    receiver: str = typer.Option("flow", "--receiver", help="Bob's generator: flow, flow_fast or vqvae_ar."),
) -> None:
    """Generate Bob's image for a prompt and save it as PNG (scaled up 8x for viewing)."""
    import numpy as np
    from PIL import Image

    import io

    from lsc.backends.world.backend import load_world_backend
    from lsc.limits import check_output_file, check_seed
    from lsc.runner.folder import write_atomic

    check_seed(seed, "--seed")
    check_output_file(out, (".png",), "--out")
    image = load_world_backend(str(weights) if weights else None, receiver=receiver).generator.generate([prompt], seed)[0]
    buf = io.BytesIO()
    Image.fromarray((image * 255).round().astype(np.uint8)).resize((256, 256), Image.NEAREST).save(buf, format="PNG")
    write_atomic(out, buf.getvalue())
    typer.echo(str(out))


def register(app: typer.Typer, panel: str | None = None) -> None:
    """Mount `lsc world` on the main app under `panel`."""
    app.add_typer(world_app, name="world", rich_help_panel=panel)
