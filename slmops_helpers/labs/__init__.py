"""Lab checks: a lab defines one Exercise per question and calls bind_exercises;
learners replace ``____`` with their answer and run ``q1.check()``.

Unlike Kaggle's learntools, on purpose: no hidden global state (a question reads
only the namespace it was bound to), messages never reveal the expected value,
and nothing a learner writes can crash a check (errors become "incorrect").

The parts, one job each:

* ``checks``: the blank ``____``, a check's verdict (Outcome, Result) and the
  comparison helpers checks are made of (close, same_set, is_number, ...);
* ``exercises``: Exercise, the Question learners call, bind_exercises, progress;
* ``solutions``: ``q1.solution()``'s answer, read from the lab's source notebook;
* ``markers`` and ``render``: the solution markers, and source → exercise rendering.
"""

from __future__ import annotations

from .checks import (
    Outcome,
    Placeholder,
    PlaceholderError,
    Result,
    ____,
    check_type,
    close,
    contains_blank,
    incorrect,
    is_number,
    same_set,
)
from .exercises import TIERS, Exercise, Question, bind_exercises, learner_answer, progress
from .solutions import SolutionNotFoundError, solution_code

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
    "SolutionNotFoundError",
    "solution_code",
]
