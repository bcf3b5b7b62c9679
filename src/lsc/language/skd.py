"""Semantic knowledge distillation (SKD): Alice rewrites her caption in Bob's language style.

In-context learning from example pairs (the same images captioned in Alice's and in Bob's style), with
three interchangeable engines chosen by `SKDConfig.engine`:

* ``lexicon`` (offline default): the style lexicon of `lsc.language.lexicon`, learnt from the pairs.
* ``transformers``: a local causal LM (`model_id`: a hub id already in the local cache, or a folder),
  few-shot prompt, first line of the answer; the original caption when the answer is unusable.
* ``openai``: any OpenAI-compatible ``/chat/completions`` endpoint (`base_url`, `model`); the key is
  read from the environment variable `api_key_env` only (sent when set; local servers need none),
  with a timeout and retries. The research code asked a chat LLM for paraphrases "in CLIP's style".

Every engine's rewrite passes the meaning check: a head noun of the original (a noun that governs a
dependency relation) must survive, as itself, its plural/singular, a substitute the lexicon learnt from
the same examples (so "ball" may become Bob's "circle"), a WordNet synonym, or be a word the examples
teach Bob's style to drop. Otherwise the original is kept and the reason logged.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from lsc.errors import ConfigError, LscError, ModelUnavailableError
from lsc.language.config import SKDConfig
from lsc.language.lexicon import StyleLexicon, tokenize

log = logging.getLogger(__name__)

Examples = Sequence[tuple[str, str]]

# Used when no examples are given (CLI without --examples): BLIP-style sentences (Alice) and
# CLIP-interrogator-style prompts (Bob) of the same kind of photos, written for lsc.
BUILTIN_EXAMPLES: list[tuple[str, str]] = [
    ("there is a dog that is running on the grass", "a dog running on grass"),
    ("there is a man that is riding a bike on the street", "a man riding a bicycle on a street"),
    ("there is a woman that is sitting on a bench in the park", "a woman sitting on a bench in a park"),
    ("there is a little girl that is playing on the beach", "a little girl playing on a beach"),
    ("there is a cat that is laying on the couch", "a cat lying on a sofa"),
    ("there is a boy that is jumping into the pool", "a boy jumping into a swimming pool"),
    ("there are two men that are sitting on a bench", "two men sitting on a bench"),
    ("there is a brown dog that is carrying a stick in its mouth", "a brown dog carrying a stick in its mouth"),
    ("there is a man that is climbing up the side of a rock", "a man climbing a rock wall"),
    ("there is a black and white dog that is jumping over a fence", "a black and white dog jumping over a fence"),
]  # fmt: skip


@dataclass
class SKDResult:
    """The caption to send (the rewrite, or the original when not kept), and why."""

    text: str
    kept: bool  # True: the rewrite was accepted; False: `text` is the original caption
    reason: str
    original: str = ""
    engine: str = ""
    substitutions: list[tuple[str, str]] = field(default_factory=list)  # lexicon: (alice, bob) used

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "kept": self.kept,
            "reason": self.reason,
            "original": self.original,
            "engine": self.engine,
            "substitutions": [list(s) for s in self.substitutions],
        }


class SKDEngine(Protocol):
    def rewrite(self, caption: str, examples: Examples | None = None) -> SKDResult: ...


# --------------------------------------------------------------------------------- meaning check


@functools.lru_cache(maxsize=64)
def learn_lexicon(examples: tuple[tuple[str, str], ...], min_count: int = 1) -> StyleLexicon:
    """The style lexicon of a set of examples, learnt once per process."""
    return StyleLexicon.learn(examples, min_count=min_count)


def _norm(word: str) -> str:
    return re.sub(r"^[^\w]+|[^\w]+$", "", word.lower())


def _variants(word: str) -> set[str]:
    out = {word}
    if word.endswith("ies"):
        out.add(word[:-3] + "y")
    if word.endswith("es"):
        out.add(word[:-2])
    if word.endswith("s"):
        out.add(word[:-1])
    out |= {word + "s", word + "es"}
    return out


def head_nouns(caption: str) -> list[str]:
    """Head nouns of a caption: nouns governing a dependency relation (what SKD must not drop)."""
    from lsc.language.parse import analyze

    words = caption.split()
    if not words:
        return []
    return [_norm(i.word) for i in analyze(words) if i.is_head and i.is_noun and _norm(i.word)]


def missing_head_nouns(original: str, rewrite: str, lexicon: StyleLexicon | None = None) -> list[str]:
    """Head nouns of `original` that `rewrite` lost (neither kept, substituted nor learnt-dropped)."""
    present = {_norm(t) for t in tokenize(rewrite)} | {_norm(t) for t in rewrite.split()}
    function_words: set[str] = set()
    if lexicon is not None:  # Bob words linked from many Alice phrases ("with", "at") prove nothing
        sources: dict[str, set] = {}
        for pa, pb in lexicon.table.items():
            for t in pb:
                sources.setdefault(t, set()).add(pa)
        function_words = {t for t, s in sources.items() if len(s) > 3}
    missing = []
    for noun in head_nouns(original):
        if _variants(noun) & present:
            continue
        if lexicon is not None:
            if (lexicon.substitutes(noun) - function_words) & present or noun in lexicon.deletions:
                continue
        try:
            from lsc.language.synonyms import synonyms

            syn = {s.lower() for s in synonyms(noun, "noun").all()}
        except LscError:
            syn = set()
        if syn & present:
            continue
        missing.append(noun)
    return missing


def _usable(answer: str, caption: str) -> str | None:
    """First line of a model's answer, cleaned; None when it is not a caption."""
    for line in answer.splitlines():
        line = line.strip().strip("\"'`").strip()
        line = re.sub(r"^(bob|rewritten|caption|answer)\s*:\s*", "", line, flags=re.I).strip().strip("\"'")
        if line:
            break
    else:
        return None
    if not re.search(r"[A-Za-z]", line):
        return None
    if len(line.split()) > 3 * len(caption.split()) + 8:
        return None
    return line


def _finish(cfg: SKDConfig, engine: str, caption: str, text: str | None, lexicon: StyleLexicon | None,
            subs: list[tuple[str, str]] | None = None, why_unusable: str = "") -> SKDResult:
    """Apply the meaning check and build the result (the original when the rewrite is rejected)."""
    if text is None:
        reason = f"unusable answer{': ' + why_unusable if why_unusable else ''}; original kept"
        log.info("SKD %s: %s (%r)", engine, reason, caption)
        return SKDResult(caption, False, reason, caption, engine)
    if cfg.check_meaning:
        lost = missing_head_nouns(caption, text, lexicon)
        if lost:
            reason = f"rewrite dropped head noun(s) {', '.join(lost)}; original kept"
            log.info("SKD %s: %s (%r -> %r)", engine, reason, caption, text)
            return SKDResult(caption, False, reason, caption, engine, subs or [])
    reason = "rewritten" if text != caption else "unchanged (nothing learnt applies)"
    return SKDResult(text, True, reason, caption, engine, subs or [])


def _examples(examples: Examples | None) -> tuple[tuple[str, str], ...]:
    chosen = list(examples) if examples else BUILTIN_EXAMPLES
    out = []
    for ex in chosen:
        if not (isinstance(ex, (list, tuple)) and len(ex) == 2 and all(isinstance(s, str) for s in ex)):
            raise ConfigError(f"an SKD example must be a pair [alice, bob] of strings, got {ex!r}")
        out.append((ex[0], ex[1]))
    return tuple(out)


def select_examples(caption: str, examples: Examples, n: int) -> list[tuple[str, str]]:
    """The n examples whose Alice side shares most words with the caption, most similar last."""
    words = set(tokenize(caption))

    def overlap(ex: tuple[str, str]) -> float:
        other = set(tokenize(ex[0]))
        return len(words & other) / max(1, len(words | other))

    ranked = sorted(enumerate(examples), key=lambda ie: (-overlap(ie[1]), ie[0]))[:n]
    return [ex for _, ex in reversed(ranked)]


# ------------------------------------------------------------------------------------- engines


class LexiconSKD:
    """Offline SKD: substitutions, deletions, insertions and reordering learnt from the examples."""

    name = "lexicon"

    def __init__(self, cfg: SKDConfig):
        self.cfg = cfg

    def rewrite(self, caption: str, examples: Examples | None = None) -> SKDResult:
        lex = learn_lexicon(_examples(examples), self.cfg.min_count)
        text, subs = lex.apply(caption)
        return _finish(self.cfg, self.name, caption, text or None, lex, subs, "empty rewrite")


FEW_SHOT_HEADER = "Rewrite each image caption in the listener's style, keeping its meaning.\n\n"


def few_shot_prompt(caption: str, examples: Sequence[tuple[str, str]]) -> str:
    """The plain-text few-shot prompt for a causal LM (base or instruction-tuned)."""
    shots = "".join(f"Caption: {a}\nRewritten: {b}\n\n" for a, b in examples)
    return f"{FEW_SHOT_HEADER}{shots}Caption: {caption}\nRewritten:"


@functools.lru_cache(maxsize=2)
def _load_causal_lm(model_id: str) -> tuple[Any, Any]:
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelUnavailableError("the transformers SKD engine needs: pip install 'lsc[hf]'") from exc
    try:
        tok = AutoTokenizer.from_pretrained(model_id, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(model_id, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"causal LM {model_id!r} is not available locally; download it once on a connected machine "
            f"(huggingface-cli download {model_id}) or set skd.model_id to a local folder"
        ) from exc
    model.eval()
    return tok, model


class TransformersSKD:
    """SKD by a local causal language model, prompted with a few examples."""

    name = "transformers"

    def __init__(self, cfg: SKDConfig):
        if not cfg.model_id:
            raise ConfigError("the transformers SKD engine needs skd.model_id (a model id or a local folder)")
        self.cfg = cfg

    def rewrite(self, caption: str, examples: Examples | None = None) -> SKDResult:
        import torch

        exs = _examples(examples)
        tok, model = _load_causal_lm(self.cfg.model_id)  # type: ignore[arg-type]
        prompt = few_shot_prompt(caption, select_examples(caption, exs, self.cfg.n_examples))
        inputs = tok(prompt, return_tensors="pt")
        torch.manual_seed(self.cfg.seed)
        sample = self.cfg.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": self.cfg.max_new_tokens, "do_sample": sample}
        if sample:
            kwargs["temperature"] = self.cfg.temperature
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad():
            out = model.generate(**inputs, pad_token_id=pad, **kwargs)
        answer = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        text = _usable(answer, caption)
        return _finish(self.cfg, self.name, caption, text, learn_lexicon(exs, self.cfg.min_count),
                       why_unusable=repr(answer[:60]))


SYSTEM_PROMPT = (
    "You rewrite image captions from the speaker's style into the listener's style, keeping every "
    "object and attribute. Learn the listener's style from the examples. Answer with the rewritten "
    "caption only, on one line."
)


class OpenAISKD:
    """SKD by any OpenAI-compatible chat-completions endpoint (key from the environment only)."""

    name = "openai"

    def __init__(self, cfg: SKDConfig):
        self.cfg = cfg

    def messages(self, caption: str, examples: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": SYSTEM_PROMPT}]
        for a, b in examples:
            msgs += [{"role": "user", "content": a}, {"role": "assistant", "content": b}]
        msgs.append({"role": "user", "content": caption})
        return msgs

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = self.cfg.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode("utf-8", "replace").replace("\n", " ")
                if exc.code in (401, 403):
                    raise ModelUnavailableError(
                        f"{url} refused the request ({exc.code}); set ${self.cfg.api_key_env} to a valid key"
                    ) from exc
                if exc.code == 429 or exc.code >= 500:
                    last = f"HTTP {exc.code} {detail}"
                    continue
                raise LscError(f"{url} answered HTTP {exc.code}: {detail}") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
                continue
            except json.JSONDecodeError:
                last = "answer is not JSON"
                continue
        raise ModelUnavailableError(
            f"chat endpoint {url} failed after {self.cfg.retries + 1} tries ({last}); check skd.base_url"
        )

    def rewrite(self, caption: str, examples: Examples | None = None) -> SKDResult:
        exs = _examples(examples)
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": self.messages(caption, select_examples(caption, exs, self.cfg.n_examples)),
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_new_tokens,
            "seed": self.cfg.seed,
        }
        reply = self._post(body)
        try:
            answer = reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            answer = ""
        text = _usable(answer, caption)
        return _finish(self.cfg, self.name, caption, text, learn_lexicon(exs, self.cfg.min_count),
                       why_unusable=repr(str(answer)[:60]))


_ENGINES = {"lexicon": LexiconSKD, "transformers": TransformersSKD, "openai": OpenAISKD}


def make_skd(cfg: SKDConfig | dict[str, Any] | None = None) -> SKDEngine:
    """The SKD engine a configuration names (lexicon by default)."""
    if cfg is None:
        cfg = SKDConfig()
    elif isinstance(cfg, dict):
        try:
            cfg = SKDConfig(**cfg)
        except Exception as exc:  # pydantic.ValidationError: one line for the user
            raise ConfigError(f"invalid skd configuration: {str(exc).splitlines()[0]} {exc}".replace("\n", " ")) from exc
    return _ENGINES[cfg.engine](cfg)
