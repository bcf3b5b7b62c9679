"""How fast Bob (the world generator) draws, and where the time goes.

Prints, measured in this one process: the wall time of a batch of 16 generations; the share of the
text encoder and of the U-Net evaluations (sampler steps x 2 for classifier-free guidance); the U-Net's
FLOPs per image (torch's FLOP counter) and the rate it achieves, against the machine's measured dense
matmul rate (a 1024^3 float32 matmul), so the gap to the hardware is explicit.

    python benchmarks/bench_world_generation.py [--weights DIR] [--batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def _best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from lsc.backends.world.backend import load_world_backend

    t0 = time.perf_counter()
    backend = load_world_backend(args.weights)
    load_s = time.perf_counter() - t0
    gen = backend.generator
    prompts = [f"green grass with a large red circle at left and a small blue square at right"] * args.batch
    batch_s = _best(lambda: gen.generate(prompts, 0), args.repeats)

    m = gen.m
    tokens = torch.randint(4, len(m.bob_vocab), (2 * args.batch, 16))
    with torch.inference_mode():
        text_s = _best(lambda: m.text(tokens), args.repeats)
        feats, pad = m.text(tokens)
        x = torch.randn(2 * args.batch, 3, 32, 32)
        t = torch.full((2 * args.batch,), 0.5)
        unet_s = _best(lambda: m.unet(x, t, feats, pad), args.repeats)
        with FlopCounterMode(display=False) as counter:
            m.unet(x, t, feats, pad)
        unet_flops = counter.get_total_flops()
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        mm_s = _best(lambda: a @ b, args.repeats)
    matmul_gflops = 2 * 1024**3 / mm_s / 1e9
    unet_gflops = unet_flops / unet_s / 1e9
    result = {
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 3),
        "batch": args.batch,
        "sampler_steps": gen.steps,
        "batch_generate_s": round(batch_s, 3),
        "unet_forward_s_per_step": round(unet_s, 4),
        "unet_share_of_batch": round(gen.steps * unet_s / batch_s, 3),
        "text_encoder_s": round(text_s, 4),
        "unet_params_M": round(sum(p.numel() for p in m.unet.parameters()) / 1e6, 3),
        "unet_gflop_per_image_per_step": round(unet_flops / (2 * args.batch) / 1e9, 4),
        "unet_achieved_gflops": round(unet_gflops, 1),
        "matmul_gflops": round(matmul_gflops, 1),
        "unet_fraction_of_matmul_rate": round(unet_gflops / matmul_gflops, 3),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
