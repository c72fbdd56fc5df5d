"""The seed's claims on distillation, checked against this run's numbers."""

from __future__ import annotations

from typing import Any

SEED_CLAIMS = (  # seed 001 (the SLMOps module's distillation overview); "up to", no source given there
    ("inference time saved", 85.0, "inference_time_saved_pct"),
    ("memory saved", 95.0, "memory_saved_pct"),
    ("accuracy retained", 92.0, "retention_pct"),
)


def measured_claims(metrics: dict[str, float]) -> dict[str, float]:
    """This run's number (percent) for each of ``SEED_CLAIMS``, by its key, computed from the metrics."""
    return {
        "inference_time_saved_pct": 100 * (1 - metrics["student_ms_per_token"] / metrics["teacher_ms_per_token"]),
        "memory_saved_pct": 100 * (1 - metrics["student_peak_mib"] / metrics["teacher_peak_mib"]),
        "retention_pct": 100 * metrics["retention"],
    }


def claims_vs_measured(metrics: dict[str, float]) -> list[dict[str, Any]]:
    """The seed's claims beside this run's numbers (percent), computed from the metrics."""
    measured = measured_claims(metrics)
    return [{"claim": claim, "seed_pct": seed, "measured_pct": measured[key]} for claim, seed, key in SEED_CLAIMS]
