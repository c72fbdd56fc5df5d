"""Notebook runs: every test here executes a course notebook or lab (minutes each).

Each test in this folder carries the ``notebook`` marker, and ``slow`` with it, so that
``pytest -m "not slow"`` (``make test-fast``) and ``pytest -m "not notebook"`` both leave
them out. A notebook runs at most once per session (``notebook_run``), whichever test asks
first: the bounds tests and the reference check read the same run, in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slmops_helpers.config import artifacts_dir
from slmops_helpers.course.runner import cell_times, run_notebook
from slmops_helpers.metrics import read_metrics

HERE = Path(__file__).resolve().parent
TIMER_START = "notebook_start = time.perf_counter()"
TIMER_RECORD = 'metrics["notebook_s"]'


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.notebook)
            item.add_marker(pytest.mark.slow)


@dataclass(frozen=True)
class NotebookRun:
    metrics: dict[str, Any]
    executed: Path  # the executed copy, with papermill's per-cell times
    wall_s: float  # the whole papermill run, kernel start included


def check_run_time(run: NotebookRun) -> None:
    """``notebook_s`` is the time from the timer's cell to the cell that records it: at least
    the cells in between took, at most the whole run. A timer restarted in a later cell, or a
    time recorded in minutes or milliseconds, falls outside."""
    code = [(i, c.source) for i, c in enumerate(_cells(run.executed)) if c.cell_type == "code"]
    start = next(i for i, source in code if TIMER_START in source)
    record = next(i for i, source in code if TIMER_RECORD in source)
    between = sum(s for i, s, _ in cell_times(run.executed) if start < i < record)
    assert start < record and 0 < between <= run.metrics["notebook_s"] <= run.wall_s, (
        f"{run.executed.name}: notebook_s {run.metrics['notebook_s']:.1f} s, cells between the timer and "
        f"its record {between:.1f} s, whole run {run.wall_s:.1f} s"
    )


@pytest.fixture
def keep_question_times():
    """``keep_question_times(executed)``: each question's seconds in this run of a lab, kept
    beside its executed copy (``<name>.times.json``) and printed, CI's record of how long each
    exercise took."""
    from slmops_helpers._io import atomic_write_json
    from slmops_helpers.labs.timing import question_seconds

    def keep(executed: Path) -> dict[str, float]:
        seconds = question_seconds(executed)
        atomic_write_json(executed.with_suffix(".times.json"), seconds)
        print(f"{executed.name}: " + ", ".join(f"{q} {s:.0f} s" for q, s in seconds.items()))
        return seconds

    return keep


def _cells(path: Path) -> list[Any]:
    import nbformat

    return nbformat.read(path, as_version=4).cells


@pytest.fixture(scope="session")
def notebook_run(root):
    """``notebook_run(name)``: run ``notebooks/<name>.ipynb`` (smoke profile) once per session,
    check its recorded run time, and return the run."""
    runs: dict[str, NotebookRun] = {}

    def run(name: str) -> NotebookRun:
        if name not in runs:
            notebook = root / "notebooks" / f"{name}.ipynb"
            executed = artifacts_dir() / "notebooks" / notebook.name
            wall_s = run_notebook(notebook, executed, {"profile": "smoke"})
            runs[name] = NotebookRun(read_metrics(name), executed, wall_s)
            check_run_time(runs[name])
        return runs[name]

    return run
