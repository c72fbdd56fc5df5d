"""Lab 04's exercises on section 4.7: when a speculative draft pays (the cost model, then
the draft cost that would reach a target speedup), and the token mask of one field of
the ticket format. The rest of lab 04 is in ``exercises`` and ``bench``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...decoding.constrained import TicketFormat
from ...decoding.speculative import expected_speedup, expected_tokens_per_round
from .. import Exercise, Result, close, incorrect, is_number, learner_answer
from ..checks import fresh_rng

# q6: the speedup a team wants, and the costs of the CPU it measured (relative to one target pass)
TARGET_SPEEDUP = 1.5
PLAN = {"acceptance": 0.7, "gamma": 4, "verify_ratio": 1.2}
# q7: the error-code field: "none" or "E-" and three digits, then the end of the line
CODES = ("none", *(f"E-{i:03d}" for i in range(1000)))
FIELD_END = "\n"
# q7: a small vocabulary with the traps real ones have: tokens spanning several characters,
# tokens that run past the field's end, lookalikes, and a special token that decodes to nothing.
VOCAB = (
    "", "E", "E-", "E-1", "-", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "104", "0\n", "4\n", "\n",
    "\nreply", "n", "no", "none",
    "none\n", "non", "o", "one", "e", "N", "e-", " E", "E-1000", "1000", "x", "reply", ":",
)  # fmt: skip
TYPED = ("", "E", "E-", "E-1", "E-10", "E-104", "n", "no", "non", "none")


class Lab04DecodingExercise(Exercise):
    notebook = "04_deployment.ipynb"  # in labs/source/


def reference_field_tokens(typed: str, vocab: tuple[str, ...] = VOCAB) -> set[int]:
    """Ids of tokens whose text keeps ``typed + text`` a prefix of some code followed by the line's end."""
    lines = [code + FIELD_END for code in CODES]
    return {i for i, t in enumerate(vocab) if t and any(line.startswith(typed + t) for line in lines)}


class DraftPays(Lab04DecodingExercise):
    name, title, tier, var = "q6", "When a draft pays: the speculative cost model", "core", None
    hint_text = (
        "Count what one round yields: the guesses the target keeps (each kept with probability a, and a round "
        "stops at the first miss) and one token the target always adds itself. Then divide the time the target "
        "alone would spend on those tokens by what the round costs."
    )

    course_twins = (expected_tokens_per_round, expected_speedup)

    @staticmethod
    def cases(rng: Any) -> list[tuple[float, int]]:
        """Hidden acceptance rates and draft lengths, drawn at every attempt (the edges 0 and 1 included)."""
        cases = [(round(float(rng.uniform(0.05, 0.95)), 2), int(rng.integers(1, 8))) for _ in range(3)]
        return cases + [(0.0, int(rng.integers(1, 6))), (1.0, int(rng.integers(1, 6)))]

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        per_round = learner_answer(ns, "tokens_per_round")
        rng = fresh_rng()
        cases = self.cases(rng)
        for a, gamma in cases:
            got, want = per_round(a, gamma), expected_tokens_per_round(a, gamma)
            name = f"tokens_per_round({a}, {gamma})"
            if wrong := is_number(got, name=name):
                return wrong
            if close(got, want - 1, rtol=1e-6) is None:
                return incorrect(f"`{name}` misses the token the target adds itself at the end of every round.")
            if close(got, 1 + a * gamma, rtol=1e-6) is None and close(got, want, rtol=1e-6) is not None:
                return incorrect(
                    f"`{name}`: a round stops at the first rejected guess; a guess counts only if all before it held."
                )
            if wrong := close(got, want, rtol=1e-6, name=name):
                return wrong
        speedup = learner_answer(ns, "speedup")
        for a, gamma in cases:
            for _ in range(2):
                target_ms = round(float(rng.uniform(5, 40)), 1)
                draft_ms = round(target_ms * float(rng.uniform(0.05, 1.0)), 2)
                verify_ms = round(target_ms * float(rng.uniform(1.05, 1.8)), 2)
                got = speedup(a, gamma, draft_ms, target_ms, verify_ms)
                want = expected_speedup(a, gamma, draft_ms, target_ms, verify_ms)
                name = f"speedup({a}, {gamma}, {draft_ms}, {target_ms}, {verify_ms})"
                if wrong := is_number(got, name=name):
                    return wrong
                if (
                    close(got, want * (gamma * draft_ms + verify_ms) / (gamma * draft_ms + target_ms), rtol=1e-6)
                    is None
                    and verify_ms != target_ms
                ):
                    return incorrect(
                        f"`{name}`: the verification pass scores gamma + 1 tokens; it costs verify_ms, not target_ms."
                    )
                if wrong := close(got, want, rtol=1e-6, name=name):
                    return wrong
        ratio = learner_answer(ns, "max_draft_ratio")
        if wrong := is_number(ratio, name="max_draft_ratio"):
            return wrong
        tokens = expected_tokens_per_round(PLAN["acceptance"], PLAN["gamma"])
        want = (tokens / TARGET_SPEEDUP - PLAN["verify_ratio"]) / PLAN["gamma"]
        if wrong := close(ratio, want, rtol=1e-3, name="max_draft_ratio"):
            return incorrect(
                f"{wrong.message}. Set speedup(...) = TARGET_SPEEDUP with target_ms = 1 and verify_ms = "
                "PLAN['verify_ratio'], and solve for draft_ms."
            )
        return None


class FieldMask(Lab04DecodingExercise):
    name, title, tier, var = "q7", "The token mask of the error-code field", "core", "field_tokens"
    hint_text = (
        "A token is allowed when what has been typed, followed by the token's whole text, could still grow into "
        "one complete value of the field and its line end. Tokens longer than one character count, and so do "
        "tokens that end the line."
    )

    course_twins = (reference_field_tokens, TicketFormat.allowed, TicketFormat.follow)

    @staticmethod
    def hidden_cases(rng: Any) -> tuple[tuple[str, ...], list[str]]:
        """VOCAB in a fresh order (token ids change) and fresh typed prefixes, at every attempt."""
        vocab = ("", *(VOCAB[1:][i] for i in rng.permutation(len(VOCAB) - 1)))  # id 0 stays the empty token
        codes = [CODES[int(i)] for i in rng.integers(0, len(CODES), 4)]
        typed = ["", *(c[: int(rng.integers(1, len(c) + 1))] for c in codes), "n", "no"]
        return vocab, typed

    def check_value(self, field_tokens: Any) -> Result | None:
        vocab, typed_cases = self.hidden_cases(fresh_rng())
        for typed in typed_cases:
            got = field_tokens(typed, vocab)
            name = f"field_tokens({typed!r}, <the vocabulary, shuffled>)"
            try:
                got = {int(i) for i in got}
            except (TypeError, ValueError):
                return incorrect(f"`{name}` should return token ids (ints), got {got!r}.")
            want = reference_field_tokens(typed, vocab)
            if 0 in got:
                return incorrect(f"`{name}` allows token 0, whose text is empty: it would never move the answer on.")
            if got != want:  # one example teaches the rule; the whole list would be an answer key
                example = sorted(got - want or want - got, key=lambda i: vocab[i])[0]
                which = "allows" if example in got else "forbids"
                return incorrect(
                    f"`{name}` {which} {vocab[example]!r} wrongly: after {typed!r}, what could that token's whole "
                    "text still grow into?"
                )
        return None
