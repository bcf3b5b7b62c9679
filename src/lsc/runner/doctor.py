"""`lsc doctor [CONFIG]`: before a long run, one screen saying whether the study can run here.

Why: a paper study is hours of GPU time; a model missing from the cache, a torch that cannot read a
checkpoint, or a GPU too small for the batch should be found in a minute, not at image 37. The doctor
checks the packages against what lsc declares, every model of the study (local folder or Hugging Face
cache, weight files, then loading the backend), the GPU's free memory, and times one batch of Bob's
generator to estimate the study's generated images and hours. Exit 0 only when the study can run.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from lsc.config import StudyConfig

# Generated images per source image, by scheme, for a caption of n words (docs/hf_backend.md's table;
# an upper bound: lsc's cache shares the empty prompt and repeated prefixes between schemes).
CAPTION_WORDS = 10  # BLIP's captions have about 10 words when none is measured


def images_per_caption(scheme: str, n: int) -> int:
    """Images Bob generates for one scheme on a caption of n words."""
    if scheme == "lowest_lpips":
        return n * (n + 1) // 2
    return n + 1 + (1 if scheme == "crossattention_match" else 0)


@dataclass
class Check:
    """One line of the screen: a verdict ("ok", "warn", "FAIL") and what it says."""

    status: str
    what: str
    detail: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def add(self, status: str, what: str, detail: str) -> None:
        self.checks.append(Check(status, what, detail))

    @property
    def ready(self) -> bool:
        return not any(c.status == "FAIL" for c in self.checks)

    def render(self) -> str:
        width = max((len(c.what) for c in self.checks), default=0)
        out = [f"{c.status:<4}  {c.what:<{width}}  {c.detail}" for c in self.checks] + self.lines
        verdict = "ready: the study can run here" if self.ready else \
            f"not ready: {sum(c.status == 'FAIL' for c in self.checks)} problem(s) above"
        return "\n".join(out + [verdict])


def _declared_requirements() -> dict[str, str]:
    """What lsc's package metadata asks of torch, transformers and diffusers (one owner: pyproject.toml)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    out: dict[str, str] = {}
    try:
        reqs = metadata.requires("lsc") or []
    except metadata.PackageNotFoundError:
        return out
    for text in reqs:
        req = Requirement(text)
        if req.name in ("torch", "transformers", "diffusers") and req.name not in out:
            out[req.name] = str(req.specifier)
    return out


def check_versions(report: Report, hf: bool) -> None:
    from importlib import metadata

    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    wanted = _declared_requirements()
    for name in ("torch", "transformers", "diffusers") if hf else ("torch",):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            report.add("FAIL", name, f"not installed; pip install 'lsc[hf]' (lsc needs {wanted.get(name, 'it')})")
            continue
        spec = wanted.get(name, "")
        ok = not spec or Version(have) in SpecifierSet(spec)
        report.add("ok" if ok else "FAIL", name, f"{have} (lsc needs {spec or 'any'})")
    import torch

    if torch.cuda.is_available():
        report.add("ok", "CUDA", f"{torch.version.cuda} on {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}")
    else:
        report.add("warn", "CUDA", "no CUDA GPU: device auto runs on the CPU (a paper study would take days)")


def _hf_models(opts: Any, cfg: StudyConfig) -> list[tuple[str, str, str]]:
    """(what, option, model id or folder) of every hub model the hf backend will load for this study."""
    from lsc.backends.hf.backend import _none, check_receiver

    opts = check_receiver(opts)
    models = [("captioner", "captioner", opts.captioner)]
    if not _none(opts.itm_model):
        models.append(("ITM model", "itm_model", str(opts.itm_model)))
    models.append(("generator", "generator", str(opts.generator)))
    if not _none(opts.lcm_lora):
        models.append(("LCM-LoRA", "lcm_lora", str(opts.lcm_lora)))
    if not _none(opts.bob_text_encoder):
        models.append(("Bob's text encoder", "bob_text_encoder", str(opts.bob_text_encoder)))
    if not _none(opts.alice_text_encoder) and str(opts.alice_text_encoder).lower() != "itm":
        models.append(("Alice's text encoder", "alice_text_encoder", str(opts.alice_text_encoder)))
    return models


def check_hf_models(report: Report, cfg: StudyConfig) -> bool:
    """Each model here (local folder or cache) with weight files this torch can read; True when all are."""
    from lsc.backends.hf.hub import bin_only_blocked, checkpoint_files
    from lsc.backends.hf.lpips import find_backbone_weights, find_linear_weights
    from lsc.backends.hf.options import HFBackendOptions
    from lsc.errors import ModelUnavailableError

    opts = HFBackendOptions(**cfg.backend_options)
    all_here = True
    for what, option, model_id in _hf_models(opts, cfg):
        files = checkpoint_files(model_id)
        weights = [f for f in files or [] if f.endswith((".safetensors", ".bin"))]
        if files is None or not weights:
            report.add("FAIL", what, f"{model_id}: not here; huggingface-cli download {model_id} (or {option}=/folder)")
            all_here = False
        elif bin_only_blocked(model_id):
            import torch

            report.add("FAIL", what, f"{model_id}: only .bin weights, which transformers refuses on torch "
                                     f"{torch.__version__}; upgrade torch to >= 2.6")
            all_here = False
        else:
            where = "local folder" if os.path.isdir(os.path.expanduser(model_id)) else "Hugging Face cache"
            report.add("ok", what, f"{model_id} ({where}, {len(weights)} weight file(s))")
    for part, find, given in (("backbone", find_backbone_weights, opts.lpips_backbone),
                              ("linear", find_linear_weights, opts.lpips_linear)):
        try:
            report.add("ok", f"LPIPS {part}", str(find(opts.lpips_net, given)))
        except ModelUnavailableError as exc:
            report.add("FAIL", f"LPIPS {part}", str(exc))
            all_here = False
    return all_here


def check_skd(report: Report, cfg: StudyConfig) -> None:
    if not any(s.name in ("heads_skd", "skd") for s in cfg.schemes):
        return
    skd = cfg.skd
    if skd.engine == "openai":
        key = "set" if os.environ.get(skd.api_key_env) else "NOT set"
        status = "ok" if key == "set" else "FAIL"
        report.add(status, "SKD", f"openai engine, model {skd.model} at {skd.base_url}; ${skd.api_key_env} {key}")
    elif skd.engine == "transformers":
        from lsc.backends.hf.hub import checkpoint_files

        here = checkpoint_files(str(skd.model_id)) is not None
        report.add("ok" if here else "FAIL", "SKD", f"transformers engine, {skd.model_id}"
                   + ("" if here else f": not here; huggingface-cli download {skd.model_id}"))
    elif skd.engine in ("auto", "seq2seq") and skd.translator:
        from pathlib import Path

        here = Path(skd.translator).expanduser().is_file()
        report.add("ok" if here else "FAIL", "SKD", f"seq2seq engine, translator {skd.translator}" + ("" if here else ": not a file"))
    elif skd.engine == "auto":
        report.add("ok", "SKD", "auto engine (offline): the backend's style translator (world: seq2seq), else the lexicon")
    elif skd.engine == "seq2seq":
        report.add("ok", "SKD", "seq2seq engine (offline): the backend's style translator (world)")
    else:
        report.add("ok", "SKD", "lexicon engine (offline)")


def measure(report: Report, cfg: StudyConfig, load: Callable[[], Any]) -> None:
    """Load the backend (the loadability check), time one batch of Bob, and estimate the study."""
    import torch

    from lsc.errors import LscError

    cuda = torch.cuda.is_available()
    if cuda:
        free, total = torch.cuda.mem_get_info()
        report.add("ok", "GPU memory", f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB before loading")
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        backend = load()
    except LscError as exc:
        report.add("FAIL", "backend", f"does not load: {exc}")
        return
    report.add("ok", "backend", f"{backend.name} loaded in {time.perf_counter() - start:.1f} s")
    gen = backend.generator
    batch = int(getattr(gen, "batch_size", 1) or 1)
    prompts = [f"a photo of {i} dogs on the grass" for i in range(batch)]
    try:
        gen.generate(prompts[:1], cfg.seed)  # warm-up (kernels, caches)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        gen.generate(prompts, cfg.seed)
        if cuda:
            torch.cuda.synchronize()
        per_batch = time.perf_counter() - start
    except torch.cuda.OutOfMemoryError:
        report.add("FAIL", "one batch", f"out of GPU memory at batch_size {batch}: lower backend_options.batch_size")
        return
    if cuda:
        free, total = torch.cuda.mem_get_info()
        peak = torch.cuda.max_memory_allocated() / 2**30
        report.add("ok", "GPU memory", f"peak {peak:.1f} GiB for a batch of {batch}; {free / 2**30:.1f} GiB still free")
    report.add("ok", "one batch", f"{batch} image(s) in {per_batch:.2f} s ({per_batch / batch:.2f} s per image)")
    estimate(report, cfg, per_batch / batch)


def estimate(report: Report, cfg: StudyConfig, seconds_per_image: float, words: int = CAPTION_WORDS) -> None:
    """Images and hours of the study, from the formulas and a measured time per generated image."""
    try:
        from lsc.runner.images import list_images

        n_images = len(list_images(cfg))
    except Exception:  # noqa: BLE001  (no images folder here yet: the configured number)
        n_images = int(getattr(cfg.images, "limit", None) or getattr(cfg.images, "count", 0) or 0)
    per_caption = sum(images_per_caption(s.name, words) for s in cfg.schemes)
    if cfg.oracle:
        per_caption += 2 ** words
    snr = getattr(cfg.channel, "snr_db", None)
    points = len(snr) if isinstance(snr, (list, tuple)) else 1
    total = n_images * per_caption * points
    hours = total * seconds_per_image / 3600
    report.lines.append(
        f"estimate: {n_images or '?'} images x {per_caption} generated images each ({len(cfg.schemes)} schemes, "
        f"captions of ~{words} words{', oracle 2^n' if cfg.oracle else ''}"
        f"{f', {points} SNR points' if points > 1 else ''}) = {total} images, "
        f"about {hours:.1f} h at {seconds_per_image:.2f} s per image (an upper bound: shared prefixes are cached)")


def doctor(cfg: StudyConfig, load: bool = True) -> Report:
    """The checks of `lsc doctor` for a study configuration."""
    report = Report()
    hf = cfg.backend == "hf"
    check_versions(report, hf)
    ready_models = check_hf_models(report, cfg) if hf else True
    check_skd(report, cfg)
    if not load:
        report.lines.append("estimate: skipped (--no-load)")
    elif ready_models:
        from lsc.backends import load_backend

        measure(report, cfg, lambda: load_backend(cfg.backend, dict(cfg.backend_options)))
    else:
        report.lines.append("estimate: needs every model here first")
    return report


def register(app: Any, panel: str | None = None) -> None:
    """Add `lsc doctor` to the main app."""
    @app.command("doctor", rich_help_panel=panel)
    def doctor_cmd(
        config: Optional[Path] = typer.Argument(None, help="study YAML; omitted = the default world study"),
        set_: List[str] = typer.Option([], "--set", help="override a key, as for lsc run"),
        no_load: bool = typer.Option(False, "--no-load", help="check files only: do not load models or time a batch"),
    ) -> None:
        """Before a long run: are the models here and loadable, the versions right, the GPU big enough,
        and how long will it take? Exit 0 only when the study can run."""
        from lsc import api

        cfg = api.load_config(config, set_)
        report = doctor(cfg, load=not no_load)
        typer.echo(report.render())
        raise typer.Exit(0 if report.ready else 1)
