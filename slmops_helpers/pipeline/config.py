"""Section 5's sizes per profile: the only place where notebook 05's profile becomes numbers."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check_sizes, sizes_for


@dataclass(frozen=True)
class ReleaseConfig:
    """How much each profile affords the release round: training, tickets scored, speed rounds."""

    steps: int  # the candidate's fine-tuning steps on its teacher's answers
    batch: int
    val_rows: int  # validation tickets the candidate's training watches
    eval_rows: int  # test tickets every package is scored on, once
    speed_rounds: int  # timed rounds per package, the packages taking turns

    def __post_init__(self) -> None:
        check_sizes(self)


SIZES: dict[str, ReleaseConfig] = {
    "smoke": ReleaseConfig(steps=8, batch=8, val_rows=8, eval_rows=24, speed_rounds=10),
    "full": ReleaseConfig(steps=40, batch=8, val_rows=48, eval_rows=48, speed_rounds=20),
}


def get_config(profile: str) -> ReleaseConfig:
    """The release round's sizes of ``profile`` (raises for an unknown profile, listing the choices)."""
    return sizes_for(SIZES, profile)
