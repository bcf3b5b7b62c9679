"""learned: Alice holds her own small ordering policy, trained to imitate lowest_lpips' greedy choice.

The policy (`lsc.schemes.policy_net`) reads only the caption's words: no image of Bob's is generated to
plan, unlike lowest_lpips' n(n+1)/2. It was trained by `lsc world train --part policy` on lowest_lpips
traces of world scenes (per step: every candidate word's LPIPS and the greedy pick) and is shipped beside
the world's weights as `policy.safetensors`; `weights` points at another policy file. Words outside the
policy's vocabulary are [UNK], so any caption gets an order (on other backends a weak one).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from lsc.errors import ConfigError, ModelUnavailableError
from lsc.interfaces import CAP_GENERATOR
from lsc.protocol.context import ImageContext, LoopSettings, Plan
from lsc.schemes.base import Scheme, register

POLICY_FILE = "policy.safetensors"


def packaged_policy() -> Path:
    from lsc.backends.world.options import world_weights_dir  # light module: no torch

    return world_weights_dir() / POLICY_FILE


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> Any:
    from lsc.schemes.policy_net import load_policy

    return load_policy(Path(path))


@register
class Learned(Scheme):
    name = "learned"
    description = "Alice's own small transformer policy, trained to imitate lowest_lpips' greedy pick; plans without generating an image"
    alice_holds = "her own policy"
    requires = frozenset({CAP_GENERATOR})

    def __init__(self, *, weights: str | None = None) -> None:
        if weights is not None and not isinstance(weights, (str, Path)):
            raise ValueError(f"weights must be a path to a policy file, not {weights!r}")
        self.weights = None if weights is None else str(weights)

    def path(self) -> Path:
        if self.weights is None:
            return packaged_policy()
        p = Path(self.weights).expanduser()
        return p / POLICY_FILE if p.is_dir() else p

    def model_files(self) -> list[Path]:
        """The policy file this scheme reads: fingerprinted in the study's identity (lsc.runner.models)."""
        return [self.path()]

    def policy(self) -> Any:
        path = self.path()
        if not path.is_file():
            if self.weights is not None:
                raise ConfigError(f"scheme 'learned': no policy file at {path}")
            raise ModelUnavailableError(f"no shipped ordering policy ({path}); train one with "
                                        "`lsc world train --part policy --out DIR` and set the scheme's weights: DIR/weights")
        resolved = path.resolve()
        return _load(str(resolved), resolved.stat().st_mtime_ns)

    def plan(self, ctx: ImageContext, settings: LoopSettings) -> Plan:
        """Each step the unsent word the policy scores highest (scores rounded to 5 decimals; ties: lowest index)."""
        order, scores = self.policy().order(list(ctx.words))
        return Plan(list(ctx.words), order, info={"alice_generator_calls": 0, "policy_scores": scores})
