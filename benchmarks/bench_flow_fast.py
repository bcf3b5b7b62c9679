"""lowest_lpips on the world with Bob's two receivers, same scenes, one process: flow (8 Euler steps,
classifier-free guidance: 16 U-Net evaluations per image) vs flow_fast (the distilled student: 2 steps,
guidance folded in, 2 evaluations per image).

Per receiver: wall time of the transmissions, images generated, U-Net evaluations per image, mean LPIPS
after the last word and mean area under LPIPS vs words (each against its own images). Between them: the
wall-time ratio and whether the chosen send orders agree (identical orders, share of equal positions,
mean Kendall tau between the two orders as rankings of the words); with --noise-seed, the same between
flow and flow with other noise, for reference. Prints one JSON object. The weights
folder (--weights, default the shipped one) must hold the student (bob_unet_fast.safetensors and
flow_fast.json). Usage:
    python benchmarks/bench_flow_fast.py --images 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from lsc.report.stats import area_per_word


def kendall_tau(a: list[int], b: list[int]) -> float:
    """Kendall's tau-a between two send orders of the same words (1 = same order, -1 = reversed)."""
    n = len(a)
    if n < 2:
        return 1.0
    rank_a = {w: i for i, w in enumerate(a)}
    rank_b = {w: i for i, w in enumerate(b)}
    words = list(rank_a)
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            da = rank_a[words[i]] - rank_a[words[j]]
            db = rank_b[words[i]] - rank_b[words[j]]
            s += 1 if da * db > 0 else -1
    return s / (n * (n - 1) / 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10, help="world scenes (the default study's, from index 0)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed and Bob's generation seed")
    parser.add_argument("--weights", default=None, help="weights folder with the student (default: the shipped weights)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--caption-source", choices=["alice", "dataset"], default="alice")
    parser.add_argument("--prompt-order", choices=["send", "caption"], default="caption", help="the world's default: caption")
    parser.add_argument("--max-words", type=int, default=0, help="truncate captions to this many words (0 = all)")
    parser.add_argument("--noise-seed", type=int, default=None,
                        help="also run flow with this generation seed: how far send orders move with Bob's noise alone (a reference for the agreement)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.images < 1 or args.threads < 1:
        print("error: --images and --threads must be >= 1", file=sys.stderr)
        return 2

    from lsc.backends import load_backend
    from lsc.backends.world.scenes import world_samples
    from lsc.errors import LscError
    from lsc.protocol.context import ImageContext
    from lsc.protocol.loop import LoopSettings, transmit
    from lsc.schemes import get_scheme

    options = {"threads": args.threads, **({"weights": args.weights} if args.weights else {})}
    try:
        backends = {name: load_backend("world", {**options, "receiver": name}) for name in ("flow", "flow_fast")}
    except LscError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    samples = world_samples(args.images, args.seed)
    if args.caption_source == "alice":
        captions = backends["flow"].captioner.caption([s.image for s in samples])
    else:
        captions = [s.captions[-1] for s in samples]
    if args.max_words:
        captions = [" ".join(c.split()[: args.max_words]) for c in captions]

    runs = {name: (backend, args.seed) for name, backend in backends.items()}
    if args.noise_seed is not None:
        runs["flow_other_noise"] = (backends["flow"], args.noise_seed)
    stats = {name: {"seconds": 0.0, "images": 0, "evaluations": 0, "final_lpips": [], "area": []} for name in runs}
    orders: dict[str, list[list[int]]] = {name: [] for name in runs}
    for sample, caption in zip(samples, captions):
        for name, (backend, seed) in runs.items():
            settings = LoopSettings(prompt_order=args.prompt_order, threshold=backend.default_threshold)
            before = backend.generator.evaluations
            t0 = time.perf_counter()
            ctx = ImageContext(backend, sample.image_id, sample.image, caption, seed=seed)
            result = transmit(ctx, get_scheme("lowest_lpips"), settings)
            st = stats[name]
            st["seconds"] += time.perf_counter() - t0
            st["images"] += ctx.generated_images
            st["evaluations"] += backend.generator.evaluations - before
            curve = [s.lpips for s in result.steps[1:]]
            st["final_lpips"].append(curve[-1] if curve else float("nan"))
            st["area"].append(area_per_word([s.lpips for s in result.steps]))  # the report's definition
            orders[name].append(list(result.order))
        a, b = orders["flow"][-1], orders["flow_fast"][-1]
        print(f"{sample.image_id}: {len(a)} words, same order: {a == b}, positions equal "
              f"{sum(x == y for x, y in zip(a, b))}/{len(a)}, tau {kendall_tau(a, b):.3f}", file=sys.stderr)

    words = sum(len(o) for o in orders["flow"])
    per_receiver = {}
    for name, st in stats.items():
        per_receiver[name] = {
            "seconds": round(st["seconds"], 2),
            "images_generated": st["images"],
            "s_per_image": round(st["seconds"] / max(1, st["images"]), 5),
            "unet_evaluations_per_image": round(st["evaluations"] / max(1, st["images"]), 3),
            "mean_final_lpips": round(sum(st["final_lpips"]) / len(st["final_lpips"]), 4),
            "mean_lpips_over_words": round(sum(st["area"]) / len(st["area"]), 4),
            "threshold": runs[name][0].default_threshold,
        }
    pairs = list(zip(orders["flow"], orders["flow_fast"]))
    figures = {
        "images": len(samples),
        "words": words,
        "caption_source": args.caption_source,
        "prompt_order": args.prompt_order,
        "threads": args.threads,
        "receivers": per_receiver,
        "wall_time_ratio_flow_over_flow_fast": round(stats["flow"]["seconds"] / max(1e-9, stats["flow_fast"]["seconds"]), 2),
        "same_order_scenes": sum(a == b for a, b in pairs),
        "position_agreement": round(sum(sum(x == y for x, y in zip(a, b)) for a, b in pairs) / max(1, words), 4),
        "mean_kendall_tau": round(sum(kendall_tau(a, b) for a, b in pairs) / len(pairs), 4),
    }
    if args.noise_seed is not None:
        ref = list(zip(orders["flow"], orders["flow_other_noise"]))
        figures["flow_vs_flow_other_noise"] = {
            "noise_seed": args.noise_seed,
            "same_order_scenes": sum(a == b for a, b in ref),
            "position_agreement": round(sum(sum(x == y for x, y in zip(a, b)) for a, b in ref) / max(1, words), 4),
            "mean_kendall_tau": round(sum(kendall_tau(a, b) for a, b in ref) / len(ref), 4),
        }
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
