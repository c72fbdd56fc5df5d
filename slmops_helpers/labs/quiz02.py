"""Lab 02's quiz: temperature, the T² factor, forward and reverse KL, the student's size,
and what training on the teacher's answers alone copies."""

from __future__ import annotations

import math

from .quiz import Choice, Numeric


class Quiz02(Choice):
    """A lab 02 quiz question; ``solution()`` reads the answer from the lab's source notebook."""

    notebook = "02_distillation.ipynb"


class Quiz02Numeric(Numeric):
    notebook = "02_distillation.ipynb"


def _softmax_top(logits: tuple[float, ...], temperature: float) -> float:
    exps = [math.exp(x / temperature) for x in logits]
    return max(exps) / sum(exps)


class WhyTSquared(Quiz02):
    name, var, title = "quiz1", "quiz1_answer", "Why T² in the KD loss"
    prompt = "The distillation loss multiplies the KL term by T² (section 2.4). Why?"
    options = {
        "a": "To make the loss larger, so training converges faster.",
        "b": "The soft term's gradients shrink roughly as 1/T²; T² keeps its weight independent of T.",
        "c": "It converts the KL divergence from nats to bits.",
        "d": "It undoes the softmax's normalisation of the logits.",
    }
    answer = "b"
    why_not = {
        "a": "a constant factor on every loss would just rescale the learning rate; ask what changes when T changes.",
        "c": "nats to bits is a factor of ln 2, not T²; ask what dividing the logits by T does to the gradients.",
        "d": "the softmax is applied to logits / T on both sides; ask how big the gradients of that term are.",
    }
    hint_text = (
        "Dividing the logits by T flattens both distributions: what happens to the size of the soft term's gradients?"
    )
    explanation = (
        "Hinton et al. (2015): the soft targets' gradients scale as 1/T², so without T² a higher temperature "
        "would quietly turn the soft term down against the cross-entropy."
    )


class KLWeight(Quiz02Numeric):
    name, var, title = "quiz2", "quiz2_answer", "The weight of the KL term"
    prompt = "With T = 4 and α = 0.5, by what factor does the course's KD loss multiply KL(teacher‖student)?"
    hint_text = "Write out the loss: which two factors stand in front of the KL term?"
    explanation = "α · T² = 0.5 × 16 = 8: the soft term keeps a weight comparable to the cross-entropy's 1 − α."
    look_at = "The loss is α · T² · KL + (1 − α) · CE."

    def expected(self) -> float:
        return 0.5 * 4**2

    def slips(self) -> dict[str, float]:
        return {
            "that is T² alone; α multiplies the soft term too.": 16.0,
            "that is α · T: the temperature enters squared.": 2.0,
            "that is 1 − α, the cross-entropy's weight.": 0.5,
        }


class SoftenedTop(Quiz02Numeric):
    name, var, title = "quiz3", "quiz3_answer", "The favourite at T = 2"
    prompt = (
        "A teacher's logits over three tokens are [2, 1, 0]. At temperature T = 2, what probability does the "
        "softened distribution give the top token? (0 to 1)"
    )
    hint_text = "Divide the logits by T first, then take the softmax."
    explanation = (
        "softmax([1, 0.5, 0]) gives the favourite about 0.51, against 0.67 at T = 1: the runners-up come into view."
    )
    look_at = "softmax(logits / T): exp of each, divided by their sum."

    def expected(self) -> float:
        return _softmax_top((2, 1, 0), 2)

    def slips(self) -> dict[str, float]:
        return {
            "that is the probability at T = 1; divide the logits by T first.": _softmax_top((2, 1, 0), 1),
            "that multiplies the logits by T; a temperature divides them.": _softmax_top((2, 1, 0), 0.5),
        }


class ForwardKL(Quiz02):
    name, var, title = "quiz4", "quiz4_answer", "Forward or reverse KL"
    prompt = "Which divergence pushes the student to put probability on *every* token the teacher finds plausible?"
    options = {
        "a": "Forward KL, KL(teacher‖student).",
        "b": "Reverse KL, KL(student‖teacher).",
        "c": "Both equally: KL is symmetric.",
        "d": "Neither: only the cross-entropy on the references does.",
    }
    answer = "a"
    why_not = {
        "b": "reverse KL punishes mass where the teacher puts little, so the student may settle on one choice.",
        "c": "KL is not symmetric; section 2.4 contrasts the two directions.",
        "d": "the cross-entropy sees only the reference token; ask which term sees the teacher's whole distribution.",
    }
    hint_text = "Which direction weights the penalty by the teacher's probabilities?"
    explanation = (
        "Forward KL averages over the teacher's distribution: a token the teacher finds plausible and the "
        "student misses costs a lot, so the student spreads out."
    )


class EmbeddingDoesNotShrink(Quiz02):
    name, var, title = "quiz5", "quiz5_answer", "Why half the blocks is not half the model"
    prompt = "A student keeps half of the teacher's blocks. Why does it keep more than half of the parameters?"
    options = {
        "a": "The blocks near the output are larger than the others.",
        "b": "The token embedding (shared with the output head) does not shrink with depth.",
        "c": "Distillation adds an extra projection layer to the student.",
        "d": "The student keeps the teacher's optimizer state.",
    }
    answer = "b"
    why_not = {
        "a": "every decoder block of this model has the same size; look at what is not a block.",
        "c": "the student is cut out of the teacher; it adds nothing. Look at what is not a block.",
        "d": "optimizer state is not part of the model's parameters.",
    }
    hint_text = "Write the student's size as a sum of parts: which part does not depend on the number of blocks?"
    explanation = (
        "Parameters = embedding + blocks × block size + norm: for a small model the embedding is a large fixed share."
    )


class CopiedMistakes(Quiz02):
    name, var, title = "quiz6", "quiz6_answer", "Training on the teacher's answers alone"
    prompt = (
        "Sequence-level distillation trains the student on the teacher's answers in place of the human "
        "references. What is its main risk (section 2.6 and 2.8)?"
    )
    options = {
        "a": "The student copies the teacher's mistakes: its ceiling is the teacher's agreement with the labels.",
        "b": "The student's answers become longer than the teacher's.",
        "c": "It needs the teacher's logits, which are too large to cache.",
        "d": "It cannot use a temperature, so training diverges.",
    }
    answer = "a"
    why_not = {
        "b": "nothing in the method lengthens answers; ask what the student learns when the teacher is wrong.",
        "c": "sequence-level KD needs only the teacher's text, not its logits.",
        "d": "no temperature is involved, and nothing diverges; ask where the targets come from.",
    }
    hint_text = "Where do the targets come from, and how often did the teacher agree with the human labels?"
    explanation = (
        "The teacher's category agrees with the human label on only part of the prompts; logit KD on the "
        "references keeps the labels and adds the teacher's distribution."
    )


class TeacherFirst(Quiz02):
    name, var, title = "quiz7", "quiz7_answer", "Make the teacher good first"
    prompt = "Section 2.1 checks the teacher against trivial baselines before distilling. Why?"
    options = {
        "a": "A student inherits its teacher's ceiling: a teacher no better than the baselines has nothing to teach.",
        "b": "The baselines are used as the student's training data.",
        "c": "It makes the teacher faster.",
        "d": "The KD loss needs the baselines' logits.",
    }
    answer = "a"
    why_not = {
        "b": "the student trains on references and the teacher's outputs; what does a weak teacher pass on?",
        "c": "checking a model does not change its speed; what does a weak teacher pass on?",
        "d": "the KD loss uses the teacher's logits only; what does a weak teacher pass on?",
    }
    hint_text = (
        "What can a student learn from a teacher that answers no better than always giving the most common label?"
    )
    explanation = (
        "Distillation copies the teacher: prove it is worth copying first, against answers that need no model."
    )


class UndistilledTwin(Quiz02):
    name, var, title = "quiz8", "quiz8_answer", "How to credit distillation"
    prompt = (
        "A distilled student scores well. What must it be compared with to credit distillation for it (section 2.6)?"
    )
    options = {
        "a": "The teacher.",
        "b": "An undistilled student: the same blocks, the same data and steps, no teacher.",
        "c": "The untuned base model.",
        "d": "Its own training loss.",
    }
    answer = "b"
    why_not = {
        "a": "the teacher is larger; beating or trailing it says nothing about what the teacher's signal added.",
        "c": "the base differs from the student in size and training; which comparison isolates the teacher's signal?",
        "d": "a lower loss is not a better answer; which comparison isolates the teacher's signal?",
    }
    hint_text = "Change one thing at a time: which model differs from the distilled student only by the teacher?"
    explanation = "Only the twin isolates the teacher's contribution; the gap between them is what distillation bought."


QUIZ = [
    WhyTSquared,
    KLWeight,
    SoftenedTop,
    ForwardKL,
    EmbeddingDoesNotShrink,
    CopiedMistakes,
    TeacherFirst,
    UndistilledTwin,
]
