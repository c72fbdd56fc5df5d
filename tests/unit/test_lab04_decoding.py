"""Lab 04's decoding exercises (section 4.7): right answers pass, blanks are "not
attempted", the usual slips are named; the field mask is checked against an independent
reference, and trying the obvious wrong masks never passes."""

from __future__ import annotations

import pytest

from slmops_helpers.decoding.constrained import TicketFormat, _chain
from slmops_helpers.labs import Outcome, Question, ____
from slmops_helpers.labs.lab04.decoding import (
    CODES,
    FIELD_END,
    PLAN,
    TARGET_SPEEDUP,
    TYPED,
    VOCAB,
    DraftPays,
    FieldMask,
    reference_field_tokens,
)


def result(exercise, value):
    namespace = value if exercise.var is None else {exercise.var: value}
    return Question(exercise(), namespace).result()


def right_tokens_per_round(a, gamma):
    return sum(a**i for i in range(gamma + 1))


def right_speedup(a, gamma, draft_ms, target_ms, verify_ms):
    return right_tokens_per_round(a, gamma) * target_ms / (gamma * draft_ms + verify_ms)


RIGHT_RATIO = (
    right_tokens_per_round(PLAN["acceptance"], PLAN["gamma"]) / TARGET_SPEEDUP - PLAN["verify_ratio"]
) / PLAN["gamma"]
RIGHT = {"tokens_per_round": right_tokens_per_round, "speedup": right_speedup, "max_draft_ratio": RIGHT_RATIO}


def test_the_cost_model_right_answer_passes_and_blanks_are_not_attempted():
    assert 0.1 < RIGHT_RATIO < 0.2  # the lesson: the draft must cost well under a fifth of the target
    assert result(DraftPays, RIGHT).outcome is Outcome.CORRECT
    assert result(DraftPays, {**RIGHT, "max_draft_ratio": ____}).outcome is Outcome.NOT_ATTEMPTED
    assert result(DraftPays, {}).outcome is Outcome.NOT_ATTEMPTED


@pytest.mark.parametrize(
    "slip, says",
    [
        ({"tokens_per_round": lambda a, g: sum(a**i for i in range(1, g + 1))}, "adds itself"),
        ({"tokens_per_round": lambda a, g: 1 + a * g}, "first rejected guess"),
        ({"speedup": lambda a, g, d, t, v: right_tokens_per_round(a, g) * t / (g * d + t)}, "verify_ms"),
        ({"speedup": lambda a, g, d, t, v: right_tokens_per_round(a, g) * t / (g * d)}, "speedup("),
        ({"max_draft_ratio": RIGHT_RATIO * 4}, "solve for draft_ms"),
        ({"max_draft_ratio": "0.16"}, "max_draft_ratio"),
    ],
)
def test_the_cost_model_slips_are_named(slip, says):
    verdict = result(DraftPays, {**RIGHT, **slip})
    assert verdict.outcome is Outcome.INCORRECT and says in verdict.message, verdict.message


def test_the_reference_mask_agrees_with_the_course_automaton():
    # The course's TicketFormat on the field alone, over the exercise's vocabulary, must allow what the
    # exercise's plain-Python reference allows; two independent implementations of one rule.
    texts = [t for t in VOCAB]
    field = TicketFormat([*texts, "<end>"], {len(texts)}, _chain([CODES, [FIELD_END]]))
    for typed in TYPED:
        ours = {int(i) for i in field.allowed(field.follow(typed))}
        # the automaton lets a token run on past the line's end (the reply is free); the exercise stops there
        ours = {i for i in ours if FIELD_END not in texts[i] or texts[i].endswith(FIELD_END)}
        assert ours == reference_field_tokens(typed), typed


def _right_mask(typed, vocab):
    lines = [c + FIELD_END for c in CODES]
    return [i for i, t in enumerate(vocab) if t and any(line.startswith(typed + t) for line in lines)]


def test_the_field_mask_right_answer_passes():
    assert result(FieldMask, _right_mask).outcome is Outcome.CORRECT
    assert result(FieldMask, ____).outcome is Outcome.NOT_ATTEMPTED


@pytest.mark.parametrize(
    "mask, says",
    [
        (lambda typed, vocab: [i for i, t in enumerate(vocab) if len(t) == 1 and _ok(typed, t)], "forbids"),
        (lambda typed, vocab: [i for i, t in enumerate(vocab) if _ok(typed, t.rstrip("\n"))], "wrongly"),
        (
            lambda typed, vocab: [i for i, t in enumerate(vocab) if t and any(c.startswith(typed + t) for c in CODES)],
            "forbids",
        ),
        (lambda typed, vocab: _right_mask(typed, vocab) + [0], "empty"),
        (lambda typed, vocab: range(len(vocab)), "empty"),  # everything allowed
        (lambda typed, vocab: [], "forbids"),  # nothing allowed
        (lambda typed, vocab: "E", "ints"),
    ],
)
def test_the_field_mask_slips_never_pass(mask, says):
    verdict = result(FieldMask, mask)
    assert verdict.outcome is Outcome.INCORRECT and says in verdict.message, verdict.message


def _ok(typed, text):
    return bool(text) and any((c + FIELD_END).startswith(typed + text) for c in CODES)
