"""Unit tests for the lab-check framework (slmops_helpers.labs)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from slmops_helpers.labs import (
    Exercise,
    Outcome,
    Placeholder,
    PlaceholderError,
    Question,
    Result,
    SolutionNotFoundError,
    ____,
    bind_exercises,
    check_type,
    close,
    incorrect,
    is_number,
    learner_answer,
    progress,
    same_set,
)

SECRET = 7345.91  # distinctive: must never appear in anything a learner sees


class Fp16Memory(Exercise):
    name, title, tier, var = "q1", "fp16 weight memory", "core", "fp16_mib"
    hint_text = "Each fp16 weight takes two bytes."

    def check_value(self, value):
        return is_number(value, name=self.var) or close(value, SECRET, name=self.var)


class Double(Exercise):
    name, title, tier, var = "q2", "double it", "warm-up", "double"

    def check_value(self, value):
        return close(value(3), 6, name="double(3)") or close(value(-1.5), -3.0, name="double")


class Shape(Exercise):
    name, title, tier, var = "q3", "a tensor shape", "stretch", "hidden"

    def check_value(self, value):
        if value.shape[-1] != 4:  # crashes on values without .shape: must not escape
            return incorrect("`hidden` should end in 4 features")
        return Result(Outcome.CORRECT, "4 features, as the model expects.")


# Learner functions at module level so that inspect.getsource can read their bodies.
def blank_pass(x):
    pass


def blank_ellipsis(x):
    """Double x."""
    ...


def blank_placeholder_return(x):
    return ____


def uses_placeholder(x):
    return x * ____


def wrong_double(x):
    return x + 2


def right_double(x):
    return 2 * x


def crashing_double(x):
    raise ValueError("boom from the learner")


def _question(cls: type[Exercise], **namespace) -> Question:
    return Question(cls(), namespace)


# --- the placeholder -----------------------------------------------------------


def test_placeholder_is_a_singleton_with_a_helpful_repr():
    assert Placeholder() is ____
    assert repr(____) == "____ (replace me)"
    assert copy.deepcopy(____) is ____
    assert pickle.loads(pickle.dumps(____)) is ____


def test_placeholder_can_be_assigned_returned_and_used_as_a_key():
    x = ____
    assert x is ____
    assert {____: 1}[____] == 1
    assert not callable(____)


@pytest.mark.parametrize(
    "use",
    [
        lambda p: p * 2,
        lambda p: 2 * p,
        lambda p: p + 1,
        lambda p: 1 - p,
        lambda p: p / 4,
        lambda p: p**2,
        lambda p: -p,
        lambda p: p < 3,
        lambda p: p == 3,
        lambda p: float(p),
        lambda p: int(p),
        lambda p: bool(p),
        lambda p: np.float64(2.0) * p,
    ],
    ids=["mul", "rmul", "add", "rsub", "div", "pow", "neg", "lt", "eq", "float", "int", "bool", "numpy-rmul"],
)
def test_computing_with_the_placeholder_raises_a_clear_type_error(use):
    with pytest.raises(TypeError, match="replace ____ with your answer"):
        use(____)


def test_placeholder_error_is_a_type_error():
    assert issubclass(PlaceholderError, TypeError)


# --- value exercises ------------------------------------------------------------


def test_missing_variable_is_not_attempted():
    result = _question(Fp16Memory).result()
    assert result.outcome is Outcome.NOT_ATTEMPTED
    assert "`fp16_mib` is not defined yet" in result.message


def test_placeholder_value_is_not_attempted():
    result = _question(Fp16Memory, fp16_mib=____).result()
    assert result.outcome is Outcome.NOT_ATTEMPTED
    assert result.message == ("replace ____ in the cell that defines `fp16_mib`, then run q1.check() again")


def test_wrong_value_is_incorrect_without_saying_how_far_off_or_which_way():
    high, low = (_question(Fp16Memory, fp16_mib=SECRET * f).result() for f in (1.05, 0.2))
    assert high.outcome is low.outcome is Outcome.INCORRECT
    assert high.message == low.message == "`fp16_mib` is not right"  # one wrong try must not give the answer


def test_wrong_type_is_incorrect_with_a_type_message():
    result = _question(Fp16Memory, fp16_mib="7345").result()
    assert result == incorrect("`fp16_mib` should be a number, got str")


def test_right_value_is_correct_within_tolerance():
    assert _question(Fp16Memory, fp16_mib=SECRET * (1 + 1e-6)).result().outcome is Outcome.CORRECT
    assert _question(Fp16Memory, fp16_mib=np.float32(SECRET)).result().outcome is Outcome.CORRECT


def test_check_reads_the_namespace_at_call_time():
    namespace: dict = {"fp16_mib": ____}
    question = Question(Fp16Memory(), namespace)
    assert question.result().outcome is Outcome.NOT_ATTEMPTED
    namespace["fp16_mib"] = SECRET
    assert question.result().outcome is Outcome.CORRECT


def test_a_check_that_crashes_on_the_value_reports_incorrect():
    result = _question(Shape, hidden=3.0).result()
    assert result.outcome is Outcome.INCORRECT
    assert "checking `hidden` raised AttributeError" in result.message


def test_a_custom_correct_message_is_kept():
    result = _question(Shape, hidden=torch.zeros(2, 4)).result()
    assert result == Result(Outcome.CORRECT, "4 features, as the model expects.")


class TotalMemory(Exercise):
    name, title, var = "q4", "two variables at once", None  # receives the whole namespace

    def check_value(self, namespace):
        return close(namespace["weights_mib"] + namespace["cache_mib"], 300.0, name="the total")


def test_a_namespace_exercise_is_not_attempted_while_any_input_is_blank():
    result = _question(TotalMemory, weights_mib=____, cache_mib=50.0).result()
    assert result.outcome is Outcome.NOT_ATTEMPTED
    assert "replace ____ in this question's cells" in result.message
    assert _question(TotalMemory, weights_mib=250.0, cache_mib=50.0).result().outcome is Outcome.CORRECT
    crashed = _question(TotalMemory, weights_mib=250.0).result()
    assert crashed == incorrect("checking `q4` raised KeyError: 'cache_mib' — is it the right kind of value?")


# --- function exercises ---------------------------------------------------------


@pytest.mark.parametrize(
    "func", [blank_pass, blank_ellipsis, blank_placeholder_return, uses_placeholder, lambda x: ____]
)
def test_blank_functions_are_not_attempted(func):
    result = _question(Double, double=func).result()
    assert result.outcome is Outcome.NOT_ATTEMPTED, result.message
    assert "`double`" in result.message


def test_function_returning_placeholder_without_source_is_not_attempted():
    namespace: dict = {"____": ____}
    exec("def double(x):\n    return ____\n", namespace)  # no source file: must call it
    assert _question(Double, double=namespace["double"]).result().outcome is Outcome.NOT_ATTEMPTED


def test_wrong_function_is_incorrect():
    result = _question(Double, double=wrong_double).result()
    assert result.outcome is Outcome.INCORRECT
    assert "`double(3)`" in result.message


def test_right_function_is_correct():
    assert _question(Double, double=right_double).result().outcome is Outcome.CORRECT


def test_function_that_raises_is_incorrect_with_type_and_message(capsys):
    question = _question(Double, double=crashing_double)
    result = question.result()
    assert result.outcome is Outcome.INCORRECT
    assert "calling `crashing_double` raised ValueError: boom from the learner" in result.message
    question.check()  # must print, never raise
    assert "❌ q2: incorrect" in capsys.readouterr().out


# --- what check(), hint() and solution() print -------------------------------------


def test_check_prints_one_line_per_outcome(capsys):
    _question(Fp16Memory, fp16_mib=SECRET).check()
    _question(Fp16Memory, fp16_mib=1.0).check()
    _question(Fp16Memory, fp16_mib=____).check()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "✅ q1 (core): correct — well done."
    assert lines[1] == "❌ q1: incorrect — `fp16_mib` is not right"
    assert lines[2] == (
        "⏳ q1: not attempted — replace ____ in the cell that defines `fp16_mib`, then run q1.check() again"
    )


@pytest.mark.parametrize(
    "answer",
    [
        7345.0,
        7346.5,
        1.0,
        0,
        -SECRET,
        1e12,
        "7345.91?",
        [1.0, 2.0],
        np.array([SECRET, 1.0]),
        torch.tensor(SECRET + 1),
        torch.tensor([SECRET, 2.0]),
        None,
        ____,
    ],
)
def test_nothing_printed_reveals_the_expected_value(capsys, answer):
    question = _question(Fp16Memory, fp16_mib=answer)
    question.check()
    question.hint()
    progress([question])
    out = capsys.readouterr().out
    assert out.strip()
    for revealing in ("7345.9", "7346", "7,346", "7.35e+03", "7.346e+03", "7345"):
        assert revealing not in out.replace(repr(answer), "")


def test_hint_and_solution_print_their_text(capsys, tmp_path):
    cells = [
        nbformat.v4.new_code_cell(
            "n_params = 135_000_000\n### BEGIN SOLUTION\nfp16_mib = n_params * 2 / 2**20\n"
            "#> fp16_mib = ____\n### END SOLUTION\n\nq1.check()"
        )
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "01_demo.ipynb")

    class WithNotebook(Fp16Memory):
        notebook = tmp_path / "01_demo.ipynb"

    question = _question(WithNotebook)
    question.hint()
    question.solution()
    out = capsys.readouterr().out
    assert "💡 q1 hint: Each fp16 weight takes two bytes." in out
    assert "🔑 q1 solution:\nfp16_mib = n_params * 2 / 2**20" in out


def test_solution_without_a_source_notebook_says_so():
    with pytest.raises(SolutionNotFoundError, match="names no source notebook"):
        _question(Fp16Memory).solution()


def test_repr_tells_learners_what_to_call():
    assert "q1.check()" in repr(_question(Fp16Memory))


def test_assert_helpers_for_instructor_cells():
    _question(Fp16Memory, fp16_mib=SECRET).assert_correct()
    _question(Fp16Memory, fp16_mib=____).assert_not_attempted()
    with pytest.raises(AssertionError, match="q1: expected correct, got incorrect"):
        _question(Fp16Memory, fp16_mib=1.0).assert_correct()
    with pytest.raises(AssertionError, match="expected not attempted, got correct"):
        _question(Fp16Memory, fp16_mib=SECRET).assert_not_attempted()


# --- comparison helpers -----------------------------------------------------------


def test_close_accepts_numbers_within_tolerance_and_rejects_others():
    assert close(1.00001, 1.0) is None
    assert close(1e-7, 0.0) is None  # atol covers values near zero
    result = close(0.5, 1.0, name="ratio")
    assert result == incorrect("`ratio` is not right")


def test_close_says_neither_a_factor_nor_a_side_for_far_misses():
    far = {close(v, 1024.0, name="size_mib").message for v in (2.0**30, 1.0, -1024.0)}
    assert far == {"`size_mib` is not right"}  # a factor would be a unit-free answer key


def test_close_with_numpy_arrays_says_only_that_values_are_wrong():
    expected = np.arange(1.0, 5.0)
    assert close(expected + 1e-9, expected) is None
    one, all_four = (close(np.array(v), expected, name="probs") for v in ([1.0, 2.0, 3.0, 8.0], [9.0] * 4))
    assert one == all_four == incorrect("`probs` has values that are not right")  # no count, no position


def test_close_with_torch_tensors_of_any_dtype():
    expected = torch.linspace(0, 1, 6)
    assert close(expected.clone(), expected) is None
    assert close(expected.to(torch.bfloat16), expected, rtol=1e-2, atol=1e-2) is None
    assert close(expected.numpy(), expected) is None  # numpy vs torch compares values
    assert close(expected * 2, expected) is not None


def test_close_reports_shape_mismatches():
    result = close(np.zeros((3, 4)), np.zeros((4, 3)), name="logits")
    assert result is not None
    assert "`logits` has shape (3, 4) but should have shape (4, 3)" in result.message
    result = close(torch.zeros(2, 8), torch.zeros(2, 8, 1), name="h")
    assert result is not None and "(2, 8)" in result.message
    result = close([1.0, 2.0], 3.0, name="total")
    assert result == incorrect("`total` should be a single number, but has shape (2,)")


def test_close_reports_nan_and_non_numbers():
    nan_result = close(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]), name="p")
    assert nan_result is not None and "NaN" in nan_result.message
    assert close(np.array([1.0, np.nan]), np.array([1.0, np.nan])) is None  # NaN where expected
    text_result = close("1.0", 1.0, name="x")
    assert text_result is not None and "got str" in text_result.message


def test_same_set_ignores_order_and_repeats():
    assert same_set(["b", "a", "a"], {"a", "b"}) is None


def test_same_set_neither_counts_nor_names_missing_or_extra_items():
    missing = same_set(["q_proj"], ["q_proj", "secret_module"], name="targets")
    extra = same_set(["q_proj", "lm_head"], ["q_proj"], name="targets")
    assert missing == extra == incorrect("`targets` is not the right set of items")


def test_same_set_rejects_strings():
    result = same_set("q_proj", ["q_proj"], name="targets")
    assert result == incorrect("`targets` should be a collection (set, list or tuple), got str")


def test_type_checks():
    assert is_number(3) is None and is_number(np.float64(2.5)) is None
    assert is_number(True, name="flag") == incorrect("`flag` should be a number, got bool")
    tensor_result = is_number(torch.tensor(2.5), name="loss")
    assert tensor_result is not None and ".item()" in tensor_result.message
    assert check_type(torch.zeros(1), torch.Tensor) is None
    assert check_type([1], (tuple, set), name="dims") == incorrect("`dims` should be a tuple or set, got list")
    assert check_type(1, dict, name="cfg", what="a config dict") == incorrect("`cfg` should be a config dict, got int")


# --- binding and progress ---------------------------------------------------------------


def test_bind_exercises_injects_only_the_named_questions():
    namespace: dict = {"fp16_mib": SECRET}
    bind_exercises(namespace, [Fp16Memory, Double])
    assert set(namespace) == {"fp16_mib", "q1", "q2"}
    assert isinstance(namespace["q1"], Question) and namespace["q2"].tier == "warm-up"
    assert namespace["q1"].result().outcome is Outcome.CORRECT


def test_bound_namespaces_are_independent():
    first: dict = {"fp16_mib": SECRET}
    second: dict = {}
    bind_exercises(first, [Fp16Memory])
    bind_exercises(second, [Fp16Memory])
    assert first["q1"].result().outcome is Outcome.CORRECT
    assert second["q1"].result().outcome is Outcome.NOT_ATTEMPTED


def test_bind_exercises_rejects_bad_definitions_and_binds_nothing():
    class Again(Fp16Memory):
        pass

    class OddTier(Double):
        tier = "expert"

    namespace: dict = {}
    with pytest.raises(ValueError, match="repeated"):
        bind_exercises(namespace, [Fp16Memory, Again])
    with pytest.raises(ValueError, match="tier 'expert'"):
        bind_exercises(namespace, [Fp16Memory, OddTier])
    assert namespace == {}


def test_progress_prints_a_table_and_returns_counts(capsys):
    namespace: dict = {"fp16_mib": SECRET, "double": wrong_double}
    bind_exercises(namespace, [Fp16Memory, Double, Shape])
    namespace["alias"] = namespace["q1"]  # an alias must not count twice
    counts = progress(namespace)
    assert counts == {"correct": 1, "incorrect": 1, "not_attempted": 1}
    out = capsys.readouterr().out
    assert "✅ q1" in out and "❌ q2" in out and "⏳ q3" in out
    assert out.rstrip().endswith("3 question(s): 1 correct, 1 incorrect, 1 not attempted")


def test_progress_accepts_a_list_of_questions(capsys):
    counts = progress([_question(Fp16Memory), _question(Double, double=right_double)])
    assert counts == {"correct": 1, "incorrect": 0, "not_attempted": 1}


class _CountingRealCheck(Exercise):
    """A real-tool exercise that counts how often its (expensive) measurement runs."""

    name, var, real_tools = "qr", None, True
    runs = 0

    def check_value(self, ns):
        type(self).runs += 1
        folder, limit = learner_answer(ns, "out_dir"), learner_answer(ns, "limit")
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
        return None if size <= limit else incorrect("`out_dir` holds more bytes than `limit`.")


def test_a_real_tool_verdict_is_reused_until_a_file_or_a_value_changes(tmp_path):
    import os

    _CountingRealCheck.runs = 0
    (tmp_path / "w.bin").write_bytes(b"x" * 10)
    ns = {"out_dir": str(tmp_path), "limit": 100}
    bind_exercises(ns, [_CountingRealCheck])
    assert _CountingRealCheck.artifact_inputs() == ("limit", "out_dir")
    for _ in range(3):  # the learner's check, an instructor's assert, the progress table
        assert ns["qr"].result().outcome is Outcome.CORRECT
    assert _CountingRealCheck.runs == 1
    (tmp_path / "w.bin").write_bytes(b"x" * 1000)  # the learner reruns the cell: a new file
    os.utime(tmp_path / "w.bin", ns=(1, 10**18))
    assert ns["qr"].result().outcome is Outcome.INCORRECT and _CountingRealCheck.runs == 2
    ns["limit"] = 5000  # a changed value is checked anew too
    assert ns["qr"].result().outcome is Outcome.CORRECT and _CountingRealCheck.runs == 3
    ns["limit"] = ____  # not attempted is never kept
    assert ns["qr"].result().outcome is Outcome.NOT_ATTEMPTED


def test_a_check_reading_objects_in_memory_is_never_reused():
    class ReadsTheModel(Exercise):
        name, var, real_tools = "qm", None, True

        def check_value(self, ns):
            return None if ns.get("model") is not None else incorrect("no model")

    assert ReadsTheModel.artifact_inputs() is None
    assert _CountingRealCheck.__base__.artifact_inputs() is None  # not a real-tool exercise


def test_inputs_stamp_reads_paths_functions_configs_and_refuses_objects(tmp_path):
    import dataclasses

    from slmops_helpers.labs.artifacts import inputs_stamp

    @dataclasses.dataclass
    class Config:
        r: int

    def f(x):
        return x + 1

    (tmp_path / "a").write_text("1")
    key = inputs_stamp({"d": str(tmp_path), "f": f, "c": Config(8), "n": [1, 2.5]})
    assert key is not None and key == inputs_stamp({"d": tmp_path, "f": f, "c": Config(8), "n": [1, 2.5]})
    assert inputs_stamp({"c": Config(16)}) != inputs_stamp({"c": Config(8)})
    assert inputs_stamp({"m": object()}) is None and inputs_stamp({"n": [object()]}) is None
    assert inputs_stamp({"d": tmp_path / "not-yet"}) is not None  # a folder not written yet: its verdict holds
    assert inputs_stamp({"k": {"a": 1.0}}) != inputs_stamp({"k": {"a": 2.0}})


STAMPED_LIMIT = 3


def _reads_the_limit():
    return STAMPED_LIMIT


def test_a_function_is_stamped_with_what_it_reads():
    """Two closures of one def with other captured values, or a function whose global changed,
    are other inputs: the verdict on the first is not the verdict on the second (lab 04's
    ask-the-server check caught a client asking for 3 tokens only because of this)."""
    from slmops_helpers.labs.artifacts import inputs_stamp

    def make(max_tokens):
        def ask(message):
            return (message, max_tokens)

        return ask

    assert inputs_stamp({"ask": make(3)}) == inputs_stamp({"ask": make(3)}) is not None
    assert inputs_stamp({"ask": make(3)}) != inputs_stamp({"ask": make(None)})
    before = inputs_stamp({"f": _reads_the_limit})
    globals()["STAMPED_LIMIT"] = 4
    try:
        assert before is not None and inputs_stamp({"f": _reads_the_limit}) != before
    finally:
        globals()["STAMPED_LIMIT"] = 3
    state = object()
    assert inputs_stamp({"f": lambda: state}) is None  # reads an object in memory: checked every time


def test_question_seconds_sums_each_questions_cells_and_flags_slow_real_tool_ones(tmp_path):
    from datetime import datetime, timedelta

    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from slmops_helpers.labs import timing

    start = datetime(2026, 12, 7, 12, 0, 0)

    def code(seconds):
        cell = new_code_cell("x = 1")
        end = start + timedelta(seconds=seconds)
        cell.metadata["papermill"] = {"start_time": start.isoformat(), "end_time": end.isoformat()}
        return cell

    nb = new_notebook(
        cells=[
            new_markdown_cell("# Lab 9"),
            code(4.0),
            new_markdown_cell("## q1 (core) · Sizes"),
            code(1.0),
            new_markdown_cell("Then the measured sizes."),
            code(2.5),
            new_markdown_cell("## q10 (stretch) · Build and package"),
            code(80.0),
            code(15.0),
            new_markdown_cell("## Quiz"),
            code(0.5),
            new_markdown_cell("### Quiz 2 · Why"),
            code(0.25),
            new_markdown_cell("## Your progress"),
            code(3.0),
        ]
    )
    path = tmp_path / "lab.executed.ipynb"
    nbformat.write(nb, str(path))
    seconds = timing.question_seconds(path)
    assert seconds == {"setup": 4.0, "q1": 3.5, "q10": 95.0, "quiz2": 0.2}
    assert timing.over_budget(seconds, {"q10"}) == {"q10": 95.0}
    assert timing.over_budget(seconds, {"q1"}) == {}
    with pytest.raises(ValueError, match="no time for"):
        timing.over_budget(seconds, {"q11"})
    nb.cells[1].metadata.pop("papermill")
    nbformat.write(nb, str(path))
    with pytest.raises(ValueError, match="papermill"):
        timing.question_seconds(path)
