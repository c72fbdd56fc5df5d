"""Lab 04's quiz: a smoke run beside the reference, the KV cache, why int8 on every MatMul
broke this model, which model is deployed, the gate and the package's hashes."""

from __future__ import annotations

from .measured import measured
from .quiz import Choice, Numeric

STEM = "04_deployment"


class Quiz04(Choice):
    """A lab 04 quiz question; ``solution()`` reads the answer from the lab's source notebook."""

    notebook = "04_deployment.ipynb"


class Quiz04Numeric(Numeric):
    notebook = "04_deployment.ipynb"


class BesideTheReference(Quiz04):
    name, var, title = "quiz1", "quiz1_answer", "A smoke run beside the reference run"
    prompt = (
        "Section 4.11 sets this run beside the full reference run. On the smoke run's few tickets, int4 scores "
        "several points below fp32; on the reference run's many more tickets the two are within a point. "
        "Which reading is right?"
    )
    options = {
        "a": "int4 is broken: the smoke run shows the real drop, and the reference run hides it.",
        "b": "Average the two runs' gaps: both are measurements.",
        "c": "Sizes and speeds can be read from either run (they belong to the format); the score gap from the "
        "reference run: on a handful of tickets, one or two different answers move a score by several points.",
        "d": "Neither: scores from different profiles cannot be compared at all.",
    }
    answer = "c"
    why_not = {
        "a": "how many answers does a few-point gap on a handful of tickets amount to? Look at the intervals.",
        "b": "the two runs do not weigh the same: which one scored more tickets?",
        "d": "both runs score the same kind of tickets the same way; what differs is how many, so how sure each is.",
    }
    hint_text = "How many tickets does each run score, and how wide is a score's interval on each?"
    explanation = (
        "The smoke run shows the mechanics in minutes; lessons about scores come from the run with enough "
        "tickets, and a gap inside the interval is no finding in either."
    )


class KVCachePerToken(Quiz04Numeric):
    name, var, title = "quiz2", "quiz2_answer", "The KV cache of one token"
    prompt = (
        "SmolLM2-135M has 30 layers, 3 key/value heads of dimension 64 (and 9 query heads). In fp32, how many "
        "KiB does the KV cache hold per token of context?"
    )
    hint_text = "Per layer and token the cache keeps a key and a value for each key/value head."
    explanation = (
        "2 (K and V) × 30 × 3 × 64 × 4 bytes = 46,080 bytes = 45 KiB per token: a 2,000-token context holds ~88 MiB."
    )
    look_at = "2 (key and value) × layers × KV heads × head dimension × 4 bytes, then divide by 1024."

    def expected(self) -> float:
        return 2 * 30 * 3 * 64 * 4 / 1024

    def slips(self) -> dict[str, float]:
        return {
            "that is half of it: 4 bytes each for the keys and for the values.": 30 * 3 * 64 * 4 / 1024,
            ("that uses the 9 query heads; the cache stores keys and values, which have 3 heads."): 2
            * 30
            * 9
            * 64
            * 4
            / 1024,
            "that is one layer's cache; every layer keeps its own.": 2 * 3 * 64 * 4 / 1024,
        }


class Int8EveryMatMul(Quiz04):
    name, var, title = "quiz3", "quiz3_answer", "Why int8 on every MatMul broke this model"
    prompt = (
        "Section 4.3 quantized every MatMul to int8 with the dynamic quantizer and the agreement with fp32 "
        "collapsed; keeping the MLP down-projections in fp32 recovered more of it than keeping only `lm_head`. "
        "What explains it best?"
    )
    options = {
        "a": "int8 cannot represent negative weights.",
        "b": "One scale per tensor, and activations quantized on the fly: the down-projections' inputs are "
        "what this tiny model cannot afford to round coarsely.",
        "c": "The ONNX export was wrong; the parity check would have caught it at int8.",
        "d": "int8 files are too large for the device's memory.",
    }
    answer = "b"
    why_not = {
        "a": "symmetric int8 covers −127…127; ask what one scale per tensor does to small values.",
        "c": "the fp32 export passed parity; the damage appears only with quantization. Which recipe recovered most?",
        "d": "the int8 files are smaller than fp32, and size is not agreement. Which layers were kept in float?",
    }
    hint_text = "Compare the three int8 recipes' agreement in the reference run: which kept layer made the difference?"

    @property
    def explanation(self) -> str:  # type: ignore[override]  # measured, read when the learner gets it right
        everything = measured(STEM, "int8_all_agreement", prefer_run=False)
        kept = measured(STEM, "int8_keep_lm_head_down_agreement", prefer_run=False)
        return (
            f"In {everything.source}, int8 on every MatMul kept {everything.value:.0%} agreement; keeping lm_head "
            f"and the down-projections in fp32, {kept.value:.0%}. Per-tensor scales and on-the-fly activation "
            "quantization round away what a 135M model's few weights carry."
        )


class WhichModelToDeploy(Quiz04):
    name, var, title = "quiz4", "quiz4_answer", "Which candidate is deployed"
    prompt = (
        "Section 4.1 has three candidates: notebook 03's merged LoRA model, the course's tuned model and the "
        "untuned base. Suppose notebook 03's model reached the lower validation loss in training, but the "
        "tuned model scores higher on the held-out tickets. Which one is deployed?"
    )
    options = {
        "a": "Notebook 03's model: the lower validation loss is the better model.",
        "b": "The newest model, so that the latest training run reaches users.",
        "c": "The untuned base: a model nobody trained cannot have learned anything wrong.",
        "d": "The tuned model: candidates are ranked by the task score on the same held-out tickets, and it beats "
        "the untuned base.",
    }
    answer = "d"
    why_not = {
        "a": "the loss rewards predicting the reference's tokens; the score is what users get. Which is ranked?",
        "b": "a newer model can be worse; section 4.1 ranks the candidates by a measurement. Which one?",
        "c": "the untuned base is the floor the others must beat, not the choice; which measurement ranks them?",
    }
    hint_text = "Section 4.1 scores every candidate the same way. On what, and with which number?"
    explanation = (
        "Ship the best model by the score you ship on (section 2 taught the same), measured on the same "
        "tickets so that the comparison is paired, and only if it beats the untuned base."
    )


class GateOverSpeed(Quiz04):
    name, var, title = "quiz5", "quiz5_answer", "The fastest variant is refused"
    prompt = "The int4 build is the smallest and fastest variant, yet the benchmark refuses it. Why is that right?"
    options = {
        "a": "Its task score falls more than the gate's 5 points below fp32's: speed never buys back quality.",
        "b": "int4 cannot run on a CPU.",
        "c": "Its p95 latency is higher than fp32's.",
        "d": "Its package has no manifest.",
    }
    answer = "a"
    why_not = {
        "b": "the benchmark ran int4 on this CPU; look at its score column.",
        "c": "compare the p95 columns: int4's is the lowest. Look at the score column.",
        "d": "every variant is packaged the same way; look at the score column.",
    }
    hint_text = "Read the benchmark's score column against the rule stated in section 4.5."
    explanation = (
        "A variant ships only if its score stays within 5 points of the fp32 export's; size and speed come after."
    )


class Manifest(Quiz04):
    name, var, title = "quiz6", "quiz6_answer", "What the hashed manifest protects"
    prompt = "The package lists a SHA-256 hash for every file (section 4.8). What does it let a device detect?"
    options = {
        "a": "That the model answers well.",
        "b": "That a file was changed or truncated on the way.",
        "c": "That the model fits its memory.",
        "d": "That the server is reachable.",
    }
    answer = "b"
    why_not = {
        "a": "a hash says nothing about quality: the gate does that. What does a hash compare?",
        "c": "memory is the fleet's fit check; what does a hash compare?",
        "d": "a hash is computed on files, offline; what does it compare?",
    }
    hint_text = "A hash is a fingerprint of a file's bytes."
    explanation = (
        "Recomputing each file's hash and comparing it with the manifest proves the files are the "
        "ones that were tested."
    )


class OpenAIProtocol(Quiz04):
    name, var, title = "quiz7", "quiz7_answer", "Why an OpenAI-compatible endpoint"
    prompt = "The package is served behind an OpenAI-compatible API (section 4.9). Why that protocol?"
    options = {
        "a": "Every client that already speaks it (SDKs, tools) works unchanged against the local model.",
        "b": "It makes the model answer better.",
        "c": "It is the only protocol ONNX Runtime supports.",
        "d": "It encrypts the model file.",
    }
    answer = "a"
    why_not = {
        "b": "the protocol carries requests; the answers come from the same model. What does a common protocol buy?",
        "c": "ONNX Runtime has no protocol at all; the server adds one. Why this one?",
        "d": "a protocol does not touch the file on disk; what does a common protocol buy?",
    }
    hint_text = "Who has to change their code when the model moves from a cloud API to the laptop?"
    explanation = (
        "Clients keep their code and point it at the local address; the server must also survive bad requests."
    )


class ChecklistOnPackage(Quiz04):
    name, var, title = "quiz8", "quiz8_answer", "What the checklist runs on"
    prompt = "The validation checklist (section 4.10) must run on which artifact?"
    options = {
        "a": "The training checkpoint in PyTorch.",
        "b": "The package that ships, through the runtime that will serve it.",
        "c": "The teacher model.",
        "d": "The fp32 export only, whatever ships.",
    }
    answer = "b"
    why_not = {
        "a": "export and quantization change what runs; which artifact do users meet?",
        "c": "the teacher is not deployed; which artifact do users meet?",
        "d": "the variant that ships may be int4 or fp16; which artifact do users meet?",
    }
    hint_text = "Section 4.10: run the checklist on what you ship, not on what you trained."
    explanation = (
        "Only the shipped package, served as users will meet it, can show what export and quantization changed."
    )


QUIZ = [
    BesideTheReference,
    KVCachePerToken,
    Int8EveryMatMul,
    WhichModelToDeploy,
    GateOverSpeed,
    Manifest,
    OpenAIProtocol,
    ChecklistOnPackage,
]
