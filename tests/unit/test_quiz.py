"""Every lab's quiz: read from its YAML file; blank is "not attempted", the solution is right,
every wrong option and every wrong reason is wrong with a message saying what to look at,
numbers are right or wrong without a distance, and the quizzes do not leak their answers
through the position or the length of the right option."""

from __future__ import annotations

import importlib
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from slmops_helpers import fleet
from slmops_helpers.labs import Outcome, Question, ____
from slmops_helpers.labs.quiz import LETTERS, Choice, Numeric, load_quiz, quiz_file, quiz_markdown, validate_quiz
from slmops_helpers.labs.solutions import solution_code, source_notebook

LABS = {n: importlib.import_module(f"slmops_helpers.labs.lab0{n}") for n in range(1, 6)}
QUESTIONS = [cls for lab in LABS.values() for cls in lab.QUIZ]
CHOICES = [c for c in QUESTIONS if issubclass(c, Choice)]
NUMERICS = [c for c in QUESTIONS if issubclass(c, Numeric)]
ids = {"ids": lambda c: f"{c.notebook[:2]}.{c.name}"}


RIGHT = object()  # the right reason, for a test about the answer's letter


def result(cls, value, reason=RIGHT):
    """Check an answer: a choice reads its letter and its reason from the namespace."""
    if issubclass(cls, Choice):
        reason = cls.reason_answer if reason is RIGHT else reason
        return Question(cls(), {f"{cls.name}_answer": value, f"{cls.name}_reason": reason}).result()
    return Question(cls(), {cls.var: value}).result()


def solved(cls) -> dict:
    """The namespace the solution block in the lab's source notebook leaves."""
    namespace = {"np": np, "torch": torch, "math": math, "fleet": fleet}
    exec(solution_code(cls.notebook, cls.name), namespace)
    return namespace


@pytest.mark.parametrize("n", sorted(LABS))
def test_every_lab_has_a_quiz_of_five_to_eight_valid_questions_read_from_its_file(n):
    quiz = LABS[n].QUIZ
    assert 5 <= len(quiz) <= 8
    validate_quiz(quiz)
    assert {cls.tier for cls in quiz} == {"quiz"}
    assert quiz_file(quiz[0].notebook).exists()


@pytest.mark.parametrize("cls", QUESTIONS, **ids)
def test_blank_is_not_attempted_and_the_solution_is_right(cls):
    assert Question(cls(), {}).result().outcome is Outcome.NOT_ATTEMPTED
    assert result(cls, ____).outcome is Outcome.NOT_ATTEMPTED
    namespace = solved(cls)
    right = Question(cls(), namespace).result() if issubclass(cls, Choice) else result(cls, namespace[cls.var])
    assert right.outcome is Outcome.CORRECT, right.message
    assert len(right.message) > 20, "a right answer is told why it is right"


@pytest.mark.parametrize("cls", CHOICES, **ids)
def test_every_wrong_option_says_what_is_wrong_with_it(cls):
    for letter in cls.options:
        got = result(cls, letter.upper() if letter == "a" else f" {letter} ")
        assert (got.outcome is Outcome.CORRECT) == (letter == cls.answer), (letter, got.message)
        if letter != cls.answer:
            assert cls.why_not[letter] in got.message and f"({cls.answer})" not in got.message


@pytest.mark.parametrize("cls", CHOICES, **ids)
def test_the_right_letter_needs_the_right_reason(cls):
    assert result(cls, cls.answer, ____).outcome is Outcome.NOT_ATTEMPTED, "a blank reason is not a verdict"
    for reason in cls.reason_options:
        got = result(cls, cls.answer, reason)
        assert (got.outcome is Outcome.CORRECT) == (reason == cls.reason_answer), (reason, got.message)
        if reason != cls.reason_answer:
            assert cls.reason_why_not in got.message and f"({cls.reason_answer})" not in got.message


@pytest.mark.parametrize("cls", CHOICES, **ids)
def test_a_wrong_letter_is_judged_before_the_reason_and_needs_a_reason_too(cls):
    wrong = next(letter for letter in LETTERS if letter != cls.answer)
    assert result(cls, wrong, ____).outcome is Outcome.NOT_ATTEMPTED, "both are asked before any verdict"
    assert cls.why_not[wrong] in result(cls, wrong, "b").message


@pytest.mark.parametrize("cls", NUMERICS, **ids)
def test_every_usual_slip_is_named_and_a_far_miss_says_only_where_to_look(cls):
    question = cls()
    slips = question.slips()
    assert slips, "a numeric question names at least one usual slip"
    for message, value in slips.items():
        got = result(cls, value)
        assert got.outcome is Outcome.INCORRECT and got.message == message
    want = question.expected()
    # a far miss that is no usual slip (a slip's own value may happen to lie 3× away)
    far_value = next(
        v for v in (want * k + 7 for k in (3, 4.5, 6)) if all(abs(v - s) > 0.1 * abs(s) for s in slips.values())
    )
    far, near = result(cls, far_value), result(cls, want * 1.3 + 0.5)
    assert far.outcome is near.outcome is Outcome.INCORRECT and question.look_at in far.message
    assert far.message == near.message, "a miss must not say how far off or which way"


@pytest.mark.parametrize("cls", QUESTIONS, **ids)
@pytest.mark.parametrize(
    "bad",
    [None, "twelve", [1, 2, 3], float("nan"), {"a": 1}, torch.tensor([1.0, 2.0]), torch.tensor(1.0, device="meta")],
    ids=["None", "str", "list", "nan", "dict", "tensor", "meta-tensor"],
)
def test_bad_input_is_incorrect_with_the_expected_kind_named(cls, bad):
    if issubclass(cls, Choice) and isinstance(bad, str):
        bad = "z"  # a str that is no option
    for got in [result(cls, bad)] + ([result(cls, cls.answer, bad)] if issubclass(cls, Choice) else []):
        assert got.outcome is Outcome.INCORRECT
        assert ("letter" if issubclass(cls, Choice) else "number") in got.message
        assert "raised" not in got.message, "a bad answer is described, not a traceback"


@pytest.mark.parametrize("cls", QUESTIONS, **ids)
def test_the_notebook_shows_the_question_the_check_was_written_for(cls):
    cells = json.loads(source_notebook(cls.notebook).read_text())["cells"]
    texts = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    assert quiz_markdown(cls) in texts, f"{cls.notebook} shows an old {cls.name}: rewrite its quiz cells"


@pytest.mark.parametrize("n", sorted(LABS))
def test_the_quiz_comes_after_the_exercises_and_before_the_progress_table(n):
    lab = LABS[n]
    cells = json.loads(source_notebook(lab.QUIZ[0].notebook).read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    last_exercise = max(i for i, s in enumerate(code) if f"{lab.EXERCISES[-1].name}.check()" in s)
    first_quiz = min(i for i, s in enumerate(code) if "quiz1.check()" in s)
    progress = min(i for i, s in enumerate(code) if "progress(globals())" in s)
    assert last_exercise < first_quiz < progress
    assert any("EXERCISES + QUIZ" in s for s in code), "the quiz is bound with the exercises"


# --- no leak through position or length ---------------------------------------------------


def _option_sets():
    """(question, options, right letter) for every answer and every reason of every choice question."""
    for cls in CHOICES:
        yield cls, cls.options, cls.answer
        yield cls, cls.reason_options, cls.reason_answer


def test_right_answers_are_spread_over_a_b_c_d():
    for label, letters in (
        ("answers", [c.answer for c in CHOICES]),
        ("reasons", [c.reason_answer for c in CHOICES]),
    ):
        counts = Counter(letters)
        assert set(counts) == set(LETTERS) and max(counts.values()) - min(counts.values()) <= 3, (label, counts)
    for n, lab in LABS.items():
        letters = Counter(c.answer for c in lab.QUIZ if issubclass(c, Choice))
        assert max(letters.values()) <= 2 + len(letters) // 4, f"lab {n}'s right answers pile up: {letters}"


def test_always_picking_the_longest_option_is_no_strategy():
    longest = [
        max(options, key=lambda k: len(options[k])) == right
        and sorted(map(len, options.values()))[-2] < len(options[right])
        for _, options, right in _option_sets()
    ]
    assert sum(longest) / len(longest) <= 0.30, f"the right option is the longest in {sum(longest)} of {len(longest)}"


def test_no_length_rank_is_a_strategy_either():
    """Longest, second, third or shortest: no rule by length finds the right option much above chance."""
    ranks = Counter(
        sorted(options, key=lambda k: -len(options[k])).index(right) for _, options, right in _option_sets()
    )
    total = sum(ranks.values())
    assert all(ranks[r] / total <= 0.35 for r in range(4)), ranks


@pytest.mark.parametrize("cls", CHOICES, **ids)
def test_options_are_of_similar_length(cls):
    for options in (cls.options, cls.reason_options):
        lengths = [len(text) for text in options.values()]
        assert max(lengths) <= 1.8 * min(lengths), (cls.name, lengths)


# --- the YAML file: a malformed question is refused with a message naming it ----------------


def _write(tmp_path, monkeypatch, text: str) -> None:
    folder = tmp_path / "quizzes"
    folder.mkdir()
    (folder / "99_lab.yaml").write_text(text)
    monkeypatch.setattr("slmops_helpers.labs.quiz.source_notebook", lambda name: tmp_path / name)


GOOD = """
- title: T
  prompt: P
  options: {a: one one, b: two two, c: three, d: four four}
  answer: c
  why_not: {a: x, b: y, d: z}
  reason: {prompt: Why, options: {a: r1, b: r2, c: r3, d: r4}, answer: a, why_not: look again}
  hint: H
  explanation: E
"""


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda s: s.replace("  hint: H\n", ""), "missing ['hint']"),
        (lambda s: s.replace("  hint: H", "  hint: H\n  colour: red"), "unknown key(s) ['colour']"),
        (lambda s: s.replace("answer: c", "answer: e"), "the answer one of them"),
        (lambda s: s.replace(", d: z}", "}"), "needs a why_not"),
        (lambda s: s.replace("why_not: look again", "why: look again"), "reason should have exactly"),
        (lambda s: s.replace("prompt: P", "prompt: P {unknown_value}"), "do not define"),
        (lambda s: s.replace("kind", "kind") + "- kind: essay\n", "kind is 'essay'"),
    ],
)
def test_a_malformed_quiz_file_is_refused_naming_the_file_and_question(tmp_path, monkeypatch, change, says):
    _write(tmp_path, monkeypatch, change(GOOD))
    with pytest.raises(ValueError, match="99_lab.yaml") as err:
        load_quiz("99_lab.ipynb")
    assert says in str(err.value)


def test_a_well_formed_quiz_file_loads(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch, GOOD)
    (question,) = load_quiz("99_lab.ipynb")
    assert issubclass(question, Choice) and question.answer == "c" and question.reason_answer == "a"
