"""Lab 04's exercises on parity and the benchmark: count the argmax flips that are not
near-ties (section 4.2), turn per-token timings into percentiles beside the quality gate's
decision (section 4.5), and tell a stream from a buffered reply by its arrival times
(section 4.6). The rest of lab 04 is in ``lab04``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..decoding import percentile
from . import Exercise, Result, close, incorrect, is_number, learner_answer

MAX_DROP = 5.0  # q4: a variant ships when its score is at most this many points below fp32's (section 4.5)


class Lab04BenchExercise(Exercise):
    notebook = "04_deployment.ipynb"  # in labs/source/


def reference_flips(ref: np.ndarray, cand: np.ndarray, bound: float) -> int:
    """Positions whose argmax differs though the reference's top two logits are more than 2 × bound apart."""
    top2 = np.sort(ref, axis=1)[:, -2:]
    untied = (top2[:, 1] - top2[:, 0]) > 2 * bound
    return int((untied & (ref.argmax(axis=1) != cand.argmax(axis=1))).sum())


def parity_cases() -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Reference and candidate logits (positions × vocabulary) with near-ties and real flips."""
    g = np.random.default_rng(7)
    cases = []
    for n, vocab, bound in ((6, 10, 1e-3), (12, 30, 1e-4), (9, 16, 5e-3)):
        ref = g.normal(size=(n, vocab)).astype(np.float32) * 4
        cand = ref + g.uniform(-bound / 2, bound / 2, size=ref.shape).astype(np.float32)
        top = ref.argmax(axis=1)
        ref[0, (top[0] + 1) % vocab] = ref[0, top[0]] - bound / 2  # a near-tie: rounding may flip it
        cand[0, (top[0] + 1) % vocab] = ref[0, top[0]] + bound / 4
        cand[0, top[0]] = ref[0, top[0]] - bound / 4
        cand[1, (top[1] + 2) % vocab] = ref[1, top[1]] + 3.0  # a real flip: the candidate prefers another token
        cases.append((ref, cand, bound))
    return cases


class CountFlips(Lab04BenchExercise):
    name, title, tier, var = "q3", "Parity: flips that are not near-ties", "core", "count_flips"
    hint_text = (
        "Two conditions at each position: the two runtimes pick different tokens, and the reference's two best "
        "logits are far enough apart that rounding could not explain it (section 4.2 says how far)."
    )

    def check_value(self, count_flips: Any) -> Result | None:
        for ref, cand, bound in parity_cases():
            got = count_flips(ref.copy(), cand.copy(), bound)
            name = f"count_flips(({ref.shape[0]} positions), bound={bound})"
            if isinstance(got, np.integer | torch.Tensor) and np.size(got) == 1:
                got = int(got)
            if not isinstance(got, int) or isinstance(got, bool):
                return incorrect(f"`{name}` should be an int (a number of positions), got {type(got).__name__}.")
            if got == int((ref.argmax(axis=1) != cand.argmax(axis=1)).sum()) != reference_flips(ref, cand, bound):
                return incorrect(f"`{name}` counts a near-tie as a flip; rounding may break a tie either way.")
            if got != reference_flips(ref, cand, bound):
                return incorrect(
                    f"`{name}` is {got}: count positions where the argmax differs and the reference's top two "
                    "logits are more than 2 × bound apart."
                )
        return None


class BenchAndGate(Lab04BenchExercise):
    name, title, tier, var = "q4", "Percentiles from timings, and the gate's decision", "core", None
    hint_text = (
        "The percentiles describe the per-token timings (seconds in, milliseconds out). The gate compares a "
        "variant's score with fp32's: how far below it may a variant fall and still ship?"
    )
    TIMINGS = ([0.010, 0.011, 0.012, 0.010, 0.030, 0.011, 0.013], [0.020 + 0.001 * i for i in range(20)], [0.05])

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        percentiles_ms = learner_answer(ns, "percentiles_ms")
        for token_s in self.TIMINGS:
            got = percentiles_ms(list(token_s))
            name = f"percentiles_ms({len(token_s)} timings)"
            if not (isinstance(got, tuple | list) and len(got) == 2):
                return incorrect(f"`{name}` should return a pair (p50_ms, p95_ms), got {got!r}.")
            want = (1000 * percentile(list(token_s), 50), 1000 * percentile(list(token_s), 95))
            for value, expected, which in zip(got, want, ("p50", "p95"), strict=True):
                if wrong := is_number(value, name=f"{name}'s {which}"):
                    return wrong
                if close(value, expected / 1000, rtol=1e-3) is None and expected:
                    return incorrect(f"`{name}`'s {which} is in seconds; return milliseconds.")
                if (
                    close(value, 1000 * float(np.mean(token_s)), rtol=1e-3) is None
                    and which == "p50"
                    and close(value, expected, rtol=1e-3) is not None
                ):
                    return incorrect(f"`{name}`'s p50 is the mean; a percentile sorts the timings.")
                if wrong := close(value, expected, rtol=1e-3, name=f"{name}'s {which}"):
                    return incorrect(f"{wrong.message}. Use linear interpolation, as np.percentile does.")
        ships = learner_answer(ns, "ships")
        for score, fp32 in ((56.2, 56.3), (50.0, 55.0), (51.4, 56.3), (49.9, 55.0), (37.1, 56.3), (60.0, 56.3)):
            got = ships(score, fp32)
            if not isinstance(got, bool | np.bool_):
                return incorrect(f"`ships` should return True or False, got {type(got).__name__}.")
            if bool(got) != (score >= fp32 - MAX_DROP):
                verdict = "ships" if got else "refuses"
                return incorrect(
                    f"`ships({score}, {fp32})` {verdict} it: a variant ships when its score is at most "
                    f"MAX_DROP = {MAX_DROP} points below fp32's."
                )
        return None


STREAMS_BEFORE = 1 / 3  # q9: a reply streams when its first chunk arrives before a third of its last's time


def stream_cases() -> dict[str, list[float]]:
    """Arrival times (seconds after the request) of each chunk of a reply, by how it was sent."""
    decode = [0.3 + 0.02 * i for i in range(40)]  # prefill 0.3 s, then 20 ms per token
    return {
        "streamed": decode,
        "buffered": [decode[-1]] * len(decode),  # every chunk written after the whole generation
        "a stall": decode[:20] + [t + 1.5 for t in decode[20:]],  # one 1.5 s pause in the middle
        "two chunks": [0.25, 0.9],
    }


def reference_stream_report(arrivals_s: list[float]) -> dict[str, Any]:
    gaps = [b - a for a, b in zip(arrivals_s, arrivals_s[1:], strict=False)] or [0.0]
    return {
        "ttft_ms": 1000 * arrivals_s[0],
        "total_ms": 1000 * arrivals_s[-1],
        "gap_p95_ms": 1000 * percentile(gaps, 95),
        "streams": arrivals_s[0] < STREAMS_BEFORE * arrivals_s[-1],
    }


class StreamReport(Lab04BenchExercise):
    name, title, tier, var = "q9", "Did it stream? A reply's arrival times", "stretch", "stream_report"
    hint_text = (
        "Everything a user feels is in the arrival times: when the first words appear, when the answer is "
        "complete, and the pauses between consecutive chunks. The pauses are differences, not arrival times."
    )
    KEYS = ("ttft_ms", "total_ms", "gap_p95_ms", "streams")

    def check_value(self, stream_report: Any) -> Result | None:
        for label, arrivals in stream_cases().items():
            got = stream_report(list(arrivals))
            name = f"stream_report(<{label}>)"
            if not isinstance(got, Mapping):
                return incorrect(f"`stream_report` should return a dict with keys {list(self.KEYS)}, got {got!r}.")
            if missing := [k for k in self.KEYS if k not in got]:
                return incorrect(f"`{name}` is missing {missing}.")
            want = reference_stream_report(list(arrivals))
            for key in self.KEYS[:3]:
                if wrong := is_number(got[key], name=f"{name}[{key!r}]"):
                    return wrong
                if close(got[key], want[key] / 1000, rtol=1e-3) is None and want[key]:
                    return incorrect(f"`{name}[{key!r}]` is in seconds; the key says milliseconds.")
            if key_wrong := self._gap_slip(got, list(arrivals), name):
                return key_wrong
            for key in self.KEYS[:3]:
                if wrong := close(got[key], want[key], rtol=1e-3, name=f"{name}[{key!r}]"):
                    return wrong
            if not isinstance(got["streams"], bool | np.bool_) or bool(got["streams"]) != want["streams"]:
                return incorrect(
                    f"`{name}['streams']` is {got['streams']!r}: a reply streams when its first chunk arrives "
                    f"before {STREAMS_BEFORE:.2f} of the time of its last (True or False)."
                )
        return None

    @staticmethod
    def _gap_slip(got: Mapping[str, Any], arrivals: list[float], name: str) -> Result | None:
        if len(arrivals) > 2 and close(got["gap_p95_ms"], 1000 * percentile(arrivals, 95), rtol=1e-3) is None:
            return incorrect(f"`{name}['gap_p95_ms']` is a percentile of arrival times; take the gaps between them.")
        return None
