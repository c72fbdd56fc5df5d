"""Unit tests for the lab renderer (slmops_helpers.labs.render)."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from slmops_helpers import _io
from slmops_helpers.labs.render import is_up_to_date, render_all, render_lab, split_source

VALUE_CELL = """n_params = 135_000_000
### BEGIN SOLUTION
fp16_mib = n_params * 2 / 2**20
#> fp16_mib = ____  # bytes per weight × weights, in MiB
### END SOLUTION
print(fp16_mib)"""

FUNCTION_CELL = """def softmax(x):
    \"\"\"Turn scores into probabilities.\"\"\"
    ### BEGIN SOLUTION
    e = np.exp(x - x.max())
    return e / e.sum()
    #> # subtract the max first, for numerical stability
    #> return ____
    ### END SOLUTION"""


def _source_notebook(path: Path, cells: list | None = None) -> Path:
    """Write a small lab source notebook and return its path."""
    if cells is None:
        answer = new_code_cell(
            VALUE_CELL, execution_count=3, outputs=[new_output("stream", name="stdout", text="257.5\n")]
        )
        self_test = new_code_cell("q1.assert_correct()", metadata={"tags": ["instructor"]})
        cells = [
            new_markdown_cell("# Lab 1\nThe marker ### BEGIN SOLUTION is fine here."),
            answer,
            new_code_cell(FUNCTION_CELL),
            self_test,
            new_code_cell("q1.check()"),
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells), path)
    return path


def _render(tmp_path: Path) -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    source = _source_notebook(tmp_path / "source" / "01_demo.ipynb")
    exercise, solution = tmp_path / "01_demo.ipynb", tmp_path / "out" / "01_demo_solution.ipynb"
    render_lab(source, exercise, solution)
    return nbformat.read(exercise, as_version=4), nbformat.read(solution, as_version=4)


# --- split_source ---------------------------------------------------------------------


def test_split_source_of_a_value_block():
    solution, exercise = split_source(VALUE_CELL)
    assert solution == "n_params = 135_000_000\nfp16_mib = n_params * 2 / 2**20\nprint(fp16_mib)"
    assert exercise == (
        "n_params = 135_000_000\nfp16_mib = ____  # bytes per weight × weights, in MiB\nprint(fp16_mib)"
    )


def test_starter_lines_keep_the_indentation_of_their_marker():
    solution, exercise = split_source(FUNCTION_CELL)
    assert exercise.splitlines()[2:] == ["    # subtract the max first, for numerical stability", "    return ____"]
    assert "return e / e.sum()" in solution and "#>" not in solution
    ast.parse(exercise)  # the exercise must still be valid Python
    namespace: dict = {"____": "blank"}
    exec(exercise, namespace)
    assert namespace["softmax"](None) == "blank"


def test_extra_spaces_after_the_marker_indent_further_and_bare_markers_are_blank_lines():
    source = "### BEGIN SOLUTION\nx = 1\n#> for i in range(3):\n#>     x = ____\n#>\n### END SOLUTION"
    _, exercise = split_source(source)
    assert exercise == "for i in range(3):\n    x = ____\n"


@pytest.mark.parametrize(
    "source, problem, line",
    [
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n#> x = ____\n### END SOLUTION", "nested", 2),
        ("x = 1\n### END SOLUTION", "without a '### BEGIN SOLUTION'", 2),
        ("x = 1\n### BEGIN SOLUTION\nx = 2\n#> x = ____", "without a matching", 2),
        ("### BEGIN SOLUTION\nx = 2\n### END SOLUTION", "no '#>' line", 1),
        ("#> x = ____\nx = 2", "outside a solution block", 1),
        ("## begin solution\nx = 2\n#> x = ____\n### END SOLUTION", "malformed marker", 1),
        ("### BEGIN SOLUTION\nx = 2\n#> x = ____\n### END SOLUTION (q1)", "malformed marker", 4),
    ],
)
def test_marker_errors_name_the_line_and_the_fix(source, problem, line):
    with pytest.raises(ValueError, match="Fix: ") as caught:
        split_source(source, "lab.ipynb, cell index 7")
    message = str(caught.value)
    assert problem in message
    assert message.startswith(f"lab.ipynb, cell index 7, line {line}:")


# --- render_lab -----------------------------------------------------------------------


def test_exercise_rendering(tmp_path):
    exercise, _ = _render(tmp_path)
    header, *cells = exercise.cells
    assert header.cell_type == "markdown"
    assert "Generated from `labs/source/01_demo.ipynb`" in header.source
    assert "`slmops render-labs`" in header.source
    assert [c.source for c in cells] == [
        "# Lab 1\nThe marker ### BEGIN SOLUTION is fine here.",  # markdown is left alone
        split_source(VALUE_CELL)[1],
        split_source(FUNCTION_CELL)[1],
        "q1.check()",
    ]


def test_solution_rendering_keeps_instructor_cells(tmp_path):
    _, solution = _render(tmp_path)
    sources = [c.source for c in solution.cells[1:]]
    assert sources[1] == split_source(VALUE_CELL)[0]
    assert "q1.assert_correct()" in sources
    assert solution.cells[4].metadata["tags"] == ["instructor"]
    assert "Instructor solution" in solution.cells[0].source


def test_no_markers_or_answers_leak_into_the_exercise(tmp_path):
    exercise, _ = _render(tmp_path)
    code = "\n".join(c.source for c in exercise.cells if c.cell_type == "code")
    for leaked in ("### BEGIN", "### END", "#>", "n_params * 2", "np.exp", "assert_correct"):
        assert leaked not in code


def test_outputs_and_execution_counts_are_stripped(tmp_path):
    for nb in _render(tmp_path):
        code_cells = [c for c in nb.cells if c.cell_type == "code"]
        assert code_cells and all(c.outputs == [] for c in code_cells)
        assert all(c.execution_count is None for c in code_cells)


def test_marker_error_names_the_notebook_and_cell(tmp_path):
    bad = "x = 1\n### BEGIN SOLUTION\nx = 2"
    source = _source_notebook(tmp_path / "bad.ipynb", [new_markdown_cell("hi"), new_code_cell(bad)])
    with pytest.raises(ValueError, match=r"bad\.ipynb, cell index 1, line 2: '### BEGIN"):
        render_lab(source, tmp_path / "ex.ipynb", tmp_path / "sol.ipynb")
    assert not (tmp_path / "ex.ipynb").exists() and not (tmp_path / "sol.ipynb").exists()


def test_rendering_is_reproducible(tmp_path):
    source = _source_notebook(tmp_path / "source" / "01_demo.ipynb")
    render_lab(source, tmp_path / "a.ipynb")
    render_lab(source, tmp_path / "b.ipynb")
    assert (tmp_path / "a.ipynb").read_bytes() == (tmp_path / "b.ipynb").read_bytes()


@pytest.mark.filterwarnings("ignore")  # nbformat warns about the missing ids
def test_cells_saved_without_ids_get_stable_ids(tmp_path):
    source = _source_notebook(tmp_path / "source" / "01_demo.ipynb")
    raw = json.loads(source.read_text())
    for cell in raw["cells"]:
        del cell["id"]
    source.write_text(json.dumps(raw))
    render_lab(source, tmp_path / "ex.ipynb")
    ids = [c.id for c in nbformat.read(tmp_path / "ex.ipynb", as_version=4).cells]
    assert ids == ["slmops-exercise-header", "cell-0", "cell-1", "cell-2", "cell-4"]
    assert is_up_to_date(source, tmp_path / "ex.ipynb")  # random ids would make this False


# --- atomic writes ----------------------------------------------------------------------


def test_writes_leave_no_temporary_files(tmp_path):
    _render(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_demo.ipynb", "out", "source"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["01_demo_solution.ipynb"]


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    source = _source_notebook(tmp_path / "source" / "01_demo.ipynb")
    exercise = tmp_path / "01_demo.ipynb"
    exercise.write_text("old contents")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_io.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        render_lab(source, exercise)
    assert exercise.read_text() == "old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_demo.ipynb", "source"]


def test_written_files_are_readable_by_others(tmp_path):
    _render(tmp_path)
    assert os.stat(tmp_path / "01_demo.ipynb").st_mode & 0o044 == 0o044


# --- render_all and is_up_to_date ----------------------------------------------------------


def test_render_all_writes_every_lab(tmp_path):
    source_dir = tmp_path / "labs" / "source"
    for name in ("02_b.ipynb", "01_a.ipynb"):
        _source_notebook(source_dir / name)
    (source_dir / "notes.txt").write_text("not a notebook")
    labs, artifacts = tmp_path / "labs", tmp_path / "artifacts"
    written = render_all(source_dir, labs, artifacts)
    assert written == [
        labs / "01_a.ipynb",
        artifacts / "01_a_solution.ipynb",
        labs / "02_b.ipynb",
        artifacts / "02_b_solution.ipynb",
    ]
    assert all(path.exists() for path in written)
    assert render_all(source_dir, tmp_path / "only") == [
        tmp_path / "only" / "01_a.ipynb",
        tmp_path / "only" / "02_b.ipynb",
    ]


def test_is_up_to_date(tmp_path):
    source = _source_notebook(tmp_path / "source" / "01_demo.ipynb")
    exercise = tmp_path / "01_demo.ipynb"
    assert not is_up_to_date(source, exercise)  # not rendered yet
    render_lab(source, exercise)
    assert is_up_to_date(source, exercise)
    exercise.write_text(json.dumps(json.loads(exercise.read_text()), indent=4))
    assert is_up_to_date(source, exercise)  # formatting alone does not matter
    nb = nbformat.read(source, as_version=4)
    nb.cells[1].source = nb.cells[1].source.replace("2**20", "1e6")  # answer only: same exercise
    nbformat.write(nb, source)
    assert is_up_to_date(source, exercise)
    nb.cells[1].source = nb.cells[1].source.replace("in MiB", "in MB")  # starter changed
    nbformat.write(nb, source)
    assert not is_up_to_date(source, exercise)
