"""Lab 02's quiz, read from labs/source/quizzes/02_distillation.yaml, and the values it computes."""

from __future__ import annotations

import math

from ..quiz import load_quiz

KL_T, KL_ALPHA = 4.0, 0.5  # quiz 2: the temperature and the soft term's weight
TOP_LOGITS = (2.0, 1.0, 0.0)  # quiz 3: a teacher's logits over three tokens


def softmax_top(logits: tuple[float, ...], temperature: float) -> float:
    """The largest probability of softmax(logits / temperature)."""
    exps = [math.exp(x / temperature) for x in logits]
    return max(exps) / sum(exps)


QUIZ_VALUES = {
    "kl_t": lambda: KL_T,
    "kl_alpha": lambda: KL_ALPHA,
    "kl_weight": lambda: KL_ALPHA * KL_T**2,
    "kl_t_squared": lambda: KL_T**2,
    "kl_alpha_t": lambda: KL_ALPHA * KL_T,
    "kl_ce_weight": lambda: 1 - KL_ALPHA,
    "top_at_2": lambda: softmax_top(TOP_LOGITS, 2),
    "top_at_1": lambda: softmax_top(TOP_LOGITS, 1),
    "top_at_half": lambda: softmax_top(TOP_LOGITS, 0.5),
}

QUIZ = load_quiz("02_distillation.ipynb", QUIZ_VALUES)
