"""A quality gate: does a candidate's recorded metrics stay within a policy, against a reference?

A policy is a small YAML mapping, one metric per key, each with one or more checks::

    score:       {max_drop: 2}          # may be at most 2 points below the reference
    ms_per_token_p50: {max_increase_pct: 10} # at most 10 % slower than the reference
    size_mib:          {max: 100}             # an absolute ceiling, no reference needed

Candidate and reference are metrics JSON files (``artifacts/metrics/*.json``), registry
entry ids, or plain dicts. ``slmops gate`` exits 0 when every check passes and 1 with a
report naming each failing metric and by how much: the step a CI/CD pipeline calls.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .registry import Registry, RegistryError

# check -> (what it compares, whether it needs a reference)
CHECKS: dict[str, tuple[str, bool]] = {
    "max": ("value at most", False),
    "min": ("value at least", False),
    "max_drop": ("drop below the reference at most", True),
    "max_drop_pct": ("drop below the reference at most (%)", True),
    "max_increase": ("rise above the reference at most", True),
    "max_increase_pct": ("rise above the reference at most (%)", True),
}
TOLERANCE = 1e-9  # a value exactly at its limit passes despite float rounding


@dataclass(frozen=True)
class Rule:
    """One check on one metric, e.g. ``Rule("score", "max_drop", 2)``."""

    metric: str
    check: str
    limit: float

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            close = difflib.get_close_matches(self.check, CHECKS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"Policy rule {self.metric}: unknown check {self.check!r}{hint}. Use one of {list(CHECKS)}."
            )
        if isinstance(self.limit, bool) or not isinstance(self.limit, int | float) or not math.isfinite(self.limit):
            raise ValueError(f"Policy rule {self.metric}.{self.check}: the limit must be a number, got {self.limit!r}.")
        if CHECKS[self.check][1] and self.limit < 0:
            raise ValueError(
                f"Policy rule {self.metric}.{self.check}: a tolerance must be >= 0, got {self.limit}. "
                "Fix: use min/max for absolute bounds."
            )

    @property
    def needs_baseline(self) -> bool:
        return CHECKS[self.check][1]


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule: ``value`` is what was compared with ``limit``."""

    rule: Rule
    candidate: float
    reference: float | None
    value: float  # candidate (max/min), or its drop / rise against the reference, in units or %
    excess: float  # how far past the limit; > 0 means it failed

    @property
    def passed(self) -> bool:
        return self.excess <= TOLERANCE

    def describe(self) -> str:
        """One line a person can read, e.g. ``score 71 vs reference 75: dropped 4 (allowed 2): over by 2``."""
        r, unit = self.rule, ("%" if self.rule.check.endswith("_pct") else "")
        if r.needs_baseline:
            words = ("dropped", "rose") if r.check.startswith("max_drop") else ("rose", "fell")
            moved = f"{words[0] if self.value >= 0 else words[1]} {abs(self.value):.3g}{unit}"
            against = f"{r.metric} {self.candidate:.4g} vs reference {self.reference:.4g}"
            head = f"{against}: {moved} (allowed {r.limit:g}{unit})"
        else:
            head = f"{r.metric} {self.candidate:.4g} ({r.check} {r.limit:g})"
        return f"{head}: " + ("within the limit" if self.passed else f"over by {self.excess:.3g}{unit}")

    def as_row(self) -> dict[str, Any]:
        return {
            "metric": self.rule.metric,
            "check": self.rule.check,
            "limit": self.rule.limit,
            "candidate": self.candidate,
            "reference": self.reference,
            "value": self.value,
            "excess": self.excess,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class GateReport:
    """Every rule's result; ``passed`` only if all passed."""

    results: tuple[RuleResult, ...]
    candidate: str
    reference: str | None

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per rule (metric, check, limit, candidate, reference, value, excess, passed)."""
        return [r.as_row() for r in self.results]

    def format(self) -> str:
        verdict = "PASSED" if self.passed else f"FAILED ({len(self.failures)} of {len(self.results)} checks)"
        lines = [f"Quality gate {verdict}: candidate {self.candidate} vs reference {self.reference or '(none)'}"]
        lines += [("  ok    " if r.passed else "  FAIL  ") + r.describe() for r in self.results]
        return "\n".join(lines)


def load_policy(source: str | os.PathLike | dict[str, Any]) -> list[Rule]:
    """Rules from a policy YAML file (or an already-loaded mapping)."""
    where = "policy"
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"No policy file at {path}. Fix: pass --policy notebooks/configs/gate.yaml.")
        where = str(path)
        try:
            source = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"{where} is not valid YAML: {err}") from err
    if not isinstance(source, dict) or not source:
        raise ValueError(f"{where} must map metric names to checks, e.g. `score: {{max_drop: 2}}`.")
    rules = []
    for metric, checks in source.items():
        if not isinstance(checks, dict) or not checks:
            raise ValueError(
                f"{where}: {metric!r} must map checks to limits, e.g. `{metric}: {{max: 100}}`; got {checks!r}."
            )
        rules += [Rule(str(metric), str(check), limit) for check, limit in checks.items()]
    return rules


def resolve_metrics(
    source: str | os.PathLike | dict[str, Any], registry_root: str | os.PathLike | None = None
) -> tuple[dict[str, Any], str]:
    """(metrics, label) from a dict, a metrics JSON file or a registry entry id."""
    if isinstance(source, dict):
        return source, "(metrics dict)"
    path = Path(source)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a metrics JSON file ({err}).") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold one flat JSON object of metrics.")
        return data, str(path)

    try:
        return Registry(registry_root).get(str(source)).metrics, str(source)
    except (RegistryError, FileNotFoundError) as err:
        raise FileNotFoundError(
            f"{source!r} is neither a metrics file nor a registry entry ({err}). "
            "Fix: pass a path such as artifacts/metrics/04_deployment.json, or an id from `slmops registry list`."
        ) from err


def _number(metrics: dict[str, Any], metric: str, label: str) -> float:
    if metric not in metrics:
        numeric = [k for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)]
        close = difflib.get_close_matches(metric, numeric, n=3)
        hint = f" Did you mean {close}?" if close else f" It records {len(numeric)} numeric metrics."
        raise ValueError(
            f"The policy names metric {metric!r}, which {label} does not record.{hint} "
            "Fix: correct the name in the policy, or record the metric."
        )
    value = metrics[metric]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"Metric {metric!r} in {label} is {value!r}, not a finite number; the gate compares numbers.")
    return float(value)


def check_rule(rule: Rule, candidate: float, reference: float | None) -> RuleResult:
    """Compare one metric with its limit."""
    if rule.needs_baseline and reference is None:
        raise ValueError(f"Rule {rule.metric}.{rule.check} compares with a reference. Fix: pass --reference.")
    if rule.check.endswith("_pct") and reference == 0:
        raise ValueError(
            f"Rule {rule.metric}.{rule.check}: the reference is 0, so no percentage exists. Use a unit check."
        )
    value = {
        "max": lambda: candidate,
        "min": lambda: candidate,
        "max_drop": lambda: reference - candidate,
        "max_drop_pct": lambda: (reference - candidate) / abs(reference) * 100,
        "max_increase": lambda: candidate - reference,
        "max_increase_pct": lambda: (candidate - reference) / abs(reference) * 100,
    }[rule.check]()
    excess = rule.limit - value if rule.check == "min" else value - rule.limit
    return RuleResult(rule, candidate, reference, value, excess)


def evaluate_gate(
    candidate: str | os.PathLike | dict[str, Any],
    reference: str | os.PathLike | dict[str, Any] | None,
    policy: str | os.PathLike | dict[str, Any] | list[Rule],
    *,
    registry_root: str | os.PathLike | None = None,
) -> GateReport:
    """Check ``candidate`` against ``reference`` under ``policy``; raise ValueError on bad input."""
    is_rules = isinstance(policy, list) and policy and all(isinstance(r, Rule) for r in policy)
    rules = policy if is_rules else load_policy(policy)
    cand, cand_label = resolve_metrics(candidate, registry_root)
    base, base_label = resolve_metrics(reference, registry_root) if reference is not None else (None, None)
    results = []
    for rule in rules:
        value = _number(cand, rule.metric, f"candidate {cand_label}")
        ref = (
            _number(base, rule.metric, f"reference {base_label}") if base is not None and rule.needs_baseline else None
        )
        results.append(check_rule(rule, value, ref))
    return GateReport(tuple(results), cand_label, base_label)


def run_command(
    candidate: str,
    reference: str | None,
    policy: str,
    *,
    registry_root: str | os.PathLike | None = None,
) -> int:
    """``slmops gate``: print the report; 0 when it passes, 1 when it fails."""
    report = evaluate_gate(candidate, reference, policy, registry_root=registry_root)
    print(report.format())
    return 0 if report.passed else 1
