"""Lab 01's quiz, read from labs/source/quizzes/01_introduction.yaml, and the values it computes."""

from __future__ import annotations

import numpy as np

from ...fleet import measured_overhead
from ..quiz import load_quiz

TIMINGS = (70, 72, 69, 71, 70, 73, 70, 95, 71, 140)  # quiz 4: milliseconds per token of ten answers
HUB_SHARE_MIB = 2048 * 0.25  # quiz 6: a 2 GiB hub, a quarter for the assistant

QUIZ_VALUES = {
    "timings_text": lambda: ", ".join(map(str, TIMINGS)),
    "timings_p95": lambda: float(np.percentile(TIMINGS, 95)),
    "timings_median": lambda: float(np.median(TIMINGS)),
    "timings_mean": lambda: float(np.mean(TIMINGS)),
    "timings_max": lambda: float(max(TIMINGS)),
    # quiz 6: the int4 package's peak memory ÷ file size, as section 4's reference run measured it
    "overhead": lambda: round(measured_overhead("int4"), 2),
    "hub_weights_mib": lambda: HUB_SHARE_MIB / round(measured_overhead("int4"), 2),
    "hub_share_mib": lambda: HUB_SHARE_MIB,
    "hub_times_overhead_mib": lambda: HUB_SHARE_MIB * round(measured_overhead("int4"), 2),
    "hub_decimal_mib": lambda: 2000 * 0.25 / round(measured_overhead("int4"), 2),
}

QUIZ = load_quiz("01_introduction.ipynb", QUIZ_VALUES)
