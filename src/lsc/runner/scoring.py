"""Step metrics scored while a study runs: the study's `metrics:` (lsc.metrics.registry, which defines each
metric, its columns and when it is due) on each finished transmission, written into its StepRecords (one
column each) and its summary (words until every attribute is right).

Determinism: a value depends only on Bob's image (as its PNG stores it), the caption and the scene, never
on what ran before. A `discrete` metric (class labels, greedy words) is cached per (image, key) across the
schemes and SNRs of one source image and scored in batches; any other metric is scored on exactly the
transmission's due steps, in one batch, so a resumed run scores the same batch as an uninterrupted one.
CIDEr-D needs every caption of the study: the runner fills it after the study (`finish_corpus`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lsc.metrics import registry
from lsc.protocol.loop import StepRecord
from lsc.runner.folder import stored_pixels


class StepScorer:
    """Scores the steps of one transmission after another with the study's step metrics."""

    def __init__(self, metrics: Sequence[str], backend_name: str, every: int, config: dict[str, Any],
                 backend: Any = None) -> None:
        self.metrics = registry.select(list(metrics), backend_name)
        self.every = int(every)
        self.config = config
        self.backend = backend
        self._cache: dict[tuple[str, str, str], dict[str, Any]] = {}  # (image_id, key, metric) -> values

    @property
    def scores_attributes(self) -> bool:
        return any(m.name == "attributes" for m in self.metrics)

    def score(self, ctx: Any, truth: dict[str, Any] | None, steps: Sequence[StepRecord]) -> None:
        """Fill each due step's `metrics` with the metrics' values (ctx: the transmission's ImageContext)."""
        for metric in self.metrics:
            due = [steps[i] for i in registry.due_steps(metric, len(steps), self.every)]
            keys = list(dict.fromkeys(s.image_key for s in due))
            if metric.discrete:
                todo = [k for k in keys if (ctx.image_id, k, metric.name) not in self._cache]
                for k, v in self._compute(metric, ctx, truth, todo, due).items():
                    self._cache[(ctx.image_id, k, metric.name)] = v
                values = {k: self._cache[(ctx.image_id, k, metric.name)] for k in keys}
            else:
                values = self._compute(metric, ctx, truth, keys, due)
            for s in due:
                s.metrics.update(values[s.image_key])

    def _compute(self, metric: registry.StepMetric, ctx: Any, truth: dict[str, Any] | None, keys: list[str],
                 due: Sequence[StepRecord]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        images = np.stack([stored_pixels(ctx.image_for(k)) for k in keys])
        known = {s.image_key: s.metrics.get("recaption") for s in due}  # a re-caption another metric made
        batch = registry.StepBatch(images, [ctx.caption] * len(keys), [truth] * len(keys), self.config,
                                   backend=self.backend)
        if any(known.get(k) is not None for k in keys):
            batch.cache["recaptions"] = [known.get(k) for k in keys]
        return dict(zip(keys, metric.compute(batch)))

    def words_to_all_right(self, steps: Sequence[StepRecord]) -> int | None:
        """The summary's words until every attribute is right (None without the attributes metric)."""
        return registry.first_all_right([s.metrics for s in steps]) if self.scores_attributes else None

    def forget(self, image_id: str) -> None:
        """Drop the cached values of a source image whose work is done."""
        for k in [k for k in self._cache if k[0] == image_id]:
            del self._cache[k]
