"""Study configuration: one validated object built from a YAML file plus `--set key=value` overrides.

Why one module: every entry point (CLI, Python API, resume check) must agree on what a study is, and a
typo in a key must fail before any model loads, with a one-line message naming the key.
"""

from __future__ import annotations

import importlib.resources

import copy
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, Tag, ValidationError, field_validator, model_validator

from lsc.errors import ConfigError, validation_message
from lsc.limits import MAX_SEED, MAX_SNR_POINTS, MAX_TRANSMISSIONS, load_yaml
from lsc.errors import one_line as _first_line

from lsc.channel.config import ChannelConfig
from lsc.language.config import SKDConfig

# The default study ships inside the package (package data), so an installed wheel runs `lsc run`.
DEFAULT_CONFIG_PATH = Path(str(importlib.resources.files("lsc.runner") / "default.yaml"))
SNR_SWEEP_KEY = "channel.snr_db"
# The oracle's caption-length limit (2^n generations per caption): docs/configuration.md's documented default, and the one
# constant every caller (runner, demo, benchmarks) takes it from.
DEFAULT_ORACLE_MAX_WORDS = 11


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorldImages(_Strict):
    """Scenes drawn from the embedded world (ground truth kept)."""

    source: Literal["world"] = "world"
    count: int = Field(8, ge=1, le=100_000)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    # First scene index: `lsc demo` runs one chosen scene (start: i, count: 1) with the ids, and so the
    # numbers, that scene has in a study of the first i+1 scenes. Written to YAML only when set.
    start: int = Field(0, ge=0, le=10**9)


class FolderImages(_Strict):
    """Images from a folder, optionally with a Flickr8k `captions.txt` or COCO `captions_*.json`."""

    source: Literal["folder"]
    path: str
    captions: str | None = None
    format: Literal["flickr8k", "coco", "auto"] = "auto"
    limit: int | None = Field(None, ge=1)
    resize: int | None = Field(None, ge=8, le=4096, description="resize to a square of this side")
    # "research": as the research code's FlickrDataset + img.save('img.jpg') before captioning, Grad-CAM
    # and LPIPS: bilinear resize to `resize` (256 when unset) and a JPEG round trip at Pillow's quality 75.
    preprocess: Literal["default", "research"] = "default"


def _images_source(value: Any) -> Any:
    """The images variant: `source`, which a mapping may leave out for the default (the world's scenes), so
    `--set images.count=20` works on a YAML without an `images` key."""
    if isinstance(value, dict):
        return value.get("source", "world")
    return getattr(value, "source", None)


ImagesConfig = Annotated[Union[Annotated[WorldImages, Tag("world")], Annotated[FolderImages, Tag("folder")]],
                         Discriminator(_images_source)]


class SchemeSpec(_Strict):
    """One scheme of a study: a registered name, its options, and the label it is stored under."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    label: str = ""

    @model_validator(mode="after")
    def _default_label(self) -> "SchemeSpec":
        if not self.label:
            if self.options:
                opts = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.options.items()))
                self.label = f"{self.name}[{opts}]"
            else:
                self.label = self.name
        return self

    @classmethod
    def from_raw(cls, raw: Any) -> "SchemeSpec":
        """A scheme as written in a config: `heads` or `{name: heads, only_heads: true, label: ssc_only}`."""
        return cls.model_validate(_scheme_from_raw(raw))


def _scheme_to_raw(spec: SchemeSpec) -> Any:
    """The short YAML form of a scheme: its bare name when it has no options and the default label."""
    default_label = SchemeSpec(name=spec.name, options=spec.options).label
    if not spec.options and spec.label == default_label:
        return spec.name
    out: dict[str, Any] = {"name": spec.name}
    if spec.label != default_label:
        out["label"] = spec.label
    out.update(spec.options)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _scheme_from_raw(raw: Any) -> Any:
    """`heads` or `{name: heads, only_heads: true, label: ssc_only}` -> SchemeSpec fields."""
    if isinstance(raw, str):
        return {"name": raw}
    if isinstance(raw, dict):
        if "options" in raw:
            return raw
        raw = dict(raw)
        name = raw.pop("name", None)
        label = raw.pop("label", "")
        return {"name": name, "label": label, "options": raw}
    return raw


class ExecutorConfig(_Strict):
    """Where a study's units (one source image with all its schemes) run: this process, or Ray actors.

    Not part of a study's identity: a study started locally resumes on Ray and vice versa, with the
    same numbers (seeds come from ids, never from which worker ran what).
    """

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description='null = start a local Ray instance; "auto" or "ray://host:port"')
    num_cpus_per_task: float = Field(1.0, ge=0)
    num_gpus_per_task: float = Field(0.0, ge=0)
    max_in_flight: int | None = Field(None, ge=1, description="units running at once (one actor each); null = what the cluster fits")

    @field_validator("address")
    @classmethod
    def _address_form(cls, value: str | None) -> str | None:
        if value is not None and value != "auto" and not value.startswith("ray://"):
            raise ValueError(f'{value!r} is not null, "auto" or "ray://host:port"')
        return value


class StudyConfig(_Strict):
    """Everything that decides a study's numbers (the output folder and progress display do not)."""

    backend: str = "world"
    backend_options: dict[str, Any] = Field(default_factory=dict)
    images: ImagesConfig = Field(default_factory=WorldImages)
    caption_source: Literal["alice", "dataset"] = "alice"
    schemes: list[SchemeSpec] = Field(default_factory=lambda: [SchemeSpec(name=n) for n in _paper_schemes()])
    seed: int = Field(0, ge=0, le=MAX_SEED)
    threshold: float | None = Field(None, gt=0, allow_inf_nan=False)
    prompt_order: Literal["send", "caption"] | None = None
    stop_at_success: StrictBool = False
    oracle: StrictBool = True
    oracle_max_words: int = Field(DEFAULT_ORACLE_MAX_WORDS, ge=1, le=16)
    channel: ChannelConfig = Field(default_factory=ChannelConfig)
    snr_db_sweep: list[float] | None = Field(None, description="set by writing a list in channel.snr_db")
    skd: SKDConfig = Field(default_factory=SKDConfig)
    save_images: StrictBool = True
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    # Step metrics beyond LPIPS that the study scores and stores per step (lsc.metrics.registry); lpips, ssim
    # and psnr are always stored. None: the backend's defaults (attributes and recaption on the world,
    # recaption on hf; the resolved config lists them). Scored at every `metrics_every`-th step and the last
    # (attributes: at every step). Neither key is part of a study's identity (lsc.runner.folder).
    metrics: list[str] | None = None
    metrics_every: int = Field(4, ge=1, le=1_000_000)
    # Every model file the study uses -> its content fingerprint (lsc.runner.models), filled in by the run: part
    # of the study's identity, so a folder refuses to resume on other weights. Set in a YAML (a copied
    # config.resolved.yaml), it pins them: a run on other files is refused, naming the file.
    models: dict[str, str] | None = None
    # Filled by the runner (lsc.runner.worker.resolve), never written by hand: for each plugin the study
    # uses ("scheme:longest_first"), its import path and its distribution's version, so a run folder
    # refuses to resume under another version of the plugin. Built-ins are lsc's own and not listed.
    plugins: dict[str, dict[str, str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _metrics_known(self) -> "StudyConfig":
        if self.metrics is not None:
            from lsc.metrics.registry import STORED, select

            select([m for m in self.metrics if m not in STORED], self.backend)  # a ConfigError names the bad one
        return self

    @model_validator(mode="before")
    @classmethod
    def _lift_sweep(cls, data: Any) -> Any:
        """A list in channel.snr_db means a sweep: one sub-study per value."""
        if isinstance(data, dict) and isinstance(data.get("channel"), dict):
            snr = data["channel"].get("snr_db")
            if isinstance(snr, (list, tuple)):
                if not snr:
                    raise ValueError("channel.snr_db: an SNR sweep needs at least one value")
                data = dict(data)
                data["channel"] = dict(data["channel"])
                data["channel"]["snr_db"] = snr[0]
                data["snr_db_sweep"] = list(snr)
        return data

    @field_validator("schemes", mode="before")
    @classmethod
    def _schemes_raw(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            out: list[Any] = []
            for item in value:
                if item == "all":
                    out.extend({"name": name} for name in _scheme_registry().names())
                else:
                    out.append(_scheme_from_raw(item))
            return out
        return value

    @field_validator("schemes")
    @classmethod
    def _schemes_known(cls, value: list[SchemeSpec]) -> list[SchemeSpec]:
        if not value:
            raise ValueError("at least one scheme is needed")
        labels = [s.label for s in value]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"scheme {dup[0]!r} listed twice (give one a distinct 'label')")
        registry = _scheme_registry()
        for i, spec in enumerate(value):
            if not registry.known(spec.name):
                raise ValueError(f"unknown scheme {spec.name!r} (entry {i}); see `lsc schemes`, or name one by "
                                 "its import path 'package.module:Class'")
        return value

    @field_validator("snr_db_sweep")
    @classmethod
    def _sweep_finite(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            for v in value:
                if not math.isfinite(v):
                    raise ValueError(f"SNR {v} is not a finite number")
            if len(set(value)) != len(value):
                raise ValueError("an SNR value is listed twice")
            if len(value) > MAX_SNR_POINTS:
                raise ValueError(f"at most {MAX_SNR_POINTS} SNR values (got {len(value)})")
        return value

    @model_validator(mode="after")
    def _sweep_needs_noise(self) -> "StudyConfig":
        """An SNR sweep on the ideal channel would label identical rows with different SNRs."""
        if self.snr_db_sweep and self.channel.model == "none":
            raise ValueError(f"an SNR sweep in {SNR_SWEEP_KEY} needs a noisy channel (set channel.model: "
                             "analytic or phy); the ideal channel (model none) has no SNR")
        images = getattr(self.images, "count", None) or getattr(self.images, "limit", None) or 1
        total = images * len(self.schemes) * len(self.snr_db_sweep or [None])
        if total > MAX_TRANSMISSIONS:
            raise ValueError(f"images x schemes x SNRs is {total}, over the cap of {MAX_TRANSMISSIONS} transmissions "
                             "per study; split it into several run folders")
        return self

    @field_validator("backend")
    @classmethod
    def _backend_known(cls, value: str) -> str:
        from lsc.backends import BACKENDS, available_backends

        if not BACKENDS.known(value):
            raise ValueError(
                f"unknown backend {value!r}; choose one of {', '.join(available_backends())} "
                "or 'package.module:loader'"
            )
        return value

    @model_validator(mode="after")
    def _backend_options_known(self) -> "StudyConfig":
        """A registered backend's options are checked here, so `--dry-run` catches a bad one (ConfigError)."""
        from lsc.backends import check_backend_options

        check_backend_options(self.backend, self.backend_options)
        return self

    # ---------------------------------------------------------------- derived views
    def conditions(self) -> list["Condition"]:
        """The sub-studies: one per swept SNR value, or a single unnamed one."""
        if not self.snr_db_sweep:
            snr = self.channel.snr_db if self.channel.model != "none" else None
            return [Condition(key="", snr_db=snr, channel=self.channel)]
        out = []
        for v in self.snr_db_sweep:
            ch = self.channel.model_copy(update={"snr_db": float(v)})
            out.append(Condition(key=f"snr_db={float(v):g}", snr_db=float(v), channel=ch))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The YAML-ready form, with an SNR sweep written back as a list in channel.snr_db."""
        data = self.model_dump(mode="json")
        sweep = data.pop("snr_db_sweep")
        if sweep:
            data["channel"]["snr_db"] = sweep
        data["schemes"] = [_scheme_to_raw(s) for s in self.schemes]
        if data["images"].get("source") == "world" and not data["images"].get("start"):
            del data["images"]["start"]  # studies written before `start` existed keep their identity
        if self.executor == ExecutorConfig():
            del data["executor"]  # an execution setting: written only when set, never part of a run folder's study
        if data.get("metrics") is None:
            data.pop("metrics", None)  # configs written before the key existed stay the same
        if data.get("models") is None:
            data.pop("models", None)  # filled in by resolution; a config written before it stays the same
        if not data.get("plugins"):
            data.pop("plugins", None)  # a study of built-ins only keeps the identity it had before plugins
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


class Condition(BaseModel):
    """One sub-study of a sweep: its key in the store, its SNR, and its channel settings."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    key: str
    snr_db: float | None
    channel: Any


def _paper_schemes() -> tuple[str, ...]:
    """The default `schemes`: the papers' 14 (lsc.schemes.base.PAPER_SCHEMES), imported on use."""
    from lsc.schemes.base import PAPER_SCHEMES

    return PAPER_SCHEMES


def _scheme_registry() -> Any:
    """The scheme registry (imported on use: lsc.schemes is heavier than a config check needs up front)."""
    from lsc.plugins import registry

    return registry("scheme")


# ---------------------------------------------------------------- loading and overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (['a', 'b'], YAML-typed value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = load_yaml(raw, f"--set {key}") if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({_yaml_problem(exc)})") from None
    return key.split("."), value


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line that keeps where it is: 'problem (line L, column C)'."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or _first_line(exc)
    text = " ".join(str(problem).split())
    return f"{text} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else text


# Mappings whose `source` picks a variant with its own keys: switching the source by `--set` drops the
# file's keys of the other variant (e.g. images.count when images.source becomes folder).
_VARIANT_KEYS = {("images",): "source"}


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply `--set` overrides to a raw config dict (copy); dotted keys create nested mappings.

    `--set images.source=folder --set images.path=D` works on a file whose images are the world's:
    a changed `source` keeps only the keys that overrides set, as the file's belong to the old source.
    """
    data = copy.deepcopy(data)
    set_by_override: set[tuple[str, ...]] = set()
    for text in overrides:
        path, value = parse_override(text)
        parent, leaf = tuple(path[:-1]), path[-1]
        if _VARIANT_KEYS.get(parent) == leaf:
            node = data
            for part in parent:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and node.get(leaf) != value:
                for k in [k for k in node if parent + (k,) not in set_by_override]:
                    del node[k]
        set_by_override.add(tuple(path))
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a mapping")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found")
    try:
        data = load_yaml(p.read_text(encoding="utf-8"), f"config file {str(p)!r}")
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {_yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of keys, not {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> StudyConfig:
    """Build a StudyConfig from a YAML file (None = the packaged default study) and overrides."""
    data = read_yaml(path if path is not None else DEFAULT_CONFIG_PATH)
    data = apply_overrides(data, list(overrides))
    from lsc.language.config import confirm_key_destinations

    confirm_key_destinations(data, {tuple(parse_override(o)[0]) for o in overrides})  # a file is data, not consent
    return validate_config(data)


def validate_config(data: dict[str, Any]) -> StudyConfig:
    """Validate a raw dict; any problem becomes one ConfigError line naming the key."""
    try:
        cfg = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    _check_scheme_options(cfg)
    return cfg


def _check_scheme_options(cfg: StudyConfig) -> None:
    """Build each scheme once so that a bad option fails now, naming the scheme."""
    from lsc.schemes import get_scheme

    for i, spec in enumerate(cfg.schemes):
        try:
            get_scheme(spec.name, **spec.options)
        except ConfigError as exc:
            raise ConfigError(f"schemes.{i} ({spec.label}): {_first_line(exc)}") from None
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"schemes.{i} ({spec.name}): bad option: {_first_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - the registry's own error classes
            from lsc.errors import LscError

            if isinstance(exc, LscError):
                raise ConfigError(f"schemes.{i} ({spec.name}): {_first_line(exc)}") from None
            raise


_UNION_TAGS = {"world", "folder", "str", "dict[str,any]", "list[any]", "function-after[_default_label(), SchemeSpec]"}


def format_validation_error(exc: ValidationError) -> str:
    """Pydantic's errors as one line: `key.path: problem (got value)`, first error plus a count."""
    return validation_message(exc, unknown="unknown config key {key!r}", skip=_UNION_TAGS, rename={"snr_db_sweep": SNR_SWEEP_KEY})

