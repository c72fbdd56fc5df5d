"""Lab 03's quiz, read from labs/source/quizzes/03_fine_tuning.yaml, and the values it computes."""

from __future__ import annotations

from ..quiz import load_quiz

N_PARAMS = 134_515_008  # quiz 3: SmolLM2-135M's parameters (the tied embedding counted once)
MIB = 2**20
CURVE, PATIENCE = (2.0, 1.7, 1.6, 1.65, 1.62, 1.7, 1.5), 2  # quiz 4: validation losses and the patience


def early_stop(losses: tuple[float, ...], patience: int) -> tuple[int, int]:
    """(best evaluation, evaluation at which training stops): stop after ``patience`` without a new best."""
    best, waited = 0, 0
    for i in range(1, len(losses)):
        best, waited = (i, 0) if losses[i] < losses[best] else (best, waited + 1)
        if waited == patience:
            return best, i
    return best, len(losses) - 1


QUIZ_VALUES = {
    "n_params": lambda: N_PARAMS,
    "full_mib": lambda: N_PARAMS * 16 / MIB,
    "weights_mib": lambda: N_PARAMS * 4 / MIB,
    "weights_grads_mib": lambda: N_PARAMS * 8 / MIB,
    "one_moment_mib": lambda: N_PARAMS * 12 / MIB,
    "full_mb": lambda: N_PARAMS * 16 / 1e6,
    "curve_text": lambda: ", ".join(f"{x:g}" for x in CURVE),
    "patience": lambda: PATIENCE,
    "es_best": lambda: early_stop(CURVE, PATIENCE)[0],
    "es_stop": lambda: early_stop(CURVE, PATIENCE)[1],
    "es_last": lambda: len(CURVE) - 1,
}

QUIZ = load_quiz("03_fine_tuning.ipynb", QUIZ_VALUES)
