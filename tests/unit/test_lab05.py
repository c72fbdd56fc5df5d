"""Lab 05's checks: right answers pass, blanks are "not attempted", and the usual slips
are caught with a message that names them, never the expected value."""

from __future__ import annotations

import math
from collections import Counter
from statistics import NormalDist

import pytest
import torch

from slmops_helpers.labs import Outcome, Question, ____
from slmops_helpers.labs.lab05 import next_round as lab05_next
from slmops_helpers.labs.lab05.exercises import (
    CANDIDATES,
    EXERCISES,
    PRODUCTION,
    FeedbackByClass,
    ReadRollout,
    WritePolicy,
    lab_rollout,
)
from slmops_helpers.labs.lab05.next_round import (
    FEEDBACK_SAMPLE,
    LATENCY_FACTORS,
    Lineage,
    NextRound,
    TicketsNeeded,
    ToleratedFactor,
)
from slmops_helpers.pipeline.gate import evaluate_gate

POLICY = {
    "score": {"max_drop": 2},
    "ms_per_token_p50": {"max_increase_pct": 10},
    "size_mib": {"max": 110},
    "peak_mib": {"max_increase_pct": 15},
}


def result(exercise, value):
    """The verdict for ``value``: a namespace dict for questions that read several names."""
    namespace = value if exercise.var is None else {exercise.var: value}
    return Question(exercise(), namespace).result()


@pytest.fixture(scope="module")
def report():
    return lab_rollout()


def test_exercises_are_bound_in_order():
    assert [e.name for e in EXERCISES] == [f"q{i}" for i in range(1, len(EXERCISES) + 1)]
    assert len(EXERCISES) >= 6
    tiers = [e.tier for e in EXERCISES]
    assert tiers[0] == "warm-up" and tiers[-1] == "stretch" and tiers.count("core") >= 3
    assert tiers == sorted(tiers, key=["warm-up", "core", "stretch"].index)


# --- q2: the policy ----------------------------------------------------------------------


def test_the_candidates_make_the_question_answerable():
    # independent of the check: the solution's policy ships A only
    verdicts = {name: evaluate_gate(m, PRODUCTION, POLICY).passed for name, m in CANDIDATES.items()}
    assert verdicts == {"A": True, "B": False, "C": False}


@pytest.mark.parametrize(
    "policy",
    [
        POLICY,
        {"score": {"max_drop": 3}, "ms_per_token_p50": {"max_increase_pct": 20}},  # another right answer
        {"score": {"min": 40}, "ms_per_token_p50": {"max": 12}},  # absolute bounds work too
    ],
)
def test_policy_right_answers_pass(policy):
    assert result(WritePolicy, policy).outcome is Outcome.CORRECT


@pytest.mark.parametrize("policy", [____, {"score": {"max_drop": ____}}, {"score": ____}])
def test_policy_blank_is_not_attempted(policy):
    assert result(WritePolicy, policy).outcome is Outcome.NOT_ATTEMPTED


def test_policy_never_defined_is_not_attempted():
    assert Question(WritePolicy(), {}).result().outcome is Outcome.NOT_ATTEMPTED


@pytest.mark.parametrize(
    "policy, says",
    [
        ({"score": {"max_drop": 0.5}, "ms_per_token_p50": {"max_increase_pct": 10}}, "refuses candidate A"),
        ({"score": {"max_drop": 2}, "ms_per_token_p50": {"max_increase_pct": 3}}, "refuses candidate A"),
        ({"ms_per_token_p50": {"max_increase_pct": 10}}, "ships candidate B"),
        ({"score": {"max_drop": 2}}, "ships candidate C"),
        ({"size_mib": {"max": 110}}, "ships candidate B"),
        ({"accuracy": {"max_drop": 2}}, "cannot use"),  # a metric the candidates do not record
        ({"score": {"max_dorp": 2}}, "max_drop"),  # a typo: the gate suggests the right name
        ({"score": 2}, "must map checks to limits"),
        ({}, "cannot use"),
        ([("score", 2)], "dict"),
    ],
)
def test_policy_mistakes_are_named(policy, says):
    verdict = result(WritePolicy, policy)
    assert verdict.outcome is Outcome.INCORRECT and says in verdict.message, verdict.message


# --- q3: the rollout report -----------------------------------------------------------------


def test_lab_rollout_is_seeded_and_halts_on_latency_at_the_second_stage(report):
    again = lab_rollout()
    assert report.halted_at == again.halted_at == "wider"
    assert report.stages[0].passed and "latency budget" in report.stages[-1].reason
    assert report.stages[-1].on_new == again.stages[-1].on_new > report.stages[-1].offered
    assert not lab_rollout(latency_factor=1.0).halted  # the same release, not slowed down, goes through


def right(report):
    return {"halted_stage": "wider", "halt_cause": "latency", "rolled_back": report.stages[-1].on_new}


def test_rollout_right_answer_passes(report):
    assert result(ReadRollout, right(report)).outcome is Outcome.CORRECT
    numpy_int = {**right(report), "rolled_back": report.choice[:1].sum() * 0 + report.stages[-1].on_new}
    assert result(ReadRollout, numpy_int).outcome is Outcome.CORRECT


@pytest.mark.parametrize(
    "blanks",
    [
        {"halted_stage": ____, "halt_cause": ____, "rolled_back": ____},
        {},  # the cell was never run
        {"halted_stage": "wider", "halt_cause": ____, "rolled_back": ____},
        {"halted_stage": "wider", "halt_cause": "latency", "rolled_back": ____},
    ],
)
def test_rollout_blank_is_not_attempted(blanks):
    assert result(ReadRollout, blanks).outcome is Outcome.NOT_ATTEMPTED


@pytest.mark.parametrize(
    "change, says",
    [
        ({"halted_stage": "canary"}, "passed"),
        ({"halted_stage": "all"}, "halted before"),
        ({"halted_stage": "Wider!"}, "not a stage"),
        ({"halted_stage": 2}, "str"),
        ({"halt_cause": "errors"}, "both of its budgets"),
        ({"halt_cause": "slow"}, "one of"),
        ({"rolled_back": 2000}, "whole fleet"),
        ({"rolled_back": "500"}, "number"),
        ({"rolled_back": torch.tensor(500)}, ".item()"),
        ({"rolled_back": 7}, "on the new version"),
    ],
)
def test_rollout_mistakes_are_named(report, change, says):
    verdict = result(ReadRollout, {**right(report), **change})
    assert verdict.outcome is Outcome.INCORRECT and says in verdict.message, verdict.message


def test_rollout_counting_only_the_halted_stage_is_named(report):
    last = report.stages[-1]
    verdict = result(ReadRollout, {**right(report), "rolled_back": last.offered - last.unserved})
    assert verdict.outcome is Outcome.INCORRECT and "earlier stages" in verdict.message
    assert str(last.on_new) not in verdict.message


# --- q1: the feedback set --------------------------------------------------------------------


def counts(report):
    return dict(Counter(r["device_class"] for r in report.feedback))


def test_feedback_right_answer_passes(report):
    assert result(FeedbackByClass, counts(report)).outcome is Outcome.CORRECT
    with_zero = {**counts(report), "laptop": counts(report).get("laptop", 0)}
    assert result(FeedbackByClass, with_zero).outcome is Outcome.CORRECT


@pytest.mark.parametrize("value", [____, {"home hub": ____}])
def test_feedback_blank_is_not_attempted(value):
    assert result(FeedbackByClass, value).outcome is Outcome.NOT_ATTEMPTED


def test_feedback_mistakes_are_named(report):
    by_kind = dict(Counter(r["kind"] for r in report.feedback))
    verdict = result(FeedbackByClass, by_kind)
    assert verdict.outcome is Outcome.INCORRECT and "kinds of flag" in verdict.message
    right_counts = counts(report)
    first, second = sorted(right_counts)[:2]
    swapped = {**right_counts, first: right_counts[first] + 1, second: right_counts[second] - 1}
    verdict = result(FeedbackByClass, swapped)
    assert verdict.outcome is Outcome.INCORRECT and "some classes" in verdict.message
    verdict = result(FeedbackByClass, {**right_counts, first: right_counts[first] + 3})
    assert verdict.outcome is Outcome.INCORRECT and "add up to" in verdict.message
    assert str(len(report.feedback)) not in verdict.message.split("add up to")[1].split(",", 1)[1]
    verdict = result(FeedbackByClass, {**right_counts, "phone": 1})
    assert verdict.outcome is Outcome.INCORRECT and "not device classes" in verdict.message
    verdict = result(FeedbackByClass, list(right_counts.items()))
    assert verdict.outcome is Outcome.INCORRECT and "dict" in verdict.message


# --- q4: the next round's prompts ----------------------------------------------------------


def right_next_round(feedback, eval_prompts, limit):
    """Written out here: the check refuses the course's own reference as a learner's answer."""
    failed = [r["prompt"] for r in feedback if r["kind"] == "failed"]
    unsure = [r["prompt"] for r in feedback if r["kind"] == "low_confidence"]
    return [p for p in dict.fromkeys(failed + unsure) if p not in eval_prompts][:limit]


def test_next_round_right_and_blank():
    assert result(NextRound, right_next_round).outcome is Outcome.CORRECT
    assert result(NextRound, ____).outcome is Outcome.NOT_ATTEMPTED
    # 9 records of 7 distinct prompts, 2 of them held out
    assert len(right_next_round(list(FEEDBACK_SAMPLE), lab05_next.EVAL_PROMPTS, 10)) == 5


@pytest.mark.parametrize(
    "fn, says",
    [
        (lambda f, e, n: list(dict.fromkeys(r["prompt"] for r in f))[:n], "held-out"),
        (lambda f, e, n: [r["prompt"] for r in f if r["prompt"] not in e][:n], "twice"),
        (lambda f, e, n: list(dict.fromkeys(r["prompt"] for r in f if r["prompt"] not in e))[:n], "order"),
        (lambda f, e, n: right_next_round(f, e, n + 1), "limit"),
        (
            lambda f, e, n: [r["prompt"] for r in f if r["kind"] == "failed" and r["prompt"] not in e][:0],
            "at most `limit`",
        ),
        (lambda f, e, n: ",".join(right_next_round(f, e, n)), "list of prompts"),
    ],
)
def test_next_round_slips_are_named(fn, says):
    verdict = result(NextRound, fn)
    assert verdict.outcome is Outcome.INCORRECT and says in verdict.message, verdict.message


# --- q5: lineage -----------------------------------------------------------------------------


def right_lineage(entries, entry_id):
    """Written out here: the check refuses the course's own reference as a learner's answer."""
    chain = [entry_id]
    while entries[chain[-1]]["parent"] is not None:
        chain.append(entries[chain[-1]]["parent"])
    return chain


@pytest.mark.parametrize(
    "fn, says",
    [
        (lambda e, i: right_lineage(e, i)[::-1], "from the root"),
        (lambda e, i: right_lineage(e, i)[1:], "leaves out the entry"),
        (lambda e, i: [i, e[i]["parent"]], "follow each entry"),
        (lambda e, i: tuple(right_lineage(e, i)), "list of entry ids"),
    ],
)
def test_lineage_slips_are_named(fn, says):
    assert result(Lineage, right_lineage).outcome is Outcome.CORRECT
    assert result(Lineage, ____).outcome is Outcome.NOT_ATTEMPTED
    verdict = result(Lineage, fn)
    assert verdict.outcome is Outcome.INCORRECT and says in verdict.message, verdict.message


# --- q6: the tolerated latency factor ---------------------------------------------------------


def test_tolerated_factor_needs_its_evidence_and_no_grid_value_passes_by_enumeration():
    reports = {f: lab_rollout(f) for f in LATENCY_FACTORS}
    tolerated = max(f for f, r in reports.items() if not r.halted)
    assert LATENCY_FACTORS[0] <= tolerated < LATENCY_FACTORS[-1]  # an interior answer: the search matters
    right = {"tolerated_factor": tolerated, "slow_share_there": reports[tolerated].stages[-1].slow_share}
    assert result(ToleratedFactor, right).outcome is Outcome.CORRECT
    assert result(ToleratedFactor, {**right, "slow_share_there": ____}).outcome is Outcome.NOT_ATTEMPTED
    for factor, report in reports.items():
        for evidence in (____, None, "0.04", float("nan"), 0.05, report.stages[-1].slow_share):
            verdict = result(ToleratedFactor, {"tolerated_factor": factor, "slow_share_there": evidence})
            honest = evidence is not ____ and evidence == report.stages[-1].slow_share
            assert (verdict.outcome is Outcome.CORRECT) == (honest and factor == tolerated), (factor, evidence)
            assert "raised" not in verdict.message
    lower = {
        "tolerated_factor": LATENCY_FACTORS[0],
        "slow_share_there": reports[LATENCY_FACTORS[0]].stages[-1].slow_share,
    }
    assert "largest factor" in result(ToleratedFactor, lower).message
    assert "LATENCY_FACTORS" in result(ToleratedFactor, {"tolerated_factor": 1.23, "slow_share_there": 0.1}).message


def test_no_rollout_reading_passes_without_the_rolled_back_count(report):
    """Every stage × cause, with the count blank, a guess or of the wrong type: none passes."""
    for stage in ("canary", "wider", "all"):
        for cause in ("errors", "latency"):
            for rolled in (____, None, "500", float("nan"), 0, len(report.choice), report.stages[-1].on_new + 1):
                verdict = result(ReadRollout, {"halted_stage": stage, "halt_cause": cause, "rolled_back": rolled})
                assert verdict.outcome is not Outcome.CORRECT, (stage, cause, rolled)
                assert "raised" not in verdict.message


def _tickets(sd, drop, power=0.8, significance=0.05, *, sides=1, with_power=True, square=True, rounding=math.ceil):
    z = NormalDist().inv_cdf
    n = (z(1 - significance / sides) + (z(power) if with_power else 0)) * sd / drop
    return rounding(n**2 if square else n)


def test_tickets_needed_is_right_and_a_blank_is_not_attempted():
    assert result(TicketsNeeded, _tickets).outcome is Outcome.CORRECT
    assert result(TicketsNeeded, ____).outcome is Outcome.NOT_ATTEMPTED


@pytest.mark.parametrize(
    "fn, says",
    [
        (lambda *a, **k: _tickets(*a, **k, sides=2), "one-sided"),
        (lambda *a, **k: _tickets(*a, **k, with_power=False), "power"),
        (lambda *a, **k: _tickets(*a, **k, square=False), "squared"),
        (lambda *a, **k: _tickets(*a, **k, rounding=float), "round up"),
        (lambda *a, **k: _tickets(*a, **k, rounding=math.floor), "which two z values"),
        (lambda *a, **k: str(_tickets(*a, **k)), "number"),
    ],
)
def test_tickets_needed_slips_are_named(fn, says):
    verdict = result(TicketsNeeded, fn)
    assert verdict.outcome is Outcome.INCORRECT and says in verdict.message, verdict.message
