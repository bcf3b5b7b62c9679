"""Scheme `learned` against random, heads and lowest_lpips, from a finished study (configs/examples/learned.yaml).

Reads the run folder's results.sqlite through the report's own definitions (lsc.report.analysis) and prints
markdown: per scheme, words to threshold (failures at n+1), area under LPIPS vs words (per word), LPIPS
after 1, 2, 3 and 5 words (the last image for shorter captions), each mean ± 95% t-interval over images;
then each scheme minus random and minus heads on the same images (mean ± 95% CI, paired test); and the
share of the heads -> lowest_lpips gap (area under LPIPS vs words) that learned closes. Usage:
    lsc run configs/examples/learned.yaml --out runs/learned
    python benchmarks/bench_learned.py runs/learned
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from lsc.report.analysis import transmissions
from lsc.report.build import lpips_after
from lsc.report.data import load_run
from lsc.report.stats import fmt_p, mean_ci, paired_p

SCHEMES = ("learned", "heads", "random", "lowest_lpips")
AT = (1, 2, 3, 5)
METRICS = (("words_penalised", "words to threshold (failures at n+1)", 2), ("area_words", "area under LPIPS vs words", 3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder of configs/examples/learned.yaml")
    args = parser.parse_args(argv)
    data = load_run(args.run)
    cond = data.conds[0][0]
    tx = transmissions(data, cond)
    schemes = [s for s in SCHEMES if s in tx]
    common = [i for i in data.image_order if all(i in tx[s] for s in schemes)]
    print(f"{len(common)} images transmitted by every scheme ({', '.join(schemes)}); threshold {data.threshold:.4f}\n")
    head = ["scheme", "words to threshold (failures at n+1)", "area under LPIPS vs words"] + [f"LPIPS after {k}" for k in AT]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for s in schemes:
        cells = [mean_ci(tx[s][i].words_penalised for i in common).fmt(2), mean_ci(tx[s][i].area_words for i in common).fmt(3)]
        cells += [mean_ci(lpips_after(data, cond, s, i, k) for i in common).fmt(3) for k in AT]
        print(f"| {s} | " + " | ".join(cells) + " |")
    for base in ("random", "heads"):
        if base not in tx:
            continue
        print(f"\nminus {base}, same images (negative: better than {base}):\n")
        head = ["scheme"] + [f"Δ {label} [p]" for _, label, _ in METRICS] + [f"Δ LPIPS after {k}" for k in AT]
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for s in schemes:
            if s == base:
                continue
            cells = []
            for key, _, digits in METRICS:
                d = [getattr(tx[s][i], key) - getattr(tx[base][i], key) for i in common]
                cells.append(f"{mean_ci(d).fmt(digits)} [p {fmt_p(paired_p(d)[0])}]")
            for k in AT:
                cells.append(mean_ci(lpips_after(data, cond, s, i, k) - lpips_after(data, cond, base, i, k) for i in common).fmt(3))
            print(f"| {s} | " + " | ".join(cells) + " |")
    if {"learned", "heads", "lowest_lpips"} <= set(schemes):
        area = {s: np.mean([tx[s][i].area_words for i in common]) for s in ("learned", "heads", "lowest_lpips")}
        words = {s: np.mean([tx[s][i].words_penalised for i in common]) for s in ("learned", "heads", "lowest_lpips")}
        for name, m in (("area under LPIPS vs words", area), ("words to threshold", words)):
            gap = m["heads"] - m["lowest_lpips"]
            share = (m["heads"] - m["learned"]) / gap if gap else float("nan")
            print(f"\nshare of the heads -> lowest_lpips gap in {name} that learned closes: {share:.0%} "
                  f"(heads {m['heads']:.3f}, learned {m['learned']:.3f}, lowest_lpips {m['lowest_lpips']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
