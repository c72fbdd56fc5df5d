"""Lab 01's quiz: the life cycle, footprint, the two speeds, pruning, the fleet, runtimes and records."""

from __future__ import annotations

import numpy as np

from ..fleet import RUNTIME_OVERHEAD
from .quiz import Choice, Numeric


class Quiz01(Choice):
    """A lab 01 quiz question; ``solution()`` reads the answer from the lab's source notebook."""

    notebook = "01_introduction.ipynb"


class Quiz01Numeric(Numeric):
    notebook = "01_introduction.ipynb"


class GateInTheLoop(Quiz01):
    name, var, title = "quiz1", "quiz1_answer", "Where the quality gate stands in the loop"
    prompt = (
        "In section 1.1's life cycle, the loop comes round: a model has been retrained on the field's "
        "feedback. Where does the quality gate stand?"
    )
    options = {
        "a": "Before compression: it chooses the base model.",
        "b": "After the rollout has reached every device: it grades what the field saw.",
        "c": "Between the retrained version and its rollout: devices get it only after it passed.",
        "d": "Nowhere: a small model is checked by its size alone.",
    }
    answer = "c"
    why_not = {
        "a": "choosing the base is selection, at the start; the gate judges a candidate against what runs now.",
        "b": "by then every device runs it; a gate is only worth having while it can still say no.",
        "d": "size is one of its checks; the task score and the latency are others, measured before shipping.",
    }
    hint_text = "A gate that can refuse must stand before something. Before what?"
    explanation = (
        "The gate compares the candidate with production before any device gets it; the staged rollout "
        "after it then limits what a bad build that passed can still reach."
    )


class WhyMeasuredIsLarger(Quiz01):
    name, var, title = "quiz2", "quiz2_answer", "Why the measured int4 model is larger than the formula"
    prompt = (
        "Section 1.4 computes int4 as parameters × 0.5 bytes, then measures the quantized model: "
        "the measurement is larger. Which reason is the main one?"
    )
    options = {
        "a": "int4 values are padded to one byte each in memory.",
        "b": "Every group of weights also stores a scale (and kept-in-float layers stay large).",
        "c": "PyTorch keeps a gradient beside every weight.",
        "d": "The tokenizer's vocabulary is stored inside the weights.",
    }
    answer = "b"
    why_not = {
        "a": "packed int4 stores two values per byte; look at what else a quantized group must store.",
        "c": "gradients exist only while training; section 1.4 measures a model for inference.",
        "d": "the tokenizer is a separate file; look at what a quantized group stores besides its integers.",
    }
    hint_text = "To turn a 4-bit integer back into a weight you need one more number per group."
    explanation = "Group scales add bytes per weight, and layers left in float (the embedding) add more."


class TwoSpeeds(Quiz01):
    name, var, title = "quiz3", "quiz3_answer", "Which speed a long prompt hurts"
    prompt = "A user pastes a long ticket into the assistant. Which of the two speeds of section 1.5 grows most?"
    options = {
        "a": "Tokens per second while the answer streams.",
        "b": "Time to first token.",
        "c": "Neither: the prompt is read once, for free.",
        "d": "The time to load the model.",
    }
    answer = "b"
    why_not = {
        "a": (
            "once the prompt is in the KV cache, each new token costs about the same; "
            "look at what happens before the first one."
        ),
        "c": "reading the prompt is a forward pass over every prompt token; when does it happen?",
        "d": "the model loads once, before any prompt arrives.",
    }
    hint_text = "The whole prompt goes through the model before the first answer token can come out."
    explanation = "The prefill processes every prompt token before the first answer token: TTFT grows with the prompt."


class P95Latency(Quiz01Numeric):
    name, var, title = "quiz4", "quiz4_answer", "The p95 of ten timings"
    prompt = (
        "Ten answers took these milliseconds per token: 70, 72, 69, 71, 70, 73, 70, 95, 71, 140. "
        "What is their p95 (95th percentile, numpy's default linear interpolation, `np.percentile`)?"
    )
    hint_text = "Compute it rather than guess: np.percentile(values, 95)."
    explanation = "Two slow answers out of ten pull the p95 far above the median (70.5): the tail is what users notice."
    look_at = "Use np.percentile(values, 95), not the mean or the median."
    TIMINGS = (70, 72, 69, 71, 70, 73, 70, 95, 71, 140)

    def expected(self) -> float:
        return float(np.percentile(self.TIMINGS, 95))

    def slips(self) -> dict[str, float]:
        return {
            "that is the median (p50); the question asks for the 95th percentile.": float(np.median(self.TIMINGS)),
            "that is the mean; a percentile sorts the values.": float(np.mean(self.TIMINGS)),
            "that is the maximum; p95 interpolates between the two largest values.": float(max(self.TIMINGS)),
        }


class WhyPruningDidNotShrink(Quiz01):
    name, var, title = "quiz5", "quiz5_answer", "Why half the weights at zero saved nothing"
    prompt = "Section 1.7 prunes 50% of a layer's weights. Why does the saved model not get smaller?"
    options = {
        "a": "A dense tensor stores every entry, zero or not; only a sparse format can skip the zeros.",
        "b": "Pruning only rounds the weights, it does not zero them.",
        "c": "The optimizer restores the pruned weights when the model is saved.",
        "d": "Zeros take more bytes than other numbers in floating point.",
    }
    answer = "a"
    why_not = {
        "b": "magnitude pruning sets the smallest weights to exactly zero; ask how a dense tensor stores a zero.",
        "c": "nothing trains after pruning here; ask how a dense tensor stores a zero.",
        "d": "a float zero takes the same bytes as any float; that is the point to look at.",
    }
    hint_text = "Compare how many bytes a dense tensor spends on one zero and on one non-zero value."
    explanation = (
        "Dense storage spends the same bytes on a zero; CSR stores value + index per non-zero, so at 50% sparsity "
        "with fp32 values and int32 indices it breaks even (notebook 01's csr_over_dense_at_50 ≈ 1.0)."
    )


class FleetBudget(Quiz01Numeric):
    name, var, title = "quiz6", "quiz6_answer", "A device's model budget"
    prompt = (
        "A home hub has 2 GiB of RAM and the assistant may use 25% of it (section 1.8). The course's fleet "
        f"calculator says a model needs its weights × {RUNTIME_OVERHEAD} (the KV cache, activations and runtime "
        "on top). How many MiB of weights at most fit?"
    )
    hint_text = "Start from the hub's RAM in MiB, take the assistant's share, then undo the overhead factor."
    explanation = (
        f"2048 × 0.25 / {RUNTIME_OVERHEAD} ≈ {2048 * 0.25 / RUNTIME_OVERHEAD:.0f} MiB of weights: precision decides "
        "which models fit that."
    )
    look_at = "2 GiB is 2048 MiB; the budget is the share of it, and the weights are the budget over the factor."

    def expected(self) -> float:
        return 2048 * 0.25 / RUNTIME_OVERHEAD

    def slips(self) -> dict[str, float]:
        return {
            "that forgets the runtime overhead.": 2048 * 0.25,
            "that multiplies by the overhead factor; the weights are what is left once it is paid.": 2048
            * 0.25
            * RUNTIME_OVERHEAD,
            "that uses 2000 MiB for 2 GiB; a GiB is 1024 MiB.": 2000 * 0.25 / RUNTIME_OVERHEAD,
        }


class RuntimesEP(Quiz01):
    name, var, title = "quiz7", "quiz7_answer", "How one model file runs on many chips"
    prompt = "ONNX Runtime runs the same model file on CPUs, GPUs and NPUs (section 1.9). Through what?"
    options = {
        "a": "A separate model file exported for each kind of chip.",
        "b": "Execution providers: back ends that run the graph on each kind of hardware.",
        "c": "Recompiling PyTorch on the device.",
        "d": "The tokenizer, which picks the chip.",
    }
    answer = "b"
    why_not = {
        "a": "the point of section 1.9 is one file for every device; what runs it on each chip?",
        "c": "devices run ONNX Runtime, not PyTorch; what inside ONNX Runtime targets each chip?",
        "d": "the tokenizer turns text into ids; it runs nothing on a chip.",
    }
    hint_text = "Section 1.9 prints the list your machine offers."
    explanation = "onnxruntime.get_available_providers() lists them; the same graph runs on each, chosen at load time."


class RecordedMetrics(Quiz01):
    name, var, title = "quiz8", "quiz8_answer", "Why every run records its setting"
    prompt = "Each notebook writes its metrics with `profile`, `model`, `device` and the machine (section 1.10). Why?"
    options = {
        "a": "So that each number can be traced to where and how it was measured, and set beside the reference run.",
        "b": "To make the JSON file larger.",
        "c": "Because the gate needs the CPU model to pass.",
        "d": "So that the notebook can skip cells.",
    }
    answer = "a"
    why_not = {
        "b": "size is not a goal; what would you need to know to trust or compare a number?",
        "c": "the gate compares metrics, not machines; what do the extra fields let a reader do?",
        "d": "no cell is skipped; what do the extra fields let a reader do?",
    }
    hint_text = "A smoke run and a full run give different numbers: what must a reader know to compare them?"
    explanation = (
        "A number without its profile and machine cannot be compared: the course shows this run "
        "beside the full reference run, labelled."
    )


QUIZ = [
    GateInTheLoop,
    WhyMeasuredIsLarger,
    TwoSpeeds,
    P95Latency,
    WhyPruningDidNotShrink,
    FleetBudget,
    RuntimesEP,
    RecordedMetrics,
]
