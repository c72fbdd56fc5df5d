"""Lab 05's quiz: the canary, the gate's limits, pseudo-labels, production as the reference,
lineage, feedback, the over-quantized build and measuring side by side."""

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


class PseudoLabels(Quiz05):
    name, var, title = "quiz3", "quiz3_answer", "What training on the teacher's answers is here"
    prompt = (
        "Section 5.2 trains the candidate on section 2's teacher answers, and the model trained is the same size "
        "as that teacher. What is this, and why not distillation?"
    )
    options = {
        "a": "Distillation: any training on a teacher's answers is distillation.",
        "b": "Pseudo-labelling (self-training): another model's answers serve as extra targets; nothing gets "
        "smaller, so a gain can only come from the extra targets.",
        "c": "Pruning: the teacher's answers decide which weights to remove.",
        "d": "Quantization: the teacher's answers calibrate the int4 scales.",
    }
    answer = "b"
    why_not = {
        "a": "section 2 distilled into a *smaller* student; what does this candidate's size say about what it gains?",
        "c": "no weight is removed in section 5.2; look at what the answers are used as.",
        "d": "quantization happens when the candidate is packaged; look at what the answers are used as in training.",
    }
    hint_text = "Compare the sizes of the model that answered and the model that learns."
    explanation = (
        "Distillation buys a smaller model; with no size to gain, the teacher's answers are just more "
        "targets, and the gate decides whether they helped."
    )


class AgainstProduction(Quiz05):
    name, var, title = "quiz4", "quiz4_answer", "Why the candidate is judged against production"
    prompt = (
        "Section 5.1 makes production, not the untuned base, the reference every candidate is measured against. Why?"
    )
    options = {
        "a": "Production is by definition the best model that can be trained.",
        "b": "The untuned base cannot be scored on the held-out tickets.",
        "c": "The decision is whether to replace what devices run now: a candidate that beats the base but not "
        "production is still a regression for every user.",
        "d": "Measuring against production makes every candidate look better.",
    }
    answer = "c"
    why_not = {
        "a": "production is only what ships today; a candidate can beat it. What decision does the gate take?",
        "b": "sections 3 and 4 score it on the same tickets; what decision does the gate take?",
        "d": "production is usually the harder bar; what decision does the gate take?",
    }
    hint_text = "What does a release change for a device that already runs the assistant?"
    explanation = (
        "A release replaces production, so production is the bar; the base is only the floor a first "
        "release must clear."
    )


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


QUIZ = [Canary, GateLimits, PseudoLabels, AgainstProduction, Lineage, FeedbackNextRound, OverQuantized, SideBySide]
