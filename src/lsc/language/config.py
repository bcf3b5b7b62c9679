"""Configuration of the language side: semantic knowledge distillation (SKD).

Kept in its own module, free of heavy imports, so that the study configuration (`lsc.config`) can
embed these models without loading spaCy, NLTK or transformers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SKDConfig(BaseModel):
    """How Alice rewrites her caption in Bob's style (semantic knowledge distillation).

    engine "lexicon" (offline default): substitutions learnt from (alice, bob) example pairs.
    engine "transformers": a local causal LM (`model_id`, a hub id in the local cache or a path).
    engine "openai": any OpenAI-compatible chat-completions endpoint (`base_url`, `model`); the key is
    read only from the environment variable named by `api_key_env`, never from the config file.
    """

    model_config = ConfigDict(extra="forbid")

    engine: Literal["lexicon", "transformers", "openai"] = "lexicon"
    model_id: str | None = None  # transformers: model id or local path
    base_url: str = "https://api.openai.com/v1"  # openai: endpoint root (…/v1)
    model: str = "gpt-4o-mini"  # openai: model name sent to the endpoint
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(2, ge=0)
    max_new_tokens: int = Field(40, ge=1)
    n_examples: int = Field(8, ge=0)  # how many example pairs go into a few-shot prompt
    seed: int = 0
    temperature: float = Field(0.0, ge=0)
    # lexicon: minimum times a substitution must be seen in the examples to be applied.
    min_count: int = Field(1, ge=1)
    # Keep the original when the rewrite drops a head noun (the meaning check); off only for experiments.
    check_meaning: bool = True
