"""The report's step metrics section: attribute accuracy and re-captioning scores per step, from stored images.

Values are computed once per (source image, Bob's image) and laid out per transmission like the LPIPS
curves (the last value carried on for shorter captions).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from lsc.metrics.registry import StepBatch, StepMetric
from lsc.report.data import RunData
from lsc.report.stats import mean_ci, penalised, wilson

DEFAULT_WORLD = ("attributes",)


def default_metrics(config: dict[str, Any]) -> list[str]:
    """The step metrics a report computes unless told: the study's `metrics:` list, else attribute accuracy
    on the world (cheap) and none elsewhere."""
    if isinstance(config.get("metrics"), list):
        return [str(m) for m in config["metrics"]]
    return list(DEFAULT_WORLD) if config.get("backend", "world") == "world" else []


def compute(data: RunData, cond: str, metrics: list[StepMetric]) -> dict[tuple[str, str], list[dict[str, float]]]:
    """(scheme, image_id) -> one dict of metric values per stored step, for transmissions whose PNGs are all stored."""
    from lsc.report.distribution import _load
    from lsc.runner.folder import image_path

    caption = {i["image_id"]: i["caption"] or "" for i in data.images}
    truth = {i["image_id"]: json.loads(i["attributes_json"]) if i.get("attributes_json") else None for i in data.images}
    todo: dict[tuple[str, str], int] = {}
    keys: list[tuple[str, str]] = []
    layout: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for (c, scheme, image_id), rows in data.steps.items():
        if c != cond or not all((image_path(data.run_dir, r["image_key"])).is_file() for r in rows):
            continue
        pairs = [(image_id, r["image_key"]) for r in rows]
        for p in pairs:
            if p not in todo:
                todo[p] = len(keys)
                keys.append(p)
        layout[(scheme, image_id)] = pairs
    if not keys:
        return {}
    images = np.stack([_load(image_path(data.run_dir, k)) for _, k in keys])
    batch = StepBatch(images, [caption.get(i, "") for i, _ in keys], [truth.get(i) for i, _ in keys], data.config)
    values: list[dict[str, float]] = [{} for _ in keys]
    for metric in metrics:
        for v, got in zip(values, metric.compute(batch)):
            v.update(got)
    return {tx: [values[todo[p]] for p in pairs] for tx, pairs in layout.items()}


def first_all_right(curve: list[dict[str, float]]) -> int | None:
    """Words until every attribute is right (the first step whose image has them all), None if never."""
    return next((k for k, v in enumerate(curve) if v.get("attr_all_right") == 1.0), None)


def table(data: RunData, values: dict[tuple[str, str], list[dict[str, float]]]) -> tuple[list[str], list[list[str]]]:
    """Per scheme: words until every attribute is right (successes; failures at n+1; share), words to the
    LPIPS threshold beside it, and final / mean-over-words values of each metric column present."""
    columns = sorted({c for curves in values.values() for v in curves for c in v if not c.startswith("attr_")})
    has_attr = any("attr_all_right" in v for curves in values.values() for v in curves)
    head = ["scheme", "images"]
    if has_attr:
        head += ["every attribute right at some step [95% CI]", "words until every attribute is right (successes)",
                 "the same, failures at n+1", "words to the LPIPS threshold, failures at n+1",
                 "attribute accuracy after the last word", "attribute accuracy, mean over the words"]
    for c in columns:
        head += [f"{c} after the last word", f"{c}, mean over the words"]
    body = []
    summary = {(s["scheme"], s["image_id"]): s for s in data.summaries if s["status"] == "ok"}
    for scheme in data.schemes:
        txs = [(i, values[(scheme, i)]) for i in data.image_order if (scheme, i) in values]
        if not txs:
            continue
        row = [scheme, str(len(txs))]
        if has_attr:
            firsts = [first_all_right(c) for _, c in txs]
            n_words = [len(c) - 1 for _, c in txs]
            hits = [f for f in firsts if f is not None]
            p, lo, hi = wilson(len(hits), len(txs))
            wtt = [summary[(scheme, i)]["words_to_threshold"] if (scheme, i) in summary else None for i, _ in txs]
            row += [f"{p:.0%} [{lo:.0%}, {hi:.0%}]", f"{mean_ci(hits).fmt(2)} ({len(hits)}/{len(txs)})",
                    mean_ci(penalised(firsts, [n + 1 for n in n_words])).fmt(2),
                    mean_ci(penalised(wtt, [n + 1 for n in n_words])).fmt(2),
                    mean_ci(c[-1].get("attr_mean") for _, c in txs).fmt(3),
                    mean_ci(np.mean([v.get("attr_mean", np.nan) for v in c[1:]]) if len(c) > 1 else None for _, c in txs).fmt(3)]
        for col in columns:
            row += [mean_ci(c[-1].get(col) for _, c in txs).fmt(3),
                    mean_ci(np.mean([v[col] for v in c[1:] if col in v]) if len(c) > 1 else None for _, c in txs).fmt(3)]
        body.append(row)
    return head, body


def write_csv(data: RunData, cond: str, values: dict[tuple[str, str], list[dict[str, float]]], path: Any) -> Any:
    """The step metrics in long form (image_id, scheme, cond, step, metric, value), in image and scheme order."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "scheme", "cond", "step", "metric", "value"])
        for image_id in data.image_order:
            for scheme in data.schemes:
                curve = values.get((scheme, image_id))
                if curve is None:
                    continue
                for row, v in zip(data.steps[(cond, scheme, image_id)], curve):
                    for name in sorted(v):
                        w.writerow([image_id, scheme, cond, row["step"], name, repr(float(v[name]))])
    return path
