"""lowest_lpips two ways on the same models in one process: lsc's way vs the research code's way.

lsc: every candidate of a step in one batched generator call through `ImageContext`; the chosen image is
reused from the cache by the transmission loop; the reference's perceptual features computed once.
naive (research code): one generator call per candidate; after choosing, the chosen prompt's image is
generated again for the transmission record; the perceptual network is rebuilt at every call (for the
world backend: its weights reloaded from disk; for the fake backend: a simulated build delay).

Both must pick the same send order (checked). Usage:
    python benchmarks/bench_lowest_lpips.py --backend fake
    python benchmarks/bench_lowest_lpips.py --backend world --images 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable

import numpy as np

from lsc.interfaces import Backend
from lsc.protocol.loop import ImageContext, LoopSettings, make_prompt, transmit
from lsc.protocol.testing import FakeGenerator, FakePerceptual, fake_backend
from lsc.schemes import get_scheme


def fake_setup(n_images: int, seed: int, caption_source: str = "alice", threads: int = 0) -> tuple[Backend, list[tuple[str, np.ndarray, str]], Callable[[], Any]]:
    """A fake backend with simulated costs: 20 ms per generator call + 2 ms per image, 30 ms to build LPIPS."""
    gen = FakeGenerator(size=16, latency_s=0.020, per_image_s=0.002)
    backend = fake_backend(generator=gen)
    captions = [
        "a small red circle on the left of a blue square",
        "two green triangles above a yellow star on grey",
        "a large purple square in the middle of the picture",
    ]
    items = []
    for i in range(n_images):
        cap = captions[i % len(captions)]
        items.append((f"fake-{i}", gen.image(cap), cap))
    return backend, items, lambda: FakePerceptual(build_s=0.030)


def world_setup(n_images: int, seed: int, caption_source: str = "alice", threads: int = 0) -> tuple[Backend, list[tuple[str, np.ndarray, str]], Callable[[], Any]]:
    """The world backend; captions from Alice's captioner (or the scenes' Bob-style reference captions);
    LPIPS rebuilt = the attribute network reloaded from disk. LSC_WORLD_WEIGHTS selects a weights folder."""
    from safetensors.torch import load_file

    from lsc.backends import load_backend
    from lsc.backends.world import backend as wb
    from lsc.backends.world import nets
    from lsc.backends.world.perceptual import WorldPerceptual
    from lsc.backends.world.scenes import world_samples

    backend = load_backend("world", {"threads": threads} if threads else {})
    weights = wb.PACKAGED_WEIGHTS
    import os
    from pathlib import Path

    weights = Path(os.environ.get("LSC_WORLD_WEIGHTS", weights))
    samples = world_samples(n_images, seed)
    if caption_source == "alice":
        captions = backend.captioner.caption([s.image for s in samples])
    else:
        captions = [s.captions[-1] for s in samples]
    items = [(s.image_id, s.image, c) for s, c in zip(samples, captions)]

    def rebuild() -> Any:
        net = nets.AttributeNet(nets.ClassifierConfig())
        net.load_state_dict({k: v.float() for k, v in load_file(str(weights / "attributes.safetensors")).items()})
        return WorldPerceptual(net.eval().requires_grad_(False))

    return backend, items, rebuild


def naive_lowest_lpips(backend: Backend, image: np.ndarray, caption_words: list[str], seed: int, rebuild: Callable[[], Any], prompt_order: str) -> tuple[list[int], list[float], int]:
    """The research code's loop: per candidate one generation and a freshly built metric; chosen image regenerated."""
    calls = 0

    def lpips_of(prompt: str) -> float:
        nonlocal calls
        img = backend.generator.generate([prompt], seed)
        calls += 1
        metric = rebuild()
        return float(metric.distances(metric.reference(image), img)[0])

    n = len(caption_words)
    sent: list[int] = []
    curve = [lpips_of("")]
    while len(sent) < n:
        best_j, best_v = -1, float("inf")
        for j in range(n):
            if j in sent:
                continue
            v = lpips_of(make_prompt(caption_words, sent + [j], prompt_order))
            if v < best_v:
                best_j, best_v = j, v
        sent.append(best_j)
        curve.append(lpips_of(make_prompt(caption_words, sent, prompt_order)))  # Bob's image, generated again
    return sent, curve, calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["fake", "world"], default="fake")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt-order", choices=["send", "caption"], default="send")
    parser.add_argument("--caption-source", choices=["alice", "dataset"], default="alice")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (world; 0 = torch's default)")
    parser.add_argument("--max-words", type=int, default=0, help="truncate captions to this many words (0 = all)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    setup = fake_setup if args.backend == "fake" else world_setup
    backend, items, rebuild = setup(args.images, args.seed, args.caption_source, args.threads)
    if args.max_words:
        items = [(i, img, " ".join(c.split()[: args.max_words])) for i, img, c in items]
    settings = LoopSettings(prompt_order=args.prompt_order, threshold=backend.default_threshold)

    lsc_time = naive_time = 0.0
    lsc_calls = lsc_images = naive_calls = 0
    words_total = 0
    same = True
    for image_id, image, caption in items:
        t0 = time.perf_counter()
        ctx = ImageContext(backend, image_id, image, caption, seed=args.seed)
        result = transmit(ctx, get_scheme("lowest_lpips"), settings)
        lsc_time += time.perf_counter() - t0
        lsc_calls += ctx.generator_calls
        lsc_images += ctx.generated_images
        words_total += len(ctx.words)

        t0 = time.perf_counter()
        order, curve, calls = naive_lowest_lpips(backend, image, ctx.words, args.seed, rebuild, args.prompt_order)
        naive_time += time.perf_counter() - t0
        naive_calls += calls
        if order != result.order:
            same = False
            print(f"warning: orders differ on {image_id}: lsc {result.order} vs naive {order}", file=sys.stderr)
        print(f"{image_id}: {len(ctx.words)} words, lsc {ctx.generator_calls} calls/{ctx.generated_images} images, naive {calls} calls; max |dLPIPS| {max(abs(a - s.lpips) for a, s in zip(curve, result.steps)):.2e}")

    ratio = naive_time / lsc_time if lsc_time > 0 else float("inf")
    figures = {
        "backend": args.backend,
        "caption_source": args.caption_source,
        "max_words": args.max_words,
        "images": len(items),
        "words": words_total,
        "lsc_seconds": round(lsc_time, 3),
        "naive_seconds": round(naive_time, 3),
        "speedup": round(ratio, 2),
        "lsc_generator_calls": lsc_calls,
        "lsc_generated_images": lsc_images,
        "naive_generator_calls": naive_calls,
        "same_orders": same,
    }
    print(f"lowest_lpips on {args.backend}: {len(items)} images, {words_total} words")
    print(f"  lsc   : {lsc_time:8.2f} s  {lsc_calls:5d} generator calls ({lsc_images} images)")
    print(f"  naive : {naive_time:8.2f} s  {naive_calls:5d} generator calls")
    print(f"  speed-up: {ratio:.1f}x   same send orders: {same}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
