"""Section 4's sizes per profile: the only place where notebook 04's profile becomes numbers."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check_sizes, sizes_for


@dataclass(frozen=True)
class DeployConfig:
    """The sizes notebook 04 scales between a class demo (smoke) and the real run (full)."""

    bench_rows: int  # validation tickets every choice reads; the same count of test tickets reports once
    probe_rows: int  # training tickets the outlier probe runs on (it scores nothing)
    memory_runs: int  # repeated loads of the package when the checklist watches its memory
    spec_gammas: tuple[int, ...]  # guesses per round the speculative race tries
    spec_tickets: int  # validation tickets the race decodes, every configuration on each
    study_every_lever: bool  # section 4.3 measures every quantization lever, or the ones its reading turns on

    def __post_init__(self) -> None:
        check_sizes(self)


# A smoke run studies the quantization levers the reading turns on, and its race tries a few gammas on two
# tickets (every ticket decodes 8 times, a fifth of notebook 04's smoke time at 4 tickets); the full run
# studies every lever, maps the race's curve, and benchmarks as many tickets as the other sections score.
SIZES: dict[str, DeployConfig] = {
    "smoke": DeployConfig(
        bench_rows=8, probe_rows=8, memory_runs=12, spec_gammas=(1, 2, 4), spec_tickets=2, study_every_lever=False
    ),
    "full": DeployConfig(
        bench_rows=48,
        probe_rows=48,
        memory_runs=60,
        spec_gammas=(1, 2, 3, 4, 6, 8),
        spec_tickets=12,
        study_every_lever=True,
    ),
}


def get_config(profile: str) -> DeployConfig:
    """The deployment sizes of ``profile`` (raises for an unknown profile, listing the choices)."""
    return sizes_for(SIZES, profile)
