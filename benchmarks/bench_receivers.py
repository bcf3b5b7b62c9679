"""Wall time per image of each of Bob's world receivers, measured in one process on the same prompts.

The prompts are what a study asks Bob for: every caption-order prefix of Alice's captions of the first
--images world scenes of --seed. Each receiver generates them all in the study's batches (the
generator's own chunking), once to warm up on one batch and then timed; prints one JSON object with
seconds per image, network evaluations per image and the ratio of each receiver's time to flow's.
Receivers whose weights are missing are listed under "missing" (not an error).

    python benchmarks/bench_receivers.py --images 8 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="world scenes whose caption prefixes are the prompts")
    parser.add_argument("--seed", type=int, default=0, help="scene seed and Bob's generation seed")
    parser.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--receivers", default="flow,flow_fast,vqvae_ar", help="comma-separated receivers")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.images < 1 or args.threads < 1:
        print("error: --images and --threads must be >= 1", file=sys.stderr)
        return 2

    from lsc.backends import load_backend
    from lsc.backends.world.options import WorldBackendOptions
    from lsc.backends.world.scenes import world_samples
    from lsc.errors import ConfigError, LscError

    known = WorldBackendOptions.model_fields["receiver"].annotation.__args__  # the Literal's receivers
    wanted = [r.strip() for r in args.receivers.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in known]
    if unknown or not wanted:
        print(f"error: unknown receiver {unknown[0] if unknown else '(none)'}; choose from {', '.join(known)}", file=sys.stderr)
        return 2
    options = {"threads": args.threads, **({"weights": args.weights} if args.weights else {})}
    backends, missing = {}, {}
    for name in wanted:
        try:
            backends[name] = load_backend("world", {**options, "receiver": name})
        except ConfigError as exc:
            missing[name] = str(exc)
        except LscError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if not backends:
        print("error: no receiver could be loaded: " + "; ".join(missing.values()), file=sys.stderr)
        return 2
    first = next(iter(backends.values()))
    captions = first.captioner.caption([s.image for s in world_samples(args.images, args.seed)])
    prompts = [" ".join(c.split()[:k]) for c in captions for k in range(1, len(c.split()) + 1)]

    figures: dict[str, dict[str, float]] = {}
    for name, backend in backends.items():
        gen = backend.generator
        gen.generate(prompts[:16], args.seed)  # warm-up: first-call allocations and oneDNN kernels
        before = gen.evaluations
        t0 = time.perf_counter()
        gen.generate(prompts, args.seed)
        seconds = time.perf_counter() - t0
        figures[name] = {"seconds": round(seconds, 3), "ms_per_image": round(1000 * seconds / len(prompts), 2),
                         "evaluations_per_image": round((gen.evaluations - before) / len(prompts), 2)}
        print(f"{name}: {figures[name]['ms_per_image']} ms per image", file=sys.stderr)
    if "flow" in figures:
        for name, f in figures.items():
            f["time_vs_flow"] = round(f["seconds"] / figures["flow"]["seconds"], 3)
    result = {"images": args.images, "prompts": len(prompts), "threads": args.threads, "receivers": figures, "missing": missing}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
