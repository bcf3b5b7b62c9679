"""GPU check for the hf backend, ready for the first CUDA machine: runs the hf tests on CUDA and times one
batch of each receiver (sd, lcm, amused) on the weights in the local cache. Figures go into docs/gpu.md
with the card's name.

    python benchmarks/bench_gpu.py                 # tests + timings, JSON to stdout
    python benchmarks/bench_gpu.py --skip-tests    # timings only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def run_tests() -> int:
    """The hf test files with the tiny models on CUDA: tests/hf_tiny.py reads LSC_TEST_DEVICE. A test whose
    reference is computed on the CPU (a torch.Generator("cpu") draw) may differ on CUDA within float noise;
    the exit code and pytest's summary say which."""
    import os

    files = ["tests/test_hf_backend.py", "tests/test_hf_research_fixes.py", "tests/test_hf_research_knobs.py",
             "tests/test_hf_receivers.py", "tests/test_hf_real_minilm.py"]
    return subprocess.call([sys.executable, "-m", "pytest", "-q", *files], env={**os.environ, "LSC_TEST_DEVICE": "cuda"})


def time_receiver(receiver: str, batch: int, extra: dict) -> dict:
    import torch

    from lsc.backends.hf import load_hf_backend

    opts = {"receiver": receiver, "device": "cuda", "batch_size": batch, "itm_model": "none",
            "alice_text_encoder": "none", **extra}
    if receiver == "amused":
        opts.update(height=None, width=None)
    start = time.perf_counter()
    backend = load_hf_backend(**opts)
    load_s = time.perf_counter() - start
    prompts = [f"a photo of {i} dogs running on the beach" for i in range(batch)]
    backend.generator.generate(prompts[:1], 0)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    backend.generator.generate(prompts, 0)
    torch.cuda.synchronize()
    batch_s = time.perf_counter() - start
    return {"receiver": receiver, "batch": batch, "load_s": round(load_s, 1), "batch_s": round(batch_s, 2),
            "s_per_image": round(batch_s / batch, 3), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA device: this benchmark is for a GPU machine", file=sys.stderr)
        return 2
    out: dict = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda}
    if not args.skip_tests:
        out["tests_rc"] = run_tests()
    out["receivers"] = []
    for receiver, extra in (("sd", {}), ("lcm", {}), ("amused", {})):
        try:
            out["receivers"].append(time_receiver(receiver, args.batch, extra))
        except Exception as exc:  # noqa: BLE001  (a missing model: report it and time the others)
            out["receivers"].append({"receiver": receiver, "error": " ".join(str(exc).split())[:300]})
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
