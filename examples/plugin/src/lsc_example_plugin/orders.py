"""longest_first: send the caption's longest words first (ties: earlier word first)."""

from lsc.interfaces import CAP_GENERATOR
from lsc.schemes import Plan, Scheme


class LongestFirst(Scheme):
    name = "longest_first"
    description = "longest words first: long words tend to carry the content"
    alice_holds = "nothing but the caption"  # in words: shown by `lsc schemes` and in the report
    requires = frozenset({CAP_GENERATOR})

    def __init__(self, *, min_length: int = 1) -> None:  # options are keyword-only arguments
        if not isinstance(min_length, int) or min_length < 1:
            raise ValueError(f"min_length must be an integer >= 1, not {min_length!r}")
        self.min_length = min_length

    def plan(self, ctx, settings):
        words = list(ctx.words)
        keep = [i for i, w in enumerate(words) if len(w) >= self.min_length]
        order = sorted(keep, key=lambda i: (-len(words[i]), i))
        return Plan(words, order)
