"""Where ``qN.solution()`` finds its answer: in the lab's source notebook, written once.

The solution of question ``qN`` lives in the code cell of the source notebook
(``labs/source/NN_name.ipynb``) that calls ``qN.check()`` and holds a solution block.
``qN.solution()`` shows that cell's answer: the lines of its solution blocks with the
top-level statements they belong to (a ``def`` whose body holds a block is shown whole),
without the markers, the ``#>`` starters or the cell's other code (prints, the check).
"""

from __future__ import annotations

import ast
import json
import os
import re
import textwrap
from pathlib import Path

from ..config import project_root
from .markers import ANSWER, BEGIN, CODE, END, classify_lines

__all__ = ["SOURCE_DIR", "SolutionNotFoundError", "source_notebook", "answer_code", "solution_code"]

SOURCE_DIR = Path("labs") / "source"  # the labs' source notebooks, relative to the course root


class SolutionNotFoundError(LookupError):
    """The source notebook, or the cell with a question's solution block, cannot be found."""


def source_notebook(notebook: str | os.PathLike[str]) -> Path:
    """The path of a lab's source notebook: a relative name is looked up in the course's labs/source/."""
    path = Path(notebook)
    if path.is_absolute():
        return path
    try:
        root = project_root(Path(__file__).resolve().parent)  # the checkout this package lives in
    except FileNotFoundError:
        root = project_root()  # installed elsewhere: the checkout around the working folder
    return root / SOURCE_DIR / path


def answer_code(source: str, where: str = "cell") -> str | None:
    """A code cell's answer: its solution blocks and the statements they sit in.

    Args:
        source: the cell's code, with solution markers.
        where: names the cell in marker errors.
    Returns:
        The answer, dedented; None when the cell has no solution block.
    Raises:
        ValueError: a marker problem (see ``markers.classify_lines``).
    """
    lines = [(text, role) for text, role in classify_lines(source, where) if role in (CODE, ANSWER)]
    code = [text for text, _ in lines]
    answer = {i for i, (_, role) in enumerate(lines) if role == ANSWER}
    if not answer:
        return None
    keep = set(answer)
    try:
        statements = ast.parse("\n".join(code)).body
    except SyntaxError:  # e.g. an IPython magic in the cell: the blocks' own lines only
        statements = []
    for stmt in statements:
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))]) - 1
        span = set(range(first, stmt.end_lineno or stmt.lineno))
        if span & answer:
            keep |= span
    shown: list[str] = []
    previous: int | None = None
    for i in sorted(keep):
        if previous is not None and i > previous + 1:
            gap = code[previous + 1 : i]
            shown.extend(gap if not any(g.strip() for g in gap) else [""])  # blank lines stay as written
        shown.append(code[i])
        previous = i
    return textwrap.dedent("\n".join(shown)).strip("\n")


def _cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def solution_code(notebook: str | os.PathLike[str] | None, question: str) -> str:
    """The answer to ``question`` ("q1"), read from the lab's source notebook.

    Args:
        notebook: the source notebook: a file name in labs/source/, or a path.
        question: the question's name; its cell is the one that calls ``q1.check()``.
    Raises:
        SolutionNotFoundError: no notebook, no such cell, or no solution block in it;
            the message says what to fix.
    """
    if notebook is None:
        raise SolutionNotFoundError(
            f"{question}.solution(): the exercise names no source notebook. Fix: set `notebook` on its "
            f"Exercise class to the lab's file in {SOURCE_DIR}/, whose solution block holds the answer."
        )
    path = source_notebook(notebook)
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except FileNotFoundError:
        raise SolutionNotFoundError(
            f"{question}.solution(): the lab's source notebook {path} is missing; the solutions are read "
            "from it. Fix: run from the course checkout, or restore the file from git."
        ) from None
    check = re.compile(rf"^{re.escape(question)}\.check\(\)\s*(?:#.*)?$", re.MULTILINE)
    checking: list[int] = []  # the code cells that call qN.check()
    answers: dict[int, str] = {}  # those of them with a solution block
    for index, cell in enumerate(cells):
        source = _cell_source(cell)
        if cell.get("cell_type") != "code" or not check.search(source):
            continue
        checking.append(index)
        code = answer_code(source, f"{path}, cell index {index}")
        if code is not None:
            answers[index] = code
    if len(answers) == 1:
        return next(iter(answers.values()))
    if not checking:
        problem = f"no code cell calls {question}.check()"
        fix = f"end the cell that holds {question}'s solution block with the line `{question}.check()`"
    elif not answers:
        where = f"cell index {checking[0]}" if len(checking) == 1 else f"cell indices {checking}"
        problem = f"the code that calls {question}.check() ({where}) has no solution block"
        fix = f"put the answer between '{BEGIN}' and '{END}' in the cell that checks it"
    else:
        problem = f"cells {sorted(answers)} all call {question}.check() and hold a solution block"
        fix = f"call {question}.check() in one of them only"
    raise SolutionNotFoundError(f"{question}.solution(): in {path}, {problem}. Fix: {fix}.")
