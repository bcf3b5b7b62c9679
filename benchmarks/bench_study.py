"""Time the default study end to end (the README's main command; its numbers are in docs/world.md and docs/benchmarks.md), in a fresh output folder.

Usage: python benchmarks/bench_study.py [--set images.count=4 ...] [--keep DIR]
Prints the wall time of run + report, and how much of it went to Bob's generator.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--config", default=None, help="a study YAML (default: the packaged default study)")
    parser.add_argument("--keep", default=None, help="write the run here instead of a temporary folder")
    args = parser.parse_args(argv)

    from lsc import api
    from lsc.errors import LscError
    from lsc.protocol.loop import ImageContext

    # Count generator calls across all image contexts, without touching the runner.
    counters = {"calls": 0, "images": 0, "seconds": 0.0}
    original = ImageContext._generate

    def timed(self, prompts, *args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        original(self, prompts, *args, **kwargs)
        counters["seconds"] += time.perf_counter() - t0
        counters["calls"] += 1
        counters["images"] += len(prompts)

    ImageContext._generate = timed  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "run"
        t0 = time.perf_counter()
        try:
            api.run(args.config, out_dir=out, overrides=args.overrides, progress=False)
        except LscError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        wall = time.perf_counter() - t0
        reports = sorted(out.rglob("report.html"))
        print(f"default study: {wall:.1f} s wall (run + report); report: {reports[0] if reports else 'missing'}")
        print(f"  generator: {counters['calls']} calls, {counters['images']} images, {counters['seconds']:.1f} s (incl. LPIPS)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
