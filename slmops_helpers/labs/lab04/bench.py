"""Lab 04's exercises on parity and the benchmark: count the argmax flips that are not
near-ties (section 4.2), turn per-token timings into percentiles beside the quality gate's
decision (section 4.5), and tell a stream from a buffered reply by its arrival times
(section 4.6). The rest of lab 04 is in ``exercises``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...decoding import percentile
from .. import Exercise, Result, close, incorrect, is_number, learner_answer
from ..checks import fresh_seed

MAX_DROP = 5.0  # q4: a variant ships when its score is at most this many points below fp32's (section 4.5)


class Lab04BenchExercise(Exercise):
    notebook = "04_deployment.ipynb"  # in labs/source/


def reference_flips(ref: np.ndarray, cand: np.ndarray, bound: float) -> int:
    """Positions whose argmax differs though the reference's top two logits are more than 2 × bound apart."""
    top2 = np.sort(ref, axis=1)[:, -2:]
    untied = (top2[:, 1] - top2[:, 0]) > 2 * bound
    return int((untied & (ref.argmax(axis=1) != cand.argmax(axis=1))).sum())


def parity_cases(seed: int = 7) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Reference and candidate logits (positions × vocabulary) with near-ties and real flips;
    the check passes a fresh seed at every attempt."""
    g = np.random.default_rng(seed)
    cases = []
    for _ in range(3):
        n, vocab, bound = int(g.integers(4, 16)), int(g.integers(8, 40)), float(g.choice([1e-4, 1e-3, 5e-3]))
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
    course_twins = (reference_flips,)
    hint_text = (
        "Two conditions at each position: the two runtimes pick different tokens, and the reference's two best "
        "logits are far enough apart that rounding could not explain it (section 4.2 says how far)."
    )

    def check_value(self, count_flips: Any) -> Result | None:
        for ref, cand, bound in parity_cases(fresh_seed()):  # hidden logits, new at every attempt
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
                    f"`{name}` is not right: count positions where the argmax differs and the reference's top two "
                    "logits are more than 2 × bound apart."
                )
        return None


class BenchAndGate(Lab04BenchExercise):
    name, title, tier, var = "q4", "Percentiles from timings, and the gate's decision", "core", None
    hint_text = (
        "The percentiles describe the per-token timings (seconds in, milliseconds out). The gate compares a "
        "variant's score with fp32's: how far below it may a variant fall and still ship?"
    )
    course_twins = (percentile,)

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        percentiles_ms = learner_answer(ns, "percentiles_ms")
        rng = np.random.default_rng(fresh_seed())  # hidden timings and scores, new at every attempt
        timings = [[round(float(t), 4) for t in 0.01 + 0.04 * rng.random(int(n)) ** 3] for n in rng.integers(5, 40, 2)]
        for token_s in [*timings, [round(float(rng.uniform(0.01, 0.1)), 4)]]:
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
        fp32 = float(rng.integers(160, 280)) / 4  # quarters: the edge fp32 − MAX_DROP is exact in binary
        edges = (fp32 - MAX_DROP, fp32 - MAX_DROP - 0.25, fp32 - MAX_DROP + 0.25, fp32 + 2)  # on and either side
        scores = [*edges, *(round(float(x), 1) for x in rng.uniform(fp32 - 3 * MAX_DROP, fp32 + 3, 4))]
        for score in scores:
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


def stream_cases(seed: int = 0) -> dict[str, list[float]]:
    """Arrival times (seconds after the request) of each chunk of a reply, by how it was sent;
    the check passes a fresh seed at every attempt."""
    g = np.random.default_rng(seed)
    prefill, per_token, n = float(g.uniform(0.1, 0.6)), float(g.uniform(0.01, 0.05)), int(g.integers(20, 60))
    decode = [round(prefill + per_token * i + float(g.uniform(0, per_token / 3)), 4) for i in range(n)]
    stall_at, stall = int(g.integers(3, n - 3)), float(g.uniform(0.8, 2.5))
    return {
        "streamed": decode,
        "buffered": [decode[-1]] * len(decode),  # every chunk written after the whole generation
        "a stall": decode[:stall_at] + [t + stall for t in decode[stall_at:]],  # one long pause in the middle
        "two chunks": [round(prefill, 4), round(prefill + float(g.uniform(0.3, 1.0)), 4)],
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
    course_twins = (reference_stream_report, percentile)

    def check_value(self, stream_report: Any) -> Result | None:
        for label, arrivals in stream_cases(fresh_seed()).items():  # hidden arrivals, new at every attempt
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
                    f"`{name}['streams']` is not right: a reply streams when its first chunk arrives "
                    f"before {STREAMS_BEFORE:.2f} of the time of its last (True or False)."
                )
        return None

    @staticmethod
    def _gap_slip(got: Mapping[str, Any], arrivals: list[float], name: str) -> Result | None:
        if len(arrivals) > 2 and close(got["gap_p95_ms"], 1000 * percentile(arrivals, 95), rtol=1e-3) is None:
            return incorrect(f"`{name}['gap_p95_ms']` is a percentile of arrival times; take the gaps between them.")
        return None
