"""lowest_lpips three ways on the same models and scenes in one process: the research code's loop, lsc's
exact greedy, and lsc's greedy with proxy scoring (multi-fidelity).

research: main_flicker.py's allBob loop transcribed (`research_lowest_lpips`): one generator call per
candidate, LPIPS computed twice per candidate with the network built anew each time (world: the attribute
network reloaded from disk; fake: a simulated build delay), the chosen prompt generated again, no cache.
lsc: every candidate of a step in one batched generator call through `ImageContext`; the chosen image
reused by the transmission loop; the reference's perceptual features computed once.
proxy: lsc with `proxy_steps` / `proxy_top`: candidates ranked on images of a cheaper sampler, the best
few re-scored at full fidelity.

research and lsc must pick the same send order (checked); the proxy's agreement with lsc is reported
(scenes with the identical order, and positions where the orders agree). Usage:
    python benchmarks/bench_lowest_lpips.py --backend fake
    python benchmarks/bench_lowest_lpips.py --backend world --images 3 --proxy-steps 2 --proxy-top 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable

import numpy as np

from lsc.errors import LscError
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
    from lsc.backends.world.perceptual import LinearWeights, WorldPerceptual
    from lsc.backends.world.scenes import world_samples

    backend = load_backend("world", {"threads": threads} if threads else {})
    weights = wb.world_weights_dir()
    samples = world_samples(n_images, seed)
    if caption_source == "alice":
        captions = backend.captioner.caption([s.image for s in samples])
    else:
        captions = [s.captions[-1] for s in samples]
    items = [(s.image_id, s.image, c) for s, c in zip(samples, captions)]

    def rebuild() -> Any:
        """The backend's metric built from disk, as lpips.LPIPS(net='alex') loads its trunk and "lin" weights."""
        net = nets.AttributeNet(nets.ClassifierConfig())
        net.load_state_dict({k: v.float() for k, v in load_file(str(weights / "attributes.safetensors")).items()})
        channel_weights = None
        if (weights / "perceptual.safetensors").exists():
            lin = LinearWeights(net.cfg.channels)
            lin.load_state_dict({k: v.float() for k, v in load_file(str(weights / "perceptual.safetensors")).items()})
            channel_weights = [w.detach() for w in lin.weights()]
        return WorldPerceptual(net.eval().requires_grad_(False), channel_weights)

    return backend, items, rebuild


def research_lowest_lpips(backend: Backend, image: np.ndarray, caption_words: list[str], seed: int, rebuild: Callable[[], Any], prompt_order: str, penalty: float = 0.0) -> tuple[list[int], list[float], int]:
    """The research code's allBob loop (main_flicker.py, method 'allBob'), transcribed step for step.

    Per step, per unsent candidate: one generation of one prompt (Receiver_T2I), then LPIPS computed twice
    (lpips_cand and lpips_cand_penalty each call lpips_score.LPIPS, which builds lpips.LPIPS(net='alex')
    anew and re-preprocesses the reference); argmin of the penalised scores (first on ties); then the
    chosen prompt generated again ("save img"), its image not scored: the step's LPIPS is min(lpips_cand).
    No batching, no cache, no empty-prompt image. `sort` (caption order) = prompt_order "caption".
    Returns the send order, the LPIPS after 1..n words, and the generator calls made.
    """
    calls = 0

    def generate(prompt: str) -> np.ndarray:
        nonlocal calls
        calls += 1
        return backend.generator.generate([prompt], seed)

    def lpips(img: np.ndarray) -> float:  # lpips_score.LPIPS: a new network, the reference prepared again
        metric = rebuild()
        return float(metric.distances(metric.reference(image), img)[0])

    n = len(caption_words)
    idxs: list[int] = []
    curve: list[float] = []
    while len(idxs) < n:
        next_idx = [x for x in range(n) if x not in idxs]
        lpips_cand = [0.0] * len(next_idx)
        lpips_cand_penalty = np.zeros(len(next_idx))
        penalty_list = [penalty * len(caption_words[t]) for t in next_idx]
        for t in range(len(next_idx)):
            img_gen = generate(make_prompt(caption_words, idxs + [next_idx[t]], prompt_order))
            lpips_cand[t] += lpips(img_gen)
            lpips_cand_penalty[t] += lpips(img_gen) + penalty_list[t]
        chosen = next_idx[int(np.argmin(lpips_cand_penalty))]
        idxs.append(chosen)
        generate(make_prompt(caption_words, idxs, prompt_order))  # "save img": Bob's image, generated again
        curve.append(float(np.min(lpips_cand)))
    return idxs, curve, calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["fake", "world"], default="fake")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt-order", choices=["send", "caption"], default="send")
    parser.add_argument("--caption-source", choices=["alice", "dataset"], default="alice")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (world; 0 = torch's default)")
    parser.add_argument("--max-words", type=int, default=0, help="truncate captions to this many words (0 = all)")
    parser.add_argument("--proxy-steps", type=int, default=2, help="sampler steps of the proxy (world's full sampler: 8)")
    parser.add_argument("--proxy-top", type=int, default=3, help="candidates re-scored at full fidelity per step")
    parser.add_argument("--skip-research", action="store_true", help="time only lsc and the proxy")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        proxy_scheme = get_scheme("lowest_lpips", proxy_steps=args.proxy_steps, proxy_top=args.proxy_top)
    except LscError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    setup = fake_setup if args.backend == "fake" else world_setup
    backend, items, rebuild = setup(args.images, args.seed, args.caption_source, args.threads)
    if args.max_words:
        items = [(i, img, " ".join(c.split()[: args.max_words])) for i, img, c in items]
    settings = LoopSettings(prompt_order=args.prompt_order, threshold=backend.default_threshold)

    seconds = {"research": 0.0, "lsc": 0.0, "proxy": 0.0}
    lsc_calls = lsc_images = research_calls = proxy_full_images = proxy_images = 0
    words_total = 0
    same = True
    proxy_same = 0
    agree = total = 0
    for image_id, image, caption in items:
        t0 = time.perf_counter()
        ctx = ImageContext(backend, image_id, image, caption, seed=args.seed)
        result = transmit(ctx, get_scheme("lowest_lpips"), settings)
        seconds["lsc"] += time.perf_counter() - t0
        lsc_calls += ctx.generator_calls
        lsc_images += ctx.generated_images
        n = len(ctx.words)
        words_total += n

        t0 = time.perf_counter()
        pctx = ImageContext(backend, image_id, image, caption, seed=args.seed)
        presult = transmit(pctx, proxy_scheme, settings)
        seconds["proxy"] += time.perf_counter() - t0
        proxy_full_images += pctx.generated_images
        proxy_images += int(presult.info.get("alice_proxy_images", 0))
        proxy_same += presult.order == result.order
        agree += sum(a == b for a, b in zip(presult.order, result.order))
        total += n
        line = f"{image_id}: {n} words, lsc {ctx.generator_calls} calls/{ctx.generated_images} images, proxy {pctx.generated_images} full + {presult.info.get('alice_proxy_images', 0)} proxy images, same order as lsc: {presult.order == result.order}"

        if not args.skip_research:
            t0 = time.perf_counter()
            order, curve, calls = research_lowest_lpips(backend, image, ctx.words, args.seed, rebuild, args.prompt_order)
            seconds["research"] += time.perf_counter() - t0
            research_calls += calls
            if order != result.order:
                same = False
                print(f"warning: orders differ on {image_id}: lsc {result.order} vs research {order}", file=sys.stderr)
            line += f", research {calls} calls; max |dLPIPS| {max(abs(a - s.lpips) for a, s in zip(curve, result.steps[1:])):.2e}"
        print(line)

    def ratio(a: float, b: float) -> float:
        return round(a / b, 2) if b > 0 else float("inf")

    figures = {
        "backend": args.backend,
        "caption_source": args.caption_source,
        "prompt_order": args.prompt_order,
        "max_words": args.max_words,
        "images": len(items),
        "words": words_total,
        "proxy_steps": args.proxy_steps,
        "proxy_top": args.proxy_top,
        "research_seconds": None if args.skip_research else round(seconds["research"], 3),
        "lsc_seconds": round(seconds["lsc"], 3),
        "proxy_seconds": round(seconds["proxy"], 3),
        "research_over_lsc": None if args.skip_research else ratio(seconds["research"], seconds["lsc"]),
        "research_over_proxy": None if args.skip_research else ratio(seconds["research"], seconds["proxy"]),
        "lsc_over_proxy": ratio(seconds["lsc"], seconds["proxy"]),
        "research_generator_calls": None if args.skip_research else research_calls,
        "lsc_generator_calls": lsc_calls,
        "lsc_generated_images": lsc_images,
        "proxy_full_images": proxy_full_images,
        "proxy_cheap_images": proxy_images,
        "research_same_orders_as_lsc": None if args.skip_research else same,
        "proxy_same_orders_fraction": round(proxy_same / len(items), 3) if items else None,
        "proxy_position_agreement": round(agree / total, 3) if total else None,
    }
    print(f"lowest_lpips on {args.backend}: {len(items)} images, {words_total} words, {args.prompt_order}-order prompts")
    if not args.skip_research:
        print(f"  research : {seconds['research']:8.2f} s  {research_calls:5d} generator calls")
    print(f"  lsc      : {seconds['lsc']:8.2f} s  {lsc_calls:5d} generator calls ({lsc_images} images)")
    print(f"  proxy    : {seconds['proxy']:8.2f} s  {proxy_full_images} full + {proxy_images} proxy images (steps {args.proxy_steps}, top {args.proxy_top})")
    if not args.skip_research:
        print(f"  research/lsc {figures['research_over_lsc']}x   research/proxy {figures['research_over_proxy']}x   same orders research vs lsc: {same}")
    print(f"  lsc/proxy {figures['lsc_over_proxy']}x   proxy = lsc order on {proxy_same}/{len(items)} scenes, {figures['proxy_position_agreement']} of positions")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
