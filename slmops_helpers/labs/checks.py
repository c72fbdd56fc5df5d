"""The blank ``____``, a check's verdict, and the comparison helpers checks are made of.

Each helper returns None when the value is fine, else an INCORRECT Result whose message
names the variable and, at most, the kind of mistake (a shape, a NaN): never the expected
value, nor how far off or on which side the answer is. ``fresh_seed`` draws the hidden
inputs a function exercise is checked on, new at every attempt.
"""

from __future__ import annotations

import enum
import numbers
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "____",
    "Placeholder",
    "PlaceholderError",
    "contains_blank",
    "Outcome",
    "Result",
    "incorrect",
    "close",
    "same_set",
    "check_type",
    "is_number",
    "fresh_seed",
    "fresh_rng",
]


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
        try:  # a tensor on the meta device (or a broken one) has no values to compare
            x = x.detach().cpu()
            x = x.to(torch.complex128 if x.is_complex() else torch.float64).numpy()
        except (RuntimeError, NotImplementedError):
            return None
    try:
        arr = np.asarray(x)
    except Exception:  # ragged lists and the like
        return None
    return arr if arr.dtype.kind in "biufc" else None


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
    # Right or wrong, nothing more: how far off, or which way, would turn the check into an
    # oracle (one wrong try and the ratio gives the answer). The caller adds the *kind* of slip.
    if e.ndim == 0:
        return incorrect(f"`{name}` is not right")
    return incorrect(f"`{name}` has values that are not right")


def same_set(actual: Any, expected: Iterable[Any], *, name: str = "value") -> Result | None:
    """Compare collections as sets: order and repeats do not matter.

    Args:
        actual: the learner's collection; ``name`` is its variable name, for the message.
        expected: the right items (neither the missing nor the extra ones are named).
    """
    if isinstance(actual, (str, bytes)) or not isinstance(actual, Iterable):
        return incorrect(f"`{name}` should be a collection (set, list or tuple), got {type(actual).__name__}")
    try:
        got = set(actual)
    except TypeError as exc:
        return incorrect(f"`{name}` holds items that cannot go in a set: {exc}")
    # Which items are extra or missing would let a learner sort candidates one try at a time.
    return None if got == set(expected) else incorrect(f"`{name}` is not the right set of items")


def fresh_seed() -> int:
    """A seed no one can know in advance: a function exercise draws its hidden inputs from it,
    so feedback collected on one attempt says nothing about the next one's cases."""
    return secrets.randbits(31)


def fresh_rng() -> np.random.Generator:
    """A numpy generator seeded by ``fresh_seed``."""
    return np.random.default_rng(fresh_seed())


def contains_blank(value: Any) -> bool:
    """True when ``____`` is still somewhere in ``value`` (nested dicts, lists, tuples)."""
    if value is ____:
        return True
    if isinstance(value, Mapping):
        return any(contains_blank(v) for v in value.values())
    return isinstance(value, list | tuple) and any(contains_blank(v) for v in value)
