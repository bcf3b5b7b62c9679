"""lowest_lpips (allBob): Alice holds all of Bob's model and sends, at each step, the word whose image
would be closest to the original. Greedy by default; `beam` keeps the k best send orders instead.

Efficiency: every candidate of a step goes to the generator in ONE batched call through the
image context; the chosen candidate's image stays in the context's cache, so the transmission loop
reuses it instead of generating it again, and other schemes of the same image reuse it too. In a
study the context journals each step's batch as it returns (`lsc.runner.store.GenerationJournal`), so a
kill loses at most the step in flight and the resumed run continues from the last completed step.
"""

from __future__ import annotations


from lsc.interfaces import CAP_GENERATOR, CAP_PERCEPTUAL
from lsc.protocol.context import ImageContext, LoopSettings, Plan, make_prompt
from lsc.schemes.base import Scheme, register


@register
class LowestLpips(Scheme):
    name = "lowest_lpips"
    description = "each step, the word whose generated image has the lowest LPIPS (+ penalty x length); beam search option"
    alice_holds = "all of Bob's model"
    requires = frozenset({CAP_GENERATOR, CAP_PERCEPTUAL})

    def __init__(self, *, penalty: float = 0.0, beam: int = 1) -> None:
        if float(penalty) < 0:
            raise ValueError(f"penalty must be >= 0, not {penalty}")
        if int(beam) != beam or int(beam) < 1:
            raise ValueError(f"beam must be an integer >= 1, not {beam}")
        self.penalty = float(penalty)
        self.beam = int(beam)

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        """Beam search over send orders scored by cumulative LPIPS (+ penalty x word length).

        With beam=1 this is the greedy rule of the paper: each step the lowest-scoring candidate.
        Ties go to the lexicographically smallest order (lowest word index). Under caption-order
        prompts, orders with the same set of sent words share their future, so only the best is kept.
        """
        words = list(ctx.words)
        n = len(words)
        beams: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
        calls_before = ctx.generator_calls
        for _ in range(n):
            candidates: list[tuple[float, tuple[int, ...]]] = []
            for score, seq in beams:
                for j in range(n):
                    if j not in seq:
                        candidates.append((score, seq + (j,)))
            prompts = [make_prompt(words, seq, settings.prompt_order) for _, seq in candidates]
            lpips = ctx.distances(prompts)
            scored = sorted(
                (score + float(value) + self.penalty * len(words[seq[-1]]), seq)
                for (score, seq), value in zip(candidates, lpips)
            )
            kept: list[tuple[float, tuple[int, ...]]] = []
            seen: set[object] = set()
            for score, seq in scored:
                ident: object = frozenset(seq) if settings.prompt_order == "caption" else seq
                if ident in seen:
                    continue
                seen.add(ident)
                kept.append((score, seq))
                if len(kept) == self.beam:
                    break
            beams = kept
        best_score, best = min(beams) if beams else (0.0, ())
        info = {"score": best_score, "alice_generator_calls": ctx.generator_calls - calls_before}
        return Plan(words, list(best), info=info)
