"""Every lab: six or more exercises, warm-up → core → stretch, an opening table naming the
section each one practises (every section of the notebook, by an exercise or the quiz), hints
that do not contain the answer, and no measurement typed into the lab code under a MEASURED name."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from slmops_helpers.labs import TIERS
from slmops_helpers.labs.solutions import solution_code, source_notebook

LABS = {n: importlib.import_module(f"slmops_helpers.labs.lab0{n}") for n in range(1, 6)}
EXERCISES = [cls for lab in LABS.values() for cls in lab.EXERCISES]


def test_at_least_thirty_exercises_and_five_quizzes_of_five():
    assert len(EXERCISES) >= 30
    assert all(len(lab.QUIZ) >= 5 for lab in LABS.values())


@pytest.mark.parametrize("n", sorted(LABS))
def test_six_or_more_exercises_in_tier_order(n):
    exercises = LABS[n].EXERCISES
    tiers = [e.tier for e in exercises]
    assert len(tiers) >= 6 and tiers.count("warm-up") >= 1 and tiers.count("core") >= 3 and "stretch" in tiers
    assert tiers == sorted(tiers, key=TIERS.index), "warm-up, then core, then stretch"
    assert [e.name for e in exercises] == [f"q{i}" for i in range(1, len(exercises) + 1)]


@pytest.mark.parametrize("n", sorted(LABS))
def test_the_opening_cell_names_each_exercise_its_tier_and_section(n):
    exercises = LABS[n].EXERCISES
    cells = json.loads(source_notebook(exercises[0].notebook).read_text())["cells"]
    opening = "".join(cells[0]["source"])
    assert "practises section" in opening
    for e in exercises:
        row = next((line for line in opening.split("\n") if line.startswith(f"| {e.name} |")), None)
        assert row is not None, f"{e.name} is missing from the opening table"
        assert f"| {e.tier} |" in row and re.search(rf"\b{n}\.\d+\b", row), row


def _sections_named(cell: str, n: int) -> set[str]:
    """Sections of notebook ``n`` in the opening table's last column: "1.4", "1.7–1.10", "3.8 (and 3.1)"."""
    named = set()
    for line in cell.split("\n"):
        if not line.startswith("| q"):  # an exercise's row or the quiz's
            continue
        for first, last in re.findall(rf"\b{n}\.(\d+)(?:–{n}\.(\d+))?", line.rsplit("|", 2)[-2]):
            named |= {f"{n}.{k}" for k in range(int(first), int(last or first) + 1)}
    return named


@pytest.mark.parametrize("n", sorted(LABS))
def test_every_section_of_the_notebook_is_practised_by_an_exercise_or_the_quiz(root, n):
    """Each numbered section of notebook n, except its closing recap, appears in the lab's opening table."""
    lab_cells = json.loads(source_notebook(LABS[n].EXERCISES[0].notebook).read_text())["cells"]
    notebook = next((root / "notebooks").glob(f"0{n}_*.ipynb"))
    headings = [
        line
        for cell in json.loads(notebook.read_text())["cells"]
        if cell["cell_type"] == "markdown"
        for line in "".join(cell["source"]).split("\n")
        if re.match(rf"## {n}\.\d+ ", line)
    ]
    sections = {h.split()[1] for h in headings if "What to take away" not in h}
    assert len(sections) >= 5, headings  # the parse found the sections at all
    missing = sections - _sections_named("".join(lab_cells[0]["source"]), n)
    assert not missing, f"lab {n} practises none of sections {sorted(missing)}"


@pytest.mark.parametrize("cls", EXERCISES, ids=lambda c: f"{c.notebook[:2]}.{c.name}")
def test_hints_point_rather_than_contain_the_answer(cls):
    answer = solution_code(cls.notebook, cls.name)
    hint = re.sub(r"\s+", "", cls.hint_text)
    for line in answer.split("\n"):
        code = re.sub(r"\s+", "", line.split("#")[0])
        if len(code) >= 20 and not code.startswith(("def", "return{", "for", "print")):
            assert code not in hint, f"{cls.name}'s hint contains its answer line {line.strip()!r}"


def test_no_measurement_constants_named_measured_in_the_lab_code():
    folder = Path(importlib.import_module("slmops_helpers.labs").__file__).parent
    for path in folder.rglob("*.py"):
        assert not re.search(r"^MEASURED_\w+\s*=", path.read_text(), re.MULTILINE), path.name


NAMES = {  # the names each whole-namespace exercise reads
    ("01", "q6"): ("largest_on_tablet", "largest_need_mib"),
    ("01", "q9"): ("time_generation", "model", "tokenizer"),
    ("01", "q10"): ("fp16_mib", "fp16_dir", "model"),
    ("02", "q3"): ("keep", "initial_ce"),
    ("02", "q6"): ("t_half", "p_top_at", "p_top_before"),
    ("02", "q8"): ("teacher_file",),
    ("02", "q9"): ("student_kl", "student_dir", "keep"),
    ("03", "q3"): ("my_targets", "targets_cost"),
    ("03", "q9"): ("lora_config", "adapter_dir"),
    ("03", "q10"): ("merged_dir", "adapter_dir"),
    ("04", "q1"): ("expected_mib", "int4_block_mib"),
    ("04", "q2"): ("quantize_int8", "dequantize_int8", "int8_error"),
    ("04", "q4"): ("percentiles_ms", "ships"),
    ("04", "q6"): ("tokens_per_round", "speedup", "max_draft_ratio"),
    ("04", "q10"): ("package_mib", "p50_ms", "kl_by_lever", "package_dir"),
    ("04", "q11"): ("ask", "package_dir"),
    ("05", "q3"): ("halted_stage", "halt_cause", "rolled_back"),
    ("05", "q6"): ("tolerated_factor", "slow_share_there"),
    ("05", "q8"): ("registry_root", "reference_id", "candidate_id"),
    ("05", "q9"): ("policy_path", "gate_exit_code", "gate_output", "registry_root", "candidate_id", "reference_id"),
}


def _names(cls) -> tuple[str, ...]:
    return (cls.var,) if cls.var else NAMES[(cls.notebook[:2], cls.name)]


@pytest.mark.parametrize("cls", EXERCISES, ids=lambda c: f"{c.notebook[:2]}.{c.name}")
def test_blank_or_undefined_is_not_attempted(cls):
    from slmops_helpers.labs import Outcome, Question, ____

    assert Question(cls(), {}).result().outcome is Outcome.NOT_ATTEMPTED
    assert Question(cls(), dict.fromkeys(_names(cls), ____)).result().outcome is Outcome.NOT_ATTEMPTED


@pytest.mark.parametrize("cls", EXERCISES, ids=lambda c: f"{c.notebook[:2]}.{c.name}")
@pytest.mark.parametrize("bad", [None, "12", [1, 2, 3], float("nan")], ids=["None", "str", "list", "nan"])
def test_bad_input_is_incorrect_with_a_message_never_a_crash(cls, bad):
    from slmops_helpers.labs import Outcome, Question

    result = Question(cls(), dict.fromkeys(_names(cls), bad)).result()
    assert result.outcome is Outcome.INCORRECT and len(result.message) > 20
    assert "Traceback" not in result.message


FUNCTIONS = [
    c
    for c in EXERCISES
    if c.var and c.var not in ("keep", "my_policy", "feedback_by_class", "inference_model", "int4_mixed_mib")
]


@pytest.mark.parametrize("cls", FUNCTIONS, ids=lambda c: f"{c.notebook[:2]}.{c.name}")
def test_a_value_where_a_function_is_expected_is_named_as_such(cls):
    from slmops_helpers.labs import Outcome, Question

    result = Question(cls(), {cls.var: 3.5}).result()
    assert result.outcome is Outcome.INCORRECT and "should be a function" in result.message, result.message


def test_the_recorded_lab_times_cover_every_real_tool_exercise_within_budget(root):
    """``labs/exercise_times.json`` (``benchmarks/lab_times.py``, each lab's solution run alone) times
    every real-tool exercise the labs hold today, each within the budget: a new or changed real-tool
    exercise needs a new measurement."""
    from slmops_helpers.labs.timing import REAL_TOOL_BUDGET_S, over_budget

    record = json.loads((root / "labs" / "exercise_times.json").read_text())
    assert record["budget_s"] == REAL_TOOL_BUDGET_S
    for n, lab in LABS.items():
        times = next(t for name, t in record["labs"].items() if name.startswith(f"0{n}_"))
        real = {cls.name for cls in lab.EXERCISES if cls.real_tools}
        assert set(times["real_tools"]) == real, f"lab {n}: rerun benchmarks/lab_times.py"
        assert over_budget(times["question_s"], real) == {}, (
            f"lab {n}: a real-tool exercise over {REAL_TOOL_BUDGET_S} s"
        )
        assert times["cpu_count"] <= 2, f"lab {n}: timed on {times['cpu_count']} cores; the budget is for 2"
