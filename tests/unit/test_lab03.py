"""Lab 03's checks: right answers pass, typical mistakes are caught with a useful message."""

from __future__ import annotations

import pytest

from slmops_helpers.labs import Outcome, Question
from slmops_helpers.labs.lab03 import CountLoraParams, LoraForward, MergeLora, PickTargets


def outcome(exercise, value):
    result = Question(exercise(), {exercise.var: value}).result()
    return result.outcome, result.message


def right_forward(x, weight, bias, A, B, alpha):
    return x @ weight.T + bias + (alpha / A.shape[0]) * (x @ A.T @ B.T)


@pytest.mark.parametrize(
    "forward, ok",
    [
        (right_forward, True),
        (lambda x, w, b, A, B, alpha: x @ w.T + b + alpha * (x @ A.T @ B.T), False),  # forgot / r
        (lambda x, w, b, A, B, alpha: x @ w.T + b, False),  # no adapter path
        (lambda x, w, b, A, B, alpha: (x @ w.T + b).tolist(), False),  # not a tensor
    ],
)
def test_lora_forward_is_checked_against_peft(forward, ok):
    got, message = outcome(LoraForward, forward)
    assert (got is Outcome.CORRECT) == ok, message


def test_count_catches_a_missing_layer_factor():
    assert outcome(CountLoraParams, lambda s, n, r, t: n * sum(r * sum(s[x]) for x in t))[0] is Outcome.CORRECT
    got, _ = outcome(CountLoraParams, lambda s, n, r, t: sum(r * sum(s[x]) for x in t))
    assert got is Outcome.INCORRECT


@pytest.mark.parametrize(
    "targets, ok, says",
    [
        (["q_proj", "v_proj", "down_proj"], True, ""),
        (["k_proj", "v_proj", "up_proj"], True, ""),
        (["q_proj", "k_proj", "v_proj", "o_proj"], False, "MLP"),
        (["gate_proj", "up_proj"], False, "budget"),
        (["down_proj"], False, "attention"),
        (["q_prj"], False, "not linear layers"),
        (["q_proj", "q_proj", "down_proj"], False, "twice"),
        ("q_proj", False, "list"),
    ],
)
def test_pick_targets_enforces_budget_and_coverage(targets, ok, says):
    got, message = outcome(PickTargets, targets)
    assert (got is Outcome.CORRECT) == ok, message
    assert says in message


def test_merge_is_checked_against_peft():
    assert outcome(MergeLora, lambda w, A, B, alpha: w + alpha / A.shape[0] * (B @ A))[0] is Outcome.CORRECT
    assert outcome(MergeLora, lambda w, A, B, alpha: w + alpha * (B @ A))[0] is Outcome.INCORRECT
    assert outcome(MergeLora, lambda w, A, B, alpha: w + (A.T @ B.T))[0] is Outcome.INCORRECT
