"""Exercises and the questions learners call: ``q1.check()``, ``q1.hint()``, ``q1.solution()``,
bound into a notebook by ``bind_exercises``; ``progress`` prints the table of outcomes."""

from __future__ import annotations

import ast
import contextvars
import functools
import inspect
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from .artifacts import inputs_stamp
from .checks import Outcome, PlaceholderError, Result, ____, incorrect
from .own_work import CourseCodeUsedError, refusal, twin_reached, watching
from .solutions import solution_code

__all__ = ["TIERS", "Exercise", "Question", "bind_exercises", "progress", "learner_answer"]

TIERS = ("warm-up", "core", "stretch", "quiz")  # quiz: the questions of quiz.py


class Exercise:
    """One question of a lab: subclass it, set the attributes, implement check_value."""

    name: str = ""  # how learners call it: "q1"
    title: str = ""  # shown in the progress table
    tier: str = "core"  # one of TIERS
    hint_text: str = "No hint for this one: reread the explanation above the cell."
    # The lab's source notebook, a file name in labs/source/ (or a path): q1.solution() shows
    # the solution block(s) of its cell that calls q1.check(), so the answer is written once.
    notebook: str | Path | None = None
    var: str | None = None  # learner's variable/function; None: the whole namespace
    # The course's own implementations of what the learner writes: a learner's function that
    # reaches one (by name, alias, import or at run time) is refused, "write it yourself".
    course_twins: ClassVar[tuple[Callable[..., Any], ...]] = ()
    # True for an exercise on the real tools and the course model: its check reads what the
    # learner's cell made (files, an adapter, a package, an exit code), and takes seconds.
    real_tools: ClassVar[bool] = False

    @classmethod
    def artifact_inputs(cls) -> tuple[str, ...] | None:
        """The learner's names a real-tool check reads (its ``learner_answer(ns, "...")`` calls), or
        None when its verdict must not be reused: not a real-tool exercise, or it reads the
        namespace another way (an object in memory can change without a sign)."""
        if not cls.real_tools:
            return None
        source = inspect.getsource(cls)
        if "ns.get(" in source or "ns[" in source:
            return None
        return tuple(sorted(set(re.findall(r'learner_answer\(ns, "(\w+)"\)', source)))) or None

    def check_value(self, value: Any) -> Result | None:
        """Judge the learner's answer.

        Args:
            value: the object named ``var``. A function arrives wrapped so that
                a ``____`` left in it makes the question "not attempted".
        Returns:
            None (or a CORRECT Result) when right; otherwise an INCORRECT Result
            naming the variable and what to look at next, never the answer.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement check_value")


class _LearnerError(Exception):
    """An exception raised inside the learner's own function, already described."""


# The twins of the exercise being checked, for the learner functions it reads (see own_work).
_TWINS: contextvars.ContextVar[tuple[Callable[..., Any], ...]] = contextvars.ContextVar("twins", default=())


def _refuse_twins(func: Callable[..., Any]) -> None:
    """Raise _LearnerError when the learner's function reaches the course's own implementation."""
    if (twin := twin_reached(func, _TWINS.get())) is not None:
        raise _LearnerError(f"`{func.__name__}`: {refusal(twin)}.")


def _is_blank_statement(stmt: ast.stmt) -> bool:
    """True for `pass`, `...`, `____`, `return`, `return ____` and docstrings."""
    if isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Return) and stmt.value is None):
        return True
    value = stmt.value if isinstance(stmt, (ast.Expr, ast.Return)) else None
    if isinstance(value, ast.Constant):
        return value.value is ... or (isinstance(stmt, ast.Expr) and isinstance(value.value, str))
    return isinstance(value, ast.Name) and value.id == "____"


def _has_blank_body(func: Callable[..., Any]) -> bool:
    """True when a function's body is only blanks (a body of `pass` returns None, not ____)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return False  # no source (e.g. made by exec): calling it is the only test left
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False  # a lambda: calling it tells whether it returns ____
    return all(_is_blank_statement(stmt) for stmt in node.body)


def _guard(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a learner's function so a check can tell "blank" and "crashed" from "wrong"."""

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            with watching(_TWINS.get()):
                out = func(*args, **kwargs)
        except PlaceholderError:
            raise  # ____ left in the body: "not attempted", not a crash
        except CourseCodeUsedError as err:
            raise _LearnerError(f"`{func.__name__}`: {err}.") from None
        except Exception as exc:
            raise _LearnerError(f"calling `{func.__name__}` raised {type(exc).__name__}: {exc}") from exc
        if out is ____:
            raise PlaceholderError(f"`{func.__name__}` still returns ____")
        return out

    return guarded


_ICONS = {Outcome.CORRECT: "✅", Outcome.INCORRECT: "❌", Outcome.NOT_ATTEMPTED: "⏳"}


class Question:
    """What learners call: ``q1.check()``, ``q1.hint()``, ``q1.solution()``.

    Args:
        exercise: the exercise to check.
        namespace: the notebook's ``globals()``, read at every check.
    """

    def __init__(self, exercise: Exercise, namespace: Mapping[str, Any]) -> None:
        self.exercise, self._namespace = exercise, namespace
        self.name, self.tier, self.title = exercise.name, exercise.tier, exercise.title
        self._inputs = exercise.artifact_inputs()
        self._verdicts: dict[str, Result] = {}  # a real-tool check's verdicts, by what it read

    def __repr__(self) -> str:
        title = f": {self.title}" if self.title else ""
        return (
            f"{self.name} ({self.tier}){title} — call {self.name}.check(), {self.name}.hint() or {self.name}.solution()"
        )

    def _blank(self) -> Result:
        var = self.exercise.var
        where = f"the cell that defines `{var}`" if var else "this question's cells"
        return Result(Outcome.NOT_ATTEMPTED, f"replace ____ in {where}, then run {self.name}.check() again")

    def result(self) -> Result:
        """Check the learner's current answer and return the verdict without printing.

        A real-tool check measures the learner's artifacts again (seconds to a minute); asked
        again about the same files and values (the learner's check, an instructor's assert, the
        progress table), it gives the verdict it gave. A changed file or value is checked anew."""
        key = None
        if self._inputs is not None and all(name in self._namespace for name in self._inputs):
            key = inputs_stamp({name: self._namespace[name] for name in self._inputs})
        if key is not None and key in self._verdicts:
            return self._verdicts[key]
        verdict = self._result()
        if key is not None and verdict.outcome is not Outcome.NOT_ATTEMPTED:
            self._verdicts[key] = verdict
        return verdict

    def _result(self) -> Result:
        var = self.exercise.var
        if var is not None and var not in self._namespace:
            return Result(
                Outcome.NOT_ATTEMPTED,
                f"`{var}` is not defined yet — run the cell that defines it, then run {self.name}.check() again",
            )
        value = self._namespace if var is None else self._namespace[var]
        if value is ____ or (inspect.isfunction(value) and _has_blank_body(value)):
            return self._blank()
        token = _TWINS.set(tuple(self.exercise.course_twins))
        try:
            if inspect.isfunction(value):
                _refuse_twins(value)
                value = _guard(value)
            verdict = self.exercise.check_value(value)
        except PlaceholderError:
            return self._blank()
        except _LearnerError as err:
            return incorrect(str(err))
        except TypeError as exc:
            if "not callable" not in str(exc):
                return incorrect(
                    f"checking `{var or self.name}` raised TypeError: {exc} — is it the right kind of value?"
                )
            what = (
                f"`{var}` should be a function (define it with `def {var}(...)`)"
                if var
                else "a name it calls should be a function"
            )
            got = type(self._namespace[var]).__name__ if var else str(exc)
            return incorrect(f"{what}, got {got}.")
        except Exception as exc:  # the value is not the kind the check expects
            return incorrect(
                f"checking `{var or self.name}` raised {type(exc).__name__}: {exc} — is it the right kind of value?"
            )
        finally:
            _TWINS.reset(token)
        return verdict or Result(Outcome.CORRECT, "well done.")

    def check(self) -> None:
        """Print whether the current answer is correct, and what to do next."""
        result = self.result()
        label = f"{self.name} ({self.tier})" if result.outcome is Outcome.CORRECT else self.name
        print(f"{_ICONS[result.outcome]} {label}: {result.outcome.value} — {result.message}")

    def hint(self) -> None:
        """Print a hint for this question."""
        print(f"💡 {self.name} hint: {self.exercise.hint_text}")

    def solution(self) -> None:
        """Print the solution: this question's solution block(s) in the lab's source notebook.

        Raises:
            SolutionNotFoundError: the notebook or the block cannot be found.
        """
        print(f"🔑 {self.name} solution:\n{solution_code(self.exercise.notebook, self.name)}")

    def _assert(self, wanted: Outcome) -> None:
        result = self.result()
        if result.outcome is not wanted:
            raise AssertionError(f"{self.name}: expected {wanted.value}, got {result.outcome.value} — {result.message}")

    def assert_correct(self) -> None:
        """For instructor self-test cells: raise AssertionError unless correct."""
        self._assert(Outcome.CORRECT)

    def assert_not_attempted(self) -> None:
        """For instructor self-test cells: raise AssertionError unless not attempted."""
        self._assert(Outcome.NOT_ATTEMPTED)


def bind_exercises(namespace: dict[str, Any], exercises: Iterable[type[Exercise]]) -> None:
    """Create ``q1``, ``q2``, ... in the notebook namespace, one per exercise class.

    Args:
        namespace: the notebook's ``globals()``; questions read answers from it.
        exercises: the exercise classes, each with a unique ``name``.
    Raises:
        ValueError: a missing or repeated name, or an unknown tier.
    """
    classes = list(exercises)
    names = [cls.name for cls in classes]
    for cls in classes:  # validate everything first, so a bad list binds nothing
        if not cls.name or names.count(cls.name) > 1:
            raise ValueError(f"{cls.__name__}: name {cls.name!r} is empty or repeated")
        if cls.tier not in TIERS:
            raise ValueError(f"{cls.__name__}: tier {cls.tier!r} is not one of {TIERS}")
    for cls in classes:
        namespace[cls.name] = Question(cls(), namespace)


def progress(questions: Mapping[str, Any] | Iterable[Question]) -> dict[str, int]:
    """Print a table of every question's outcome and return the counts.

    Args:
        questions: a namespace such as ``globals()`` (its Question objects are
            used, in order) or an iterable of questions.
    Returns:
        ``{"correct": n, "incorrect": n, "not_attempted": n}``.
    """
    items = questions.values() if isinstance(questions, Mapping) else questions
    found = list({id(q): q for q in items if isinstance(q, Question)}.values())  # drop aliases
    counts = {"correct": 0, "incorrect": 0, "not_attempted": 0}
    print("Lab progress")
    for question in found:
        outcome = question.result().outcome
        counts[outcome.name.lower()] += 1
        print(f"  {_ICONS[outcome]} {question.name:<4} {question.tier:<8} {outcome.value:<14} {question.title}")
    print(
        f"{len(found)} question(s): {counts['correct']} correct, {counts['incorrect']} "
        f"incorrect, {counts['not_attempted']} not attempted"
    )
    return counts


def learner_answer(namespace: Mapping[str, Any], name: str) -> Any:
    """The learner's ``name`` (functions guarded); PlaceholderError while blank or undefined."""
    if name not in namespace:
        raise PlaceholderError(f"`{name}` is not defined yet")
    value = namespace[name]
    if value is ____ or (inspect.isfunction(value) and _has_blank_body(value)):
        raise PlaceholderError(f"`{name}` is still ____")
    if inspect.isfunction(value):
        _refuse_twins(value)
        return _guard(value)
    return value
