"""How long each lab question takes a learner: every lab's solution run alone, timed per question.

    .venv/bin/python benchmarks/lab_times.py            # all five labs
    .venv/bin/python benchmarks/lab_times.py 04_deployment

Renders each lab's solution, runs it with papermill (smoke profile, the course model, after
the section's notebook has run, as a learner would), and writes ``labs/exercise_times.json``:
seconds per question, the machine each lab ran on, and which questions use the real tools. Exits 1 if a
real-tool question took longer than ``timing.REAL_TOOL_BUDGET_S``. A benchmark, not a unit
test: run it on an idle machine, nothing else running.
"""

from __future__ import annotations

import datetime
import importlib
import json
import sys
from pathlib import Path

from slmops_helpers._io import atomic_write_json
from slmops_helpers.config import artifacts_dir
from slmops_helpers.course.runner import run_notebook
from slmops_helpers.labs import timing
from slmops_helpers.labs.render import render_lab
from slmops_helpers.metrics import environment_info
from slmops_helpers.reference import machine

ROOT = Path(__file__).resolve().parents[1]
LABS = ["01_introduction", "02_distillation", "03_fine_tuning", "04_deployment", "05_slmops_pipeline"]
RECORD = ROOT / "labs" / "exercise_times.json"


def time_lab(lab: str) -> dict:
    out = artifacts_dir() / "labs" / "timing"
    solution = out / f"{lab}_solution.ipynb"
    render_lab(ROOT / "labs" / "source" / f"{lab}.ipynb", out / f"{lab}_exercise.ipynb", solution)
    total_s = run_notebook(solution, out / f"{lab}_solution.executed.ipynb", {"metrics_name": f"lab_{lab}_timing"})
    seconds = timing.question_seconds(out / f"{lab}_solution.executed.ipynb")
    module = importlib.import_module(f"slmops_helpers.labs.lab{lab[:2]}")
    real = sorted(cls.name for cls in module.EXERCISES if cls.real_tools)
    stamp = {"machine": machine(), **environment_info(), "date": datetime.date.today().isoformat()}
    return {**stamp, "total_s": round(total_s, 1), "real_tools": real, "question_s": seconds}


def main(labs: list[str]) -> int:
    record: dict = {"budget_s": timing.REAL_TOOL_BUDGET_S}
    previous = json.loads(RECORD.read_text())["labs"] if RECORD.exists() else {}
    record["labs"] = {lab: previous[lab] for lab in LABS if lab in previous and lab not in labs}
    late = {}
    for lab in labs:
        record["labs"][lab] = times = time_lab(lab)
        real = ", ".join(f"{q} {times['question_s'][q]:.0f} s" for q in times["real_tools"])
        print(f"{lab}: {times['total_s']:.0f} s in all; real tools: {real}", flush=True)
        late |= {f"{lab} {q}": s for q, s in timing.over_budget(times["question_s"], set(times["real_tools"])).items()}
    record["labs"] = {lab: record["labs"][lab] for lab in LABS if lab in record["labs"]}
    atomic_write_json(RECORD, record)
    if late:
        print(f"over {timing.REAL_TOOL_BUDGET_S:.0f} s: {late}")
        return 1
    return 0


if __name__ == "__main__":
    unknown = sorted(set(sys.argv[1:]) - set(LABS))
    if unknown:
        sys.exit(f"unknown lab {unknown}: name one of {LABS}")
    sys.exit(main(sys.argv[1:] or LABS))
