"""lowest_lpips (allBob): Alice holds all of Bob's model and sends, at each step, the word whose image
would be closest to the original. Greedy by default; `beam` keeps the k best send orders instead;
`lookahead=1` scores a candidate by its LPIPS plus the lowest LPIPS one more word reaches after it;
`proxy_steps` scores candidates with a cheaper sampler first (multi-fidelity, see `LowestLpips.plan`).

Efficiency: every candidate of a step goes to the generator in ONE batched call through the
image context; the chosen candidate's image stays in the context's cache, so the transmission loop
reuses it instead of generating it again, and other schemes of the same image reuse it too. In a
study the context journals each step's batch as it returns (`lsc.runner.store.GenerationJournal`), so a
kill loses at most the step in flight and the resumed run continues from the last completed step.
Proxy images live in the context's proxy (`ImageContext.proxy`): never journaled, never stored, never
mixed with full-fidelity ones; a resumed run scores them again.
"""

from __future__ import annotations

from math import comb, perm
from typing import Sequence

from lsc.interfaces import CAP_GENERATOR, CAP_PERCEPTUAL
from lsc.progress import Stage, stage
from lsc.protocol.context import ImageContext, LoopSettings, Plan, make_prompt
from lsc.schemes.base import Scheme, register

Candidate = tuple[float, tuple[int, ...]]


@register
class LowestLpips(Scheme):
    name = "lowest_lpips"
    description = "each step, the word whose generated image has the lowest LPIPS (+ penalty x length); beam, lookahead and cheap-sampler proxy options"
    alice_holds = "all of Bob's model"
    requires = frozenset({CAP_GENERATOR, CAP_PERCEPTUAL})

    def __init__(self, *, penalty: float = 0.0, beam: int = 1, lookahead: int = 0, proxy_steps: int | None = None,
                 proxy_top: int = 3) -> None:
        if float(penalty) < 0:
            raise ValueError(f"penalty must be >= 0, not {penalty}")
        if int(beam) != beam or int(beam) < 1:
            raise ValueError(f"beam must be an integer >= 1, not {beam}")
        if lookahead not in (0, 1):
            raise ValueError(f"lookahead must be 0 or 1, not {lookahead}")
        if proxy_steps is not None and (int(proxy_steps) != proxy_steps or int(proxy_steps) < 1):
            raise ValueError(f"proxy_steps must be an integer >= 1, not {proxy_steps}")
        if int(proxy_top) != proxy_top or int(proxy_top) < 1:
            raise ValueError(f"proxy_top must be an integer >= 1, not {proxy_top}")
        if lookahead and (int(beam) > 1 or proxy_steps is not None):
            raise ValueError("lookahead works with beam 1 and without proxy_steps")
        self.penalty = float(penalty)
        self.beam = int(beam)
        self.lookahead = int(lookahead)
        self.proxy_steps = None if proxy_steps is None else int(proxy_steps)
        self.proxy_top = int(proxy_top)

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        """Beam search over send orders scored by cumulative LPIPS (+ penalty x word length).

        With beam=1 this is the greedy rule of the paper: each step the lowest-scoring candidate.
        Ties go to the lexicographically smallest order (lowest word index). Under caption-order
        prompts, orders with the same set of sent words share their future, so only the best is kept.
        With proxy_steps, a step's candidates are first scored on images sampled with that many steps and
        only the best max(proxy_top, beam) are scored at full fidelity, which alone decides; a step with
        no more candidates than that skips the proxy, so proxy_top >= n words is exactly the greedy.
        """
        total = self.candidates(len(ctx.words), settings.prompt_order)
        with ctx.counting_prompts() as asked, stage(f"{self.name} {ctx.image_id}", total, unit="candidate") as progress:
            plan = (self._plan_lookahead(ctx, settings, progress) if self.lookahead
                    else self._plan_beam(ctx, settings, progress))
        plan.info["alice_images"] = len(asked)  # what a fresh run generates to plan (the search's cost)
        return plan

    def candidates(self, n: int, prompt_order: str) -> int:
        """The prompts the search scores over a caption of n words (cached or not): its progress total.

        Greedy: n + (n-1) + ... + 1. Beam: each step extends the kept orders (at most `beam`, at most the
        distinct ones of that length). Lookahead: r singles and r(r-1) pairs while r words remain.
        """
        if self.lookahead:
            return sum(r * r for r in range(1, n + 1))
        distinct = comb if prompt_order == "caption" else perm
        return sum(min(self.beam, distinct(n, k)) * (n - k) for k in range(n))

    def _plan_beam(self, ctx: ImageContext, settings: LoopSettings, progress: Stage) -> Plan:
        words = list(ctx.words)
        n = len(words)
        beams: list[Candidate] = [(0.0, ())]
        calls_before, images_before = ctx.generator_calls, ctx.generated_images
        proxy = ctx.proxy(self.proxy_steps) if self.proxy_steps is not None else None
        proxy_before = proxy.generated_images if proxy is not None else 0
        for _ in range(n):
            candidates: list[Candidate] = [(score, seq + (j,)) for score, seq in beams for j in range(n) if j not in seq]
            n_candidates = len(candidates)
            if proxy is not None:
                candidates = self._shortlist(ctx, proxy, words, candidates, settings.prompt_order)
            beams = self._keep(self._scored(ctx, words, candidates, settings.prompt_order, ctx), settings.prompt_order, self.beam)
            progress.advance(n_candidates)
        best_score, best = min(beams) if beams else (0.0, ())
        info = {"score": best_score, "alice_generator_calls": ctx.generator_calls - calls_before,
                "alice_generated_images": ctx.generated_images - images_before}
        if proxy is not None:
            info["alice_proxy_images"] = proxy.generated_images - proxy_before
        return Plan(words, list(best), info=info)

    def _scored(self, ctx: ImageContext, words: Sequence[str], candidates: list[Candidate], prompt_order: str,
                source: ImageContext) -> list[Candidate]:
        """Candidates with their step's LPIPS (from `source`: the context or its proxy) and penalty added, best first."""
        prompts = [make_prompt(words, seq, prompt_order) for _, seq in candidates]
        lpips = source.distances(prompts, keep_images=source is ctx)
        return sorted((score + float(value) + self.penalty * len(words[seq[-1]]), seq)
                      for (score, seq), value in zip(candidates, lpips))

    @staticmethod
    def _keep(scored: list[Candidate], prompt_order: str, limit: int) -> list[Candidate]:
        """The best `limit` candidates, one per future (same word set under caption-order prompts)."""
        kept: list[Candidate] = []
        seen: set[object] = set()
        for score, seq in scored:
            ident: object = frozenset(seq) if prompt_order == "caption" else seq
            if ident in seen:
                continue
            seen.add(ident)
            kept.append((score, seq))
            if len(kept) == limit:
                break
        return kept

    def _shortlist(self, ctx: ImageContext, proxy: ImageContext, words: Sequence[str], candidates: list[Candidate],
                   prompt_order: str) -> list[Candidate]:
        """The candidates worth a full-fidelity image: the best by proxy LPIPS (all when there are few)."""
        top = max(self.proxy_top, self.beam)
        if len(self._keep(sorted(candidates), prompt_order, top + 1)) <= top:
            return candidates
        rough = self._scored(ctx, words, candidates, prompt_order, proxy)
        chosen = {seq for _, seq in self._keep(rough, prompt_order, top)}
        return [c for c in candidates if c[1] in chosen]

    def _plan_lookahead(self, ctx: ImageContext, settings: LoopSettings, progress: Stage) -> Plan:
        """Greedy on a two-step horizon: candidate j scores LPIPS(sent + j) + min over k of LPIPS(sent + j + k)
        (each with its penalty), i.e. the area of the next two points of the curve, so a word that is weak
        alone but opens the best pair can go first. All prompts of a step go in one batched call."""
        words = list(ctx.words)
        n = len(words)
        order = settings.prompt_order
        sent: tuple[int, ...] = ()
        calls_before, images_before = ctx.generator_calls, ctx.generated_images
        total = 0.0
        while len(sent) < n:
            rest = [j for j in range(n) if j not in sent]
            pairs = [(j, k) for j in rest for k in rest if k != j]
            prompts = [make_prompt(words, sent + (j,), order) for j in rest]
            prompts += [make_prompt(words, sent + (j, k), order) for j, k in pairs]
            lpips = ctx.distances(prompts)
            progress.advance(len(prompts))
            one = {j: float(v) + self.penalty * len(words[j]) for j, v in zip(rest, lpips)}
            two: dict[int, float] = {}
            for (j, k), v in zip(pairs, lpips[len(rest):]):
                two[j] = min(two.get(j, float("inf")), float(v) + self.penalty * len(words[k]))
            best = min(rest, key=lambda j: (one[j] + two.get(j, 0.0), j))
            total += one[best]
            sent = sent + (best,)
        info = {"score": total, "alice_generator_calls": ctx.generator_calls - calls_before,
                "alice_generated_images": ctx.generated_images - images_before}
        return Plan(words, list(sent), info=info)
