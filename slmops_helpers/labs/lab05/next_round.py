"""Lab 05's exercises on what comes after a rollout: the next round's training set from the
feedback (section 5.8), an entry's lineage in the registry (5.5, 5.9), how much slower than
measured a release may run before the rollout halts (5.7), and how many tickets a gate needs
to see a drop through the noise (5.6, 5.10). The rest is in ``exercises``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

from ...pipeline.registry import Registry
from ...uncertainty import tickets_needed
from .. import Exercise, PlaceholderError, Result, close, contains_blank, incorrect, is_number, learner_answer
from ..checks import fresh_rng
from .fleet import lab_rollout

EVAL_PROMPTS = ("My hub shows E-104 after the update.", "How do I export my data?")  # q4: the held-out set
# q4: feedback records as the fleet returns them (made up for the exercise, in the rollout's format).
FEEDBACK_SAMPLE = (
    {"prompt": "The hub will not join my Wi-Fi.", "kind": "low_confidence", "stage": "canary"},
    {"prompt": "My hub shows E-104 after the update.", "kind": "failed", "stage": "canary"},
    {"prompt": "Why was I charged twice?", "kind": "failed", "stage": "wider"},
    {"prompt": "The hub will not join my Wi-Fi.", "kind": "failed", "stage": "wider"},
    {"prompt": "Can the hub turn off the lights at night?", "kind": "low_confidence", "stage": "wider"},
    {"prompt": "Why was I charged twice?", "kind": "failed", "stage": "all"},
    {"prompt": "How do I export my data?", "kind": "low_confidence", "stage": "all"},
    {"prompt": "The status light blinks red.", "kind": "low_confidence", "stage": "all"},
    {"prompt": "Reset lost my scenes.", "kind": "failed", "stage": "all"},
)
LATENCY_FACTORS = tuple(round(1 + 0.05 * i, 2) for i in range(11))  # q6: 1.00, 1.05, …, 1.50


class Lab05NextExercise(Exercise):
    notebook = "05_slmops_pipeline.ipynb"  # in labs/source/


_PROMPTS = tuple(dict.fromkeys(r["prompt"] for r in FEEDBACK_SAMPLE)) + (
    "The app logs me out every hour.",
    "My refund has not arrived.",
    "Can two people share one account?",
)


def random_feedback(rng: Any) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """q4's hidden feedback and held-out prompts, drawn at every attempt: repeats, both kinds, mixed order."""
    prompts = list(_PROMPTS)
    held_out = tuple(str(p) for p in rng.choice(prompts, 2, replace=False))
    records = [
        {"prompt": str(rng.choice(prompts)), "kind": str(rng.choice(["failed", "low_confidence"])),
         "stage": str(rng.choice(["canary", "wider", "all"]))}
        for _ in range(int(rng.integers(8, 16)))
    ]  # fmt: skip
    records.append({"prompt": held_out[0], "kind": "failed", "stage": "all"})  # a held-out prompt comes back
    records.insert(int(rng.integers(len(records))), dict(records[int(rng.integers(len(records)))]))  # a repeat
    return records, held_out


def reference_next_round(feedback: list[dict[str, Any]], eval_prompts: tuple[str, ...], limit: int) -> list[str]:
    """Prompts to label: held-out ones dropped, each once, failed before low confidence, at most ``limit``."""
    order: list[str] = []
    for kind in ("failed", "low_confidence"):
        for record in feedback:
            prompt = record["prompt"]
            if record["kind"] == kind and prompt not in eval_prompts and prompt not in order:
                order.append(prompt)
    return order[:limit]


class NextRound(Lab05NextExercise):
    name, title, tier, var = "q4", "The next round's prompts to label", "core", "next_round"
    course_twins = (reference_next_round,)
    hint_text = (
        "Three rules: a prompt of the held-out evaluation set must stay unseen by training; a prompt flagged "
        "twice is labelled once; the answers that failed matter more than the unsure ones."
    )

    def check_value(self, next_round: Any) -> Result | None:
        rng = fresh_rng()  # hidden feedback, new at every attempt
        for limit in (20, int(rng.integers(2, 6)), 1):
            feedback, eval_prompts = random_feedback(rng)
            got = next_round([dict(r) for r in feedback], eval_prompts, limit)
            name = f"next_round(<{len(feedback)} records>, <{len(eval_prompts)} held-out prompts>, limit={limit})"
            if not isinstance(got, list) or not all(isinstance(p, str) for p in got):
                return incorrect(f"`{name}` should be a list of prompts (str), got {type(got).__name__}.")
            want = reference_next_round(feedback, eval_prompts, limit)
            if leaked := [p for p in got if p in eval_prompts]:
                return incorrect(f"`{name}` keeps {leaked[0]!r}, a held-out evaluation prompt: it must stay unseen.")
            if len(set(got)) != len(got):
                return incorrect(f"`{name}` lists a prompt twice; label each once.")
            if len(got) > limit:
                return incorrect(f"`{name}` has {len(got)} prompts; `limit` is {limit}.")
            if sorted(got) == sorted(want) and got != want:
                return incorrect(f"`{name}` has the right prompts in the wrong order: failed answers first.")
            if got != want:
                return incorrect(
                    f"`{name}` is not the list to label: failed first, then unsure, each in the order it arrived, "
                    "held-out prompts left out, at most `limit`."
                )
        return None


def reference_lineage(entries: Mapping[str, Mapping[str, Any]], entry_id: str) -> list[str]:
    chain = [entry_id]
    while (parent := entries[chain[-1]].get("parent")) is not None:
        chain.append(parent)
    return chain


class Lineage(Lab05NextExercise):
    name, title, tier, var = "q5", "An entry's lineage", "core", "lineage"
    hint_text = "Each entry names its parent; the first model has none. Follow the names until you reach it."

    course_twins = (reference_lineage, Registry.lineage)

    @staticmethod
    def registries(rng: Any) -> list[dict[str, dict[str, Any]]]:
        """Hidden registries, drawn at every attempt: each entry's parent is an earlier entry (or none)."""
        found = []
        for n in (int(rng.integers(3, 7)), int(rng.integers(5, 10))):
            ids = [f"{rng.choice(['kestrel', 'wren', 'heron'])}-v{i}-{int(rng.integers(100, 999))}" for i in range(n)]
            entries = {ids[0]: {"parent": None, "data": "references"}}
            for i in range(1, n):
                entries[ids[i]] = {"parent": ids[int(rng.integers(max(0, i - 2), i))], "data": f"round {i}"}
            found.append({k: entries[k] for k in (ids[i] for i in rng.permutation(n))})
        return found

    def check_value(self, lineage: Any) -> Result | None:
        for entries in self.registries(fresh_rng()):
            for entry_id in entries:
                got = lineage({k: dict(v) for k, v in entries.items()}, entry_id)
                name = f"lineage(registry, {entry_id!r})"
                want = reference_lineage(entries, entry_id)
                if not isinstance(got, list):
                    return incorrect(f"`{name}` should be a list of entry ids, got {type(got).__name__}.")
                if got == want[::-1] and len(want) > 1:
                    return incorrect(f"`{name}` runs from the root; start at the entry itself, then its parent.")
                if got == want[1:]:
                    return incorrect(f"`{name}` leaves out the entry itself; the lineage starts with it.")
                if got != want:
                    return incorrect(f"`{name}` is not the lineage: follow each entry's 'parent' until one has None.")
        return None


class ToleratedFactor(Lab05NextExercise):
    name, title, tier, var = "q6", "How much slower may the release run?", "stretch", None
    hint_text = (
        "lab_rollout(latency_factor) replays the rollout with the release that much slower than measured. "
        "Try every factor of LATENCY_FACTORS; the largest one whose rollout completes is the answer, and its "
        "last stage's slow_share is your evidence."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        factor = learner_answer(ns, "tolerated_factor")
        if wrong := is_number(factor, name="tolerated_factor"):
            return wrong
        if factor not in LATENCY_FACTORS:
            return incorrect("`tolerated_factor` should be one of the values in LATENCY_FACTORS.")
        evidence = learner_answer(ns, "slow_share_there")  # the justification: the factor alone can be guessed
        if contains_blank(evidence):
            raise PlaceholderError("`slow_share_there` is still ____")
        if wrong := is_number(evidence, name="slow_share_there"):
            return wrong
        report = lab_rollout(factor)
        if not math.isfinite(evidence) or close(evidence, report.stages[-1].slow_share, rtol=1e-6, atol=1e-9):
            return incorrect(
                "`slow_share_there` should be the slow_share of the last stage of lab_rollout(tolerated_factor)."
            )
        if report.halted:
            return incorrect(f"at {factor} the rollout halts: your evidence shows a stage over its latency budget.")
        faster = [f for f in LATENCY_FACTORS if f > factor]
        if faster and not lab_rollout(faster[0]).halted:
            return incorrect(
                "`tolerated_factor` is not the largest factor of LATENCY_FACTORS whose rollout completes: try each."
            )
        return None


class TicketsNeeded(Lab05NextExercise):
    name, title, tier, var = "q7", "How many tickets does the gate need?", "stretch", "tickets_for"
    hint_text = (
        "The test is paired and one-sided: the mean drop must clear z[1 − significance] standard errors, and "
        "with probability `power` it must do so for a real drop. A standard error is sd / √n: solve for n, "
        "and a number of tickets is a whole number."
    )
    course_twins = (tickets_needed,)

    @staticmethod
    def cases(rng: Any) -> list[tuple[float, float, float, float]]:
        """Hidden settings, drawn at every attempt: spread, drop, power and significance."""
        return [
            (round(float(rng.uniform(5, 25)), 1), round(float(rng.uniform(0.5, 6)), 1),
             float(rng.choice([0.8, 0.9, 0.95])), float(rng.choice([0.01, 0.05, 0.1])))
            for _ in range(4)
        ]  # fmt: skip

    def check_value(self, tickets_for: Any) -> Result | None:
        z = NormalDist().inv_cdf
        for sd, drop, power, significance in self.cases(fresh_rng()):
            got = tickets_for(sd, drop, power=power, significance=significance)
            name = f"tickets_for(sd={sd}, drop={drop}, power={power}, significance={significance})"
            if wrong := is_number(got, name=name):
                return wrong
            want = math.ceil(((z(1 - significance) + z(power)) * sd / drop) ** 2)
            raw = ((z(1 - significance) + z(power)) * sd / drop) ** 2
            slips = {
                "tests both sides; the gate only asks whether the candidate is worse (one-sided)": math.ceil(
                    ((z(1 - significance / 2) + z(power)) * sd / drop) ** 2
                ),
                "leaves out the power: with z[1 − significance] alone a real drop is caught only half the time": (
                    math.ceil((z(1 - significance) * sd / drop) ** 2)
                ),
                "is not squared: the standard error shrinks with √n, not n": math.ceil(
                    (z(1 - significance) + z(power)) * sd / drop
                ),
            }
            for says, value in slips.items():
                if got == value != want:
                    return incorrect(f"`{name}` {says}.")
            if got != want and close(got, raw, rtol=1e-6) is None:
                return incorrect(f"`{name}` is not a whole number: a number of tickets is whole; round up, never down.")
            if got != want:
                return incorrect(
                    f"`{name}` is not right: which two z values add up, what is squared, and which way is it rounded?"
                )
        return None
