"""Semantic knowledge distillation (SKD): Alice rewrites her caption in Bob's language style.

In-context learning from example pairs (the same images captioned in Alice's and in Bob's style), with
three interchangeable engines chosen by `SKDConfig.engine`:

* ``lexicon`` (zero training): the style lexicon of `lsc.language.lexicon`, learnt from the pairs.
* ``seq2seq``: Alice's own style translator (`lsc.language.translator`), a small encoder-decoder trained
  on many caption pairs of the same images (the world ships one; engine ``auto``, the default, takes a
  backend's translator when it has one and the lexicon otherwise).
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
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from pydantic import ValidationError

from lsc.errors import ConfigError, LscError, ModelUnavailableError, validation_message
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
    proposed: str = ""  # the engine's rewrite before the meaning check ("" when it gave none)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "kept": self.kept,
            "reason": self.reason,
            "original": self.original,
            "engine": self.engine,
            "substitutions": [list(s) for s in self.substitutions],
            "proposed": self.proposed,
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


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    """English stop words (spaCy's list, the parser's own library): never evidence that a noun survived."""
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


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
        if lexicon is not None:  # a plural is kept by its singular's substitute ("balls" by "circle")
            substitutes = set().union(*(lexicon.substitutes(v) for v in _variants(noun)))
            # a stop word a link grew to ("ball" -> "circle at") proves nothing either
            if (substitutes - function_words - _stop_words()) & present or noun in lexicon.deletions:
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
            return SKDResult(caption, False, reason, caption, engine, subs or [], proposed=text)
    reason = "rewritten" if text != caption else "unchanged (nothing learnt applies)"
    return SKDResult(text, True, reason, caption, engine, subs or [], proposed=text)


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
        # prompt "research": no chat model offline, but the research code's 19 pairs are what is learnt from.
        exs = tuple(RESEARCH_PAIRS) if self.cfg.prompt == "research" else _examples(examples)
        lex = learn_lexicon(exs, self.cfg.min_count)
        text, subs = lex.apply(caption)
        return _finish(self.cfg, self.name, caption, text or None, lex, subs, "empty rewrite")


# SemanticKD.py's 19 in-context pairs of the same Flickr8k images, (BLIP caption = Alice, CLIP prompt = Bob).
RESEARCH_PAIRS: list[tuple[str, str]] = [
    ("a little girl in a pink dress", "a little girl standing on the steps of a house"),
    ("two dogs are walking down the road with a ball in their mouth", "two dogs playing with each other on the street"),
    ("a child playing in the grass with a rainbow painted on it", "a little girl that is sitting in the grass"),
    ("a man wearing a hat", "a man wearing an orange hat with stickers on it"),
    ("a little girl climbing on a red rope", "a little girl climbing on a rope net"),
    ("a dog running in the grass near a white picket fence", "a dog running in the grass with a frisbee in its mouth"),
    ("a dog playing with a ball on the beach", "a dog playing with a ball on the beach"),
    ("a young boy is standing in front of a lamp post", "a little boy standing next to a fire hydrant"),
    ("a dog sitting on top of a log", "a dog that is standing on a log"),
    ("a dog running in the snow", "a brown and white dog running in the snow"),
    ("a group of people skiing in the snow", "a man riding skis down a snow covered slope"),
    ("a group of people climbing on a rock", "a group of people climbing up the side of a rock"),
    ("a dog running through a hose in the grass", "a dog that is running in the grass"),
    ("a dog running with a ball in its mouth", "a white dog chasing after a yellow ball"),
    ("a dog running across a lush green field", "a dog jumping in the air to catch a frisbee"),
    ("a man and a woman are standing near the water", "a couple of kids flying a kite next to a body of water"),
    ("a man and woman sitting on a bench in the park", "a woman sitting next to a baby in a stroller"),
    ("a man standing on top of a snow covered field", "a man standing on top of a snow covered field"),
    ("two dogs running on the beach", "two dogs running on a beach near the ocean"),
]  # fmt: skip


def research_prompt(caption: str) -> str:
    """SemanticKD.py's `clip_caption` request (one user message; its line breaks regularised). Its
    concatenation is kept as written: the last pair runs into "CLIP's prompt is" and the caption."""
    pairs = "\n\n".join(f"CLIP: {bob}\nBLIP: {alice}" for alice, bob in RESEARCH_PAIRS)
    return ("When converting the same image to text with CLIP and BLIP, the resulting text prompts are as follows. "
            "Can you catch the difference in context-wise between CLIP and BLIP by observing the each prompt pairs? "
            f"\n\n{pairs}CLIP's prompt is{caption}. Maintaining the same meaning, generate and list 10 prompts using "
            "CLIP. Among them, chose one prompt that is most likely to be generated by BLIP")


def research_answer(answer: str) -> str | None:
    """The prompt SemanticKD.py keeps from the answer: the text after the first "1. " up to the next "2"
    (textwrap joins the lines first; the regex's "." matches any character); None when there is none."""
    import textwrap

    lines = textwrap.wrap(answer.strip(), width=1000)
    if not lines:
        return None
    parts = re.split(r"(1. )", lines[0])
    if "1. " not in parts:
        return None
    rest = parts[parts.index("1. "):]
    text = rest[1].split("2")[0].strip() if len(rest) > 1 else ""
    return text or None


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

        research = self.cfg.prompt == "research"
        exs = tuple(RESEARCH_PAIRS) if research else _examples(examples)
        tok, model = _load_causal_lm(self.cfg.model_id)  # type: ignore[arg-type]
        if research:  # one user turn, through the model's chat template when it has one
            prompt = research_prompt(caption)
            if getattr(tok, "chat_template", None):
                prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True)
        else:
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
        text = research_answer(answer) if research else _usable(answer, caption)
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
        """POST to the endpoint within one deadline (`timeout_s`, retries included); one-line errors.

        Why httpx under asyncio: a deadline on the whole call (a server trickling a byte a second is
        cut at `timeout_s`, which per-read socket timeouts never do), redirects never followed (the
        key would go to another origin), and malformed answers (bad status line, truncated or
        non-UTF-8 body) surface as errors. Anything shown to the user is redacted of the key.
        """
        url = self.cfg.base_url.rstrip("/") + "/chat/completions"
        key = os.environ.get(self.cfg.api_key_env) or None
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if key:
            if not key.isascii() or not key.isprintable() or " " in key:
                raise ConfigError(f"${self.cfg.api_key_env} holds characters an HTTP header cannot carry "
                                  "(a key is printable ASCII without spaces)")
            headers["Authorization"] = f"Bearer {key}"
            _announce(self.cfg.api_key_env, self.cfg.base_url)
        data = json.dumps(body).encode()
        try:
            reply = _in_fresh_loop(lambda: self._attempts(url, headers, data, key))
        except LscError as exc:  # the message may quote the server: never let the key through
            raise type(exc)(redact(str(exc), key)) from None
        return _redact_all(reply, key) if key else reply  # nor an answer echoing it (then stored, sent to Bob)

    async def _attempts(self, url: str, headers: dict[str, str], data: bytes, key: str | None) -> dict[str, Any]:
        import asyncio

        import httpx

        tries = self.cfg.retries + 1
        last = ""

        async def loop() -> dict[str, Any]:
            nonlocal last
            async with httpx.AsyncClient(follow_redirects=False, timeout=self.cfg.timeout_s) as client:
                for attempt in range(tries):
                    if attempt:
                        await asyncio.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))
                    try:
                        status, text = await _fetch(client, url, headers, data)
                    except httpx.HTTPError as exc:  # connection refused, reset, bad status line, truncated body
                        last = _one_line(f"{type(exc).__name__}: {exc}")
                        continue
                    except _BadAnswer as exc:
                        last = str(exc)
                        continue
                    if 300 <= status < 400:
                        raise LscError(f"{url} answered a redirect (HTTP {status}); lsc does not follow redirects "
                                       "with your key: set skd.base_url to the final address")
                    if status in (401, 403):
                        raise ModelUnavailableError(
                            f"{url} refused the request ({status}); set ${self.cfg.api_key_env} to a valid key")
                    if status == 429 or status >= 500:
                        last = f"HTTP {status} {_one_line(redact(text, key))[:200]}"
                        continue
                    if status >= 400:
                        raise LscError(f"{url} answered HTTP {status}: {_one_line(redact(text, key))[:200]}")
                    try:
                        reply = json.loads(text)
                    except json.JSONDecodeError:
                        last = "answer is not JSON"
                        continue
                    if not isinstance(reply, dict):
                        last = "answer is not a JSON object"
                        continue
                    return reply
            raise ModelUnavailableError(
                f"chat endpoint {url} failed after {tries} tries ({last}); check skd.base_url")

        try:
            return await asyncio.wait_for(loop(), self.cfg.timeout_s)
        except asyncio.TimeoutError:
            raise ModelUnavailableError(
                f"chat endpoint {url} did not answer within skd.timeout_s={self.cfg.timeout_s:g} s"
                + (f" ({last})" if last else "")) from None

    def rewrite(self, caption: str, examples: Examples | None = None) -> SKDResult:
        research = self.cfg.prompt == "research"
        exs = tuple(RESEARCH_PAIRS) if research else _examples(examples)
        messages = ([{"role": "user", "content": research_prompt(caption)}] if research
                    else self.messages(caption, select_examples(caption, exs, self.cfg.n_examples)))
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_new_tokens,
            "seed": self.cfg.seed,
        }
        reply = self._post(body)
        try:
            answer = reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            answer = ""
        text = research_answer(str(answer)) if research else _usable(answer, caption)
        return _finish(self.cfg, self.name, caption, text, learn_lexicon(exs, self.cfg.min_count),
                       why_unusable=repr(str(answer)[:60]))


MAX_ANSWER_BYTES = 1 << 20  # a chat answer is a line of text; more is a misbehaving server


class _BadAnswer(Exception):
    """The server's answer cannot be used (too long, not UTF-8); retried like a transport error."""


async def _fetch(client: Any, url: str, headers: dict[str, str], data: bytes) -> tuple[int, str]:
    """(status, body text) of one POST; the body is capped and must be UTF-8."""
    async with client.stream("POST", url, content=data, headers=headers) as resp:
        chunks, size = [], 0
        async for chunk in resp.aiter_raw():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise _BadAnswer(f"answer longer than {MAX_ANSWER_BYTES} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if resp.headers.get("content-encoding", "identity") not in ("identity", ""):
            raw = await _decode_content(resp, raw)
        try:
            return resp.status_code, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadAnswer("answer is not UTF-8 text") from None


async def _decode_content(resp: Any, raw: bytes) -> bytes:
    """Undo gzip/deflate transfer compression (raw bytes were read to cap the size before decoding)."""
    import zlib

    enc = resp.headers.get("content-encoding", "").lower()
    try:
        if enc == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, MAX_ANSWER_BYTES)
        if enc == "deflate":
            return zlib.decompressobj().decompress(raw, MAX_ANSWER_BYTES)
    except zlib.error:
        raise _BadAnswer(f"answer's {enc} encoding is corrupt") from None
    raise _BadAnswer(f"answer uses unsupported content-encoding {enc!r}")


def _in_fresh_loop(make: Any) -> Any:
    """Run a coroutine to completion on its own event loop in a helper thread.

    A thread, so that callers already inside an event loop (a notebook) can call SKD synchronously.
    """
    import asyncio
    import threading

    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(make())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = exc

    thread = threading.Thread(target=target, name="lsc-skd-http", daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


_SECRETS = (
    re.compile(r"(?i)\b(authorization|x-api-key|api[_-]?key)(\s*[:=]\s*)(bearer\s+)?[^\s,;\"']+"),
    re.compile(r"(?i)\bbearer\s+[^\s,;\"']+"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}"),
)


_ANNOUNCED: set[tuple[str, str]] = set()


def _announce(var: str, base_url: str) -> None:
    """Say once per process which variable's value goes to which host (the user sees where a key goes)."""
    import warnings

    from lsc.errors import LscWarning
    from lsc.language.config import host_of

    if (var, base_url) not in _ANNOUNCED:
        _ANNOUNCED.add((var, base_url))
        warnings.warn(LscWarning(f"skd: sending the key in ${var} to {host_of(base_url)}"), stacklevel=3)


def _redact_all(value: Any, key: str) -> Any:
    """Every string inside a JSON value redacted."""
    if isinstance(value, str):
        return redact(value, key)
    if isinstance(value, list):
        return [_redact_all(v, key) for v in value]
    if isinstance(value, dict):
        return {k: _redact_all(v, key) for k, v in value.items()}
    return value


def key_forms(key: str) -> list[str]:
    """The forms a key takes in text: as is, JSON-escaped, URL-encoded, base64 (also inside Basic auth)."""
    import base64
    from urllib.parse import quote, quote_plus

    raw = key.encode("utf-8", "surrogatepass")
    b64 = base64.b64encode(raw).decode()
    escaped = json.dumps(key)[1:-1]
    forms = {key, escaped, escaped.replace("/", "\\/"), quote(key, safe=""),
             quote_plus(key), quote(key), b64, b64.rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


def redact(text: str, key: str | None = None) -> str:
    """Text fit to print or store: the key (in every form of `key_forms`), Authorization headers and
    sk-... tokens replaced."""
    if key and len(key) >= 4:
        for form in key_forms(key):
            text = text.replace(form, "[redacted]")
    text = _SECRETS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    text = _SECRETS[1].sub("Bearer [redacted]", text)
    return _SECRETS[2].sub("sk-[redacted]", text)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class Seq2SeqSKD:
    """SKD by Alice's own style translator: greedy decoding of a small encoder-decoder trained on
    caption pairs. A caption with a word it never learnt is not translated (the original is kept)."""

    name = "seq2seq"

    def __init__(self, cfg: SKDConfig, translator: str | os.PathLike[str]):
        from pathlib import Path

        from lsc.language.translator import read_config

        path = Path(translator).expanduser()
        if not path.is_file():
            raise ConfigError(f"skd.translator {str(path)!r} is not a file (a style translator's .safetensors)")
        try:
            read_config(path)
        except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: one line, not a traceback
            raise ConfigError(f"skd.translator {str(path)!r} is not a style translator: {_one_line(str(exc))[:160]}") from None
        self.cfg = cfg
        self.path = str(path.resolve())

    def rewrite(self, caption: str, examples: Examples | None = None) -> SKDResult:
        from lsc.language.translator import load_translator

        model = load_translator(self.path)
        words = [w for w in tokenize(caption) if re.search(r"\w", w)]
        lexicon = learn_lexicon(_examples(examples), self.cfg.min_count)
        unknown = model.unknown_words(words)
        if unknown or not words:
            why = f"words the translator never learnt: {', '.join(sorted(set(unknown)))}" if unknown else "empty caption"
            return _finish(self.cfg, self.name, caption, None, lexicon, why_unusable=why)
        text = " ".join(model.translate([words])[0])
        return _finish(self.cfg, self.name, caption, text or None, lexicon, why_unusable="empty translation")


ENGINES = ("lexicon", "seq2seq", "transformers", "openai")
_ENGINES = {"lexicon": LexiconSKD, "transformers": TransformersSKD, "openai": OpenAISKD}


def engine_name(cfg: SKDConfig, translator: str | os.PathLike[str] | None = None) -> str:
    """The engine a configuration runs: "auto" is seq2seq when a translator is at hand, else lexicon."""
    if cfg.engine == "auto":
        return "seq2seq" if (cfg.translator or translator) else "lexicon"
    return cfg.engine


def make_skd(cfg: SKDConfig | dict[str, Any] | None = None, translator: str | os.PathLike[str] | None = None) -> SKDEngine:
    """The SKD engine a configuration names. `translator` is the backend's own style translator (the
    world's), used by engine seq2seq (and by "auto", the default) unless `skd.translator` names another."""
    if cfg is None:
        cfg = SKDConfig()
    elif isinstance(cfg, dict):
        try:
            cfg = SKDConfig(**cfg)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, "skd")) from None
    name = engine_name(cfg, translator)
    if name == "seq2seq":
        path = cfg.translator or translator
        if not path:
            raise ConfigError("the seq2seq SKD engine needs a style translator: set skd.translator to its .safetensors "
                              "file, or use a backend that ships one (world)")
        return Seq2SeqSKD(cfg, path)
    return _ENGINES[name](cfg)
