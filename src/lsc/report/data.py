"""A run's results read back from its store, grouped the way the report needs them."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lsc.interfaces import UNDECLARED_DISTANCE, Distance
from lsc.runner.folder import open_store, scheme_labels, stored_distance


@dataclass
class RunData:
    """Everything the report draws: config, conditions, scheme order, summaries, steps, oracle curves."""

    run_dir: Path
    config: dict[str, Any]
    threshold: float | None
    conds: list[tuple[str, float | None]]
    schemes: list[str]
    summaries: list[dict[str, Any]]
    steps: dict[tuple[str, str, str], list[dict[str, Any]]]  # (cond, scheme, image_id) -> rows by step
    oracle: dict[str, list[tuple[int, float]]]
    images: list[dict[str, Any]]
    image_order: list[str] = field(default_factory=list)
    oracle_status: dict[str, int] = field(default_factory=dict)  # images per oracle status (ok, skipped, failed)
    scheme_names: dict[str, str] = field(default_factory=dict)  # label -> registered scheme name (for families)
    distance: Distance = UNDECLARED_DISTANCE  # what the lpips columns measure, as the backend names it

    def ok(self, cond: str, scheme: str) -> list[dict[str, Any]]:
        """Summaries of successful transmissions of one scheme under one condition, in image order."""
        return [s for s in self.summaries if s["cond"] == cond and s["scheme"] == scheme and s["status"] == "ok"]

    def failed(self) -> list[dict[str, Any]]:
        return [s for s in self.summaries if s["status"] != "ok"]

    @property
    def swept(self) -> bool:
        return len(self.conds) > 1


def _names_from_config(config: dict[str, Any]) -> dict[str, str]:
    """Scheme label -> registered name (for families); an entry that no longer parses is left out."""
    from lsc.config import SchemeSpec

    names: dict[str, str] = {}
    for raw in config.get("schemes") or []:
        try:
            spec = SchemeSpec.from_raw(raw)
        except Exception:  # noqa: BLE001 - an odd entry just keeps its label as its name
            continue
        names[spec.label] = spec.name
    return names


def load_run(run_dir: str | Path) -> RunData:
    """Read a (possibly partial) run folder."""
    run_dir = Path(run_dir)
    with open_store(run_dir) as store:
        cfg_text = store.get_meta("config")
        labels = scheme_labels(store)
        summaries = store.summaries()
        step_rows = store.steps()
        oracle_rows = store.oracle_rows()
        images = store.images()
        distance = stored_distance(store)
        oracle_status = {r["status"]: int(r["n"]) for r in store.rows("SELECT status, COUNT(*) AS n FROM oracle_status GROUP BY status")}
    config = yaml.safe_load(cfg_text) if cfg_text else {}
    if not isinstance(config, dict):
        config = {}
    threshold = config.get("threshold")
    names = _names_from_config(config)
    for s in summaries:
        if s["scheme"] not in labels:
            labels.append(s["scheme"])
    cond_map: dict[str, float | None] = {}
    for s in summaries:
        cond_map.setdefault(s["cond"], s["snr_db"])
    conds = sorted(cond_map.items(), key=lambda kv: (kv[1] is None, kv[1] if kv[1] is not None else 0.0, kv[0]))
    steps: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in step_rows:
        steps[(r["cond"], r["scheme"], r["image_id"])].append(r)
    for rows in steps.values():
        rows.sort(key=lambda r: r["step"])
    oracle: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in oracle_rows:
        oracle[r["image_id"]].append((int(r["k"]), float(r["lpips"])))
    order = [i["image_id"] for i in images]
    return RunData(run_dir, config, float(threshold) if threshold is not None and not math.isnan(float(threshold)) else None,
                   conds, labels, summaries, dict(steps), dict(oracle), images, order, oracle_status,
                   {lab: names.get(lab, lab) for lab in labels}, distance)
