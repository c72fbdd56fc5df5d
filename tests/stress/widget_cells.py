"""Stress the widget cells of notebooks 01 and 02: execute each headlessly N times in a row
and count the runs that stalled. Not part of the test suite (minutes); run it after a
change to the widgets, the runner or the Jupyter pins:

    .venv/bin/python tests/stress/widget_cells.py --runs 30            # what CI runs (static views)
    .venv/bin/python tests/stress/widget_cells.py --runs 30 --live     # live widgets, no frontend

Each run is a fresh kernel executing a setup cell and then the notebook's own widget cell,
copied from the committed notebook. A stall is a run that ``runner.run_notebook`` stopped
with ``NotebookStalled`` or a cell timeout; the exit code is 1 if any run stalled.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError

from slmops_helpers.config import artifacts_dir, project_root
from slmops_helpers.course.runner import run_notebook
from slmops_helpers.course.watchdog import NotebookStalled

# What each widget cell needs from the cells before it, made cheaply (02: real logits of the
# course model for one prompt, so torch and the tokenizer are as busy as in the notebook).
SETUP = {
    "01_introduction": "",
    "02_distillation": (
        "import torch\n"
        "from slmops_helpers import models\n"
        "model, tokenizer = models.load_model()\n"
        "with torch.no_grad():\n"
        "    teacher_next = model(**tokenizer('category:', return_tensors='pt')).logits[0, -1]\n"
        "student_next = teacher_next + torch.randn_like(teacher_next)"
    ),
}
WIDGET_CALLS = ("fleet_calculator(", "temperature_explorer(")


def widget_cell(notebook: Path) -> str:
    """The source of the notebook's one cell that calls a widget helper."""
    cells = nbformat.read(notebook, as_version=4).cells
    found = [c.source for c in cells if c.cell_type == "code" and any(w in c.source for w in WIDGET_CALLS)]
    if len(found) != 1:
        raise SystemExit(f"{notebook}: expected one widget cell, found {len(found)}")
    return found[0]


def stress(name: str, runs: int, live: bool, out: Path) -> dict:
    root = project_root()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "python3"}})
    nb.cells = [nbformat.v4.new_code_cell(s) for s in (SETUP[name], widget_cell(root / "notebooks" / f"{name}.ipynb"))]
    path = out / f"{name}_widget.ipynb"
    nbformat.write(nb, path)
    stalls, seconds = [], []
    for i in range(runs):
        start = time.perf_counter()
        try:
            run_notebook(path, out / f"{name}_widget.executed.ipynb", timeout_s=300, headless=not live)
        except (NotebookStalled, CellTimeoutError) as err:
            stalls.append({"run": i, "error": str(err).splitlines()[-1]})
            print(f"{name} run {i}: STALLED: {err}", flush=True)
        seconds.append(time.perf_counter() - start)
        print(f"{name} run {i + 1}/{runs}: {seconds[-1]:.1f} s", flush=True)
    return {
        "notebook": name,
        "mode": "live" if live else "static",
        "runs": runs,
        "stalls": len(stalls),
        "stalled_runs": stalls,
        "median_s": sorted(seconds)[len(seconds) // 2],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--live", action="store_true", help="live widgets instead of the static views CI gets")
    parser.add_argument("--only", choices=sorted(SETUP), action="append")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    out = artifacts_dir() / "stress"
    out.mkdir(parents=True, exist_ok=True)
    results = [stress(name, args.runs, args.live, out) for name in (args.only or sorted(SETUP))]
    report = out / f"widget_cells_{'live' if args.live else 'static'}.json"
    report.write_text(json.dumps(results, indent=2))
    for r in results:
        print(f"{r['notebook']} ({r['mode']}): {r['stalls']} stalls in {r['runs']} runs, median {r['median_s']:.1f} s")
    print(f"report: {report}")
    return 1 if any(r["stalls"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
