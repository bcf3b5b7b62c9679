"""lowest_lpips search quality vs cost on world scenes: greedy, beam 2/3/5, lookahead 1 against the exhaustive oracle.

Scenes are the default study's (`world_samples`), captioned by Alice; those whose caption is longer than
--max-words (the oracle's limit) are skipped and more scenes drawn, up to --draw x --images. Prompts are in
caption order (the oracle's). Per setting: mean images generated per caption (what a fresh run generates),
mean area gap to the oracle's curve (absolute and relative to its area) and mean gap at k = 1..5 words.
See lsc.schemes.search. Usage:
    python benchmarks/bench_search.py --images 30 --out bench_search_out
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lsc.schemes.oracle import MAX_ORACLE_WORDS
from lsc.schemes.search import GAP_AT, SETTINGS, plot_gap_vs_calls, search_scene, summarise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30, help="scenes with a caption within --max-words")
    parser.add_argument("--seed", type=int, default=0, help="Bob's generation seed")
    parser.add_argument("--max-words", type=int, default=MAX_ORACLE_WORDS, help="the oracle's caption length limit")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--draw", type=int, default=10, help="look at most this many times --images scenes for short captions")
    parser.add_argument("--out", default="bench_search_out", help="folder for search.json and gap_vs_images.png")
    args = parser.parse_args(argv)
    if args.images < 1 or args.draw < 1 or not 1 <= args.max_words <= 16:
        print("error: --images and --draw must be >= 1 and --max-words in 1..16", file=sys.stderr)
        return 2

    from lsc.backends import load_backend
    from lsc.backends.world.scenes import world_samples

    backend = load_backend("world", {"threads": args.threads} if args.threads else {})
    samples = world_samples(args.draw * args.images, 0)
    captions = backend.captioner.caption([s.image for s in samples])
    fitting = [(s, c) for s, c in zip(samples, captions) if len(c.split()) <= args.max_words]
    chosen = fitting[: args.images]
    print(f"{len(fitting)} of {len(samples)} scenes drawn have a caption of at most {args.max_words} words; "
          f"the first {len(chosen)} are searched", file=sys.stderr)

    t0 = time.perf_counter()
    scenes = []
    for sample, caption in chosen:
        scene = search_scene(backend, sample.image_id, sample.image, caption, seed=args.seed, max_words=args.max_words)
        scenes.append(scene)
        print(f"{sample.image_id}: {scene.n_words} words, " + ", ".join(f"{k} {c}" for k, (_, c) in scene.runs.items()),
              file=sys.stderr)
    summary = summarise(scenes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {"images": len(scenes), "mean_words": sum(s.n_words for s in scenes) / len(scenes),
               "seconds": round(time.perf_counter() - t0, 1), "settings": dict(SETTINGS), "summary": summary}
    (out / "search.json").write_text(json.dumps(figures, indent=2))
    png = plot_gap_vs_calls(summary, out / "gap_vs_images.png", f"world, {len(scenes)} scenes, caption-order prompts")

    print(f"{'setting':12s} {'images':>8s} {'x fewer':>8s} {'area gap':>9s} {'rel %':>7s} " + " ".join(f"{'k=' + str(k):>7s}" for k in GAP_AT))
    oracle_images = summary["oracle"]["images"]
    for label, row in summary.items():
        gaps = " ".join(f"{row['gap_at'][k]:7.4f}" if row["gap_at"][k] is not None else "      -" for k in GAP_AT)
        print(f"{label:12s} {row['images']:8.1f} {oracle_images / row['images']:8.1f} {row['area_gap']:9.4f} "
              f"{100 * row['relative_area_gap']:7.2f} {gaps}")
    print(f"wrote {out / 'search.json'} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
