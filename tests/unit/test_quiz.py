"""Every lab's quiz: blank is "not attempted", the solution is right, every wrong option and
every usual slip is wrong with a message saying what to look at, and bad input never crashes."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest
import torch

from slmops_helpers import fleet
from slmops_helpers.labs import Outcome, Question, ____
from slmops_helpers.labs.quiz import Choice, Numeric, quiz_markdown, validate_quiz
from slmops_helpers.labs.solutions import solution_code, source_notebook

LABS = {n: importlib.import_module(f"slmops_helpers.labs.lab0{n}") for n in range(1, 6)}
QUESTIONS = [cls for lab in LABS.values() for cls in lab.QUIZ]
ids = {"ids": lambda c: f"{c.notebook[:2]}.{c.name}"}


def result(cls, value):
    return Question(cls(), {cls.var: value}).result()


def solved(cls):
    """The learner's answer as the solution block in the lab's source notebook computes it."""
    namespace = {"np": np, "torch": torch, "math": math, "fleet": fleet}
    exec(solution_code(cls.notebook, cls.name), namespace)
    return namespace[cls.var]


@pytest.mark.parametrize("n", sorted(LABS))
def test_every_lab_has_a_quiz_of_five_to_eight_valid_questions(n):
    quiz = LABS[n].QUIZ
    assert 5 <= len(quiz) <= 8
    validate_quiz(quiz)
    assert {cls.tier for cls in quiz} == {"quiz"}


@pytest.mark.parametrize("cls", QUESTIONS, **ids)
def test_blank_is_not_attempted_and_the_solution_is_right(cls):
    assert result(cls, ____).outcome is Outcome.NOT_ATTEMPTED
    right = result(cls, solved(cls))
    assert right.outcome is Outcome.CORRECT, right.message
    assert len(right.message) > 20, "a right answer is told why it is right"


@pytest.mark.parametrize("cls", [c for c in QUESTIONS if issubclass(c, Choice)], **ids)
def test_every_wrong_option_says_what_is_wrong_with_it(cls):
    for letter in cls.options:
        got = result(cls, letter.upper() if letter == "a" else f" {letter} ")
        assert (got.outcome is Outcome.CORRECT) == (letter == cls.answer), (letter, got.message)
        if letter != cls.answer:
            assert cls.why_not[letter] in got.message and cls.answer not in got.message.split(":")[0]


@pytest.mark.parametrize("cls", [c for c in QUESTIONS if issubclass(c, Numeric)], **ids)
def test_every_usual_slip_is_named_and_a_far_miss_says_where_to_look(cls):
    question = cls()
    slips = question.slips()
    assert slips, "a numeric question names at least one usual slip"
    for message, value in slips.items():
        got = result(cls, value)
        assert got.outcome is Outcome.INCORRECT and got.message == message
    far = result(cls, question.expected() * 3 + 7)
    assert far.outcome is Outcome.INCORRECT and question.look_at in far.message


@pytest.mark.parametrize("cls", QUESTIONS, **ids)
@pytest.mark.parametrize(
    "bad",
    [None, "twelve", [1, 2, 3], float("nan"), {"a": 1}, torch.tensor([1.0, 2.0]), torch.tensor(1.0, device="meta")],
    ids=["None", "str", "list", "nan", "dict", "tensor", "meta-tensor"],
)
def test_bad_input_is_incorrect_with_the_expected_kind_named(cls, bad):
    if issubclass(cls, Choice) and isinstance(bad, str):
        bad = "z"  # a str that is no option
    got = result(cls, bad)
    assert got.outcome is Outcome.INCORRECT
    assert ("letter" if issubclass(cls, Choice) else "number") in got.message
    assert "raised" not in got.message, "a bad answer is described, not a traceback"


@pytest.mark.parametrize("cls", QUESTIONS, **ids)
def test_the_notebook_shows_the_question_the_check_was_written_for(cls):
    cells = json.loads(source_notebook(cls.notebook).read_text())["cells"]
    texts = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    assert quiz_markdown(cls) in texts, f"run the quiz generator: {cls.notebook} shows an old {cls.name}"


@pytest.mark.parametrize("n", sorted(LABS))
def test_the_quiz_comes_after_the_exercises_and_before_the_progress_table(n):
    lab = LABS[n]
    cells = json.loads(source_notebook(lab.QUIZ[0].notebook).read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    checks = [i for i, s in enumerate(code) for line in s.split("\n") if line.endswith(".check()")]
    order = [s for s in code for line in s.split("\n") if line.endswith(".check()")]
    last_exercise = max(i for i, s in enumerate(code) if f"{lab.EXERCISES[-1].name}.check()" in s)
    first_quiz = min(i for i, s in enumerate(code) if "quiz1.check()" in s)
    progress = min(i for i, s in enumerate(code) if "progress(globals())" in s)
    assert last_exercise < first_quiz < progress and checks and order
    assert any("EXERCISES + QUIZ" in s for s in code), "the quiz is bound with the exercises"
