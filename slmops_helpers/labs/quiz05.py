"""Lab 05's quiz: the gate as decisions, relative tolerances, the canary, rollback counts,
lineage and feedback."""

from __future__ import annotations

from .quiz import Choice, Numeric


class Quiz05(Choice):
    """A lab 05 quiz question; ``solution()`` reads the answer from the lab's source notebook."""

    notebook = "05_slmops_pipeline.ipynb"


class Quiz05Numeric(Numeric):
    notebook = "05_slmops_pipeline.ipynb"


class Canary(Quiz05):
    name, var, title = "quiz1", "quiz1_answer", "What a canary stage protects"
    prompt = "The rollout starts with a canary stage of 1% of the fleet. What does it protect against?"
    options = {
        "a": "A build that scores worse on the held-out tickets.",
        "b": "A build that passed every test but fails in the field: it reaches a few devices, halts, and rolls back.",
        "c": "A package whose files were changed on the way.",
        "d": "Devices that do not have enough memory for any variant.",
    }
    answer = "b"
    why_not = {
        "a": "the quality gate refuses that before any device sees it; what can only the fleet reveal?",
        "c": "the manifest's hashes catch that on the device; what can only the fleet reveal?",
        "d": "the fit check leaves those on the old version; what can only the fleet reveal?",
    }
    hint_text = "Which faults does no benchmark on the build machine see?"
    explanation = (
        "Faults only the field shows (a broken file on one device family) hit the canary's few "
        "devices, which roll back."
    )


class GateLimits(Quiz05):
    name, var, title = "quiz2", "quiz2_answer", "Where the gate's limits come from"
    prompt = "Every rule in `gate.yaml` has a limit (a score drop, a latency rise). What is such a limit?"
    options = {
        "a": "A measurement, taken from the benchmark.",
        "b": "A decision the team writes down, for CI to check.",
        "c": "A constant of the model's architecture.",
        "d": "The noise of the last run, computed automatically.",
    }
    answer = "b"
    why_not = {
        "a": "the benchmark measures the candidate; the limit says what is acceptable. Who decides that?",
        "c": "the architecture fixes sizes, not what the team accepts.",
        "d": "noise informs the choice, but the number in the file is chosen; who chooses it?",
    }
    hint_text = "Reread the first paragraph of section 5.6."
    explanation = (
        "Measurements go into the gate; the limits are the team's written decision, which CI "
        "applies the same way every time."
    )


class RelativeTolerance(Quiz05Numeric):
    name, var, title = "quiz3", "quiz3_answer", "A latency rule in percent"
    prompt = (
        "A gate rule allows `max_increase_pct: 10` on `ms_per_token_p50`. Suppose production measured 20.0 ms. "
        "What is the largest candidate p50, in ms, that still passes?"
    )
    hint_text = "A percentage of production's value, added to it."
    explanation = "20.0 × 1.10 = 22.0 ms: a relative tolerance scales with the reference."
    look_at = "The rule is relative: production × (1 + 10/100)."

    def expected(self) -> float:
        return 20.0 * 1.10

    def slips(self) -> dict[str, float]:
        return {
            "that adds 10 ms; the rule is a percentage.": 30.0,
            "that is the allowed increase alone; add it to production's value.": 2.0,
        }


class RolledBack(Quiz05Numeric):
    name, var, title = "quiz4", "quiz4_answer", "How many devices roll back"
    prompt = (
        "A 10,000-device fleet, stages at cumulative shares 1% → 20% → 100%, every device served. The second "
        "stage breaks its error budget and halts. How many devices are rolled back?"
    )
    hint_text = "Which devices run the new version when the second stage halts?"
    explanation = "The shares are cumulative: 20% of 10,000 = 2,000 devices, the canary's included, go back."
    look_at = "Stage shares are cumulative: count every device on the new version at the halt."

    def expected(self) -> float:
        return 2000

    def slips(self) -> dict[str, float]:
        return {
            "that is the second stage's new devices only; the canary's devices run the new version too.": 1900,
            "that is the canary alone; the halt comes after the second stage began.": 100,
            "that is the whole fleet; only devices on the new version roll back.": 10000,
        }


class Lineage(Quiz05):
    name, var, title = "quiz5", "quiz5_answer", "Why the registry records lineage"
    prompt = "The registry records each entry's parent, training data and hyperparameters. What is that for?"
    options = {
        "a": "To make the package smaller.",
        "b": "To trace a regression back to the round, data and settings that produced it, and rebuild it.",
        "c": "To let the gate skip measuring a candidate.",
        "d": "To encrypt the model.",
    }
    answer = "b"
    why_not = {
        "a": "lineage is metadata beside the package; what question does it answer later?",
        "c": "the gate always measures; lineage answers a different question.",
        "d": "nothing is encrypted; what question does lineage answer later?",
    }
    hint_text = "Think of the day a shipped model misbehaves: what do you need to know?"
    explanation = (
        "With lineage, 'what changed?' has an answer: the parent model, the data and the settings of each round."
    )


class FeedbackNextRound(Quiz05):
    name, var, title = "quiz6", "quiz6_answer", "Feedback for the next round"
    prompt = "The rollout collects flagged answers (failed, low confidence). How do they enter the next round?"
    options = {
        "a": "As training targets as they are: the model's own answers.",
        "b": "As prompts to label (human references, or the teacher's answers once checked), then training data.",
        "c": "They replace the held-out evaluation set.",
        "d": "They are discarded: only the original data trains the model.",
    }
    answer = "b"
    why_not = {
        "a": "a flagged answer is likely wrong: training on it teaches the mistake. What is missing?",
        "c": "the evaluation set must stay fixed to compare rounds; where do new examples go?",
        "d": "section 5.8 keeps them for a reason; what do they become?",
    }
    hint_text = "A flagged prompt is valuable; a flagged answer is not. What must happen between the two?"
    explanation = (
        "The fleet points at the prompts the model handles badly; labelled, they become the next round's training set."
    )


class OverQuantized(Quiz05):
    name, var, title = "quiz7", "quiz7_answer", "The smaller, faster build"
    prompt = "Notebook 05 also packages an over-quantized build: smaller and faster than the candidate. What stops it?"
    options = {
        "a": "The quality gate: its score drops more than the policy allows against production.",
        "b": "The canary stage.",
        "c": "The manifest's hashes.",
        "d": "Nothing: smaller and faster always ship.",
    }
    answer = "a"
    why_not = {
        "b": "a build that the gate refuses never reaches the canary; which step compares its answers?",
        "c": "its files are intact; which step compares its answers with production's?",
        "d": "section 5.11: a smaller, faster build can still be the wrong one. Which step says so?",
    }
    hint_text = "Which step compares the candidate's task score with production's before any device sees it?"
    explanation = "The gate refuses what answers worse, however small and fast; speed never buys back quality."


class SideBySide(Quiz05):
    name, var, title = "quiz8", "quiz8_answer", "Why measure every package in one run"
    prompt = "Section 5.4 measures production, the candidate and the over-quantized build side by side. Why in one run?"
    options = {
        "a": "The same tickets and the same machine: the differences then come from the packages.",
        "b": "It is faster than measuring each on its own.",
        "c": "The registry accepts only one measurement.",
        "d": "To average their scores.",
    }
    answer = "a"
    why_not = {
        "b": "speed is not the reason; what would differ between two separate runs?",
        "c": "the registry stores each entry's metrics; what would differ between two separate runs?",
        "d": "each package keeps its own score; what would differ between two separate runs?",
    }
    hint_text = "What else changes when two numbers come from different days, machines or tickets?"
    explanation = "Holding tickets and machine fixed turns a comparison of numbers into a comparison of packages."


QUIZ = [Canary, GateLimits, RelativeTolerance, RolledBack, Lineage, FeedbackNextRound, OverQuantized, SideBySide]
