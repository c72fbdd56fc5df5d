"""Refuse a learner's function that hands the exercise to the course's own implementation.

Several exercises ask for a function the course already has (``distill.kd_loss``,
``speculative.expected_speedup``, ...): calling it passes every check without the skill.
An exercise lists those functions as its ``course_twins``, and two guards refuse them:

* ``twin_reached`` reads the function's code: every name its bytecode loads (nested
  functions, imports and attribute chains included), its closure and its default
  arguments, resolved to objects. An alias (``f = distill.kd_loss``) resolves too.
* ``watching`` catches what code cannot show (``getattr(module, "kd_" + "loss")``):
  while the learner's function runs, a profile hook records entry into a twin's code.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["CourseCodeUsedError", "twin_code", "twin_reached", "watching", "refusal"]


class CourseCodeUsedError(Exception):
    """The learner's function reached one of the course's own implementations."""


def twin_code(twin: Callable[..., Any]) -> types.CodeType | None:
    """The code object a twin runs (decorators unwrapped); None for builtins."""
    func = inspect.unwrap(twin)
    func = getattr(func, "__func__", func)  # a bound or static method
    return getattr(func, "__code__", None)


def describe(twin: Callable[..., Any]) -> str:
    """How a learner would reach ``twin``: the shortest import path that exposes it (``distill.kd_loss``
    for ``slmops_helpers.distill.loss.kd_loss``, ``decoding.generate.generate_timed`` where no package
    re-exports it); a lab's own helper by its lab (``lab02.student_params``)."""
    module = getattr(twin, "__module__", "") or ""
    name = getattr(twin, "__name__", repr(twin))
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "slmops_helpers":
        return f"{parts[-1]}.{name}"
    if parts[1] == "labs":
        return f"{parts[2] if len(parts) > 3 else parts[-1]}.{name}"
    for end in range(2, len(parts) + 1):
        owner = sys.modules.get(".".join(parts[:end]))
        if owner is not None and getattr(owner, name, None) is twin:
            return f"{'.'.join(parts[1:end])}.{name}"
    return f"{'.'.join(parts[1:])}.{name}"


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """A code object and every one nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def twin_reached(func: Callable[..., Any], twins: Iterable[Callable[..., Any]]) -> Callable[..., Any] | None:
    """The twin that ``func``'s code can reach without running it, or None.

    Args:
        func: the learner's function.
        twins: the course's implementations of the same job.
    """
    wanted = {id(_unwrap(t)): t for t in twins}
    if not wanted or not inspect.isfunction(func):
        return None
    names = {name for code in _codes(func.__code__) for name in (*code.co_names, *code.co_freevars)}
    found: list[Any] = [func.__globals__[n] for n in names if n in func.__globals__]
    found += [sys.modules[n] for n in names if n in sys.modules]  # `import slmops_helpers.distill` inside
    found += [cell.cell_contents for cell in func.__closure__ or () if _filled(cell)]
    found += [*(func.__defaults__ or ()), *(func.__kwdefaults__ or {}).values()]
    seen: set[int] = set()
    while found:  # follow attribute chains into the course's package: module.submodule.function
        obj = found.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if (key := id(_unwrap(obj))) in wanted:
            return wanted[key]
        inside = (getattr(obj, "__name__", "") if isinstance(obj, types.ModuleType) else "") or (
            getattr(obj, "__module__", "") if inspect.isclass(obj) else ""
        )
        if inside.split(".")[0] == "slmops_helpers":  # not torch or transformers: the twins live here
            found += [getattr(obj, n) for n in names if hasattr(obj, n)]
    return None


def _unwrap(obj: Any) -> Any:
    try:
        return inspect.unwrap(obj)
    except ValueError:  # a __wrapped__ cycle
        return obj


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018  # an empty cell raises
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def watching(twins: Iterable[Callable[..., Any]]) -> Iterator[None]:
    """Run the block with a profile hook; raise CourseCodeUsedError if it entered a twin.

    Args:
        twins: the course's implementations the block must not call.
    """
    codes = {code: twin for twin in twins if (code := twin_code(twin)) is not None}
    if not codes:
        yield
        return
    reached: list[Callable[..., Any]] = []

    def hook(frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in codes:
            reached.append(codes[frame.f_code])

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield
    finally:
        sys.setprofile(previous)
    if reached:
        raise CourseCodeUsedError(refusal(reached[0]))


def refusal(twin: Callable[..., Any]) -> str:
    """The message for a function that reached ``twin``."""
    return (
        f"it calls the course's own `{describe(twin)}`, which is what this exercise asks you to write: "
        "write it yourself: that is the exercise"
    )
