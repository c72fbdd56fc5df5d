"""Lab 02's checks: right answers pass, blanks are "not attempted", and the usual slips
are caught with a message that names them. A tiny config stands in for the course model."""

from __future__ import annotations

import re
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from slmops_helpers import data, distill
from slmops_helpers.distill.teacher import output_problem
from slmops_helpers.labs import Outcome, Question, ____
from slmops_helpers.labs.lab02 import exercises as lab02
from slmops_helpers.labs.lab02.exercises import (
    ClaimsFromMeasurements,
    FitToTrain,
    HalfTemperature,
    KDLoss,
    KeepBlocks,
    PredictParams,
    Soften,
)

VOCAB, HIDDEN, LAYERS = 200, 16, 12


@pytest.fixture(autouse=True)
def tiny_course_model(monkeypatch):
    """12 blocks of 2,336 parameters, a 3,200-parameter tied embedding, a 16-parameter norm."""
    from transformers import LlamaConfig

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=32,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    lab02.student_params.cache_clear()
    monkeypatch.setattr(lab02, "course_config", lambda model_name=None: config)
    yield
    lab02.student_params.cache_clear()


def by_hand(n_blocks: int) -> int:
    """Independent arithmetic: q, k, v, o projections, the 3 MLP matrices and 2 norms per block."""
    kv = 2 * (HIDDEN // 4)
    block = 2 * HIDDEN * HIDDEN + 2 * HIDDEN * kv + 3 * HIDDEN * 32 + 2 * HIDDEN
    return VOCAB * HIDDEN + n_blocks * block + HIDDEN


def outcome(exercise, value):
    result = Question(exercise(), {exercise.var: value}).result()
    return result.outcome, result.message


# Learner functions at module level, so the framework can read their source.
def right_soften(logits, T):
    return torch.softmax(logits / T, dim=-1)


def soften_in_place(logits, T):
    logits /= T
    return torch.softmax(logits, dim=-1)


def blank_soften(logits, T):
    return ____


def right_kd(s, t, y, T, alpha):
    log_s, log_t = F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)
    return alpha * T**2 * (log_t.exp() * (log_t - log_s)).sum(-1).mean() + (1 - alpha) * F.cross_entropy(s, y)


def kd_without_t_squared(s, t, y, T, alpha):
    log_s, log_t = F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)
    return alpha * (log_t.exp() * (log_t - log_s)).sum(-1).mean() + (1 - alpha) * F.cross_entropy(s, y)


def kd_reverse(s, t, y, T, alpha):
    log_s, log_t = F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)
    return alpha * T**2 * (log_s.exp() * (log_s - log_t)).sum(-1).mean() + (1 - alpha) * F.cross_entropy(s, y)


def kd_swapped_alpha(s, t, y, T, alpha):
    return right_kd(s, t, y, T, 1 - alpha)


def kd_per_token(s, t, y, T, alpha):
    log_s, log_t = F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)
    return (log_t.exp() * (log_t - log_s)).sum(-1)


def test_soften():
    assert outcome(Soften, right_soften)[0] is Outcome.CORRECT
    assert outcome(Soften, blank_soften)[0] is Outcome.NOT_ATTEMPTED
    assert outcome(Soften, ____)[0] is Outcome.NOT_ATTEMPTED
    got, message = outcome(Soften, lambda logits, T: torch.softmax(logits, dim=-1))  # forgot T
    assert got is Outcome.INCORRECT and "divide by T" in message
    got, message = outcome(Soften, soften_in_place)
    assert got is Outcome.INCORRECT and "changed its input" in message
    assert outcome(Soften, lambda logits, T: [0.5, 0.5])[0] is Outcome.INCORRECT


@pytest.mark.parametrize(
    "fn, says",
    [
        (kd_without_t_squared, "T² factor"),
        (kd_reverse, "KL(student‖teacher)"),
        (kd_swapped_alpha, "swapped"),
        (kd_per_token, "one number"),
        (lambda s, t, y, T, alpha: F.cross_entropy(s, y), "is not right on random logits"),
    ],
)
def test_kd_loss_names_the_slip(fn, says):
    got, message = outcome(KDLoss, fn)
    assert got is Outcome.INCORRECT and says in message, message


def test_kd_loss_accepts_the_formula():
    assert outcome(KDLoss, right_kd) == (Outcome.CORRECT, "well done.")


@pytest.fixture
def tiny_teacher():
    """A random 12-block model of the tiny config, a tokenizer stand-in, and four short examples."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(lab02.course_config()).eval()
    assert isinstance(lab02.course_config(), LlamaConfig)
    g = torch.Generator().manual_seed(1)
    examples = []
    for n in (6, 9, 7, 8):
        ids = torch.randint(1, VOCAB, (n,), generator=g).tolist()
        examples.append({"input_ids": ids, "labels": [-100, -100, *ids[2:]]})
    return {"model": model, "tokenizer": SimpleNamespace(pad_token_id=0), "val_examples": examples}


def keep_namespace(tiny, keep, initial_ce):
    return {**tiny, "keep": keep, "initial_ce": initial_ce}


def measured_ce(tiny, n_blocks=3):
    candidates = distill.block_choices(LAYERS, n_blocks)
    ces = {
        name: lab02.student_ce(tiny["model"], blocks, tiny["val_examples"], 0) for name, blocks in candidates.items()
    }
    return candidates, ces


def ns_outcome(exercise, namespace):
    result = Question(exercise(), namespace).result()
    return result.outcome, result.message


def test_keep_blocks_is_the_measured_best_candidate(tiny_teacher):
    assert lab02.max_blocks_in_budget() == 3  # 3,216 + 3 × 2,336 ≤ 40% of 31,248 < 3,216 + 4 × 2,336
    candidates, ces = measured_ce(tiny_teacher)
    best = min(ces, key=ces.get)
    assert ns_outcome(KeepBlocks, keep_namespace(tiny_teacher, candidates[best], ces))[0] is Outcome.CORRECT
    worse = next(name for name in candidates if candidates[name] != candidates[best])
    got, message = ns_outcome(KeepBlocks, keep_namespace(tiny_teacher, candidates[worse], ces))
    assert got is Outcome.INCORRECT and "lowest" in message
    made_up = {name: 1.0 for name in candidates}
    got, message = ns_outcome(KeepBlocks, keep_namespace(tiny_teacher, candidates[best], made_up))
    assert got is Outcome.INCORRECT and "student_ce" in message
    for keep, says in [
        ([0, 3, 6, 9], "over budget"),
        ([0, 11], "keep as many as fit"),
        ([0, 0, 11], "distinct"),
        ([0, 5, 12], "distinct"),
        ("0, 5, 11", "list of block numbers"),
        ([0, 4, 9], "lowest"),  # right size, not a measured candidate
    ]:
        got, message = ns_outcome(KeepBlocks, keep_namespace(tiny_teacher, keep, ces))
        assert got is Outcome.INCORRECT and says in message, (keep, message)
    assert ns_outcome(KeepBlocks, keep_namespace(tiny_teacher, ____, ces))[0] is Outcome.NOT_ATTEMPTED
    assert ns_outcome(KeepBlocks, keep_namespace(tiny_teacher, ____, ____))[0] is Outcome.NOT_ATTEMPTED


def test_no_block_choice_passes_without_its_measured_justification(tiny_teacher):
    """Every candidate, and the contiguous 'from block 0' guess, with the cross-entropies blank or wrong."""
    candidates, ces = measured_ce(tiny_teacher)
    guesses = [*candidates.values(), list(range(3))]
    for keep in guesses:
        for justification in (
            ____,
            None,
            {},
            [1.0, 2.0, 3.0],
            dict.fromkeys(candidates, float("nan")),
            {n: "1.5" for n in candidates},
            {n: v * 1.1 for n, v in ces.items()},
        ):
            got, message = ns_outcome(KeepBlocks, keep_namespace(tiny_teacher, keep, justification))
            assert got is not Outcome.CORRECT, (keep, justification)
            assert "raised" not in message, message
    missing_model = {"keep": candidates[min(ces, key=ces.get)], "initial_ce": ces}
    assert "run the cells above" in ns_outcome(KeepBlocks, missing_model)[1]


def test_predict_params():
    assert all(lab02.student_params(n) == by_hand(n) for n in (0, 1, 12))
    assert outcome(PredictParams, by_hand)[0] is Outcome.CORRECT
    got, message = outcome(PredictParams, lambda n: by_hand(n) + VOCAB * HIDDEN)
    assert got is Outcome.INCORRECT and "output head" in message
    got, message = outcome(PredictParams, lambda n: by_hand(n) - HIDDEN)  # forgot the final norm
    assert got is Outcome.INCORRECT and "predict_params(" in message and "paid once" in message
    assert outcome(PredictParams, lambda n: ____)[0] is Outcome.NOT_ATTEMPTED


def top(T):
    return float(torch.softmax(lab02.example_logits() / T, -1).max())


def test_half_temperature_needs_its_evidence():
    temps = lab02.TEMPERATURES
    expected = next(T for T in temps if top(T) < 0.5)
    assert temps[0] < expected < temps[-1]  # an interior answer: the search matters
    before = temps[temps.index(expected) - 1]
    right = {"t_half": expected, "p_top_at": top(expected), "p_top_before": top(before)}
    assert ns_outcome(HalfTemperature, right)[0] is Outcome.CORRECT
    assert ns_outcome(HalfTemperature, {**right, "p_top_at": ____})[0] is Outcome.NOT_ATTEMPTED
    assert ns_outcome(HalfTemperature, {"t_half": ____})[0] is Outcome.NOT_ATTEMPTED
    got, message = ns_outcome(HalfTemperature, {**right, "p_top_before": top(expected)})
    assert got is Outcome.INCORRECT and "just before" in message
    got, message = ns_outcome(HalfTemperature, {"t_half": 2.7, "p_top_at": 0.4, "p_top_before": 0.6})
    assert got is Outcome.INCORRECT and "TEMPERATURES" in message


def test_no_grid_temperature_passes_by_enumeration():
    """Every value of the grid, with the evidence blank, made up, or honestly computed for a wrong pick."""
    temps = lab02.TEMPERATURES
    expected = next(T for T in temps if top(T) < 0.5)
    for t in temps:
        before = temps[max(temps.index(t) - 1, 0)]
        for evidence in (
            (____, ____),
            (None, None),
            (0.49, 0.51),
            ("0.4", "0.6"),
            (float("nan"), 0.6),
            (top(t), top(before)),
        ):
            namespace = {"t_half": t, "p_top_at": evidence[0], "p_top_before": evidence[1]}
            got, message = ns_outcome(HalfTemperature, namespace)
            honest = evidence[0] is not ____ and evidence == (top(t), top(before))
            assert (got is Outcome.CORRECT) == (honest and t == expected), (t, evidence, message)
            assert "raised" not in message


FIT = [s for s in lab02.TEACHER_SAMPLES if output_problem(s) is None]


def fit_right(text):
    """Section 2.2's validation written out here, independently of the course's output_problem
    (which the check refuses as the learner's answer)."""
    if not text.strip() or not data.follows_format(text):
        return False
    fields = data.parse_prediction(text)
    raw_code = re.search(r"(?m)^error_code:\s*(.*)$", text).group(1).strip().lower()
    if fields["category"] not in data.CATEGORIES or (
        raw_code != "none" and data.normalize_error_code(raw_code) == "none"
    ):
        return False
    words = re.findall(r"\w+", fields["reply"].lower())
    trigrams = Counter(zip(words, words[1:], words[2:], strict=False))
    return len(words) >= 3 and len(set(words)) >= 0.4 * len(words) and max(trigrams.values(), default=0) < 3


def test_fit_to_train():
    assert outcome(FitToTrain, fit_right)[0] is Outcome.CORRECT
    assert outcome(FitToTrain, ____)[0] is Outcome.NOT_ATTEMPTED
    assert "write it yourself" in outcome(FitToTrain, lambda text: output_problem(text) is None)[1]
    for wrong, problems in [
        (lambda text: bool(text.strip()), ("malformed", "unknown category", "bad error code", "degenerate")),
        (lambda text: data.follows_format(text), ("unknown category", "bad error code", "degenerate")),
        (
            lambda text: data.follows_format(text) and data.parse_prediction(text)["category"] in data.CATEGORIES,
            ("bad error code", "degenerate"),
        ),
        (lambda text: False, ("rejects a fit answer",)),
        (lambda text: "yes", ("True or False",)),
    ]:
        got, message = outcome(FitToTrain, wrong)
        assert got is Outcome.INCORRECT and any(p in message for p in problems), message
    assert len(FIT) >= 3 and len(FIT) < len(lab02.TEACHER_SAMPLES) - 4


def _claims(m, **replace):
    teacher = m["teacher_score"]
    out = {
        "inference_time_saved_pct": 100 * (1 - m["student_ms_per_token"] / m["teacher_ms_per_token"]),
        "memory_saved_pct": 100 * (1 - m["student_peak_mib"] / m["teacher_peak_mib"]),
        "retention_pct": 100 * m["student_score"] / teacher,
        "credit_points": 100 * (m["student_score"] - m["undistilled_score"]) / teacher,
    }
    return out | {k: f(m) for k, f in replace.items()}


def test_claims_from_measurements():
    assert outcome(ClaimsFromMeasurements, _claims)[0] is Outcome.CORRECT
    assert outcome(ClaimsFromMeasurements, ____)[0] is Outcome.NOT_ATTEMPTED


@pytest.mark.parametrize(
    "replace, says",
    [
        ({"inference_time_saved_pct": lambda m: 100 * m["student_ms_per_token"] / m["teacher_ms_per_token"]}, "saved"),
        ({"memory_saved_pct": lambda m: 100 * m["student_peak_mib"] / m["teacher_peak_mib"]}, "saved"),
        ({"retention_pct": lambda m: m["student_score"] / m["teacher_score"]}, "percent"),
        ({"credit_points": lambda m: 100 * (m["student_score"] - m["teacher_score"]) / m["teacher_score"]}, "twin"),
        ({"credit_points": lambda m: m["student_score"] - m["undistilled_score"]}, "which two measurements"),
        ({"retention_pct": lambda m: "92"}, "number"),
    ],
)
def test_claims_slips_are_named(replace, says):
    got, message = outcome(ClaimsFromMeasurements, lambda m: _claims(m, **replace))
    assert got is Outcome.INCORRECT and says in message, message
