"""Time per image of the world's three receivers (flow, flow_fast, vqvae_ar) in one process.

`python benchmarks/bench_receivers_speed.py --threads 1`: `generate` of 48 Bob-style prompts (3 passes
of 16) per receiver, interleaved, 3 repetitions; prints the median and minimum ms per image.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from lsc.backends.world import scenes
from lsc.backends.world.backend import RECEIVERS, load_world_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="weights folder (default: the shipped ones)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    gens = {r: load_world_backend(args.weights, receiver=r).generator for r in RECEIVERS}
    prompts = [scenes.bob_caption(scenes.world_scene(i, 77)) for i in range(args.prompts)]
    for g in gens.values():
        g.generate(prompts[:4], 0)  # warm-up
    ms: dict[str, list[float]] = {r: [] for r in gens}
    for rep in range(args.repeats):
        for r, g in gens.items():
            t = time.perf_counter()
            g.generate(prompts, rep)
            ms[r].append((time.perf_counter() - t) / len(prompts) * 1000)
    print(json.dumps({r: {"median_ms_per_image": round(float(np.median(v)), 1), "min_ms_per_image": round(min(v), 1)} for r, v in ms.items()}))


if __name__ == "__main__":
    main()
