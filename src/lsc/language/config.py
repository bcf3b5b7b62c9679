"""Configuration of the language side: semantic knowledge distillation (SKD).

Kept in its own module, free of heavy imports, so that the study configuration (`lsc.config`) can
embed these models without loading spaCy, NLTK or transformers.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool


class SKDConfig(BaseModel):
    """How Alice rewrites her caption in Bob's style (semantic knowledge distillation).

    engine "auto" (default): the backend's own style translator when it ships one (the world: seq2seq),
    else the lexicon.
    engine "lexicon" (zero training): substitutions learnt from (alice, bob) example pairs.
    engine "seq2seq": Alice's small encoder-decoder trained on caption pairs (`translator`: its
    safetensors file; None = the backend's, `lsc world train --part skd` makes the world's).
    engine "transformers": a local causal LM (`model_id`, a hub id in the local cache or a path).
    engine "openai": any OpenAI-compatible chat-completions endpoint (`base_url`, `model`); the key is
    read only from the environment variable named by `api_key_env`, never from the config file.
    """

    model_config = ConfigDict(extra="forbid")

    engine: Literal["auto", "lexicon", "seq2seq", "transformers", "openai"] = "auto"
    translator: str | None = None  # seq2seq: a style translator's safetensors file (None: the backend's)
    model_id: str | None = None  # transformers: model id or local path
    base_url: str = "https://api.openai.com/v1"  # openai: endpoint root (…/v1)
    model: str = "gpt-4o-mini"  # openai: model name sent to the endpoint
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(30.0, gt=0, le=3600, allow_inf_nan=False)
    retries: int = Field(2, ge=0, le=20)
    max_new_tokens: int = Field(40, ge=1, le=4096)
    n_examples: int = Field(8, ge=0, le=1000)  # how many example pairs go into a few-shot prompt
    seed: int = Field(0, ge=0, le=2**32 - 1)
    temperature: float = Field(0.0, ge=0, le=2, allow_inf_nan=False)
    # lexicon: minimum times a substitution must be seen in the examples to be applied.
    min_count: int = Field(1, ge=1)
    # Keep the original when the rewrite drops a head noun (the meaning check); off only for experiments.
    check_meaning: StrictBool = True
    # "few_shot": lsc's prompt with the examples. "research": SemanticKD.py's single request (its 19 CLIP/BLIP
    # pairs, "generate and list 10 prompts using CLIP", the first listed prompt kept) for openai/transformers.
    prompt: Literal["few_shot", "research"] = "few_shot"


# ---------------------------------------------------------------- who may send which key where
# Opt-in for study files that name their own endpoint: "VAR@host" pairs, comma-separated.
TRUSTED_ENDPOINTS_ENV = "LSC_SKD_ENDPOINTS"
_DEFAULTS = SKDConfig()


def _skd_mappings(data: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, mapping) of every SKD setting in a raw study dict: `skd` and each scheme's `skd` option."""
    if not isinstance(data, dict):
        return
    if isinstance(data.get("skd"), dict):
        yield "skd", data["skd"]
    schemes = data.get("schemes")
    for i, item in enumerate(schemes if isinstance(schemes, list) else []):
        if isinstance(item, dict):
            opts = item.get("options") if isinstance(item.get("options"), dict) else item
            if isinstance(opts.get("skd"), dict):
                yield f"schemes.{i}.skd", opts["skd"]


def host_of(base_url: str) -> str:
    """The host an endpoint's requests go to (what the user confirms)."""
    return urlsplit(str(base_url)).hostname or str(base_url)


def confirm_key_destinations(data: dict[str, Any], from_command_line: set[tuple[str, ...]]) -> None:
    """A study file may not choose which environment variable's value is sent, nor where: a
    non-default `api_key_env` or `base_url` of an openai SKD engine must be set on the command line
    (`--set skd.api_key_env=... --set skd.base_url=...`) or listed as VAR@host in $LSC_SKD_ENDPOINTS.

    Why: docs/guarantees.md tells users to read a shared study file as data; without this a file could mail any
    variable (a cloud secret) to any address. `from_command_line` holds the `--set` key paths.
    """
    from lsc.errors import ConfigError

    trusted = {p.strip() for p in os.environ.get(TRUSTED_ENDPOINTS_ENV, "").split(",") if p.strip()}
    for where, skd in _skd_mappings(data):
        if skd.get("engine") != "openai":
            continue
        var = str(skd.get("api_key_env", _DEFAULTS.api_key_env))
        url = str(skd.get("base_url", _DEFAULTS.base_url))
        if f"{var}@{host_of(url)}" in trusted:
            continue
        prefix = tuple(where.split("."))

        def confirmed(k: str) -> bool:  # the key itself, or a mapping or list holding it, set by --set
            path = prefix + (k,)
            return any(path[:n] in from_command_line for n in range(1, len(path) + 1))

        unconfirmed = [k for k, v, d in (("api_key_env", var, _DEFAULTS.api_key_env), ("base_url", url, _DEFAULTS.base_url))
                       if v != d and not confirmed(k)]
        if unconfirmed:
            raise ConfigError(
                f"{where}: the study file would send ${var} to {host_of(url)}; confirm with "
                + " ".join(f"--set {where}.{k}={var if k == 'api_key_env' else url}" for k in unconfirmed)
                + f" (or list {var}@{host_of(url)} in ${TRUSTED_ENDPOINTS_ENV})")
