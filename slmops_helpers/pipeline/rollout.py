"""Staged rollout to a simulated edge fleet: canary → wider → all, halting on bad health.

Each stage offers the update to more of the fleet (``fleet.build_fleet`` devices, each
on the variant ``fleet.pick_variants`` chose from section 4's measurements), watches the
devices on the new version for its hours — answers served, failed answers, devices
slower than their latency budget — and halts and rolls every device back when the
stage's error or latency budget is exceeded. Failed and low-confidence answers are
collected into a feedback set for the next training round.

Every per-device quantity is one numpy array, so 10,000 devices through three stages
take a fraction of a second (``time_rollout`` measures it). The field behaviour of the
release (``error_rate``, ``latency_factor``) is a simulation knob: raise it to watch the
canary catch a bad build.

>>> fleet_config, plan = load_fleet_config("notebooks/configs/fleet.yaml")
>>> result = simulate_rollout(build_fleet(fleet_config), variants_from_metrics(read_metrics("04_deployment")), plan)
>>> print(result.summary())
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..fleet import DeviceClass, Fleet, FleetConfig, Variant, build_fleet, check_positive, check_share, pick_variants

CHECKIN_SHARE = 0.5  # devices poll for the update during the first half of a stage's window


@dataclass(frozen=True)
class Stage:
    """One rollout stage: reach ``share`` of the fleet, watch for ``hours``, halt past a budget."""

    name: str
    share: float  # cumulative share of the fleet offered the update by the end of this stage
    hours: float = 24.0
    max_error_rate: float = 0.02  # most failed answers allowed, as a share of answers
    max_slow_share: float = 0.05  # most devices allowed slower than their latency budget, as a share

    def __post_init__(self) -> None:
        where = f"Stage {self.name!r}"
        if isinstance(self.share, bool) or not isinstance(self.share, int | float) or not 0 < self.share <= 1:
            raise ValueError(f"{where}: share must be in (0, 1], got {self.share!r}.")
        check_positive(where, hours=self.hours)
        check_share(where, "max_error_rate", self.max_error_rate)
        check_share(where, "max_slow_share", self.max_slow_share)


@dataclass(frozen=True)
class RolloutConfig:
    """The stages, and how the release behaves in the field (simulation knobs)."""

    stages: tuple[Stage, ...]
    requests_per_hour: float = 2.0  # answers per device per hour
    error_rate: float = 0.005  # share of answers that fail in the field: raise it to simulate a bad build
    latency_factor: float = 1.0  # field slow-down against the measurement: raise it to simulate a slow build
    latency_headroom: float = 0.8  # pick variants within this share of each device's latency budget
    rollback_hours: float = 6.0  # devices revert within this window after a halt
    max_feedback: int = 500  # records kept for the next training round
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("RolloutConfig.stages is empty. Fix: list stages such as canary, wider, all.")
        shares = [s.share for s in self.stages]
        if shares != sorted(shares) or len(set(shares)) != len(shares):
            raise ValueError(f"RolloutConfig: stage shares must increase from stage to stage, got {shares}.")
        check_positive("RolloutConfig", requests_per_hour=self.requests_per_hour, latency_factor=self.latency_factor)
        check_positive("RolloutConfig", rollback_hours=self.rollback_hours)
        check_share("RolloutConfig", "error_rate", self.error_rate)
        if not isinstance(self.latency_headroom, int | float) or not 0 < self.latency_headroom <= 1:
            raise ValueError(f"RolloutConfig.latency_headroom must be in (0, 1], got {self.latency_headroom!r}.")
        if isinstance(self.max_feedback, bool) or not isinstance(self.max_feedback, int) or self.max_feedback < 0:
            raise ValueError(f"RolloutConfig.max_feedback must be a whole number >= 0, got {self.max_feedback!r}.")


def _build(cls: type, row: Any, where: str) -> Any:
    if not isinstance(row, dict):
        raise ValueError(f"{where} must be a mapping of {cls.__name__} fields, got {row!r}.")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(row) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}. Allowed: {sorted(allowed)}.")
    try:
        return cls(**row)
    except TypeError as err:  # a required field is missing
        raise ValueError(f"{where}: {err}. Fix: give every required field.") from err


def load_fleet_config(source: str | os.PathLike | dict[str, Any]) -> tuple[FleetConfig, RolloutConfig]:
    """The fleet and the rollout plan from a YAML file with ``fleet:`` and ``rollout:`` sections."""
    where = "fleet config"
    if not isinstance(source, dict):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"No fleet file at {path}. Fix: start from notebooks/configs/fleet.yaml.")
        where, source = str(path), yaml.safe_load(path.read_text())
    if not isinstance(source, dict) or not {"fleet", "rollout"} <= set(source):
        raise ValueError(f"{where} needs two sections, `fleet:` and `rollout:`.")
    for section in ("fleet", "rollout"):
        if not isinstance(source[section], dict):
            raise ValueError(f"{where}: `{section}:` must be a mapping, got {source[section]!r}.")
    fleet = dict(source["fleet"])
    fleet["classes"] = tuple(
        _build(DeviceClass, c, f"{where}: fleet.classes[{i}]") for i, c in enumerate(fleet.get("classes") or [])
    )
    rollout = dict(source["rollout"])
    rollout["stages"] = tuple(
        _build(Stage, s, f"{where}: rollout.stages[{i}]") for i, s in enumerate(rollout.get("stages") or [])
    )
    return _build(FleetConfig, fleet, f"{where}: fleet"), _build(RolloutConfig, rollout, f"{where}: rollout")


@dataclass(frozen=True)
class StageReport:
    """What one stage saw; ``reason`` says why it halted ("" when it passed)."""

    name: str
    start_h: float
    end_h: float
    share: float
    max_error_rate: float
    max_slow_share: float
    offered: int  # devices offered the update in this stage
    unserved: int  # of those, devices that no variant fits: they stay on the old version
    on_new: int  # devices on the new version at the end of the stage, earlier stages included
    requests: int  # answers served by the new version during the stage
    failed: int
    low_confidence: int
    error_rate: float  # failed / requests
    slow_share: float  # devices on the new version slower than their latency budget
    p95_ms_per_token: float
    passed: bool
    reason: str


@dataclass(frozen=True)
class RolloutResult:
    """The stages, the devices on the new version over time, and the feedback set."""

    stages: list[StageReport]
    hours: np.ndarray  # time grid of the timeline
    on_new: np.ndarray  # devices on the new version at each hour of ``hours``
    choice: np.ndarray  # (N,) variant index per device, -1 where none fits
    variant_names: list[str]
    feedback: list[dict[str, Any]]  # a sample of failed / low-confidence answers
    feedback_counts: dict[str, int] = field(default_factory=dict)  # all of them, before sampling

    @property
    def halted(self) -> bool:
        return not self.stages[-1].passed

    @property
    def halted_at(self) -> str | None:
        return self.stages[-1].name if self.halted else None

    def variant_counts(self) -> dict[str, int]:
        """Devices per chosen variant across the fleet; ``none`` where nothing fits."""
        names = [*self.variant_names, "none"]
        counts = np.bincount(np.where(self.choice < 0, len(names) - 1, self.choice), minlength=len(names))
        return {name: int(c) for name, c in zip(names, counts, strict=True) if c}

    def rows(self) -> list[dict[str, Any]]:
        """One dict per stage, for a table in the notebook."""
        return [vars(s).copy() for s in self.stages]

    def summary(self) -> str:
        last = self.stages[-1]
        if self.halted:
            head = f"Rollout HALTED at stage {last.name!r} ({last.reason}); every device rolled back."
        else:
            head = f"Rollout completed: {last.on_new:,} of {len(self.choice):,} devices on the new version."
        lines = [
            head,
            f"{'stage':<10} {'hours':>9} {'on new':>8} {'errors (budget)':>17} {'slow (budget)':>15}  p95 ms/tok",
        ]
        for s in self.stages:
            errors = f"{s.error_rate:.2%} ({s.max_error_rate:.1%})"
            slow = f"{s.slow_share:.1%} ({s.max_slow_share:.0%})"
            lines.append(
                f"{s.name:<10} {f'{s.start_h:g}-{s.end_h:g}':>9} {s.on_new:>8,} {errors:>17} {slow:>15}"
                f"  {s.p95_ms_per_token:8.1f}  {'ok' if s.passed else 'HALT'}"
            )
        counts = ", ".join(f"{k} {v:,}" for k, v in self.variant_counts().items())
        lines.append(f"variants chosen: {counts}")
        lines.append(f"feedback: {self.feedback_counts} answers flagged, {len(self.feedback)} kept for labelling")
        return "\n".join(lines)


def _feedback(
    rng: np.random.Generator,
    flagged: list[tuple[str, str, np.ndarray]],
    fleet: Fleet,
    choice: np.ndarray,
    names: list[str],
    observed_ms: np.ndarray,
    limit: int,
    prompts: list[str] | None,
) -> list[dict[str, Any]]:
    """A uniform sample of ``limit`` flagged answers; ``flagged`` holds (stage, kind, device per answer)."""
    ends = np.cumsum([len(devices) for _, _, devices in flagged], dtype=int)
    picks = np.sort(rng.choice(ends[-1], size=min(limit, ends[-1]), replace=False))
    which = np.searchsorted(ends, picks, side="right")  # the (stage, kind) group each pick falls in
    records = []
    for pick, group in zip(picks, which, strict=True):
        stage, kind, devices = flagged[group]
        device = int(devices[pick - (ends[group] - len(devices))])
        record = {
            "device": device,
            "device_class": fleet.config.classes[fleet.device_class[device]].name,
            "variant": names[choice[device]],
            "stage": stage,
            "kind": kind,
            "ms_per_token": round(float(observed_ms[device]), 2),
        }
        if prompts:
            record["prompt"] = prompts[int(rng.integers(len(prompts)))]
        records.append(record)
    return records


def simulate_rollout(
    fleet: Fleet, variants: list[Variant], plan: RolloutConfig, prompts: list[str] | None = None
) -> RolloutResult:
    """Roll the release out stage by stage; halt and roll back at the first stage over budget.

    ``prompts`` (e.g. the test split's messages) are attached to the feedback records,
    standing in for the questions the devices flagged.
    """
    rng = np.random.default_rng(plan.seed)
    n = len(fleet)
    choice = pick_variants(fleet, variants, plan.latency_headroom)
    served = choice >= 0
    pick = np.where(served, choice, 0)
    size, ms, score = (np.array([getattr(v, k) for v in variants]) for k in ("size_mib", "ms_per_token_p50", "score"))
    observed_ms = np.where(served, ms[pick] / fleet.speed * plan.latency_factor, np.nan)  # (N,)
    p_low = np.where(served, 1 - score[pick] / 100, 0.0)  # held-out misses stand in for low confidence
    download_h = size[pick] * 8 / fleet.mbps / 3600
    done = np.full(n, np.inf)  # hour at which each device runs the new version
    reverted = np.full(n, np.inf)
    order = rng.permutation(n)
    bounds = np.ceil(np.array([s.share for s in plan.stages]) * n).astype(int)
    reports, flagged, start, prev = [], [], 0.0, 0
    for stage, bound in zip(plan.stages, bounds, strict=True):
        end = start + stage.hours
        offered = order[prev:bound]
        cohort = offered[served[offered]]
        done[cohort] = start + rng.uniform(0, stage.hours * CHECKIN_SHARE, len(cohort)) + download_h[cohort]
        live = np.flatnonzero(done < end)
        requests = rng.poisson(plan.requests_per_hour * (end - np.maximum(done[live], start)))
        failed = rng.binomial(requests, plan.error_rate)
        low = rng.binomial(requests - failed, p_low[live])
        total = int(requests.sum())
        error_rate = float(failed.sum() / total) if total else 0.0
        slow_share = float(np.mean(observed_ms[live] > fleet.latency_budget_ms[live])) if len(live) else 0.0
        reasons = []
        if error_rate > stage.max_error_rate:
            reasons.append(f"error rate {error_rate:.2%} > budget {stage.max_error_rate:.2%}")
        if slow_share > stage.max_slow_share:
            reasons.append(f"{slow_share:.1%} of devices over their latency budget > {stage.max_slow_share:.1%}")
        flagged += [
            (stage.name, "failed", np.repeat(live, failed)),
            (stage.name, "low_confidence", np.repeat(live, low)),
        ]
        reports.append(
            StageReport(
                name=stage.name,
                start_h=start,
                end_h=end,
                share=stage.share,
                max_error_rate=stage.max_error_rate,
                max_slow_share=stage.max_slow_share,
                offered=len(offered),
                unserved=len(offered) - len(cohort),
                on_new=len(live),
                requests=total,
                failed=int(failed.sum()),
                low_confidence=int(low.sum()),
                error_rate=error_rate,
                slow_share=slow_share,
                p95_ms_per_token=float(np.percentile(observed_ms[live], 95)) if len(live) else math.nan,
                passed=not reasons,
                reason="; ".join(reasons),
            )
        )
        start, prev = end, bound
        if reasons:  # halt: devices still downloading stop, the others go back to the old version
            done[done >= end] = np.inf
            updated = np.isfinite(done)
            reverted[updated] = end + rng.uniform(0, plan.rollback_hours, int(updated.sum()))
            start = end + plan.rollback_hours
            break
    hours = np.linspace(0.0, start, 241)
    on_new = np.searchsorted(np.sort(done), hours, side="right") - np.searchsorted(np.sort(reverted), hours, "right")
    names = [v.name for v in variants]
    counts = {kind: int(sum(len(d) for _, k, d in flagged if k == kind)) for kind in ("failed", "low_confidence")}
    feedback = _feedback(rng, flagged, fleet, choice, names, observed_ms, plan.max_feedback, prompts)
    return RolloutResult(reports, hours, on_new, choice, names, feedback, counts)


def time_rollout(
    fleet_config: FleetConfig, variants: list[Variant], plan: RolloutConfig, repeats: int = 3
) -> dict[str, float]:
    """Best wall time, over ``repeats``, of building the fleet and simulating the whole rollout."""
    best = math.inf
    for _ in range(repeats):
        begin = time.perf_counter()
        simulate_rollout(build_fleet(fleet_config), variants, plan)
        best = min(best, time.perf_counter() - begin)
    return {"devices": fleet_config.devices, "stages": len(plan.stages), "seconds": best}
