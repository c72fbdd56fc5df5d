"""How long each question of an executed lab took, and whether the real-tool ones fit the budget.

papermill records when every cell started and ended. A question's time
is the sum over the cells under its heading (``## qN …`` or ``### Quiz N …``), up to the next
heading: the learner's cells that make the artifact and the cell that checks it. Cells above
the first question are the lab's ``setup``. ``benchmarks/lab_times.py`` runs every solution
alone and commits the record; the lab tests keep each CI run's times beside its executed copy.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

__all__ = ["REAL_TOOL_BUDGET_S", "question_seconds", "over_budget"]

REAL_TOOL_BUDGET_S = 90.0  # one real-tool exercise on 2 cores: a learner waits this long at most
_QUESTION = re.compile(r"^#{2,3}\s+(?:(q\d+)\b|Quiz\s+(\d+)\b)")


def question_seconds(executed: Path) -> dict[str, float]:
    """Seconds per question of an executed lab notebook, in notebook order.

    Raises a ValueError naming the fix when a code cell carries no papermill times.
    """
    from ..course.runner import cell_times  # papermill's start and end of each code cell

    times = {i: seconds for i, seconds, _ in cell_times(executed)}
    seconds: dict[str, float] = {}
    current = "setup"
    for i, cell in enumerate(nbformat.read(str(executed), as_version=4).cells):
        if cell.cell_type == "markdown":
            heading = _QUESTION.match(cell.source)
            if heading:
                current = heading.group(1) or f"quiz{heading.group(2)}"
            elif cell.source.startswith("## "):  # "## Quiz", "## Your progress": no question's cells
                current = "other"
            continue
        if i not in times:
            raise ValueError(f"{executed}: code cell {i} has no papermill times: time an executed copy (slmops run).")
        seconds[current] = seconds.get(current, 0.0) + times[i]
    seconds.pop("other", None)
    return {name: round(s, 1) for name, s in seconds.items()}


def over_budget(seconds: dict[str, float], real_tools: set[str]) -> dict[str, float]:
    """The real-tool questions that took longer than ``REAL_TOOL_BUDGET_S`` (name → seconds).

    Raises a ValueError when a real-tool question is missing: its time was not measured."""
    missing = sorted(real_tools - set(seconds))
    if missing:
        raise ValueError(f"no time for {missing}: is this the executed solution of the lab that holds them?")
    return {name: seconds[name] for name in sorted(real_tools) if seconds[name] > REAL_TOOL_BUDGET_S}
