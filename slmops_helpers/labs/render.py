"""Render a lab's source notebook into the learner's exercise and the instructor's solution.

The source notebook (``labs/source/NN_name.ipynb``) holds the full solution. In code
cells, each answer sits between marker lines (read by ``markers.py``), followed by the
starter line(s) that learners see, written as ``#>`` comments::

    ### BEGIN SOLUTION
    fp16_mib = n_params * 2 / 2**20
    #> fp16_mib = ____  # bytes per weight × weights, in MiB
    ### END SOLUTION

* the solution keeps the answer and drops the markers and the ``#>`` lines;
* the exercise drops the answer and the markers, and un-comments the ``#>`` lines;
* cells tagged ``instructor`` (self-tests like ``q1.assert_correct()``) appear
  only in the solution.

Both lose their outputs and execution counts, so they diff cleanly in git.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .._io import atomic_write_text
from .markers import BEGIN, END, STARTER, split_source

__all__ = [  # the marker names stay importable from here, where they were first defined
    "BEGIN",
    "END",
    "STARTER",
    "INSTRUCTOR_TAG",
    "split_source",
    "render_notebook",
    "render_lab",
    "render_all",
    "is_up_to_date",
]

INSTRUCTOR_TAG = "instructor"
# Fixed ids keep the rendering byte-for-byte reproducible (new cells get random ids).
_HEADER_IDS = {"exercise": "slmops-exercise-header", "solution": "slmops-solution-header"}


def _clean(cell: NotebookNode) -> NotebookNode:
    """A copy of the cell without outputs, execution counts or run-time metadata."""
    cell = copy.deepcopy(cell)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    for key in ("execution", "papermill"):  # added by Jupyter/papermill runs, not authored
        cell.metadata.pop(key, None)
    return cell


def _header(nb: NotebookNode, kind: str, text: str) -> NotebookNode:
    cell = nbformat.v4.new_markdown_cell(text)
    if nb.nbformat_minor >= 5:
        cell.id = _HEADER_IDS[kind]
    else:
        cell.pop("id", None)  # cell ids are only valid from nbformat 4.5 on
    return cell


def render_notebook(nb: NotebookNode, path: Path | str, source_label: str) -> tuple[NotebookNode, NotebookNode]:
    """Render a source notebook in memory.

    Args:
        nb: the source notebook (nbformat 4); it is not modified.
        path: the source's path, named in error messages.
        source_label: how the exercise header names the source, e.g. "labs/source/01.ipynb".
    Returns:
        ``(solution, exercise)`` notebooks.
    """
    solution, exercise = copy.deepcopy(nb), copy.deepcopy(nb)
    solution.cells, exercise.cells = [], []
    for nb_copy in (solution, exercise):
        nb_copy.metadata.pop("papermill", None)
    for index, cell in enumerate(nb.cells):
        solution_cell, exercise_cell = _clean(cell), _clean(cell)
        if cell.cell_type == "code":
            solution_cell.source, exercise_cell.source = split_source(cell.source, f"{path}, cell index {index}")
        solution.cells.append(solution_cell)
        if INSTRUCTOR_TAG not in cell.metadata.get("tags", []):
            exercise.cells.append(exercise_cell)
    exercise.cells.insert(
        0,
        _header(
            nb,
            "exercise",
            (
                f"*Generated from `{source_label}` — edit the source, then run "
                "`slmops render-labs`. Changes made in this file are overwritten.*"
            ),
        ),
    )
    solution.cells.insert(
        0, _header(nb, "solution", (f"*Instructor solution, generated from `{source_label}`. Do not hand it out.*"))
    )
    return solution, exercise


def _write_atomic(path: Path, nb: NotebookNode) -> None:
    """Write a notebook so that readers see the old file or the new one, never half of one."""
    text = nbformat.writes(nb, version=4)  # validates before anything touches the disk
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")


def _label(source: Path) -> str:
    return f"labs/source/{source.name}"


def _read(source: Path) -> NotebookNode:
    """Read a notebook; cells saved without an id get a stable one instead of a random one."""
    text = Path(source).read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    # nbformat fills missing ids at random, which would make every rendering differ.
    for index, (cell, raw) in enumerate(zip(nb.cells, json.loads(text).get("cells", []), strict=False)):
        if "id" in cell and "id" not in raw:
            cell.id = f"cell-{index}"
    return nb


def render_lab(source: Path, exercise_out: Path, solution_out: Path | None = None) -> None:
    """Render one source notebook to its exercise and, optionally, its solution.

    Args:
        source: the lab's source notebook, with solution markers.
        exercise_out: where the learner's exercise goes (committed to git).
        solution_out: where the instructor's solution goes; None to skip it.
    Raises:
        ValueError: a marker problem; the message names the file, cell and line.
    """
    source = Path(source)
    solution, exercise = render_notebook(_read(source), source, _label(source))  # all checks first
    _write_atomic(Path(exercise_out), exercise)
    if solution_out is not None:
        _write_atomic(Path(solution_out), solution)


def render_all(source_dir: Path, out_dir: Path, solution_dir: Path | None = None) -> list[Path]:
    """Render every ``*.ipynb`` in ``source_dir``.

    Args:
        source_dir: the folder of source notebooks, e.g. ``labs/source``.
        out_dir: where exercises go, under the same file name, e.g. ``labs``.
        solution_dir: where solutions go as ``<name>_solution.ipynb``; None to skip them.
    Returns:
        The paths written, in order.
    """
    written: list[Path] = []
    for source in sorted(Path(source_dir).glob("*.ipynb")):
        exercise = Path(out_dir) / source.name
        solution = Path(solution_dir) / f"{source.stem}_solution.ipynb" if solution_dir else None
        render_lab(source, exercise, solution)
        written += [exercise] if solution is None else [exercise, solution]
    return written


def is_up_to_date(source: Path, exercise: Path) -> bool:
    """Whether the committed exercise matches what rendering ``source`` gives now.

    Args:
        source: the lab's source notebook.
        exercise: the rendered exercise notebook to compare with.
    """
    exercise = Path(exercise)
    if not exercise.exists():
        return False
    _, expected = render_notebook(_read(Path(source)), source, _label(Path(source)))
    # Compare as JSON data, not text, so a re-indented but identical file still counts.
    return json.loads(nbformat.writes(expected, version=4)) == json.loads(exercise.read_text(encoding="utf-8"))
