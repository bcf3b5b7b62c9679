"""The report's step metrics section: attribute accuracy and re-captioning scores per step.

The values are the ones the study stored (StepRecord.metrics, one column each); what the store lacks (run
folders written before step metric columns, metrics the study did not score, CIDEr-D of a study killed
before its end) is computed here from the stored images, once per (source image, Bob's image), on the steps
`lsc.metrics.registry.due_steps` makes due under the run's `metrics_every`. Values are laid out per
transmission like the LPIPS curves; a step a metric was not scored at has no value for it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from lsc.metrics import registry
from lsc.metrics.registry import StepBatch, StepMetric
from lsc.report.data import RunData
from lsc.report.stats import mean_ci, wilson, words_with_failures

first_all_right = registry.first_all_right  # words until every attribute is right (the registry's rule)


def default_metrics(config: dict[str, Any]) -> list[str]:
    """The step metrics a report shows unless told: the study's `metrics:` list, else the backend's
    defaults (attributes and recaption on the world)."""
    if isinstance(config.get("metrics"), list):
        return [str(m) for m in config["metrics"]]
    return registry.defaults(str(config.get("backend", "world")))


def compute(data: RunData, cond: str, metrics: list[StepMetric],
            counts: dict[str, int] | None = None) -> dict[tuple[str, str], list[dict[str, float]]]:
    """(scheme, image_id) -> one dict of metric values per stored step: the stored values, and the due ones
    the store lacks computed from Bob's PNGs (a transmission that needs a PNG the run did not keep is left out).
    `counts` receives how many (step, metric) values were read from the store and how many computed."""
    from lsc.report.distribution import _load
    from lsc.runner.folder import image_path

    every = int(data.config.get("metrics_every") or registry.EVERY)
    caption = {i["image_id"]: i["caption"] or "" for i in data.images}
    truth = {i["image_id"]: json.loads(i["attributes_json"]) if i.get("attributes_json") else None for i in data.images}
    corpus = registry.study_corpus(i["caption"] for i in data.images if i.get("status", "ok") == "ok")
    texts = registry.text_columns()
    curves: dict[tuple[str, str], list[dict[str, Any]]] = {}
    missing: dict[tuple[str, str], list[tuple[int, StepMetric, tuple[str, str]]]] = {}
    for (c, scheme, image_id), rows in data.steps.items():
        if c != cond:
            continue
        values: list[dict[str, Any]] = [{} for _ in rows]
        need = []
        for metric in metrics:
            due = set(registry.due_steps(metric, len(rows), every))
            for j, row in enumerate(rows):
                stored = registry.stored_values(metric, row)
                values[j].update(stored)  # whatever the study stored is shown, due or not
                if j in due and not registry.is_scored(metric, stored):
                    need.append((j, metric, (image_id, row["image_key"])))
        if all(image_path(data.run_dir, pair[1]).is_file() for _, _, pair in need):
            curves[(scheme, image_id)], missing[(scheme, image_id)] = values, need
    # each (metric, source image, Bob's image) the store lacks, computed once, with the re-caption the
    # store has for it (so CIDEr-D of a study killed before its end needs no decoding)
    todo: dict[str, dict[tuple[str, str], str | None]] = {m.name: {} for m in metrics}
    for tx, need in missing.items():
        for j, metric, pair in need:
            known = curves[tx][j].get("recaption")
            todo[metric.name][pair] = todo[metric.name].get(pair) or known
    computed: dict[tuple[str, tuple[str, str]], dict[str, Any]] = {}
    for metric in metrics:
        pairs = list(todo[metric.name])
        if not pairs:
            continue
        images = np.stack([_load(image_path(data.run_dir, k)) for _, k in pairs])
        batch = StepBatch(images, [caption.get(i, "") for i, _ in pairs], [truth.get(i) for i, _ in pairs],
                          data.config, corpus=corpus)
        known = [todo[metric.name][p] for p in pairs]
        if any(k is not None for k in known):
            batch.cache["recaptions"] = known
        for pair, got in zip(pairs, metric.compute(batch)):
            computed[(metric.name, pair)] = got
    out: dict[tuple[str, str], list[dict[str, float]]] = {}
    n_computed = n_stored = 0
    for tx, values in curves.items():
        for j, metric, pair in missing[tx]:
            values[j] = {**computed[(metric.name, pair)], **values[j]}  # a stored value wins over a computed one
        n_computed += len(missing[tx])
        n_stored += sum(registry.is_scored(m, v) for v in values for m in metrics) - len(missing[tx])
        out[tx] = [{k: float(x) for k, x in v.items() if k not in texts} for v in values]
    if counts is not None:
        counts.update(stored=n_stored, computed=n_computed)
    return out


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
        head += [f"{c} after the last word", f"{c}, mean over the scored words"]
    body = []
    summary = {(s["scheme"], s["image_id"]): s for s in data.summaries if s["status"] == "ok"}
    for scheme in data.schemes:
        txs = [(i, values[(scheme, i)]) for i in data.image_order if (scheme, i) in values]
        if not txs:
            continue
        row = [scheme, str(len(txs))]
        if has_attr:
            firsts = [first_all_right(c) for _, c in txs]
            # n: the caption's words (the summary's n_words), as the LPIPS column beside it and report.analysis
            n_words = [int(summary[(scheme, i)]["n_words"] or len(c) - 1) if (scheme, i) in summary else len(c) - 1
                       for i, c in txs]
            hits = [f for f in firsts if f is not None]
            p, lo, hi = wilson(len(hits), len(txs))
            wtt = [summary[(scheme, i)]["words_to_threshold"] if (scheme, i) in summary else None for i, _ in txs]
            row += [f"{p:.0%} [{lo:.0%}, {hi:.0%}]", f"{mean_ci(hits).fmt(2)} ({len(hits)}/{len(txs)})",
                    mean_ci(words_with_failures(firsts, n_words)).fmt(2),
                    mean_ci(words_with_failures(wtt, n_words)).fmt(2),
                    mean_ci(c[-1].get("attr_mean") for _, c in txs).fmt(3),
                    mean_ci(np.mean([v.get("attr_mean", np.nan) for v in c[1:]]) if len(c) > 1 else None for _, c in txs).fmt(3)]
        for col in columns:
            scored = [[v[col] for v in c[1:] if col in v] for _, c in txs]
            row += [mean_ci(c[-1].get(col) for _, c in txs).fmt(3),
                    mean_ci(float(np.mean(x)) if x else None for x in scored).fmt(3)]
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
