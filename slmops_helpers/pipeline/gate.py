"""A quality gate: does a candidate's recorded metrics stay within a policy, against a reference?

A policy is a small YAML mapping, one metric per key, each with one or more checks::

    score:       {max_drop: 2}          # may be at most 2 points below the reference
    score:       {max_drop: 5, significance: 0.05}  # ... and the tickets must show it, with 95 % confidence
    ms_per_token_p50: {max_increase_pct: 10} # at most 10 % slower than the reference
    size_mib:          {max: 100}             # an absolute ceiling, no reference needed

Candidate and reference are metrics JSON files (``artifacts/metrics/*.json``), registry
entry ids, or plain dicts. ``slmops gate`` exits 0 when every check passes and 1 with a
report naming each failing metric and by how much: the step a CI/CD pipeline calls.

**Noise, and who carries the burden of proof.** On a few dozen tickets a score moves by
several points from the draw of tickets alone. A rule with ``significance`` (``max_drop``
or ``min_gain`` only) decides on a paired bootstrap over the tickets both were scored on
(``uncertainty``), and in both cases the *candidate* must prove its case:

- ``max_drop: M, significance: a`` is a **non-inferiority** test: it passes only when the
  one-sided ``1 - a`` upper bound of the drop (reference - candidate) is at most ``M``,
  i.e. when the data show that the candidate is at most ``M`` points worse. Fewer tickets
  widen the bound, so they make passing harder, never easier.
- ``min_gain: G, significance: a`` passes only when the lower bound of the gain is at least ``G``.

That needs each side's per-ticket results, which registry entries store
(``Registry.register(per_ticket=...)``) and a dict may carry under ``"per_ticket"``. The
same rule without ``significance`` decides on the point difference alone
(``without_significance``), which a small, lucky sample passes as easily as a large one.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import project_root
from ..uncertainty import TicketScores, drop_upper_bound, one_sided_bound, paired_values
from .registry import Registry, RegistryError

# check -> (what it compares, whether it needs a reference)
CHECKS: dict[str, tuple[str, bool]] = {
    "max": ("value at most", False),
    "min": ("value at least", False),
    "max_drop": ("drop below the reference at most", True),
    "max_drop_pct": ("drop below the reference at most (%)", True),
    "max_increase": ("rise above the reference at most", True),
    "max_increase_pct": ("rise above the reference at most (%)", True),
    "min_gain": ("rise above the reference at least", True),
}
SIGNIFICANT_CHECKS = ("max_drop", "min_gain")  # point differences of a mean over tickets
TOLERANCE = 1e-9  # a value exactly at its limit passes despite float rounding


@dataclass(frozen=True)
class Rule:
    """One check on one metric, e.g. ``Rule("score", "max_drop", 2)``; with ``significance``,
    decided on a paired bootstrap over tickets instead of the point difference."""

    metric: str
    check: str
    limit: float
    significance: float | None = None

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
        if self.significance is not None:
            where = f"Policy rule {self.metric}.{self.check}"
            if self.check not in SIGNIFICANT_CHECKS:
                raise ValueError(f"{where}: significance applies to {' or '.join(SIGNIFICANT_CHECKS)} only.")
            s = self.significance
            if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s < 1:
                raise ValueError(f"{where}: significance must lie in (0, 1), e.g. 0.05; got {s!r}.")
            if self.check == "max_drop" and self.limit <= 0:
                raise ValueError(
                    f"{where}: a non-inferiority margin must be > 0, got {self.limit}: no finite sample can show "
                    "a drop of at most 0. Fix: set the largest drop you accept, e.g. `max_drop: 5`."
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
    bound: float | None = None  # with significance: the one-sided bound of ``value`` it decided on
    # (max_drop: the upper bound of the drop; min_gain: the lower bound of the gain)
    n_tickets: int | None = None

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
            allowed = "needed" if r.check == "min_gain" else "allowed"
            if self.bound is None:
                head = f"{against}: {moved} ({allowed} {r.limit:g}{unit})"
            else:
                level = f"{1 - r.significance:.0%}"
                side = "at most" if r.check == "max_drop" else "at least"
                what = "drop" if r.check == "max_drop" else "gain"
                head = (
                    f"{against}: {moved}; on {self.n_tickets} tickets the {what} is {side} {self.bound:.3g} with "
                    f"{level} confidence ({allowed} {r.limit:g}{unit})"
                )
        else:
            head = f"{r.metric} {self.candidate:.4g} ({r.check} {r.limit:g})"
        short = "short" if r.check == "min_gain" else "over"
        return f"{head}: " + ("within the limit" if self.passed else f"{short} by {self.excess:.3g}{unit}")

    def as_row(self) -> dict[str, Any]:
        return {
            "metric": self.rule.metric,
            "check": self.rule.check,
            "limit": self.rule.limit,
            "candidate": self.candidate,
            "reference": self.reference,
            "value": self.value,
            "excess": self.excess,
            "significance": self.rule.significance,
            "bound": self.bound,
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
        checks = dict(checks)
        significance = checks.pop("significance", None)
        if significance is not None and not set(checks) & set(SIGNIFICANT_CHECKS):
            raise ValueError(
                f"{where}: {metric!r} has a significance but no {' or '.join(SIGNIFICANT_CHECKS)} check for it "
                f"to apply to, e.g. `{metric}: {{max_drop: 2, significance: 0.05}}`."
            )
        rules += [
            Rule(str(metric), str(check), limit, significance if check in SIGNIFICANT_CHECKS else None)
            for check, limit in checks.items()
        ]
    return rules


COURSE_POLICY = Path("notebooks") / "configs" / "gate.yaml"  # under the course root


def score_rule(rules: list[Rule] | str | os.PathLike | None = None, metric: str = "score") -> Rule:
    """The non-inferiority rule of ``metric`` (``max_drop`` with a significance) in a policy
    (default: the course's, ``notebooks/configs/gate.yaml``): section 4 chooses its precisions with
    the same rule section 5 gates releases with."""
    if not isinstance(rules, list):
        rules = load_policy(rules if rules is not None else project_root() / COURSE_POLICY)
    for rule in rules:
        if rule.metric == metric and rule.check == "max_drop" and rule.significance is not None:
            return rule
    raise ValueError(
        f"The policy has no non-inferiority rule for {metric!r}. Fix: add `{metric}: {{max_drop: 5, "
        "significance: 0.05}` to notebooks/configs/gate.yaml."
    )


def without_significance(rules: list[Rule]) -> list[Rule]:
    """The same rules deciding on point values alone: what a plain gate would say."""
    return [dataclasses.replace(rule, significance=None) for rule in rules]


def resolve_metrics(
    source: str | os.PathLike | dict[str, Any], registry_root: str | os.PathLike | None = None
) -> tuple[dict[str, Any], str]:
    """(metrics, label) from a dict, a metrics JSON file or a registry entry id.

    A registry entry's per-ticket results come along under ``"per_ticket"``."""
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
        entry = Registry(registry_root).get(str(source))
        return {**entry.metrics, "per_ticket": entry.per_ticket}, str(source)
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


def _tickets(metrics: dict[str, Any], metric: str, label: str, value: float) -> TicketScores:
    """The per-ticket results behind ``metric``, checked against its recorded value."""
    record = (metrics.get("per_ticket") or {}).get(metric)
    if record is None:
        raise ValueError(
            f"{label} has no per-ticket results for {metric!r}, and a significance rule needs them. Fix: "
            "register it with per_ticket (release.register_package records them from the benchmark's answers) "
            "and pass its registry id, or drop `significance` from the rule."
        )
    tickets = TicketScores.from_json(record, f"{label}'s per-ticket {metric}")
    if not tickets.matches(value):
        raise ValueError(
            f"{label}: its per-ticket {metric} average {tickets.mean:.4g}, but it records {metric} = {value:.4g}; "
            "they come from different runs. Fix: re-register it from one measurement."
        )
    return tickets


def significant_bound(rule: Rule, candidate: TicketScores, reference: TicketScores) -> float:
    """The one-sided bound, at confidence 1 - significance, that the rule decides on, over the
    tickets both were scored on: for ``max_drop`` the *upper* bound of the drop (non-inferiority:
    the candidate passes when even this is within the margin), for ``min_gain`` the *lower*
    bound of the gain (the candidate passes when even this reaches the limit)."""
    if rule.check == "max_drop":
        return drop_upper_bound(candidate, reference, rule.significance)
    return one_sided_bound(paired_values(candidate, reference), rule.significance)


def check_rule(
    rule: Rule, candidate: float, reference: float | None, tickets: tuple[TicketScores, TicketScores] | None = None
) -> RuleResult:
    """Compare one metric with its limit; a significance rule needs ``tickets`` (candidate's, reference's)."""
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
        "min_gain": lambda: candidate - reference,
    }[rule.check]()
    if rule.significance is None:
        excess = rule.limit - value if rule.check in ("min", "min_gain") else value - rule.limit
        return RuleResult(rule, candidate, reference, value, excess)
    if tickets is None:
        raise ValueError(f"Rule {rule.metric}.{rule.check} has a significance: pass both sides' per-ticket results.")
    bound = significant_bound(rule, *tickets)
    excess = rule.limit - bound if rule.check == "min_gain" else bound - rule.limit
    return RuleResult(rule, candidate, reference, value, excess, bound, tickets[0].n)


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
        tickets = None
        if rule.significance is not None and ref is not None:
            tickets = (
                _tickets(cand, rule.metric, f"candidate {cand_label}", value),
                _tickets(base, rule.metric, f"reference {base_label}", ref),
            )
        results.append(check_rule(rule, value, ref, tickets))
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
