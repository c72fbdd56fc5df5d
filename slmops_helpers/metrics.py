"""The metrics contract: each notebook writes one flat JSON file of headline figures.

``artifacts/metrics/<notebook-stem>.json`` holds numbers, strings and booleans only,
plus ``profile``, ``model``, ``device`` and package versions. Tests, the quality gate
and the course text read these files; no figure in the course is typed in by hand. A
key's suffix names its unit (``UNITS``); ``write_metrics`` refuses a key that breaks it.
"""

from __future__ import annotations

import json
import math
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from ._io import atomic_write_json
from .config import artifacts_dir, get_profile
from .models import DEFAULT_MODEL
from .reference import write_reference

# The unit a key's suffix promises, one meaning per suffix (docs/guide.md, "Metrics and units").
UNITS = {
    "_mib": "MiB (2^20 bytes): sizes on disk and memory",
    "_ms": "milliseconds",
    "_s": "seconds",
    "_pct": "percent (100 = all)",
    "_tok_s": "tokens per second",
    "_score": "task score, 0-100 (data.score_predictions)",
    "_score_ci_low": "lower end of a score's 95 % bootstrap interval, 0-100 (uncertainty)",
    "_score_ci_high": "upper end of a score's 95 % bootstrap interval, 0-100 (uncertainty)",
    "_score_diff": "a difference of two scores on the same tickets, in points, -100 to 100",
    "_score_diff_ci_low": "lower end of a score difference's 95 % paired-bootstrap interval, points",
    "_score_diff_ci_high": "upper end of a score difference's 95 % paired-bootstrap interval, points",
    "_mbps": "Mbit/s",
}
# Suffixes the course does not use, and what to use instead.
RETIRED_SUFFIXES = {"_mb": "_mib", "_gb": "_mib", "_kb": "_mib", "_task_score": "_score"}

VERSIONED_PACKAGES = ("torch", "transformers", "peft", "datasets", "onnxruntime", "slmops-course")
REQUIRED_KEYS = ("profile", "model", "device")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide the numbers."""
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[f"version_{name.replace('-', '_')}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[f"version_{name.replace('-', '_')}"] = "not installed"
    return versions


def environment_info() -> dict[str, Any]:
    """Python, platform and CPU count, recorded beside every measurement."""
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count() or 0}


def check_flat(metrics: dict[str, Any]) -> None:
    """Raise a TypeError naming the key unless every metric is a string name with a flat value."""
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise TypeError(f"Metric names must be strings, got {key!r}.")
        if not isinstance(value, (bool, int, float, str)):
            raise TypeError(
                f"Metric {key!r} is a {type(value).__name__}; the metrics file is flat. "
                "Fix: record a number, string or boolean (e.g. float(tensor) or one key per item)."
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"Metric {key!r} is {value}; record a finite number or leave it out.")


def check_units(metrics: dict[str, Any]) -> None:
    """Raise a ValueError naming the key if its suffix breaks the units contract (``UNITS``).

    A retired suffix (``_mb``, ``_task_score``, ...) names its replacement; a number under
    a unit suffix must be >= 0, a score (and its interval) must lie in [0, 100], and a
    score difference in [-100, 100].
    """
    for key, value in metrics.items():
        retired = next((s for s in RETIRED_SUFFIXES if key.endswith(s)), None)
        if retired:
            raise ValueError(
                f"Metric {key!r}: the course does not use {retired!r}. Fix: use {RETIRED_SUFFIXES[retired]!r}."
            )
        unit = next((s for s in sorted(UNITS, key=len, reverse=True) if key.endswith(s)), None)
        if unit is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        low = -100 if unit.startswith("_score_diff") else -math.inf if unit == "_pct" else 0
        high = 100 if unit.startswith("_score") else math.inf
        if not low <= value <= high:  # sizes, times and rates are >= 0; a percentage change may be negative
            raise ValueError(f"Metric {key!r} = {value} lies outside [{low}, {high}]: {unit} means {UNITS[unit]}.")


def metrics_path(stem: str, output_dir: str | os.PathLike | None = None) -> Path:
    return artifacts_dir(output_dir) / "metrics" / f"{stem}.json"


def write_metrics(
    stem: str,
    metrics: dict[str, Any],
    *,
    profile: str,
    model: str,
    device: str,
    output_dir: str | os.PathLike | None = None,
) -> Path:
    """Validate and atomically write ``metrics`` for notebook ``stem``; return the path.

    A full run of the course's own model into the course's ``artifacts/`` also writes the
    notebook's committed reference record (``reference.write_reference``); runs into another
    ``output_dir`` (tests, experiments) or of another model never touch it.
    """
    get_profile(profile)
    record = {
        **metrics,
        "profile": profile,
        "model": model,
        "device": device,
        **package_versions(),
        **environment_info(),
    }
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}  # numpy/torch scalars
    check_flat(record)
    check_units(record)
    path = atomic_write_json(metrics_path(stem, output_dir), record)
    if profile == "full" and output_dir is None and model == DEFAULT_MODEL:
        write_reference(stem, record)
    return path


def read_metrics(stem: str, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read a notebook's metrics, or say which notebook to run to produce them."""
    path = metrics_path(stem, output_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"No metrics at {path}. Fix: run notebooks/{stem}.ipynb (or `slmops run --only {stem[:2]}`)."
        )
    data = json.loads(path.read_text())
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path} lacks {missing}; it was not written by write_metrics. Fix: re-run the notebook.")
    return data


def format_summary(metrics_by_stem: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of every recorded headline metric (versions left out)."""
    skip = {*REQUIRED_KEYS, "python", "platform", "cpu_count"}
    lines = []
    for stem, metrics in sorted(metrics_by_stem.items()):
        lines.append(f"== {stem}  (profile={metrics['profile']}, model={metrics['model']}, device={metrics['device']})")
        for key, value in sorted(metrics.items()):
            if key in skip or key.startswith("version_"):
                continue
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"   {key:<40} {shown}")
    return "\n".join(lines)
