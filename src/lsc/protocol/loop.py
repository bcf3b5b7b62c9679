"""The progressive transmission loop: Alice sends caption words one at a time, Bob regenerates after each.

The per-image state it drives (`ImageContext`, `LoopSettings`, `make_prompt`, `Plan`, `ImageError`)
lives in `lsc.protocol.context` and is re-exported here; the loop takes a scheme object and never
imports `lsc.schemes` (callers resolve names with `lsc.schemes.get_scheme`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from lsc.errors import LscError
from lsc.protocol.context import ImageContext, ImageError, LoopSettings, Plan, PromptOrder, make_prompt

__all__ = [
    "ImageContext", "ImageError", "LoopSettings", "Plan", "PromptOrder", "SchemeLike", "StepRecord",
    "TransmissionResult", "WordLinkLike", "ideal_link", "make_prompt", "position_bits", "transmit",
]


def _step_metric_columns() -> list[tuple[str, type]]:
    """The step metric columns (`lsc.metrics.registry`, their one owner): what `StepRecord.metrics` holds."""
    from lsc.metrics.registry import stored_columns

    return stored_columns()


@dataclass
class StepRecord:
    """One transmission step. Step 0 is the empty prompt (nothing received; index None, bits 0).

    Its fields are the columns of a run's steps table and export, in this order (`lsc.runner.rows`):
    a new per-step value is one more field here, with a default. `metrics` holds the step metrics beyond
    LPIPS that the study runner scored at this step (`lsc.metrics.registry`, which names their columns;
    the loop leaves it empty): one column each, empty where a metric was not scored.
    """

    step: int
    word_sent: str
    word_received: str
    bits: int
    cum_bits: int
    prompt: str
    lpips: float
    ssim: float
    psnr: float
    bit_errors: int
    index: int | None = field(default=None, metadata={"column": "word_index"})
    image_key: str = ""
    metrics: dict[str, float | str] = field(default_factory=dict, metadata={"columns": _step_metric_columns})


@dataclass
class TransmissionResult:
    """A full run of one scheme on one image.

    `words` are the words the scheme sent from (the cleaned caption, or its SKD rewrite); `order`
    indexes them in send order; `words_to_threshold` is the first step whose LPIPS is below the
    threshold (0 if the empty prompt already is), None if never; `bits_to_threshold` its cumulative bits.
    """

    image_id: str
    scheme: str
    caption: str
    words: list[str]
    order: list[int]
    steps: list[StepRecord]
    words_to_threshold: int | None
    bits_to_threshold: int | None
    final_lpips: float
    rewritten: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0  # the whole call: Alice's planning, the channel, Bob's images and their LPIPS
    planning_s: float = 0.0  # of which Alice's planning (`scheme.plan`; lowest_lpips' search lives here)

    @property
    def min_lpips(self) -> float:
        return min(s.lpips for s in self.steps)


class SchemeLike(Protocol):
    """What the loop needs from a scheme (`lsc.schemes.Scheme`): a name and a plan for an image."""

    name: str

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        ...


class WordLinkLike(Protocol):
    """What the loop needs from a channel link (`lsc.channel.link.WordLink`): `prepare` starts a
    caption (semantic channel coding picks its synonyms), `send` passes one word."""

    def prepare(self, words: Sequence[str]) -> Any:
        ...

    def send(self, word: str) -> Any:  # returns an object with sent, received, bits, bit_errors
        ...


def position_bits(n_words: int, prompt_order: str) -> int:
    """Bits of the caption position sent with each word so Bob can keep the caption's order:
    ceil(log2(n)) with prompt_order 'caption' (nothing to send for a one-word caption), 0 in send order."""
    if prompt_order != "caption" or n_words < 2:
        return 0
    return int(math.ceil(math.log2(n_words)))


def ideal_link() -> WordLinkLike:
    """The default link: an ideal channel with the default source code (8-bit ASCII + separator)."""
    from lsc.channel.config import ChannelConfig
    from lsc.channel.link import WordLink

    return WordLink(ChannelConfig(), seed=0)


def transmit(ctx: ImageContext, scheme: SchemeLike, settings: LoopSettings | None = None, link: WordLinkLike | None = None) -> TransmissionResult:
    """Run one scheme on one image: plan the send order, pass each word through the link, score Bob's images.

    The plan is made by Alice before sending (she does not see channel errors); Bob's prompt after each
    step is built from the words he received, in send order or (prompt_order 'caption') in caption
    order, in which case each word also carries its position (`position_bits`, counted in `bits`; the
    position header is assumed to arrive intact). Images come from the context's cache when present.
    """
    if isinstance(scheme, str):
        raise TypeError(f"transmit takes a scheme object; build it with lsc.schemes.get_scheme({scheme!r})")
    settings = settings or LoopSettings()
    start = time.perf_counter()
    plan: Plan = scheme.plan(ctx, settings)
    planned = time.perf_counter()
    words = plan.words
    if len(set(plan.order)) != len(plan.order) or any(not 0 <= i < len(words) for i in plan.order):
        raise LscError(f"scheme {scheme.name!r} planned an invalid order {plan.order} for {len(words)} words")

    link = link if link is not None else ideal_link()
    link.prepare(words)  # semantic channel coding picks this caption's synonyms before sending
    header = position_bits(len(words), settings.prompt_order)
    # Channel first: it does not depend on Bob's images, so all prompts are known before generating.
    sent_idx: list[int] = []
    received: dict[int, str] = {}
    pending: list[tuple[int | None, str, str, int, int, str]] = [(None, "", "", 0, 0, "")]
    for idx in plan.order:
        word = words[idx]
        tx = link.send(word)
        got, bits, errors = str(tx.received), int(tx.bits) + header, int(tx.bit_errors)
        sent_idx.append(idx)
        received[idx] = got
        prompt = make_prompt(received, sent_idx, settings.prompt_order)
        pending.append((idx, word, got, bits, errors, prompt))

    batch = settings.step_batch or (4 if settings.stop_at_success else len(pending))
    steps: list[StepRecord] = []
    cum_bits = 0
    hit: int | None = None
    for begin in range(0, len(pending), batch):
        chunk = pending[begin : begin + batch]
        lpips = ctx.distances([p[5] for p in chunk], need_images=True)
        for offset, ((idx, word, got, bits, errors, prompt), value) in enumerate(zip(chunk, lpips)):
            step = begin + offset
            cum_bits += bits
            key = ctx.key(prompt)
            s, p = ctx.fidelity(key)
            steps.append(StepRecord(step=step, index=idx, word_sent=word, word_received=got, bits=bits, cum_bits=cum_bits,
                                    bit_errors=errors, prompt=prompt, lpips=float(value), ssim=s, psnr=p, image_key=key))
            if hit is None and value < settings.threshold:
                hit = step
                if settings.stop_at_success:
                    break
        if hit is not None and settings.stop_at_success:
            break

    order = [s.index for s in steps if s.index is not None]
    return TransmissionResult(
        image_id=ctx.image_id,
        scheme=scheme.name,
        caption=ctx.caption,
        words=list(words),
        order=order,
        steps=steps,
        words_to_threshold=hit,
        bits_to_threshold=steps[hit].cum_bits if hit is not None else None,
        final_lpips=steps[-1].lpips,
        rewritten=plan.rewritten,
        info=dict(plan.info),
        elapsed_s=time.perf_counter() - start,
        planning_s=planned - start,
    )
