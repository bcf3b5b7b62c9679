"""Export a run's store as flat tables (CSV or Parquet) for pandas, R or a spreadsheet.

steps: one row per image x scheme x step (x SNR); summary: one row per image x scheme (x SNR), with
words/bits to threshold left empty where the threshold was never reached. Works on partial runs.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Literal

from lsc.errors import ConfigError
from lsc.runner.store import ResultStore

STEPS_EXPORT = (
    "image_id", "scheme", "step", "word_sent", "word_received", "bits", "cum_bits", "prompt", "lpips", "ssim",
    "psnr", "snr_db", "bit_errors", "word_index", "image_key",
)
SUMMARY_EXPORT = (
    "image_id", "scheme", "words_to_threshold", "bits_to_threshold", "final_lpips", "snr_db", "n_words",
    "caption", "status", "error",
)


def open_store(run_dir: str | Path) -> ResultStore:
    """Open a run folder's store read-only, with a one-line error if it is not a run folder."""
    path = Path(run_dir) / "results.sqlite"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no results.sqlite)")
    return ResultStore(path, readonly=True)


def export_tables(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(steps rows, summary rows) with the export columns, in image then scheme order."""
    with open_store(run_dir) as store:
        rank = _scheme_rank(store.get_meta("config"))
        seq = {r["image_id"]: r["seq"] for r in store.images()}

        def key(r: dict[str, Any]) -> tuple[Any, ...]:
            return (seq.get(r["image_id"], 1 << 30), r["image_id"], r["snr_db"] is not None, r["snr_db"] or 0.0,
                    rank.get(r["scheme"], len(rank)), r["scheme"], r.get("step", 0))

        steps = [{c: r.get(c) for c in STEPS_EXPORT} for r in sorted(store.steps(), key=key)]
        summary = [{c: r.get(c) for c in SUMMARY_EXPORT} for r in sorted(store.summaries(), key=key)]
    return steps, summary


def _scheme_rank(config_yaml: str | None) -> dict[str, int]:
    """Scheme label -> position in the study's config, so exports list schemes as the user did."""
    import yaml

    from lsc.config import SchemeSpec, _scheme_from_raw

    try:
        raw = (yaml.safe_load(config_yaml or "") or {}).get("schemes") or []
        return {SchemeSpec(**_scheme_from_raw(x)).label: i for i, x in enumerate(raw)}
    except Exception:  # noqa: BLE001 - ordering is cosmetic
        return {}


def export_run(run_dir: str | Path, fmt: Literal["csv", "parquet"] = "csv", out_dir: str | Path | None = None) -> list[Path]:
    """Write steps.<fmt> and summary.<fmt> into `out_dir` (default: the run folder); returns the paths."""
    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"--format must be csv or parquet, not {fmt!r}")
    steps, summary = export_tables(run_dir)
    dest = Path(out_dir) if out_dir is not None else Path(run_dir)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows, cols in (("steps", steps, STEPS_EXPORT), ("summary", summary, SUMMARY_EXPORT)):
        path = dest / f"{name}.{fmt}"
        if fmt == "csv":
            _write_csv(path, rows, cols)
        else:
            _write_parquet(path, rows, cols)
        paths.append(path)
    return paths


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _write_csv(path: Path, rows: list[dict[str, Any]], cols: tuple[str, ...]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for r in rows:
            writer.writerow([_cell(r[c]) for c in cols])


_PARQUET_TYPES = {
    "step": "int64", "bits": "int64", "cum_bits": "int64", "bit_errors": "int64", "word_index": "int64",
    "words_to_threshold": "int64", "bits_to_threshold": "int64", "n_words": "int64",
    "lpips": "float64", "ssim": "float64", "psnr": "float64", "snr_db": "float64", "final_lpips": "float64",
}


def _write_parquet(path: Path, rows: list[dict[str, Any]], cols: tuple[str, ...]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet export needs pyarrow: pip install 'lsc[parquet]'") from None
    types = {"int64": pa.int64(), "float64": pa.float64()}
    schema = pa.schema([(c, types[_PARQUET_TYPES[c]] if c in _PARQUET_TYPES else pa.string()) for c in cols])
    table = pa.table({c: [r[c] for r in rows] for c in cols}, schema=schema)
    pq.write_table(table, path)
