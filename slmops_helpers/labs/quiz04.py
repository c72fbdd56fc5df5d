"""Lab 04's quiz: parity, the KV cache, why int8 on every MatMul broke this model, the
tied output layer, the gate and the package's hashes."""

from __future__ import annotations

from .measured import measured
from .quiz import Choice, Numeric

STEM = "04_deployment"


class Quiz04(Choice):
    """A lab 04 quiz question; ``solution()`` reads the answer from the lab's source notebook."""

    notebook = "04_deployment.ipynb"


class Quiz04Numeric(Numeric):
    notebook = "04_deployment.ipynb"


class Parity(Quiz04):
    name, var, title = "quiz1", "quiz1_answer", "Parity within a bound"
    prompt = "Why does section 4.2 accept ONNX logits within a bound of PyTorch's instead of requiring equality?"
    options = {
        "a": "ONNX stores the weights in fp16, so the logits must differ.",
        "b": "Two libraries add the same numbers in a different order: float32 results differ in the last bits.",
        "c": "The bound hides export bugs that do not matter for the score.",
        "d": "Equality cannot be tested on tensors.",
    }
    answer = "b"
    why_not = {
        "a": "the parity check is on the fp32 export; what else makes two float32 computations differ?",
        "c": "the bound is a few times float32's own noise, measured on this machine: large bugs still fail it.",
        "d": "torch.equal tests exactly that; ask why exact equality would fail a correct export.",
    }
    hint_text = "Is (a + b) + c always equal to a + (b + c) in float32?"
    explanation = (
        "Float addition is not associative; the bound is measured (fp32 against fp64) so that a real bug still "
        "fails it, and the next token must agree unless the top two are tied within that noise."
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


class TiedHead(Quiz04Numeric):
    name, var, title = "quiz4", "quiz4_answer", "The int8 copy of a tied output layer"
    prompt = (
        "SmolLM2 ties its output layer to the embedding table (49,152 tokens × 576). Quantizing `lm_head` to "
        "int8 stores an int8 copy *beside* the fp32 embedding. How many MiB does that copy add (1 byte per "
        "weight, scales ignored)?"
    )
    hint_text = "The copy has the embedding table's shape; how many bytes per weight in int8?"
    look_at = "vocabulary × hidden size × 1 byte, divided by 2**20."

    def expected(self) -> float:
        return 49_152 * 576 / 2**20

    def slips(self) -> dict[str, float]:
        return {
            "that prices the copy at 4 bytes per weight; int8 is 1.": 49_152 * 576 * 4 / 2**20,
            "that is in MB (10^6 bytes); the course counts MiB.": 49_152 * 576 / 1e6,
        }

    @property
    def explanation(self) -> str:  # type: ignore[override]  # measured, read when the learner gets it right
        every = measured(STEM, "int8_all_mib", prefer_run=False)
        kept = measured(STEM, "int8_keep_lm_head_mib", prefer_run=False)
        return (
            f"27.0 MiB: in {every.source}, int8 everywhere weighed {every.value:.1f} MiB and int8 with lm_head "
            f"kept {kept.value:.1f} MiB, {every.value - kept.value:.1f} MiB apart."
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


QUIZ = [Parity, KVCachePerToken, Int8EveryMatMul, TiedHead, GateOverSpeed, Manifest, OpenAIProtocol, ChecklistOnPackage]
