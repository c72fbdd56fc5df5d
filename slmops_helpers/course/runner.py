"""Execute the course's notebooks and labs headlessly (the one wrapper around papermill).

microsoft/recommenders dropped papermill after API breaks; keeping every call in this
module means an upstream change is a change in one place.

Two guards make a headless run safe to leave alone (CI, an instructor's night-before run):

- The kernel runs with ``SLMOPS_HEADLESS=1``: widget helpers show their static view (see
  ``widgets``), since nobody can move a slider; the only cells seen to stall a headless
  run were live widget cells.
- A watchdog on the two messages that end a cell (``watchdog``): once one has come, the
  other must follow within a minute, or ``NotebookStalled`` names the cell and the lost
  message, instead of a wait as long as the cell timeout.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import HEADLESS_ENV, PROFILES, artifacts_dir, get_profile, project_root
from ..metrics import format_summary, read_metrics

KERNEL_NAME = "slmops-course"
NOTEBOOK_GLOB = "[0-9][0-9]*_*.ipynb"  # 01_introduction.ipynb ... and a section's second part, 04b_serving.ipynb


def notebook_number(path: Path) -> str:
    """``04`` for ``04_deployment.ipynb``, ``04b`` for ``04b_serving.ipynb`` (a section's second part)."""
    return path.name.split("_")[0]


def _answers_to(path: Path) -> set[str]:
    """The numbers that select ``path``: its own (``04b``) and its section's (``04``)."""
    return {notebook_number(path), path.name[:2]}


def course_notebooks(root: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """The sequenced notebooks ``notebooks/NN_*.ipynb`` (and a second part ``NNb_*.ipynb``), in order,
    optionally filtered by number: ``04`` selects both parts of section 4, ``04b`` the second alone."""
    folder = (root or project_root()) / "notebooks"
    notebooks = sorted(folder.glob(NOTEBOOK_GLOB))
    if only:
        unknown = [n for n in only if not any(n in _answers_to(p) for p in notebooks)]
        if unknown:
            raise ValueError(
                f"No notebook numbered {', '.join(unknown)} in {folder}; "
                f"available: {', '.join(notebook_number(p) for p in notebooks) or 'none'}."
            )
        notebooks = [p for p in notebooks if _answers_to(p) & set(only)]
    return notebooks


def kernel_name() -> str:
    """The course kernel where it is registered (make setup does), else python3."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"


@contextmanager
def _kernel_env(headless: bool) -> Iterator[None]:
    """Kernels started inside see ``SLMOPS_HEADLESS`` 1 or 0 (a kernel inherits this process's environment)."""
    before = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1" if headless else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = before


def run_notebook(
    notebook: Path,
    output: Path,
    parameters: dict[str, Any] | None = None,
    timeout_s: int | None = PROFILES["smoke"].cell_timeout_s,
    stall_s: int | None = None,
    kernel: str | None = None,
    headless: bool = True,
) -> float:
    """Execute ``notebook`` into ``output`` with papermill; return seconds taken.

    Runs headlessly (``SLMOPS_HEADLESS=1``) with the project root as working directory,
    so relative paths behave the same as under ``slmops run``. ``timeout_s`` bounds each
    cell (None: no bound); ``stall_s`` bounds the wait for a cell's second end-of-cell
    message (default ``watchdog.STALL_S``); ``kernel`` overrides the course kernel;
    ``headless=False`` gives the kernel live widgets (``tests/stress`` uses it to stress
    widget traffic).
    Raises papermill's ``PapermillExecutionError`` (which names the failing cell) when a
    cell fails, ``watchdog.NotebookStalled`` when one stalls; the executed copy is
    still written for reading.
    """
    import papermill  # heavy: imported when a notebook runs, not with the package

    from .watchdog import ENGINE, STALL_S, NotebookStalled, register_engine  # papermill and nbclient

    register_engine()
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with _kernel_env(headless):
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters or {},
                kernel_name=kernel or kernel_name(),
                cwd=str(project_root(notebook.parent)),
                execution_timeout=timeout_s,
                progress_bar=False,
                engine_name=ENGINE,
                stall_s=STALL_S if stall_s is None else stall_s,
            )
        except NotebookStalled as err:
            raise NotebookStalled(f"{notebook.name}, {err}\nThe executed copy so far: {output}") from None
    return time.perf_counter() - start


def cell_times(executed: Path) -> list[tuple[int, float, str]]:
    """(cell index, seconds, first source line) for each code cell of an executed copy."""
    from datetime import datetime

    rows = []
    for i, cell in enumerate(json.loads(executed.read_text())["cells"]):
        meta = cell.get("metadata", {}).get("papermill", {})
        if cell["cell_type"] == "code" and meta.get("start_time") and meta.get("end_time"):
            seconds = (
                datetime.fromisoformat(meta["end_time"]) - datetime.fromisoformat(meta["start_time"])
            ).total_seconds()
            rows.append((i, seconds, "".join(cell["source"]).splitlines()[0] if cell["source"] else ""))
    return rows


def run_course(profile: str = "smoke", only: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run the notebooks in order into ``artifacts/``; print the metrics summary."""
    from tqdm.auto import tqdm

    get_profile(profile)
    out_dir = artifacts_dir()
    results = {}
    for notebook in (bar := tqdm(course_notebooks(only=only), desc="course", unit="notebook")):
        bar.set_postfix_str(notebook.name)
        executed = out_dir / "notebooks" / notebook.name
        seconds = run_notebook(notebook, executed, {"profile": profile}, timeout_s=get_profile(profile).cell_timeout_s)
        slowest = sorted(cell_times(executed), key=lambda r: -r[1])[:3]
        tqdm.write(
            f"{notebook.name}: {seconds:.0f} s; slowest cells: "
            + "; ".join(f"#{i} {s:.0f} s ({src[:40]})" for i, s, src in slowest)
        )
        results[notebook.stem] = read_metrics(notebook.stem)
    print(format_summary(results))
    return results
