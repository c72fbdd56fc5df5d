"""Lab checks: a lab defines one Exercise per question and calls bind_exercises;
learners replace ``____`` with their answer and run ``q1.check()``.

Unlike Kaggle's learntools, on purpose: no hidden global state (a question reads
only the namespace it was bound to), messages never reveal the expected value,
and nothing a learner writes can crash a check (errors become "incorrect").
"""

from __future__ import annotations

import ast
import enum
import functools
import inspect
import math
import numbers
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "____",
    "Placeholder",
    "PlaceholderError",
    "contains_blank",
    "learner_answer",
    "Outcome",
    "Result",
    "Exercise",
    "Question",
    "bind_exercises",
    "progress",
    "incorrect",
    "close",
    "same_set",
    "check_type",
    "is_number",
    "TIERS",
]

TIERS = ("warm-up", "core", "stretch")


class PlaceholderError(TypeError):
    """Raised when ``____`` is used in a calculation before being replaced."""


class Placeholder:
    """The blank ``____`` that learners replace with their answer.

    Assigning or returning it is fine, so a blank lab still runs to the end; computing
    with it raises PlaceholderError at once, which beats a silently wrong number later.
    """

    _instance: Placeholder | None = None
    __hash__ = object.__hash__  # stays hashable although __eq__ is refused below

    def __new__(cls) -> Placeholder:
        # One shared instance, so `value is ____` is a reliable test.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "____ (replace me)"

    def __reduce__(self) -> str:
        return "____"  # copy/pickle give back the module-level singleton

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise PlaceholderError("replace ____ with your answer before computing with it")


# Arithmetic, comparison and conversions all refuse. Not __call__/__len__/__iter__:
# callable() and len() must stay honest for the tools that inspect a namespace.
for _op in (
    "add sub mul truediv floordiv mod pow matmul radd rsub rmul rtruediv rfloordiv "
    "rmod rpow rmatmul neg pos abs lt le gt ge eq ne bool float int index round"
).split():
    setattr(Placeholder, f"__{_op}__", Placeholder._refuse)

____ = Placeholder()


class Outcome(enum.Enum):
    """What a check concluded; the value is the word shown to learners."""

    CORRECT = "correct"
    INCORRECT = "incorrect"
    NOT_ATTEMPTED = "not attempted"


@dataclass(frozen=True)
class Result:
    """The verdict of one check: an outcome and a message for the learner."""

    outcome: Outcome
    message: str


def incorrect(message: str) -> Result:
    """Shorthand for ``Result(Outcome.INCORRECT, message)``."""
    return Result(Outcome.INCORRECT, message)


# --- comparison helpers: each returns None when fine, else an INCORRECT Result,
# so checks chain as `return is_number(v, name=n) or close(v, 1.5, name=n)`.


def check_type(
    value: Any, types: type | tuple[type, ...], *, name: str = "value", what: str | None = None
) -> Result | None:
    """Check ``isinstance(value, types)``.

    Args:
        value: the learner's value; ``name`` is its variable name, for the message.
        types: a type or tuple of types that are accepted.
        what: how to describe the accepted types, e.g. "a tensor".
    """
    if isinstance(value, types):
        return None
    if what is None:
        names = [t.__name__ for t in (types if isinstance(types, tuple) else (types,))]
        what = "a " + " or ".join(names)
    return incorrect(f"`{name}` should be {what}, got {type(value).__name__}")


def is_number(value: Any, *, name: str = "value") -> Result | None:
    """Check that ``value`` is a real number (int, float, numpy scalar; not bool).

    Args:
        value: the learner's value; ``name`` is its variable name, for the message.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return None
    message = f"`{name}` should be a number, got {type(value).__name__}"
    as_array = _to_array(value) if hasattr(value, "item") else None
    if as_array is not None and as_array.size == 1:  # the classic tensor(3.5) slip
        message += " (use .item() to turn a one-element tensor or array into a number)"
    return incorrect(message)


def _to_array(x: Any) -> np.ndarray | None:
    """Numbers, lists, numpy arrays or torch tensors as a numeric array (None if not numeric)."""
    torch = sys.modules.get("torch")  # set only if the lab imported torch: no import cost here
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.to(torch.complex128 if x.is_complex() else torch.float64).numpy()
    try:
        arr = np.asarray(x)
    except Exception:  # ragged lists and the like
        return None
    return arr if arr.dtype.kind in "biufc" else None


def _how_far(actual: complex, expected: complex) -> str:
    """Describe a miss relative to the expected value, without stating that value."""
    if expected == 0:
        return f"off by {abs(actual):.3g} (absolute)"
    ratio = abs(actual) / abs(expected)
    if ratio > 10 or 0 < ratio < 0.1:  # only the order of magnitude: the exact factor
        factor = 10 ** int(math.log10(max(ratio, 1 / ratio)))  # would give the answer away
        return f"off by more than a factor of {factor:,} — check units and powers of 2 or 10"
    return f"off by {abs(actual - expected) / abs(expected) * 100:.3g}%"


def close(actual: Any, expected: Any, *, rtol: float = 1e-4, atol: float = 1e-6, name: str = "value") -> Result | None:
    """Compare numbers, numpy arrays or torch tensors within a tolerance, shapes included.

    Args:
        actual: the learner's value; ``name`` is its variable name, for the message.
        expected: the right answer (never shown in the message).
        rtol, atol: relative and absolute tolerance, as in ``numpy.isclose``.
    """
    a, e = _to_array(actual), _to_array(expected)
    if e is None:
        raise TypeError(f"close(): expected value for `{name}` is not numeric")  # author bug
    if a is None:
        return incorrect(f"`{name}` should be a number or an array of numbers, got {type(actual).__name__}")
    if a.shape != e.shape:
        if e.ndim == 0:
            return incorrect(f"`{name}` should be a single number, but has shape {a.shape}")
        return incorrect(
            f"`{name}` has shape {a.shape} but should have shape {e.shape} — "
            "check which dimensions you kept, reduced or transposed"
        )
    ok = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if ok.all():
        return None
    if (~np.isfinite(a) & np.isfinite(e)).any():
        return incorrect(f"`{name}` contains NaN or infinity — look for a division by zero or an overflow (fp16?)")
    if e.ndim == 0:
        side = "" if a.dtype.kind == "c" else (" (too high)" if a > e else " (too low)")
        return incorrect(f"`{name}` is {_how_far(a.item(), e.item())}{side}")
    worst = int(np.argmax(np.abs(a - e) - rtol * np.abs(e)))
    return incorrect(
        f"{int((~ok).sum())} of {ok.size} values in `{name}` are not close "
        f"enough; the worst is {_how_far(a.flat[worst], e.flat[worst])}"
    )


def same_set(actual: Any, expected: Iterable[Any], *, name: str = "value") -> Result | None:
    """Compare collections as sets: order and repeats do not matter.

    Args:
        actual: the learner's collection; ``name`` is its variable name, for the message.
        expected: the right items (missing ones are counted, never listed).
    """
    if isinstance(actual, (str, bytes)) or not isinstance(actual, Iterable):
        return incorrect(f"`{name}` should be a collection (set, list or tuple), got {type(actual).__name__}")
    try:
        got = set(actual)
    except TypeError as exc:
        return incorrect(f"`{name}` holds items that cannot go in a set: {exc}")
    want = set(expected)
    problems = []
    if got - want:
        problems.append(f"has item(s) that do not belong: {sorted(map(repr, got - want))[:5]}")
    if want - got:
        problems.append(f"is missing {len(want - got)} item(s)")
    return incorrect(f"`{name}` " + " and ".join(problems)) if problems else None


# --- exercises and questions --------------------------------------------------


class Exercise:
    """One question of a lab: subclass it, set the attributes, implement check_value."""

    name: str = ""  # how learners call it: "q1"
    title: str = ""  # shown in the progress table
    tier: str = "core"  # one of TIERS
    hint_text: str = "No hint for this one: reread the explanation above the cell."
    solution_text: str = ""  # code printed by q1.solution()
    var: str | None = None  # learner's variable/function; None: the whole namespace

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
            out = func(*args, **kwargs)
        except PlaceholderError:
            raise  # ____ left in the body: "not attempted", not a crash
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
        """Check the learner's current answer and return the verdict without printing."""
        var = self.exercise.var
        if var is not None and var not in self._namespace:
            return Result(
                Outcome.NOT_ATTEMPTED,
                f"`{var}` is not defined yet — run the cell that defines it, then run {self.name}.check() again",
            )
        value = self._namespace if var is None else self._namespace[var]
        if value is ____ or (inspect.isfunction(value) and _has_blank_body(value)):
            return self._blank()
        if inspect.isfunction(value):
            value = _guard(value)
        try:
            verdict = self.exercise.check_value(value)
        except PlaceholderError:
            return self._blank()
        except _LearnerError as err:
            return incorrect(str(err))
        except Exception as exc:  # the value is not the kind the check expects
            return incorrect(
                f"checking `{var or self.name}` raised {type(exc).__name__}: {exc} — is it the right kind of value?"
            )
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
        """Print the solution code."""
        print(f"🔑 {self.name} solution:\n{textwrap.dedent(self.exercise.solution_text).strip()}")

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
    return _guard(value) if inspect.isfunction(value) else value


def contains_blank(value: Any) -> bool:
    """True when ``____`` is still somewhere in ``value`` (nested dicts, lists, tuples)."""
    if value is ____:
        return True
    if isinstance(value, Mapping):
        return any(contains_blank(v) for v in value.values())
    return isinstance(value, list | tuple) and any(contains_blank(v) for v in value)
