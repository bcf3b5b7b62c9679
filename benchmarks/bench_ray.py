"""Local vs Ray (1 worker) vs Ray (2 workers) on the same study, in one run: wall times, ratios, overhead.

Usage: python benchmarks/bench_ray.py [--set images.count=2 ...] [--config STUDY.yaml] [--ray-cpus N]

Every run uses 1 torch thread per worker (backend_options.threads=1) and a fresh folder, and starts
from an unloaded backend (the local run loads it in this process, each Ray actor loads its own; the
modules are imported before timing, as a long-running driver has them). A
local Ray instance is started once first (its start-up is printed, not counted in the runs). The
overhead per unit is (Ray 1 worker - local) / units: what Ray's actor start, shipping units and results
and the driver's writing cost per source image. The three exports are checked to be byte-identical.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--config", default=None, help="a study YAML (default: the packaged default study)")
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray instance")
    args = parser.parse_args(argv)

    try:
        import ray
    except ImportError:
        print("error: this benchmark needs Ray: pip install 'lsc[ray]'", file=sys.stderr)
        return 2
    from lsc import api
    from lsc.errors import LscError
    from lsc.runner import study, worker

    import importlib

    for module in ("torch", "lsc.protocol.loop", "lsc.schemes", "lsc.backends.world.backend"):
        importlib.import_module(module)  # the driver's one-time imports are not the local run's cost
    base = list(args.overrides) + ["backend_options.threads=1"]
    variants = [
        ("local", []),
        ("ray, 1 worker", ["executor={kind: ray, num_cpus_per_task: 1, max_in_flight: 1}"]),
        ("ray, 2 workers", ["executor={kind: ray, num_cpus_per_task: 1, max_in_flight: 2}"]),
    ]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.perf_counter()
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, object_store_memory=512 * 1024**2,
             logging_level="WARNING", log_to_driver=False)
    print(f"ray start (once, not counted below): {time.perf_counter() - t0:.1f} s, {args.ray_cpus} CPUs")
    walls: dict[str, float] = {}
    exports: dict[str, tuple[bytes, bytes]] = {}
    units = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, extra in variants:
                cfg = api.load_config(args.config, base + extra)
                units = len(study.list_images(cfg))
                worker._BACKENDS.clear()  # every variant loads its models: the local run too
                out = Path(tmp) / name.replace(" ", "").replace(",", "_")
                t0 = time.perf_counter()
                summary = api.run(cfg, out, progress=False, report=False)
                walls[name] = time.perf_counter() - t0
                steps, summ = api.export(out)
                exports[name] = (steps.read_bytes(), summ.read_bytes())
                print(f"{name:<15} {walls[name]:8.1f} s   ({summary.ok} ok, {summary.failed} failed)", flush=True)
    except LscError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        ray.shutdown()

    local = walls["local"]
    print(f"units (source images): {units}")
    for name in walls:
        if name != "local":
            print(f"{name:<15} / local = {walls[name] / local:.2f}x   (local / {name} = speed-up {local / walls[name]:.2f}x)")
    print(f"overhead per unit (ray 1 worker - local) / units: {(walls['ray, 1 worker'] - local) / max(1, units):+.2f} s")
    same = all(exports[n] == exports["local"] for n in exports)
    print(f"exported steps.csv / summary.csv byte-identical across the three: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
