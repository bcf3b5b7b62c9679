"""Schemes from the caption's grammar (prompttune): nouns, nouns and verbs, dependency heads (SSC), and
heads after semantic knowledge distillation (SSC + SKD).

POS tags and heads come from an analyzer callable `analyze(words) -> list[WordInfo]` (default:
`lsc.language.parse.analyze`, imported only when used); tests and other parsers can inject their own.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

from pydantic import ValidationError

from lsc.errors import LscError, validation_message
from lsc.interfaces import CAP_BOB_ATTENTION, CAP_GENERATOR, CAP_PARSER, CAP_SKD, RESEARCH_VARIANT, check_attention_variant
from lsc.protocol.context import ImageContext, LoopSettings, Plan
from lsc.protocol.words import clean_words
from lsc.schemes.attention import attentive_order, research_heads_order, word_attention
from lsc.schemes.base import Scheme, register

Analyzer = Callable[[Sequence[str]], Sequence[Any]]
HEAD_STYLES = ("spacy", "ud")


def _default_analyzer(head_style: str) -> Analyzer:
    from lsc.language.parse import analyze

    return functools.partial(analyze, heads=head_style)


def split_first(mask: Sequence[bool]) -> tuple[list[int], list[int]]:
    """Indices where mask holds, then the others, both in caption order."""
    first = [i for i, m in enumerate(mask) if m]
    rest = [i for i, m in enumerate(mask) if not m]
    return first, rest


class _ParsedScheme(Scheme):
    """Shared plumbing: run the analyzer once per image and words, check its alignment."""

    requires = frozenset({CAP_GENERATOR, CAP_PARSER})
    alice_holds = "nothing"

    def __init__(self, *, head_style: str = "spacy", analyzer: Analyzer | None = None) -> None:
        if head_style not in HEAD_STYLES:
            raise ValueError(f"head_style must be one of {', '.join(HEAD_STYLES)}, not {head_style!r}")
        self.head_style = head_style
        self.analyzer = analyzer

    def analyze(self, ctx: ImageContext, words: Sequence[str]) -> list[Any]:
        analyzer = self.analyzer or _default_analyzer(self.head_style)
        key = ("parse", self.head_style if self.analyzer is None else id(self.analyzer), tuple(words))
        infos = ctx.memo(key, lambda: list(analyzer(list(words))))
        if len(infos) != len(words):
            raise LscError(f"the parser returned {len(infos)} analyses for {len(words)} words")
        return infos


@register
class Nouns(_ParsedScheme):
    name = "nouns"
    description = "nouns (NN*) first in caption order, then the other words in caption order"

    def mask(self, infos: Sequence[Any]) -> list[bool]:
        return [bool(i.is_noun) for i in infos]

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        first, rest = split_first(self.mask(self.analyze(ctx, ctx.words)))
        return Plan(list(ctx.words), first + rest)


@register
class NounsVerbs(Nouns):
    name = "nouns_verbs"
    description = "nouns and verbs (NN*, VB*) first in caption order, then the rest in caption order"

    def mask(self, infos: Sequence[Any]) -> list[bool]:
        return [bool(i.is_noun or i.is_verb) for i in infos]


@register
class Heads(_ParsedScheme):
    name = "heads"
    description = "SSC: dependency head words first in caption order, then the rest (only_heads: heads only)"

    def __init__(self, *, only_heads: bool = False, head_style: str = "spacy", analyzer: Analyzer | None = None) -> None:
        super().__init__(head_style=head_style, analyzer=analyzer)
        self.only_heads = bool(only_heads)

    def order(self, ctx: ImageContext, settings: LoopSettings, words: Sequence[str]) -> list[int]:
        heads, rest = split_first([bool(i.is_head) for i in self.analyze(ctx, words)])
        return heads if self.only_heads else heads + rest

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        return Plan(list(ctx.words), self.order(ctx, settings, ctx.words))


@register
class HeadsAttentive(Heads):
    name = "heads_attentive"
    description = "head words first, ordered as most_attentive on Bob's attention among heads; then the rest in caption order"
    alice_holds = "Bob's language model"
    requires = frozenset({CAP_GENERATOR, CAP_PARSER, CAP_BOB_ATTENTION})

    def __init__(self, *, only_heads: bool = False, attention_variant: str = "mean", head_style: str = "spacy", analyzer: Analyzer | None = None) -> None:
        check_attention_variant(attention_variant)
        super().__init__(only_heads=only_heads, head_style=head_style, analyzer=analyzer)
        self.attention_variant = attention_variant

    def order(self, ctx: ImageContext, settings: LoopSettings, words: Sequence[str]) -> list[int]:
        """most_attentive (scheme 2) run on the heads' sub-matrix of Bob's full-caption attention; with
        attention_variant "research", heads_partBob's order (heads sorted by the reversed contributions)."""
        heads, rest = split_first([bool(i.is_head) for i in self.analyze(ctx, words)])
        a = word_attention(ctx, "bob", words, self.attention_variant)
        if self.attention_variant == RESEARCH_VARIANT:
            ordered = research_heads_order(a, words, heads)
            return ordered if self.only_heads else ordered + rest
        sub = a[heads][:, heads]
        ordered = [heads[k] for k in attentive_order(sub, "max")]
        return ordered if self.only_heads else ordered + rest


@register
class HeadsRandom(Heads):
    name = "heads_random"
    description = "head words first in random order, then the rest in random order"

    def order(self, ctx: ImageContext, settings: LoopSettings, words: Sequence[str]) -> list[int]:
        heads, rest = split_first([bool(i.is_head) for i in self.analyze(ctx, words)])
        rng = settings.rng(ctx.image_id, self.name)
        heads = [heads[k] for k in rng.permutation(len(heads))]
        rest = [rest[k] for k in rng.permutation(len(rest))]
        return heads if self.only_heads else heads + rest


class _SKDRewrite:
    """Shared by the SKD schemes: build the SKD engine (the study's `skd` setting; engine "auto" takes the
    backend's own style translator when it ships one) and rewrite each caption once."""

    skd: Any
    engine: Any
    _user_engine: Any

    def _init_skd(self, skd: Any, engine: Any) -> None:
        self.skd = skd
        self.engine = engine
        self._user_engine = engine
        if engine is None and skd is not None and not isinstance(skd, dict):
            if not hasattr(skd, "model_dump"):
                raise ValueError(f"skd must be an SKDConfig or a mapping, not {type(skd).__name__}")
        if engine is None and isinstance(skd, dict):
            self._config()  # validate now, before a study starts

    def _skd_options(self) -> dict[str, Any]:
        if self.skd is None:
            return {}
        return {"skd": self.skd.model_dump() if hasattr(self.skd, "model_dump") else dict(self.skd)}

    def _config(self) -> Any:
        from lsc.language.config import SKDConfig

        if self.skd is None:
            return SKDConfig()
        if isinstance(self.skd, dict):
            try:
                return SKDConfig(**self.skd)
            except ValidationError as exc:
                raise ValueError(f"bad skd option: {validation_message(exc, 'skd')}") from None
        return self.skd

    def _engine(self, ctx: ImageContext) -> Any:
        if self.engine is None:
            from lsc.language.skd import make_skd

            self.engine = make_skd(self._config(), translator=getattr(ctx.backend, "skd_translator", None))
        return self.engine

    def rewrite(self, ctx: ImageContext) -> tuple[list[str], str, dict[str, Any]]:
        """The SKD rewrite of the caption (once per image); falls back to the caption if it is empty."""

        def compute() -> tuple[list[str], str, dict[str, Any]]:
            engine = self._engine(ctx)
            result = engine.rewrite(ctx.caption, list(ctx.backend.skd_examples))
            text = getattr(result, "text", None)
            kept = getattr(result, "kept", None)
            reason = getattr(result, "reason", "")
            if text is None:  # a plain (text, kept, reason) tuple
                text, kept, reason = result
            words = clean_words(str(text))
            info = {"skd_kept": bool(kept), "skd_reason": str(reason), "skd_engine": str(getattr(engine, "name", type(engine).__name__))}
            if not words:
                info["skd_reason"] = f"empty rewrite, caption kept ({reason})"
                return list(ctx.words), ctx.caption, info
            return words, str(text), info

        source = id(self._user_engine) if self._user_engine is not None else repr(self._skd_options().get("skd"))
        return ctx.memo(("skd", source), compute)


@register
class HeadsSKD(_SKDRewrite, Heads):
    name = "heads_skd"
    description = "SSC + SKD: the caption rewritten in Bob's style first, then heads first"
    alice_holds = "a style translator (an LLM, or her own on the world)"
    requires = frozenset({CAP_GENERATOR, CAP_PARSER, CAP_SKD})

    def __init__(
        self,
        *,
        only_heads: bool = False,
        skd: Any = None,
        engine: Any = None,
        head_style: str = "spacy",
        analyzer: Analyzer | None = None,
    ) -> None:
        """skd: an `SKDConfig` or its dict (default config when None); engine: any object with
        `rewrite(caption, examples)` returning (text, kept, reason), used instead of building one."""
        super().__init__(only_heads=only_heads, head_style=head_style, analyzer=analyzer)
        self._init_skd(skd, engine)

    def options(self) -> dict[str, Any]:
        return {"only_heads": self.only_heads, "head_style": self.head_style, **self._skd_options()}

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        words, text, info = self.rewrite(ctx)
        return Plan(words, self.order(ctx, settings, words), rewritten=text, info=dict(info))


@register
class SKDCaptionOrder(_SKDRewrite, Scheme):
    name = "skd"
    description = "SKD alone: the caption rewritten in Bob's style, sent in caption order (no reordering)"
    alice_holds = "a style translator (an LLM, or her own on the world)"
    requires = frozenset({CAP_GENERATOR, CAP_SKD})

    def __init__(self, *, skd: Any = None, engine: Any = None) -> None:
        """skd and engine as for heads_skd: what isolates SKD's effect from SSC's."""
        self._init_skd(skd, engine)

    def options(self) -> dict[str, Any]:
        return self._skd_options()

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        words, text, info = self.rewrite(ctx)
        return Plan(words, list(range(len(words))), rewritten=text, info=dict(info))
