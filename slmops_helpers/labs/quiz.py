"""Quizzes: five to eight questions per lab on the concepts behind the exercises, read from a
YAML file per lab (``labs/source/quizzes/NN_name.yaml``): the text is data, the checks are here.

A quiz question is an Exercise (same ``check()``, ``hint()`` and ``solution()``), of tier
"quiz", named ``quiz1``, ``quiz2``, ... Two kinds:

* ``Choice``: a letter among four options in ``quizN_answer``, and in ``quizN_reason`` the
  letter of the fact that decides it, among four. A wrong answer gets what is wrong with
  that option (what to reread), never the right letter; the reason is asked only of a
  right answer, so that picking a letter is not the whole task.
* ``Numeric``: a number in ``quizN_answer``, right within ``rtol`` or not: the usual slips
  (``slips``) name the *kind* of mistake; no message says how far off or which way.

Numbers in a question are never typed in the YAML: a question names a value (``value:
fleet_weights_mib``) that the lab's module computes, and its texts may format the same
values (``{fleet_weights_mib:.0f}``; a literal brace is written ``{{``).

``quiz_markdown`` writes a question's text for the lab's notebook, so the text learners
read is the text the check was written against (a test compares them).
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .checks import Outcome, Result, close, incorrect, is_number
from .exercises import Exercise, learner_answer
from .solutions import SOURCE_DIR, source_notebook

__all__ = ["Quiz", "Choice", "Numeric", "quiz_markdown", "validate_quiz", "load_quiz", "quiz_file", "LETTERS"]

LETTERS = ("a", "b", "c", "d")
QUIZ_FOLDER = "quizzes"  # in labs/source/


class Quiz(Exercise):
    """A quiz question: the attributes come from the lab's YAML file (``load_quiz``)."""

    tier = "quiz"
    prompt: str = ""  # the question, in Markdown
    explanation: str = ""  # why the answer is right: printed once it is

    def _right(self) -> Result:
        return Result(Outcome.CORRECT, f"right. {self.explanation}".strip())


def _letter(ns: Mapping[str, Any], var: str, options: Mapping[str, str]) -> str | Result:
    """The learner's letter in ``var`` (PlaceholderError while blank), or an INCORRECT Result."""
    value = learner_answer(ns, var)
    letters = list(options)
    shape = f"one letter among {letters}, as a str such as {letters[0]!r}"
    if not isinstance(value, str):
        return incorrect(f"`{var}` should be {shape}, got {type(value).__name__}.")
    key = value.strip().strip("()").lower()
    return key if key in options else incorrect(f"`{var}` is {value!r}; it should be {shape}.")


class Choice(Quiz):
    """One answer among lettered options, and the fact that decides it."""

    var = None  # reads quizN_answer and quizN_reason from the namespace
    options: ClassVar[dict[str, str]] = {}  # letter -> option text
    answer: str = ""  # the right letter
    why_not: ClassVar[dict[str, str]] = {}  # wrong letter -> what is wrong with it, pointing where to look
    reason_prompt: str = ""  # "Which fact decides it?", in the question's own words
    reason_options: ClassVar[dict[str, str]] = {}
    reason_answer: str = ""
    reason_why_not: str = ""  # for any wrong reason: what a deciding fact must do (never which one it is)

    @property
    def answer_var(self) -> str:
        return f"{self.name}_answer"

    @property
    def reason_var(self) -> str:
        return f"{self.name}_reason"

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        letter = _letter(ns, self.answer_var, self.options)
        reason = _letter(ns, self.reason_var, self.reason_options)  # both asked before any verdict
        if isinstance(letter, Result):
            return letter
        if letter != self.answer:
            return incorrect(f"not ({letter}): {self.why_not[letter]}")
        if isinstance(reason, Result):
            return reason
        if reason != self.reason_answer:
            return incorrect(f"your answer holds, but reason ({reason}) does not decide it: {self.reason_why_not}")
        return self._right()


class Numeric(Quiz):
    """A number, right within ``rtol``; ``slips`` names the usual wrong values by their kind."""

    rtol: float = 0.01
    look_at: str = "Reread the question's numbers and the section it names."
    value_name: str = ""  # the lab's value that is the right answer
    slip_names: ClassVar[dict[str, str]] = {}  # message -> the lab's value a usual mistake gives
    values: ClassVar[Mapping[str, Callable[[], Any]]] = {}  # the lab's computed values

    def expected(self) -> float:
        """The right answer (computed by the lab's module, never typed as a measurement)."""
        return float(self.values[self.value_name]())

    def slips(self) -> dict[str, float]:
        """Message -> the value a usual mistake gives (the message says what kind of mistake)."""
        return {message: float(self.values[name]()) for message, name in self.slip_names.items()}

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
        return incorrect(f"`{name}` is not right. {self.look_at}")


def quiz_markdown(cls: type[Quiz]) -> str:
    """The question's Markdown cell for the lab notebook: heading, prompt and options."""
    number = cls.name.removeprefix("quiz")
    lines = [f"### Quiz {number} · {cls.title}", "", cls.prompt.strip()]
    if issubclass(cls, Choice):
        lines += ["", *[f"- **({letter})** {text}" for letter, text in cls.options.items()]]
        lines += ["", f"**Why?** {cls.reason_prompt.strip()}", ""]
        lines += [f"- **({letter})** {text}" for letter, text in cls.reason_options.items()]
        lines += [
            "",
            f"Set `{cls.name}_answer` to the letter of your answer and `{cls.name}_reason` to the letter of "
            f"the reason, each as a str, then run `{cls.name}.check()`.",
        ]
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
        want_var = None if issubclass(cls, Choice) else f"quiz{i}_answer"
        if cls.name != f"quiz{i}" or cls.var != want_var:
            raise ValueError(f"{where}: name/var should be 'quiz{i}'/{want_var!r}, got {cls.name!r}/{cls.var!r}")
        if not (cls.prompt and cls.explanation and cls.hint_text != Exercise.hint_text):
            raise ValueError(f"{where}: needs a prompt, an explanation and a hint")
        if issubclass(cls, Choice):
            for label, options, answer in (
                ("options", cls.options, cls.answer),
                ("reason options", cls.reason_options, cls.reason_answer),
            ):
                if tuple(options) != LETTERS or answer not in options:
                    raise ValueError(f"{where}: {label} must be lettered {LETTERS} and the answer one of them")
            if set(cls.why_not) != set(cls.options) - {cls.answer}:
                raise ValueError(f"{where}: every option but the answer needs a why_not")
            if not (cls.reason_prompt and cls.reason_why_not):
                raise ValueError(f"{where}: a choice question asks for its reason (reason_prompt, reason_why_not)")


# --- the YAML file ------------------------------------------------------------------------

_CHOICE_KEYS = {"kind", "title", "prompt", "options", "answer", "why_not", "hint", "explanation", "reason"}
_REASON_KEYS = {"prompt", "options", "answer", "why_not"}
_NUMERIC_KEYS = {"kind", "title", "prompt", "value", "slips", "hint", "explanation", "look_at", "rtol"}


def quiz_file(notebook: str) -> Path:
    """The YAML file of the lab whose source notebook is ``notebook`` (``01_introduction.ipynb``)."""
    return source_notebook(notebook).parent / QUIZ_FOLDER / f"{Path(notebook).stem}.yaml"


def _fill(text: str, values: Mapping[str, Callable[[], Any]], where: str) -> str:
    """``text`` with the lab's values formatted in: only those it names are computed."""
    fields = {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(text) if name}
    if unknown := sorted(fields - set(values)):
        raise ValueError(f"{where}: names {unknown}, which the lab's QUIZ_VALUES do not define")
    return text.format(**{name: values[name]() for name in fields})


def _question(entry: Any, i: int, notebook: str, values: Mapping[str, Callable[[], Any]], where: str) -> type[Quiz]:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: each question is a mapping, got {type(entry).__name__}")
    kind = entry.get("kind", "choice")
    allowed = _CHOICE_KEYS if kind == "choice" else _NUMERIC_KEYS if kind == "numeric" else None
    if allowed is None:
        raise ValueError(f"{where}: kind is {kind!r}; use 'choice' or 'numeric'")
    if unknown := sorted(set(entry) - allowed):
        raise ValueError(f"{where}: unknown key(s) {unknown}; a {kind} question has {sorted(allowed)}")
    if missing := sorted(k for k in allowed - {"kind", "rtol", "slips", "look_at"} if k not in entry):
        raise ValueError(f"{where}: missing {missing}")

    def text(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: {key} should be a non-empty text")
        return _fill(value.strip(), values, f"{where}, {key}")

    def lettered(value: Any, key: str) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: {key} should map letters to texts")
        return {str(k): text(v, f"{key}.{k}") for k, v in value.items()}

    attrs: dict[str, Any] = {
        "name": f"quiz{i}",
        "title": text(entry["title"], "title"),
        "prompt": text(entry["prompt"], "prompt"),
        "hint_text": text(entry["hint"], "hint"),
        "explanation": text(entry["explanation"], "explanation"),
        "notebook": notebook,
    }
    if kind == "choice":
        reason = entry["reason"]
        if not isinstance(reason, dict) or set(reason) != _REASON_KEYS:
            raise ValueError(f"{where}: reason should have exactly {sorted(_REASON_KEYS)}")
        attrs |= {
            "options": lettered(entry["options"], "options"),
            "answer": str(entry["answer"]),
            "why_not": lettered(entry["why_not"], "why_not"),
            "reason_prompt": text(reason["prompt"], "reason.prompt"),
            "reason_options": lettered(reason["options"], "reason.options"),
            "reason_answer": str(reason["answer"]),
            "reason_why_not": text(reason["why_not"], "reason.why_not"),
        }
        return type(f"Quiz{notebook[:2]}_{i}", (Choice,), attrs)
    slips = entry.get("slips") or {}
    if unknown := sorted({entry["value"], *slips.values()} - set(values)):
        raise ValueError(f"{where}: value(s) {unknown} are not in the lab's QUIZ_VALUES")
    attrs |= {
        "var": f"quiz{i}_answer",
        "value_name": entry["value"],
        "slip_names": {text(k, "slips"): v for k, v in slips.items()},
        "values": dict(values),
        "rtol": float(entry.get("rtol", Numeric.rtol)),
    }
    if "look_at" in entry:
        attrs["look_at"] = text(entry["look_at"], "look_at")
    return type(f"Quiz{notebook[:2]}_{i}", (Numeric,), attrs)


def load_quiz(notebook: str, values: Mapping[str, Callable[[], Any]] | None = None) -> list[type[Quiz]]:
    """A lab's quiz, read from its YAML file and validated.

    Args:
        notebook: the lab's source notebook name, e.g. "01_introduction.ipynb".
        values: the lab's computed values, by name: numeric answers, usual slips, and the
            numbers its texts format in.
    Raises:
        ValueError: the file is missing, is not a list of questions, or a question is malformed;
            the message names the file and the question.
    """
    path = quiz_file(notebook)
    if not path.exists():
        raise ValueError(f"{path} is missing: a lab's quiz lives in {SOURCE_DIR}/{QUIZ_FOLDER}/<lab>.yaml")
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: should be a list of questions, got {type(entries).__name__}")
    quiz = [
        _question(entry, i, notebook, values or {}, f"{path.name}, question {i}")
        for i, entry in enumerate(entries, start=1)
    ]
    try:
        validate_quiz(quiz)
    except ValueError as err:  # name the file: a class name alone does not say where to fix it
        raise ValueError(f"{path.name}: {err}") from None
    return quiz
