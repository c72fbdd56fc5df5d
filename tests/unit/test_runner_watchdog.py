"""The runner's guards for headless runs: a lost end-of-cell message fails fast and names
the cell (``course.watchdog``), long cells still run, and widget helpers render statically."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest

from slmops_helpers.config import artifacts_dir
from slmops_helpers.course.runner import run_notebook
from slmops_helpers.course.watchdog import STALL_S, NotebookStalled

KERNEL = "slmops-lossy-test"


@pytest.fixture
def lossy_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec for tests/unit/kernels/lossy_kernel.py, found through JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    script = Path(__file__).parent / "kernels" / "lossy_kernel.py"
    argv = [sys.executable, str(script), "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


@pytest.fixture
def notebook(tmp_path):
    """Write a notebook of the given cells where the runner can run it (inside the checkout)."""
    folder = artifacts_dir() / "scratch" / tmp_path.name  # run_notebook runs from the checkout

    def write(*sources: str) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": KERNEL, "display_name": KERNEL}})
        nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
        path = folder / "scratch.ipynb"
        nbformat.write(nb, path)
        return path, folder / "scratch.executed.ipynb"

    yield write
    for path in folder.glob("*"):
        path.unlink()
    folder.rmdir()


@pytest.mark.parametrize(
    "lost, says", [("idle", "'idle' status on IOPub did not come"), ("reply", "execute_reply did")]
)
def test_a_lost_end_of_cell_message_fails_fast_naming_the_cell(lossy_kernel, notebook, lost, says):
    path, out = notebook("x = 1", f"y = 2  # lose: {lost}\nprint(y)", "z = 3")
    start = time.perf_counter()
    with pytest.raises(NotebookStalled) as stalled:
        run_notebook(path, out, kernel=lossy_kernel, stall_s=3)
    assert time.perf_counter() - start < 60  # not the 30-minute cell timeout
    message = str(stalled.value)
    assert "scratch.ipynb, cell #1" in message and f"y = 2  # lose: {lost}" in message and says in message, message


def test_cells_longer_than_the_stall_bound_still_run(lossy_kernel, notebook):
    path, out = notebook("import time; time.sleep(5); print('slept')", "print('after')")
    run_notebook(path, out, kernel=lossy_kernel, stall_s=2)
    outputs = [o.get("text", "") for c in nbformat.read(out, as_version=4).cells for o in c.outputs]
    assert outputs == ["slept\n", "after\n"]


def test_widget_helpers_render_their_static_view_under_the_runner(lossy_kernel, notebook):
    path, out = notebook("from slmops_helpers.course.widgets import fleet_calculator\nfleet_calculator()")
    run_notebook(path, out, kernel=lossy_kernel)
    cell = nbformat.read(out, as_version=4).cells[0]
    kinds = [next(iter(o.get("data", {"stream": 0}))) for o in cell.outputs]
    text = "".join(o.get("text", "") for o in cell.outputs)
    note = cell.outputs[0]["data"]["text/markdown"]
    assert "Static view" in note and "precision = fp32" in note and "Model needs" in text
    assert "image/png" in {k for o in cell.outputs for k in o.get("data", {})}, kinds
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cell.outputs)


@pytest.mark.slow
def test_a_lost_idle_fails_at_the_default_bound_which_is_under_five_minutes(lossy_kernel, notebook, monkeypatch):
    # waiting out the real 60 s would cost every CI run a minute: the runner reads the default bound from
    # watchdog.STALL_S when it runs, so shorten it there; failing in under 60 s shows the runner used it
    from slmops_helpers.course import watchdog

    assert 0 < STALL_S < 300
    monkeypatch.setattr(watchdog, "STALL_S", 3)
    path, out = notebook("print(1)  # lose: idle")
    start = time.perf_counter()
    with pytest.raises(NotebookStalled, match="cell #0"):
        run_notebook(path, out, kernel=lossy_kernel)
    assert 3 <= time.perf_counter() - start < STALL_S
