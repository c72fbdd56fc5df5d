"""What section 2 runs per profile, and the seed's claims it checks against this run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import get_profile


@dataclass(frozen=True)
class DistillConfig:
    """The sizes notebook 02 scales between a class demo (smoke) and the real run (full)."""

    n_teacher_prompts: int  # training prompts the teacher answers (balanced over categories)
    teacher_max_new_tokens: int  # room for a whole answer: longer ones count as truncated
    eval_max_new_tokens: int  # generation budget when scoring on held-out references
    n_val: int  # validation rows: loss curves, and the task score that picks the kept step
    max_steps: int
    eval_every: int
    patience: int  # evaluations without a new best validation score before a run stops
    batch_size: int
    lr: float  # above the module's 1e-5…5e-5: a student cut from 30 to 7 blocks must re-learn a lot
    param_budget: float  # the student keeps as many blocks as fit in this share of the teacher's parameters


_SHARED = {"teacher_max_new_tokens": 80, "eval_max_new_tokens": 64, "batch_size": 8, "param_budget": 0.40}
SIZES: dict[str, DistillConfig] = {
    # smoke: few steps, so a large learning rate; measured on 2 quiet CPU cores, 12 steps at 1e-3 reach a
    # lower validation loss than at 3e-4 or 2e-3
    "smoke": DistillConfig(n_teacher_prompts=40, n_val=8, max_steps=12, eval_every=4, patience=2, lr=1e-3, **_SHARED),
    "full": DistillConfig(
        n_teacher_prompts=224, n_val=48, max_steps=240, eval_every=20, patience=3, lr=5e-4, **_SHARED
    ),
}


def get_config(profile: str) -> DistillConfig:
    """The distillation sizes of ``profile`` (raises for an unknown profile, listing the choices)."""
    return SIZES[get_profile(profile).name]


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
