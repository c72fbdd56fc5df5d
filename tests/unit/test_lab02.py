"""Lab 02's checks: right answers pass, blanks are "not attempted", and the usual slips
are caught with a message that names them. A tiny config stands in for the course model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from slmops_helpers.labs import Outcome, Question, ____, lab02
from slmops_helpers.labs.lab02 import HalfTemperature, KDLoss, KeepBlocks, PredictParams, Soften

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
        (lambda s, t, y, T, alpha: F.cross_entropy(s, y), "does not match"),
    ],
)
def test_kd_loss_names_the_slip(fn, says):
    got, message = outcome(KDLoss, fn)
    assert got is Outcome.INCORRECT and says in message, message


def test_kd_loss_accepts_the_formula():
    assert outcome(KDLoss, right_kd) == (Outcome.CORRECT, "well done.")


def test_keep_blocks():
    assert lab02.max_blocks_in_budget() == 3  # 3,216 + 3 × 2,336 ≤ 40% of 31,248 < 3,216 + 4 × 2,336
    assert outcome(KeepBlocks, [0, 5, 11])[0] is Outcome.CORRECT
    assert outcome(KeepBlocks, (3, 7, 11))[0] is Outcome.CORRECT
    for keep, says in [
        ([0, 3, 6, 9], "over budget"),
        ([0, 11], "keep as many as fit"),
        ([0, 0, 11], "distinct"),
        ([0, 5, 12], "distinct"),
        ("0, 5, 11", "list of block numbers"),
    ]:
        got, message = outcome(KeepBlocks, keep)
        assert got is Outcome.INCORRECT and says in message, (keep, message)
    assert outcome(KeepBlocks, ____)[0] is Outcome.NOT_ATTEMPTED


def test_predict_params():
    assert all(lab02.student_params(n) == by_hand(n) for n in (0, 1, 12))
    assert outcome(PredictParams, by_hand)[0] is Outcome.CORRECT
    got, message = outcome(PredictParams, lambda n: by_hand(n) + VOCAB * HIDDEN)
    assert got is Outcome.INCORRECT and "output head" in message
    got, message = outcome(PredictParams, lambda n: by_hand(n) - HIDDEN)  # forgot the final norm
    assert got is Outcome.INCORRECT and "predict_params(1)" in message
    assert outcome(PredictParams, lambda n: ____)[0] is Outcome.NOT_ATTEMPTED


def test_half_temperature():
    expected = next(T for T in lab02.TEMPERATURES if float(torch.softmax(lab02.example_logits() / T, -1).max()) < 0.5)
    assert lab02.TEMPERATURES[0] < expected < lab02.TEMPERATURES[-1]  # an interior answer: the search matters
    assert outcome(HalfTemperature, expected)[0] is Outcome.CORRECT
    higher = lab02.TEMPERATURES[lab02.TEMPERATURES.index(expected) + 1]
    assert outcome(HalfTemperature, higher)[0] is Outcome.INCORRECT
    assert outcome(HalfTemperature, expected - 0.5)[0] is Outcome.INCORRECT
    assert outcome(HalfTemperature, 2.7)[0] is Outcome.INCORRECT
    assert outcome(HalfTemperature, ____)[0] is Outcome.NOT_ATTEMPTED
