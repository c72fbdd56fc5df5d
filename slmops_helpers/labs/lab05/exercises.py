"""Checks for lab 05 (the SLMOps pipeline): write a gate policy that ships one candidate
and refuses two others, read a staged rollout's report, and sort its feedback set; register
two real builds and gate them with ``slmops gate`` (in ``real``).

The rollout of q1, q3 and q6 is simulated on a small seeded fleet (``fleet``), so that
the check and the learner look at the same report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from ...pipeline.gate import evaluate_gate
from .. import Exercise, PlaceholderError, Result, contains_blank, incorrect, is_number, learner_answer
from .fleet import LAB_STAGES, lab_profiles
from .fleet import lab_plan as lab_plan  # the lab's notebook reads the plan and replays the rollout
from .fleet import lab_rollout as lab_rollout
from .next_round import Lineage, NextRound, TicketsNeeded, ToleratedFactor
from .quiz import QUIZ as QUIZ  # the lab's quiz, rendered at its end
from .real import GateBuilds, RegisterBuilds

# q2: a scenario, made up for the exercise: production's metrics and three candidates (the gate's names).
PRODUCTION = {"score": 41.0, "size_mib": 103.2, "ms_per_token_p50": 11.0, "peak_mib": 296.0}
CANDIDATES = {
    # retrained: 0.8 points lower on 24 tickets (one answer), 5 % slower: within the noise of a re-measurement
    "A": {"score": 40.2, "size_mib": 103.2, "ms_per_token_p50": 11.6, "peak_mib": 301.0},
    # quantized harder: smaller and faster, 4.5 points worse
    "B": {"score": 36.5, "size_mib": 90.4, "ms_per_token_p50": 10.5, "peak_mib": 280.0},
    # a bigger adapter: 1 point better, 30 % slower
    "C": {"score": 42.0, "size_mib": 103.2, "ms_per_token_p50": 14.3, "peak_mib": 298.0},
}
SHIP, REFUSE = ("A",), ("B", "C")

# --- q2: the gate policy ------------------------------------------------------------------


class Lab05Exercise(Exercise):
    """An exercise of lab 05; ``qN.solution()`` shows its answer from this source notebook."""

    notebook = "05_slmops_pipeline.ipynb"  # in labs/source/


class WritePolicy(Lab05Exercise):
    name, title, tier, var = "q2", "A gate policy that ships A and refuses B and C", "core", "my_policy"
    hint_text = (
        "Compare each candidate with PRODUCTION metric by metric: what does B make worse, and what does C? "
        "Then pick tolerances between what A needs and what B and C do: a `max_drop` on score larger "
        "than A's drop but smaller than B's, and a `max_increase_pct` on ms_per_token_p50 larger than A's "
        "rise but smaller than C's."
    )

    def check_value(self, policy: Any) -> Result | None:
        if contains_blank(policy):
            raise PlaceholderError("`my_policy` still holds ____")
        if not isinstance(policy, Mapping):
            return incorrect(f"`my_policy` should be a dict from metric name to checks, got {type(policy).__name__}.")
        reports = {}
        for name, metrics in CANDIDATES.items():
            try:
                reports[name] = evaluate_gate(metrics, PRODUCTION, dict(policy))
            except ValueError as err:
                return incorrect(f"The gate cannot use `my_policy`: {err}")
        for name in SHIP:
            if not reports[name].passed:
                why = "; ".join(r.describe() for r in reports[name].failures)
                return incorrect(
                    f"Your policy refuses candidate {name}, which should ship ({why}). A re-measured model moves "
                    "a little every time: leave room for that."
                )
        for name in REFUSE:
            if reports[name].passed:
                return incorrect(
                    f"Your policy ships candidate {name}. Compare each of {name}'s metrics with PRODUCTION: which "
                    "one got worse, and does a rule of your policy watch it?"
                )
        return None


# --- q3: the rollout report ---------------------------------------------------------------

CAUSES = ("errors", "latency")


def _cause(stage: Any) -> str:
    return "latency" if "latency budget" in stage.reason else "errors"


class ReadRollout(Lab05Exercise):
    name, title, tier, var = "q3", "Read a rollout report", "core", None
    hint_text = (
        "The summary's first line and the row marked HALT answer the first two. For the count, look at the "
        "halted stage's fields in report.stages: which one counts the devices on the new version, and does a "
        "rollback spare the earlier stages' devices?"
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        report = lab_rollout()
        last = report.stages[-1]
        names = [s.name for s in report.stages]
        stage = learner_answer(ns, "halted_stage")
        if not isinstance(stage, str):
            return incorrect(f"`halted_stage` should be a stage name (a str), got {type(stage).__name__}.")
        if stage not in [s.name for s in LAB_STAGES]:
            return incorrect(f"`halted_stage` is {stage!r}, which is not a stage of this rollout.")
        if stage != report.halted_at:
            if stage in names:  # a stage before the halt: it passed
                return incorrect(
                    f"The {stage!r} stage passed: compare its numbers with its own budgets (not every stage has "
                    "the same ones). Which row says HALT?"
                )
            return incorrect(f"The rollout halted before the {stage!r} stage began: the report has no row for it.")
        cause = learner_answer(ns, "halt_cause")
        if cause not in CAUSES:
            return incorrect(f"`halt_cause` should be one of {list(CAUSES)}, got {cause!r}.")
        if cause != _cause(last):
            return incorrect(
                f"Check the halted stage's numbers against both of its budgets: which one is exceeded? (the error "
                f"rate was {last.error_rate:.2%})"
            )
        rolled = learner_answer(ns, "rolled_back")
        if wrong := is_number(rolled, name="rolled_back"):
            return wrong
        offered_now = last.offered - last.unserved
        if rolled == len(report.choice):
            return incorrect("That is the whole fleet; only devices already on the new version have to roll back.")
        if rolled == offered_now and rolled != last.on_new:
            return incorrect(
                "The devices of earlier stages were on the new version too: a rollback takes every one of them."
            )
        if rolled != last.on_new:
            return incorrect(
                "`rolled_back` does not match the report: count the devices on the new version when it halted."
            )
        return None


# --- q1: the feedback ---------------------------------------------------------------------


class FeedbackByClass(Lab05Exercise):
    name, title, tier, var = "q1", "Where the feedback comes from", "warm-up", "feedback_by_class"
    hint_text = (
        "`report.feedback` is a list of dicts, one per flagged answer kept; group them by one of their keys and "
        "count (collections.Counter is imported)."
    )

    def check_value(self, counts: Any) -> Result | None:
        report = lab_rollout()
        expected = dict(Counter(record["device_class"] for record in report.feedback))  # inline: nothing to call
        if not isinstance(counts, Mapping):
            return incorrect(
                f"`feedback_by_class` should be a dict from device class to a count, got {type(counts).__name__}."
            )
        if contains_blank(counts):
            raise PlaceholderError("`feedback_by_class` still holds ____")
        if counts and set(counts) <= set(report.feedback_counts):
            return incorrect("Those keys are the kinds of flag (failed, low confidence); count by device class.")
        unknown = sorted(set(counts) - {p.name for p in lab_profiles()})
        if unknown:
            return incorrect(f"{unknown} are not device classes of this fleet.")
        for device_class, n in counts.items():
            if wrong := is_number(n, name=f"feedback_by_class[{device_class!r}]"):
                return wrong
        if sum(counts.values()) != len(report.feedback):
            return incorrect(
                f"Your counts add up to {sum(counts.values())}, but `report.feedback` holds a different number of "
                "records: count every record once."
            )
        if {k: v for k, v in counts.items() if v} != expected:
            return incorrect(
                "The total is right but some classes' counts are not: group by each record's 'device_class'."
            )
        return None


EXERCISES = [
    FeedbackByClass,
    WritePolicy,
    ReadRollout,
    NextRound,
    Lineage,
    ToleratedFactor,
    TicketsNeeded,
    RegisterBuilds,
    GateBuilds,
]
