"""Every shortcut to a green check that needs no skill fails (issue: labs that cannot be passed
without the skill):

* oracle inversion: a wrong number gets the same words whatever it is, so no message can be
  solved for the answer, and no check formats its expected value into a message;
* calling the course's own implementation: refused by name, alias, import or at run time;
* collecting feedback on fixed cases: a function is checked on inputs drawn afresh per attempt;
* picking options by length or position: see test_quiz.py (balance and length-rank tests).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
import torch

from slmops_helpers import compress, distill
from slmops_helpers.decoding import speculative
from slmops_helpers.labs import Outcome, Question, close
from slmops_helpers.labs.exercises import Exercise
from slmops_helpers.labs.lab01 import exercises as lab01
from slmops_helpers.labs.lab02 import exercises as lab02
from slmops_helpers.labs.lab03 import exercises as lab03
from slmops_helpers.labs.lab04 import decoding as lab04_decoding
from slmops_helpers.labs.lab04 import exercises as lab04
from slmops_helpers.labs.lab05 import exercises as lab05
from slmops_helpers.labs.lab05 import next_round as lab05_next

LABS = [lab01, lab02, lab03, lab04, lab05]
EXERCISES = [cls for lab in LABS for cls in lab.EXERCISES]
LABS_DIR = Path(inspect.getfile(lab01)).parent


def check(exercise: type[Exercise], namespace: dict):
    return Question(exercise(), namespace).result()


def learner(code: str, **names) -> dict:
    """A notebook namespace: ``names`` imported earlier, then the learner's cell ``code`` run in it."""
    namespace = dict(names)
    exec(code, namespace)  # like a notebook cell: the functions' globals are the namespace
    return namespace


# --- oracle inversion ------------------------------------------------------------------------


def test_close_says_the_same_words_for_every_wrong_number():
    """The issue's example: 100 got "off by 76.6 % (too low)", and 100 / 0.234 passed."""
    messages = {close(v, 427.35, name="x").message for v in (100, 400, 427.0, 500, -427.35, 1e6, 0)}
    assert messages == {"`x` is not right"}
    arrays = {close(torch.tensor(v), torch.ones(4), name="p").message for v in ([0, 1, 1, 1], [9, 9, 9, 9])}
    assert arrays == {"`p` has values that are not right"}


def _wrong_twice(exercise, namespace: dict, name: str, values: tuple) -> set[str]:
    return {check(exercise, {**namespace, name: v}).message for v in values}


def test_typed_numbers_of_the_issue_get_one_message_whatever_the_wrong_value():
    """Lab 01 q6, lab 04 q1 and q8: the numbers that were meant to justify a choice."""
    tablet = lab01.LargestOnTablet
    assert (
        len(_wrong_twice(tablet, {"largest_on_tablet": "smollm2-135m-instruct"}, "largest_need_mib", (3.0, 9e4))) == 1
    )
    sizes = {p: lab04.size_mib(lab04.N_PARAMS, bits) for p, bits in lab04.PRECISION_BITS.items()}
    got = _wrong_twice(lab04.ExpectedSizes, {"expected_mib": sizes}, "int4_block_mib", (12.3, 456.0))
    assert len(got) == 1 and all(str(round(sizes["int4"])) not in m for m in got)
    assert len(_wrong_twice(lab04.Int4Breakdown, {}, "int4_mixed_mib", (12.3, 456.0))) == 1


def test_lab02_q6_evidence_is_right_or_wrong_without_a_distance():
    t_half = next(t for t in lab02.TEMPERATURES if float(lab02.soften(lab02.example_logits(), t).max()) < 0.5)
    before = lab02.TEMPERATURES[lab02.TEMPERATURES.index(t_half) - 1]
    right = float(lab02.soften(lab02.example_logits(), before).max())
    namespace = {"t_half": t_half, "p_top_before": right}
    assert len(_wrong_twice(lab02.HalfTemperature, namespace, "p_top_at", (0.1, 0.45))) == 1


def test_no_check_formats_its_expected_value_into_a_message():
    """Lab 01 q8 printed "PyTorch counts {want:,}": read every incorrect(f"...") in the labs."""
    hidden = {"want", "expected", "reference", "ref_q", "ref_scale", "right", "answer", "target"}
    leaks = []
    for path in sorted(LABS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "incorrect":
                for arg in node.args:
                    for value in ast.walk(arg):
                        if isinstance(value, ast.FormattedValue):
                            names = {n.id for n in ast.walk(value.value) if isinstance(n, ast.Name)}
                            if names & hidden:
                                leaks.append(f"{path.name}:{node.lineno} formats {sorted(names & hidden)}")
    assert not leaks, leaks


def test_a_wrong_count_is_not_answered_with_pytorchs_count():
    seen = []

    def count_parameters(config):
        seen.append(config)
        return 12_345

    result = Question(lab01.ParametersFromConfig(), {"count_parameters": count_parameters}).result()
    want = distill.count_config_parameters(seen[0])
    assert result.outcome is Outcome.INCORRECT
    assert f"{want:,}" not in result.message and str(want) not in result.message


# --- the course's own implementation ------------------------------------------------------

CALLS_THE_COURSE = [
    (
        lab01.MagnitudePrune,
        "def magnitude_prune(w, s):\n    return compress.prune_weight(w, s)",
        {"compress": compress},
    ),
    (
        lab01.ParametersFromConfig,
        "def count_parameters(config):\n"
        "    from slmops_helpers.distill import count_config_parameters as c\n    return c(config)",
        {},
    ),
    (lab02.Soften, "def soften(logits, t):\n    return course_soften(logits, t)", {"course_soften": distill.soften}),
    (
        lab02.KDLoss,
        'def kd_loss(s, t, y, T, a):\n    return getattr(distill, "kd_" + "loss")(s, t, y, T, a)',
        {"distill": distill},
    ),
    (
        lab02.PredictParams,
        "def predict_params(n):\n    return student_params(n)",
        {"student_params": lab02.student_params},
    ),
    (
        lab02.FitToTrain,
        "from slmops_helpers.distill.teacher import output_problem\n"
        "def fit_to_train(text):\n    return output_problem(text) is None",
        {},
    ),
    (lab02.ClaimsFromMeasurements, "def claims(m):\n    return lab02.reference_claims(m)", {"lab02": lab02}),
    (
        lab03.EarlyStop,
        "def early_stop(losses, patience):\n    return lab03.reference_early_stop(losses, patience)",
        {"lab03": lab03},
    ),
    (
        lab03.PairedBootstrap,
        "import slmops_helpers.uncertainty as u\n"
        "def paired_interval(a, b, resamples, seed):\n"
        "    i = u.bootstrap_interval([x - y for x, y in zip(a, b)], resamples=resamples)\n"
        "    return i.estimate, i.low, i.high",
        {},
    ),
    (
        lab04_decoding.FieldMask,
        "def field_tokens(typed, vocab):\n    return helper(typed, vocab)\nhelper = lab.reference_field_tokens",
        {"lab": lab04_decoding},
    ),
    (
        lab04_decoding.DraftPays,
        "def tokens_per_round(a, gamma):\n    return speculative.expected_tokens_per_round(a, gamma)\n"
        "def speedup(a, g, d, t, v):\n    return speculative.expected_speedup(a, g, d, t, v)\nmax_draft_ratio = 0.1",
        {"speculative": speculative},
    ),
    (
        lab05_next.Lineage,
        "def lineage(entries, entry_id, _walk=lab05_next.reference_lineage):\n    return _walk(entries, entry_id)",
        {"lab05_next": lab05_next},
    ),
    (
        lab05_next.TicketsNeeded,
        "from slmops_helpers.uncertainty import *\n"
        "def tickets_for(sd, drop, power, significance):\n"
        "    return tickets_needed(sd, drop, power=power, significance=significance)",
        {},
    ),
]  # fmt: skip


@pytest.mark.parametrize("exercise, code, names", CALLS_THE_COURSE, ids=lambda x: getattr(x, "__name__", ""))
def test_a_function_that_calls_the_course_is_refused(exercise, code, names):
    result = check(exercise, learner(code, **names))
    assert result.outcome is Outcome.INCORRECT and "write it yourself" in result.message, result.message


def test_the_run_time_guard_catches_what_the_code_hides():
    """getattr with a computed name shows no twin in the bytecode: the profile hook sees the call."""
    namespace = learner(
        "def soften(logits, t):\n    return getattr(mod, ''.join(['sof', 'ten']))(logits, t)", mod=distill
    )
    result = check(lab02.Soften, namespace)
    assert result.outcome is Outcome.INCORRECT and "write it yourself" in result.message


def test_every_reference_implementation_in_the_labs_is_someones_twin():
    """A lab's own reference_* function solves its exercise under the same signature: refuse it too."""
    twins = {id(t) for cls in EXERCISES for t in cls.course_twins}
    # lab 04 q5 asks for a dict rendered with render_chat, which this one-line helper calls: it saves no skill
    not_an_answer = {id(lab04.reference_prompt)}
    for module in {importlib.import_module(cls.__module__) for cls in EXERCISES}:
        for name, obj in vars(module).items():
            if id(obj) in not_an_answer:
                continue
            if name.startswith("reference_") and inspect.isfunction(obj) and obj.__module__ == module.__name__:
                assert id(obj) in twins, f"{module.__name__}.{name} solves an exercise but no exercise refuses it"


def test_a_learners_own_helpers_with_course_like_names_are_not_refused():
    """Only the course's objects count: a learner's own `soften` called from their kd_loss is fine."""
    namespace = learner(
        "import torch\n"
        "def soften(logits, t):\n    return torch.softmax(logits / t, dim=-1)\n"
        "def kd_loss(s, t, y, T, a):\n"
        "    log_p = torch.log_softmax(s / T, -1)\n"
        "    kl = (soften(t, T) * (torch.log_softmax(t / T, -1) - log_p)).sum(-1).mean()\n"
        "    return a * T**2 * kl + (1 - a) * torch.nn.functional.cross_entropy(s, y)"
    )
    assert check(lab02.KDLoss, namespace).outcome is Outcome.CORRECT


# --- fixed cases whose feedback could be collected ----------------------------------------

NAMESPACE_FUNCTIONS = {  # whole-namespace exercises: the function each one calls first
    (lab04.QuantizeInt8, "quantize_int8"),
    (lab04.BenchAndGate, "percentiles_ms"),
    (lab04_decoding.DraftPays, "tokens_per_round"),
}
VALUES = {"keep", "my_policy", "feedback_by_class", "inference_model", "int4_mixed_mib"}  # not functions
FUNCTION_EXERCISES = [(c, c.var) for c in EXERCISES if c.var and c.var not in VALUES] + sorted(
    NAMESPACE_FUNCTIONS, key=lambda p: p[1]
)


@pytest.mark.parametrize("exercise, name", FUNCTION_EXERCISES, ids=lambda x: getattr(x, "__name__", x))
def test_each_attempt_is_checked_on_new_hidden_inputs(exercise, name):
    """A learner who records the inputs and the feedback of one attempt learns nothing about the next."""
    seen: list[str] = []
    namespace = learner(
        f"def {name}(*args, **kwargs):\n    seen.append(repr(args) + repr(sorted(kwargs.items())))\n"
        "    raise ValueError('recorded')\n"
        "def dequantize_int8(q, scale):\n    return q",  # q2 reads its second function before calling the first
        seen=seen,
    )
    for _ in range(4):  # four, so that a small space of inputs cannot repeat by chance (about 1 in 25,000)
        assert check(exercise, namespace).outcome is Outcome.INCORRECT
    assert len(seen) == 4 and len(set(seen)) > 1, f"{exercise.__name__} checks the same inputs every time"


def test_a_refusal_names_the_course_function_by_the_path_a_learner_imports():
    from slmops_helpers.decoding.generate import generate_timed
    from slmops_helpers.labs.own_work import describe

    assert describe(distill.kd_loss) == "distill.kd_loss"  # re-exported by its section
    assert describe(generate_timed) == "decoding.generate.generate_timed"  # reached through its module
    assert describe(lab02.student_params) == "lab02.student_params"  # a lab's own helper, by its lab
