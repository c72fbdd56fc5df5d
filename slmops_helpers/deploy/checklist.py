"""The module's validation checklist for a deployed model, run as code.

Each check returns a ``CheckResult`` (name, passed, what was measured), so a notebook can
show the table and a pipeline can refuse a release on any failure. ``lm`` is any runtime
with ``encode`` / ``stream`` (``OnnxCausalLM`` in the course).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from ..data import follows_format, score_predictions
from ..models import rss_mib

# Metric names of the five checks, in the order the notebook runs them (checklist_<name>).
CHECKS = ("domain", "format", "memory", "lengths", "edge_cases")


@dataclass(frozen=True)
class CheckResult:
    check: str
    passed: bool
    detail: str


def check_domain(answers: list[str], rows: list[dict[str, str]], min_score: float) -> CheckResult:
    """Domain answers: the held-out task score reaches ``min_score``."""
    score = score_predictions(answers, rows)["score"]
    return CheckResult("domain answers", score >= min_score, f"task score {score:.1f} (needs ≥ {min_score:.1f})")


def check_format(answers: list[str], min_share: float = 0.9) -> CheckResult:
    """Output format: answers follow the three-line format the product parses."""
    share = sum(follows_format(a) for a in answers) / len(answers)
    return CheckResult("output format", share >= min_share, f"{share:.0%} follow the format (needs ≥ {min_share:.0%})")


def check_memory_stable(lm: Any, prompt: str, runs: int = 30, max_growth_mib: float = 20.0) -> CheckResult:
    """No leak over a long run: resident memory after warm-up stays flat across ``runs`` answers."""

    if runs < 6:
        raise ValueError(f"runs must be >= 6 to compare the start and end of the run, got {runs}.")
    ids, samples = lm.encode(prompt), []
    for _ in range(runs):
        for _token in lm.stream(ids, 16, stop_at_eos=False):
            pass
        samples.append(rss_mib())
    third = runs // 3
    growth = statistics.median(samples[-third:]) - statistics.median(samples[third : 2 * third])
    return CheckResult(
        "memory stable over a long run",
        growth <= max_growth_mib,
        f"RSS {samples[third]:.0f} → {samples[-1]:.0f} MiB over {runs} answers; growth {growth:+.1f} MiB "
        f"(allowed {max_growth_mib:.0f})",
    )


def check_input_lengths(lm: Any, prompts: dict[str, str], max_slowdown: float = 2.0) -> CheckResult:
    """Stable across input lengths: every length gets an answer, and per-token latency at the
    longest prompt stays within ``max_slowdown`` × that at the shortest."""
    ms, empty = {}, []
    for label, prompt in prompts.items():
        tokens = list(lm.stream(lm.encode(prompt), 24, stop_at_eos=False))
        ms[label] = 1000 * statistics.median(t.seconds for t in tokens[1:])
        if not "".join(t.text for t in tokens).strip():
            empty.append(label)
    labels = list(prompts)
    slowdown = ms[labels[-1]] / ms[labels[0]]
    detail = ", ".join(f"{k}: {v:.1f} ms/token" for k, v in ms.items()) + f"; slowdown ×{slowdown:.2f}"
    if empty:
        detail += f"; empty answer for {empty}"
    return CheckResult("stable across input lengths", not empty and slowdown <= max_slowdown, detail)


def check_edge_cases(lm: Any, unicode_prompt: str) -> CheckResult:
    """Edge cases and invalid input: clear errors for an empty or over-long prompt and a
    zero token budget; an answer, not a crash, for emoji and non-English text."""
    problems = []
    for label, call in (
        ("empty prompt", lambda: list(lm.stream([], 4))),
        ("prompt longer than the context", lambda: list(lm.stream([1] * (lm.context_length + 1), 4))),
        ("max_new_tokens=0", lambda: list(lm.stream(lm.encode(unicode_prompt), 0))),
    ):
        try:
            call()
            problems.append(f"{label} was accepted")
        except ValueError as err:
            if "Fix" not in str(err) and "must be" not in str(err) and "at least" not in str(err):
                problems.append(f"{label}: error does not say what to do ({err})")
    answer = "".join(t.text for t in lm.stream(lm.encode(unicode_prompt), 24))
    if not answer.strip():
        problems.append("no answer to an emoji / non-English message")
    detail = "; ".join(problems) or "3 invalid inputs refused with a clear error; emoji/non-English message answered"
    return CheckResult("edge cases and invalid input", not problems, detail)


def format_results(results: list[CheckResult]) -> str:
    return "\n".join(f"{'PASS' if r.passed else 'FAIL'}  {r.check:<32} {r.detail}" for r in results)
