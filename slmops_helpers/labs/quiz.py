"""Quizzes: five to eight questions per lab on the concepts behind the exercises.

A quiz question is an Exercise (same ``check()``, ``hint()`` and ``solution()``), of
tier "quiz", named ``quiz1``, ``quiz2``, ... with the learner's answer in
``quiz1_answer``. Two kinds:

* ``Choice``: one letter among ``options``. A wrong letter gets the reason that option
  is wrong (what to reread), never the right letter; a right one gets the explanation.
* ``Numeric``: a number, compared within ``rtol``; the usual slips (``slips()``) are
  named, other misses get how far off they are and what to reread.

``quiz_markdown`` writes a question's text for the lab's notebook, so the text learners
read is the text the check was written against (a test compares them).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from .checks import Outcome, Result, close, incorrect, is_number
from .exercises import Exercise

__all__ = ["Quiz", "Choice", "Numeric", "quiz_markdown"]


class Quiz(Exercise):
    """A quiz question: subclass Choice or Numeric and set ``prompt`` and ``explanation``."""

    tier = "quiz"
    prompt: str = ""  # the question, in Markdown
    explanation: str = ""  # why the answer is right: printed once it is

    def _right(self) -> Result:
        return Result(Outcome.CORRECT, f"right. {self.explanation}".strip())


class Choice(Quiz):
    """One answer among lettered options."""

    options: ClassVar[dict[str, str]] = {}  # letter -> option text
    answer: str = ""  # the right letter
    why_not: ClassVar[dict[str, str]] = {}  # wrong letter -> what is wrong with it, pointing where to look

    def check_value(self, value: Any) -> Result | None:
        letters = list(self.options)
        shape = f"one letter among {letters}, as a str such as {letters[0]!r}"
        if not isinstance(value, str):
            return incorrect(f"`{self.var}` should be {shape}, got {type(value).__name__}.")
        key = value.strip().strip("()").lower()
        if key not in self.options:
            return incorrect(f"`{self.var}` is {value!r}; it should be {shape}.")
        if key != self.answer:
            return incorrect(f"not ({key}): {self.why_not[key]}")
        return self._right()


class Numeric(Quiz):
    """A number, right within ``rtol``; ``slips()`` names the usual wrong values."""

    rtol: float = 0.01
    look_at: str = "Reread the question's numbers and the section it names."
    unit: str = ""  # shown in the message when the value is missing its unit conversion

    def expected(self) -> float:
        """The right answer (computed, never typed as a measurement)."""
        raise NotImplementedError(f"{type(self).__name__} must implement expected")

    def slips(self) -> dict[str, float]:
        """Message -> the value a usual mistake gives (the message says what to look at)."""
        return {}

    def check_value(self, value: Any) -> Result | None:
        name = self.var or self.name
        if wrong := is_number(value, name=name):
            return incorrect(f"{wrong.message}; write one number (int or float).")
        if not math.isfinite(float(value)):
            return incorrect(f"`{name}` is {value}: it should be a finite number.")
        want = self.expected()
        if close(value, want, rtol=self.rtol, atol=0, name=name) is None:
            return self._right()
        for message, slip in self.slips().items():
            if close(value, slip, rtol=self.rtol, atol=0) is None and close(slip, want, rtol=self.rtol) is not None:
                return incorrect(message)
        miss = close(value, want, rtol=self.rtol, atol=0, name=name)
        return incorrect(f"{miss.message if miss else name}. {self.look_at}")


def quiz_markdown(cls: type[Quiz]) -> str:
    """The question's Markdown cell for the lab notebook: heading, prompt and options."""
    number = cls.name.removeprefix("quiz")
    lines = [f"### Quiz {number} · {cls.title}", "", cls.prompt.strip()]
    if issubclass(cls, Choice):
        lines += ["", *[f"- **({letter})** {text}" for letter, text in cls.options.items()]]
        lines += ["", f"Set `{cls.var}` to the letter of your answer, as a str, then run `{cls.name}.check()`."]
    else:
        lines += ["", f"Set `{cls.var}` to your number, then run `{cls.name}.check()`."]
    return "\n".join(lines)


def validate_quiz(quiz: list[type[Quiz]]) -> None:
    """Raise ValueError for a quiz that cannot work: names, letters, missing reasons.

    Args:
        quiz: a lab's QUIZ list.
    """
    for i, cls in enumerate(quiz, start=1):
        where = f"{cls.__name__}"
        if cls.name != f"quiz{i}" or cls.var != f"quiz{i}_answer":
            raise ValueError(f"{where}: name/var should be 'quiz{i}'/'quiz{i}_answer', got {cls.name!r}/{cls.var!r}")
        if not (cls.prompt and cls.explanation and cls.hint_text != Exercise.hint_text):
            raise ValueError(f"{where}: needs a prompt, an explanation and a hint")
        if issubclass(cls, Choice):
            if cls.answer not in cls.options or set(cls.why_not) != set(cls.options) - {cls.answer}:
                raise ValueError(f"{where}: the answer must be an option, and every other option needs a why_not")
