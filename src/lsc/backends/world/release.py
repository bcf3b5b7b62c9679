"""Turning a training folder into shipped weights: export, evaluate, calibrate the threshold."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from lsc.backends.world.training.captioner import build_captioner
from lsc.backends.world.training.data import ALICE_VOCAB, BOB_VOCAB
from lsc.backends.world.training.generator import build_generator
from lsc.backends.world.training.perception import build_classifier


def calibrate_receiver(weights_dir: Path, receiver: str = "flow", n_scenes: int = 200) -> dict[str, Any]:
    """Run the held-out evaluation for one receiver and store its derived threshold (and the evaluation)
    in that receiver's own meta file; no other file is touched.

    Every export ends here, and so does a change that moves every receiver's distances at once (the
    perceptual metric's weights): each receiver is calibrated again without retraining it."""
    from lsc.backends.world.backend import load_world_backend
    from lsc.backends.world.models import load_models
    from lsc.backends.world.receivers import meta_file
    from lsc.backends.world.evaluate import evaluate_world
    from lsc.errors import ConfigError

    weights_dir = Path(weights_dir)
    meta_path = weights_dir / meta_file(receiver)
    if not meta_path.exists():
        raise ConfigError(f"{meta_path} not found: {weights_dir} has no {receiver} receiver to calibrate")
    load_models.cache_clear()
    backend = load_world_backend(str(weights_dir), receiver=receiver)
    result = evaluate_world(backend, load_models(str(weights_dir.resolve())).classifier, n_scenes=n_scenes, threshold=None, progress=True)
    meta = json.loads(meta_path.read_text())
    meta["threshold"] = result["derived_threshold"]
    meta["eval"] = result
    meta_path.write_text(json.dumps(meta, indent=1))
    load_models.cache_clear()
    return result


def export_weights(train_dir: Path, weights_dir: Path, extra_meta: dict | None = None, base_weights: Path | None = None) -> None:
    """Write the shipped weights (fp16 safetensors + world.json) from finished training folders.

    A part not trained in `train_dir` (a generator-only fine-tune) is copied from `base_weights`,
    the weights folder it started from, with its training record.
    """
    import shutil

    from safetensors.torch import load_file, save_file

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


def export_and_calibrate(
    train_dir: Path, weights_dir: Path, n_scenes: int = 200, sampler: dict | None = None, base_weights: Path | None = None
) -> dict[str, Any]:
    """Export fp16 safetensors, run the held-out evaluation, store the derived threshold.

    Parts not trained in `train_dir` come from `base_weights` (see export_weights)."""
    from lsc.backends.world.receivers.flow import DEFAULT_GUIDANCE, DEFAULT_SAMPLER_STEPS

    sampler = sampler or {"steps": DEFAULT_SAMPLER_STEPS, "guidance": DEFAULT_GUIDANCE}
    export_weights(train_dir, weights_dir, {"sampler": sampler, "threshold": 0.5}, base_weights=base_weights)
    return calibrate_receiver(weights_dir, "flow", n_scenes)


GENERATOR_FILES = ("bob_text.safetensors", "bob_unet.safetensors")
# Files made from a generator (a distilled student, a prior reading its text encoder, a policy traced with
# it): an interpolated generator ships without them until they are rebuilt from it.
GENERATOR_DERIVED_FILES = ("bob_unet_fast.safetensors", "flow_fast.json", "prior.safetensors", "vqvae_ar.json", "policy.safetensors")


def interpolate_generators(base_dir: Path, fine_tuned_dirs: list[Path], alpha: float, out_dir: Path, n_scenes: int = 200) -> dict[str, Any]:
    """Bob's generator as base + alpha * (mean(fine-tuned) - base), weight by weight (WiSE-FT, Wortsman et
    al., CVPR 2022), then calibrated as an export is.

    Why: fine-tunes from one base trade one meaning measure for another from seed to seed; the mean of
    several keeps what they share, and moving part of the way back to the base keeps more of what the base
    did well. The fine-tuned folders' mean is rounded to fp16 first, as a weights folder of its own is.
    Every other file comes from the base folder and must be byte-identical in each fine-tuned folder that
    holds it (only the generator differs); files made from a generator (GENERATOR_DERIVED_FILES) are
    left out, to be rebuilt."""
    import shutil

    from safetensors.torch import load_file, save_file

    from lsc.backends.world.models import file_sha256
    from lsc.errors import ConfigError

    base_dir, out_dir = Path(base_dir), Path(out_dir)
    fine_tuned_dirs = [Path(d) for d in fine_tuned_dirs]
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha must be in [0, 1], got {alpha}")
    if not fine_tuned_dirs:
        raise ConfigError("give at least one --fine-tuned weights folder")
    folders = [base_dir, *fine_tuned_dirs]
    for folder in folders:
        if not all((folder / f).exists() for f in ("world.json", *GENERATOR_FILES)):
            raise ConfigError(f"{folder} is not a world weights folder with a generator (world.json, bob_text, bob_unet)")
    if out_dir.resolve() in {f.resolve() for f in folders}:
        raise ConfigError(f"--out {out_dir} is one of the input folders: write the interpolation to a new folder")
    kept = [f for f in sorted(base_dir.iterdir()) if f.is_file() and f.suffix in (".safetensors", ".json")
            and f.name not in (*GENERATOR_FILES, *GENERATOR_DERIVED_FILES, "world.json")]
    for folder in fine_tuned_dirs:
        for f in kept:
            other = folder / f.name
            if other.exists() and file_sha256(other) != file_sha256(f):
                raise ConfigError(f"{other} differs from {f}: only the generator may differ between the interpolated folders")
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in kept:
        shutil.copyfile(f, out_dir / f.name)
    for name in GENERATOR_FILES:
        base = load_file(str(base_dir / name))
        tuned = [load_file(str(d / name)) for d in fine_tuned_dirs]
        if any(t.keys() != base.keys() or any(t[k].shape != base[k].shape for k in base) for t in tuned):
            raise ConfigError(f"{name} has other tensors or shapes in the fine-tuned folders than in {base_dir}: not one architecture")
        out = {}
        for k, b in base.items():
            mean = (sum(t[k].float() for t in tuned) / len(tuned)).to(b.dtype)
            out[k] = (b.float() + alpha * (mean.float() - b.float())).to(b.dtype).contiguous()
        save_file(out, str(out_dir / name))
    meta = json.loads((base_dir / "world.json").read_text())
    records = [json.loads((d / "world.json").read_text()).get("training", {}).get("generator", {}) for d in folders]

    def origin(folder: Path, record: dict) -> dict:
        return {"bob_unet_sha256": file_sha256(folder / "bob_unet.safetensors"), "seed": record.get("seed"), "step": record.get("step")}

    meta.setdefault("training", {})["generator"] = {  # the last fine-tune's record, with its training chain, and how it was mixed
        **records[-1],
        "weight_interpolation": {
            "rule": "base + alpha * (mean(fine_tuned) - base) on bob_text and bob_unet (WiSE-FT)", "alpha": alpha,
            "base": origin(base_dir, records[0]), "fine_tuned": [origin(d, r) for d, r in zip(fine_tuned_dirs, records[1:])],
        },
    }
    meta.pop("eval", None)
    meta["threshold"] = 0.5
    (out_dir / "world.json").write_text(json.dumps(meta, indent=1))
    return calibrate_receiver(out_dir, "flow", n_scenes)


def export_flow_fast(train_dir: Path, weights_dir: Path, teacher_dir: Path, n_scenes: int = 200) -> dict[str, Any]:
    """Ship the flow_fast student beside its teacher: bob_unet_fast.safetensors (the EMA student, fp16)
    and flow_fast.json (its sampler steps, training and teacher record, and its own threshold, derived
    by the held-out evaluation run with receiver flow_fast).

    The teacher's files are copied into `weights_dir` byte for byte when it is another folder, so the
    folder is a complete weights folder for either receiver; world.json is never rewritten."""
    import shutil

    from safetensors.torch import load_file, save_file

    from lsc.backends.world.receivers.flow import FAST_META_FILE, FAST_UNET_FILE

    teacher_dir, weights_dir = Path(teacher_dir), Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    if teacher_dir.resolve() != weights_dir.resolve():
        for f in sorted(teacher_dir.iterdir()):
            if f.is_file() and f.name not in (FAST_UNET_FILE, FAST_META_FILE) and (f.suffix == ".safetensors" or f.name == "world.json"):
                shutil.copyfile(f, weights_dir / f.name)
    folder = Path(train_dir) / "flow_fast"
    state = json.loads((folder / "state.json").read_text())
    tensors = load_file(str(folder / "checkpoint.safetensors"))
    prefix = "ema_unet."
    save_file({k[len(prefix):]: v.half().contiguous() for k, v in tensors.items() if k.startswith(prefix)}, str(weights_dir / FAST_UNET_FILE))
    teacher = state.pop("teacher")
    state.pop("metrics", None)
    meta = {"sampler": {"steps": state.pop("sampler_steps")}, "threshold": 0.5, "teacher": teacher, "training": state}
    (weights_dir / FAST_META_FILE).write_text(json.dumps(meta, indent=1))
    return calibrate_receiver(weights_dir, "flow_fast", n_scenes)


def export_vqvae_ar(train_dir: Path, weights_dir: Path, base_dir: Path, n_scenes: int = 200, sampler: dict | None = None) -> dict[str, Any]:
    """Ship the vqvae_ar receiver beside the weights whose text encoder its prior reads: vqvae.safetensors
    (the VQ-VAE), prior.safetensors (the EMA prior), both fp16, and vqvae_ar.json (sampler settings,
    training record, text encoder's sha256, and its own threshold, derived by the held-out evaluation
    run with receiver vqvae_ar). As export_flow_fast: the base folder's files are copied byte for byte
    when `weights_dir` is another folder; world.json is never rewritten."""
    import shutil

    from safetensors.torch import load_file, save_file

    from lsc.backends.world.models import file_sha256
    from lsc.backends.world.receivers import vqvae_ar as V

    base_dir, weights_dir, train_dir = Path(base_dir), Path(weights_dir), Path(train_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    own = (V.VQVAE_FILE, V.PRIOR_FILE, V.META_FILE)
    if base_dir.resolve() != weights_dir.resolve():
        for f in sorted(base_dir.iterdir()):
            if f.is_file() and f.name not in own and (f.suffix == ".safetensors" or f.suffix == ".json"):
                shutil.copyfile(f, weights_dir / f.name)

    def half(tensors: dict, prefix: str) -> dict:
        return {k[len(prefix):]: v.half().contiguous() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith(prefix)}

    training = {"prior": json.loads((train_dir / "prior" / "state.json").read_text())}
    if (train_dir / "vqvae" / "state.json").exists():
        save_file(half(load_file(str(train_dir / "vqvae" / "checkpoint.safetensors")), "model."), str(weights_dir / V.VQVAE_FILE))
        training["vqvae"] = json.loads((train_dir / "vqvae" / "state.json").read_text())
    else:  # the prior was trained on the base folder's VQ-VAE (training.vqvae_ar.load_trained_vqvae): it ships unchanged, with its record
        if base_dir.resolve() != weights_dir.resolve():
            shutil.copyfile(base_dir / V.VQVAE_FILE, weights_dir / V.VQVAE_FILE)
        base_meta = base_dir / V.META_FILE
        base_record = json.loads(base_meta.read_text()).get("training", {}).get("vqvae", {}) if base_meta.exists() else {}
        training["vqvae"] = {**base_record, "from": "base weights", "file_sha256": file_sha256(base_dir / V.VQVAE_FILE)}
    save_file(half(load_file(str(train_dir / "prior" / "checkpoint.safetensors")), "ema_prior."), str(weights_dir / V.PRIOR_FILE))
    for state in training.values():
        state.pop("metrics", None)
    text = training["prior"].pop("text")
    meta = {"sampler": {**V.DEFAULT_SAMPLER, **(sampler or {})}, "threshold": 0.5, "text": text,
            "prior_config": dataclasses.asdict(V.PriorConfig()), "training": training}
    (weights_dir / V.META_FILE).write_text(json.dumps(meta, indent=1))
    return calibrate_receiver(weights_dir, "vqvae_ar", n_scenes)


def write_random_vqvae_ar(weights_dir: Path, seed: int = 0, prior_config: dict | None = None, sampler: dict | None = None) -> Path:
    """Untrained vqvae_ar receiver files (fp16) beside untrained weights: fast tests of its plumbing.
    `prior_config` shrinks the prior (its fields go to vqvae_ar.json, as the loader reads them)."""
    import torch
    from safetensors.torch import save_file

    from lsc.backends.world.models import file_sha256
    from lsc.backends.world.receivers import vqvae_ar as V

    torch.manual_seed(seed)
    config = {**dataclasses.asdict(V.PriorConfig()), **(prior_config or {})}
    for module, name in ((V.VQVAE(V.VQConfig()), V.VQVAE_FILE), (V.CodePrior(V.PriorConfig(**config)), V.PRIOR_FILE)):
        save_file({k: v.half().contiguous() for k, v in module.state_dict().items()}, str(weights_dir / name))
    meta = {"sampler": {**V.DEFAULT_SAMPLER, **(sampler or {})}, "threshold": 0.5, "prior_config": config, "untrained": True,
            "text": {"bob_text_sha256": file_sha256(weights_dir / "bob_text.safetensors")}}
    (weights_dir / V.META_FILE).write_text(json.dumps(meta, indent=1))
    return weights_dir


def write_random_weights(weights_dir: Path, seed: int = 0, sampler_steps: int = 2) -> Path:
    """Untrained weights in the shipped format: fast tests of loading and plumbing, not of quality."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    weights_dir.mkdir(parents=True, exist_ok=True)
    text, unet = build_generator()
    from lsc.backends.world.perceptual import LinearWeights

    classifier = build_classifier()
    for module, name in (
        (text, "bob_text"),
        (unet, "bob_unet"),
        (build_captioner(), "alice"),
        (classifier, "attributes"),
        (LinearWeights(classifier.cfg.channels), "perceptual"),
    ):
        save_file({k: v.half().contiguous() for k, v in module.state_dict().items()}, str(weights_dir / f"{name}.safetensors"))
    meta = {
        "bob_vocab": BOB_VOCAB.itos,
        "alice_vocab": ALICE_VOCAB.itos,
        "sampler": {"steps": sampler_steps, "guidance": 2.0},
        "threshold": 0.5,
        "untrained": True,
    }
    (weights_dir / "world.json").write_text(json.dumps(meta, indent=1))
    return weights_dir
