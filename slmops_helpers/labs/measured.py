"""Measured values for the labs: this machine's run when the notebook has run, else the
committed full reference run. A lab never types a measurement in.

``measured("04_deployment", "onnx_int4_size_mib")`` reads ``artifacts/metrics/04_deployment.json``
when it holds the key, and falls back to ``notebooks/reference/04_deployment.full.json``
(``slmops_helpers.reference``); ``Measured.source`` says which, for the lab to print.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ..metrics import metrics_path
from ..reference import read_reference

__all__ = ["Measured", "MeasurementMissingError", "measured"]


class MeasurementMissingError(LookupError):
    """Neither this machine's metrics nor the reference record hold the key."""


@dataclass(frozen=True)
class Measured:
    """A measured number and where it comes from."""

    value: Any
    source: str  # "this machine's run of notebook 04 (smoke)" or "the full reference run (...)"

    def __float__(self) -> float:
        return float(self.value)


def _run_value(stem: str, key: str) -> tuple[Any, str] | None:
    path = metrics_path(stem)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    value = record.get(key) if isinstance(record, dict) else None
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value, f"this machine's run of notebook {stem[:2]} ({record.get('profile', '?')} profile)"


def measured(stem: str, key: str, *, prefer_run: bool = True) -> Measured:
    """The measured value of ``key`` in notebook ``stem``'s metrics.

    Args:
        stem: the notebook, e.g. "04_deployment".
        key: the metric key, e.g. "onnx_int4_size_mib".
        prefer_run: False reads the reference record even when the notebook has run here
            (for a question whose answer must not move with a quick smoke run).
    Raises:
        MeasurementMissingError: neither source has the key; the message names the command.
    """
    if prefer_run and (found := _run_value(stem, key)) is not None:
        return Measured(*found)
    reference = read_reference(stem)
    value = reference.get(key)
    if value is None:
        why = reference.problem or f"its reference record has no {key!r}"
        raise MeasurementMissingError(
            f"No measurement of {key!r} for notebook {stem[:2]}: run notebooks/{stem}.ipynb ({why})."
        )
    m = reference.metrics
    return Measured(value, f"the full reference run ({m['machine']}, {m['date'][:10]}, commit {m['commit']})")
