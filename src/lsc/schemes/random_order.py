"""The baseline: Alice holds nothing and sends the words in a uniformly random order."""

from __future__ import annotations


from lsc.interfaces import CAP_GENERATOR
from lsc.protocol.context import ImageContext, LoopSettings, Plan
from lsc.schemes.base import Scheme, register


@register
class RandomScheme(Scheme):
    name = "random"
    description = "uniformly random order of the caption words (baseline)"
    alice_holds = "nothing"
    requires = frozenset({CAP_GENERATOR})

    def __init__(self) -> None:
        pass

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        """A permutation drawn from a generator seeded by (study seed, image id, scheme name)."""
        rng = settings.rng(ctx.image_id, self.name)
        return Plan(list(ctx.words), [int(i) for i in rng.permutation(len(ctx.words))])
