"""``qN.solution()`` reads the answer from the lab's source notebook, where it is written once."""

from __future__ import annotations

import ast
import importlib
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from slmops_helpers.labs import Exercise, Question, SolutionNotFoundError
from slmops_helpers.labs.solutions import answer_code, solution_code, source_notebook

LABS = [importlib.import_module(f"slmops_helpers.labs.lab0{n}") for n in range(1, 6)]
LAB_EXERCISES = [cls for lab in LABS for cls in lab.EXERCISES]


def _blocks(source: str) -> list[list[str]]:
    """The answer lines of each solution block, read independently of the package's parser."""
    blocks, current = [], None
    for line in source.split("\n"):
        if line.strip() == "### BEGIN SOLUTION":
            current = []
        elif line.strip() == "### END SOLUTION":
            blocks.append(current)
            current = None
        elif current is not None and not line.strip().startswith("#>"):
            current.append(line)
    return blocks


def _answer_cell(root, cls: type[Exercise]) -> str:
    """The source of the code cell that calls ``qN.check()`` and holds a solution block."""
    cells = json.loads((root / "labs" / "source" / cls.notebook).read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    found = [s for s in sources if f"\n{cls.name}.check()" in f"\n{s}" and "### BEGIN SOLUTION" in s]
    assert len(found) == 1, f"{cls.__name__}: {len(found)} cells check {cls.name} and hold a solution block"
    return found[0]


def _printed_solution(cls: type[Exercise], capsys) -> str:
    Question(cls(), {}).solution()
    out = capsys.readouterr().out
    header = f"🔑 {cls.name} solution:\n"
    assert out.startswith(header) and out.endswith("\n")
    return out[len(header) : -1]


@pytest.mark.parametrize("cls", LAB_EXERCISES, ids=lambda c: f"{c.__module__.rsplit('.', 1)[1]}.{c.name}")
def test_each_exercise_shows_its_source_notebook_block(root, cls, capsys):
    cell = _answer_cell(root, cls)
    shown = _printed_solution(cls, capsys)
    ast.parse(shown)  # runnable code
    assert "### " not in shown and "#>" not in shown and f"{cls.name}.check()" not in shown
    shown_lines = [line.strip() for line in shown.split("\n")]
    cell_lines = {line.strip() for line in cell.split("\n")}
    assert set(shown_lines) <= cell_lines | {""}, "every line shown comes from the answer cell"
    blocks = _blocks(cell)
    for block in blocks:  # each block whole, in order
        block_lines = [line.strip() for line in block]
        starts = [i for i in range(len(shown_lines)) if shown_lines[i : i + len(block_lines)] == block_lines]
        assert starts, f"block missing from {cls.name}.solution():\n{chr(10).join(block)}"
    if all(not line[:1].isspace() for block in blocks for line in block):
        # top-level blocks: the answer is exactly the blocks with what lies between them
        lines = cell.split("\n")
        first = lines.index(blocks[0][0])
        last = len(lines) - 1 - lines[::-1].index(blocks[-1][-1])
        between = [x for x in lines[first : last + 1] if x.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
        assert shown == "\n".join(x for x in between if not x.strip().startswith("#>")).strip("\n")


def test_every_lab_exercise_names_an_existing_source_notebook(root):
    for cls in LAB_EXERCISES:
        assert cls.notebook, f"{cls.__name__} names no source notebook"
        assert source_notebook(cls.notebook) == root / "labs" / "source" / cls.notebook
        assert source_notebook(cls.notebook).is_file()


def test_no_exercise_repeats_its_solution_in_code():
    for cls in LAB_EXERCISES:
        assert not hasattr(cls, "solution_text"), f"{cls.__name__}: the source notebook holds the solution"


# --- what answer_code shows of a cell -------------------------------------------------

FUNCTION_CELL = '''W = make_weight()
print(W.shape)


@torch.no_grad()
def quantize(w):
    """One scale per row."""
    ### BEGIN SOLUTION
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    #> scale = ____
    ### END SOLUTION
    return scale


### BEGIN SOLUTION
W_hat = quantize(W)
#> W_hat = ____
### END SOLUTION
print("done")
q2.check()'''


def test_a_value_block_is_shown_alone():
    cell = "n = 3\n### BEGIN SOLUTION\nx = n * 2  # twice\n#> x = ____\n### END SOLUTION\nprint(x)\nq1.check()"
    assert answer_code(cell) == "x = n * 2  # twice"


def test_a_block_inside_a_function_shows_the_whole_function_but_not_the_cell_around_it():
    assert answer_code(FUNCTION_CELL) == (
        "@torch.no_grad()\n"
        "def quantize(w):\n"
        '    """One scale per row."""\n'
        "    scale = w.abs().amax(dim=1, keepdim=True) / 127\n"
        "    return scale\n"
        "\n"
        "\n"
        "W_hat = quantize(W)"
    )


def test_blocks_apart_are_joined_by_one_blank_line():
    cell = (
        "### BEGIN SOLUTION\na = 1\n#> a = ____\n### END SOLUTION\nprint(a)\n"
        "### BEGIN SOLUTION\nb = 2\n#> b = ____\n### END SOLUTION\nq1.check()"
    )
    assert answer_code(cell) == "a = 1\n\nb = 2"


def test_a_cell_python_cannot_parse_shows_the_block_lines():
    cell = "%time x = 1\n### BEGIN SOLUTION\ny = x + 1\n#> y = ____\n### END SOLUTION"
    assert answer_code(cell) == "y = x + 1"


def test_a_cell_without_a_block_has_no_answer():
    assert answer_code("print(1)\nq1.check()") is None


# --- which cell, and the errors when there is none ------------------------------------


BLOCK = "### BEGIN SOLUTION\na = 1\n#> a = ____\n### END SOLUTION\n"


def _notebook(path, *sources: str):
    cells = [new_markdown_cell("# Lab\n### BEGIN SOLUTION in prose is not a block")]
    cells += [new_code_cell(s) for s in sources]
    nbformat.write(new_notebook(cells=cells), path)
    return path


def test_the_answer_cell_is_the_one_that_checks_the_question(tmp_path):
    path = _notebook(
        tmp_path / "lab.ipynb",
        BLOCK + "q1.check()",
        FUNCTION_CELL,
        "q2.check()  # checking again later is fine: this cell has no block",
    )
    assert solution_code(path, "q1") == "a = 1"
    assert solution_code(path, "q2").endswith("W_hat = quantize(W)")


@pytest.mark.parametrize(
    "sources, question, says",
    [
        ([BLOCK + "q1.check()"], "q2", "no code cell calls q2.check()"),
        (["a = 1\nq1.check()"], "q1", "has no solution block"),
        ([BLOCK + "print(a)  # q1.check() forgotten"], "q1", "no code cell calls q1.check()"),
        ([BLOCK + "q1.check()"] * 2, "q1", "cells [1, 2] all call"),
    ],
)
def test_a_missing_or_ambiguous_block_is_a_clear_error(tmp_path, sources, question, says):
    path = _notebook(tmp_path / "lab.ipynb", *sources)
    with pytest.raises(SolutionNotFoundError, match="Fix:") as err:
        solution_code(path, question)
    assert says in str(err.value) and str(path) in str(err.value)


def test_a_missing_notebook_is_a_clear_error(tmp_path):
    class Lost(Exercise):
        name, notebook = "q1", tmp_path / "gone.ipynb"

    with pytest.raises(SolutionNotFoundError, match="gone.ipynb is missing"):
        Question(Lost(), {}).solution()


def test_a_marker_error_in_the_answer_cell_names_the_cell(tmp_path):
    path = _notebook(tmp_path / "lab.ipynb", "### BEGIN SOLUTION\na = 1\nq1.check()")
    with pytest.raises(ValueError, match="cell index 1"):
        solution_code(path, "q1")
