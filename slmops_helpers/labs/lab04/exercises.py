"""Checks for lab 04 (deployment): expected file sizes per precision, int8 quantization of
one weight matrix and its error, parity and the benchmark's gate (in ``bench``), an
``inference_model.json`` for a chat template, speculative decoding's cost model and one
field's token mask (in ``decoding``), where the int4 file's bytes go, and, on the real
tools, a package of the smallest build served and asked through the openai client (in
``real``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from ...compress import quantize_weight, relative_error
from ...deploy.package import CONTENT, PackageError, validate_inference_model
from ...deploy.runtime import render_chat
from .. import (
    Exercise,
    Outcome,
    PlaceholderError,
    Result,
    ____,
    close,
    contains_blank,
    incorrect,
    is_number,
    learner_answer,
)
from ..checks import fresh_seed
from .bench import BenchAndGate, CountFlips, StreamReport
from .decoding import DraftPays, FieldMask
from .quiz import QUIZ as QUIZ  # the lab's quiz, rendered at its end
from .real import AskTheServer, PackageCloser

N_PARAMS = 134_515_008  # SmolLM2-135M, the tied embedding / LM head counted once
EMBEDDING_PARAMS = 49_152 * 576  # the tied embedding / LM head: vocabulary × hidden size
MIB = 2**20  # the course's one unit for sizes: MiB, as `ls -lh` prints them
DECIMAL_MB = 10**6  # only to recognise an answer given in megabytes of 10^6 bytes
PRECISION_BITS = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4}
BLOCK, SCALE_BITS = 32, 32  # q1 and q6: one fp32 scale per block of 32 weights
# How notebook 04 made each export (recipes, not measurements: the sizes are read with labs.measured).
RECIPE_NOTES = {
    "fp32": "onnxruntime-genai builder",
    "fp16": "onnxruntime-genai builder",
    "int8": "MatMulNBits 8-bit, blocks of 32, embedding tied to the 8-bit lm_head",
    "int4": "MatMulNBits, blocks of 32, lm_head int8",
}

MODEL_NAME = "smollm2-135m-support"  # q5: the name the local server will list
SYSTEM = "You are a concise support assistant. Answer in at most three sentences."
# q5: a ChatML template in the style of SmolLM2's (rendered with transformers' jinja settings).
CHAT_TEMPLATE = """\
{% for message in messages %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""
_TEST_MESSAGES = ("How do I reset my password?", "Two lines:\nprice {in braces} and ünïcode ✓", "")


def size_mib(n_params: int, bits_per_weight: float) -> float:
    """MiB (2^20 bytes) taken by ``n_params`` weights stored at ``bits_per_weight``."""
    return n_params * bits_per_weight / 8 / MIB


def _wrong_unit(name: str) -> Result:
    return incorrect(
        f"`{name}` is in MB (10^6 bytes); this course uses MiB = 2^20 bytes, as `ls -lh` prints "
        "1024-based units: divide by 2**20, not 10**6."
    )


def example_weight() -> torch.Tensor:
    """q2's weight matrix: 192 × 576 like a k_proj, rows of very different magnitudes."""
    g = torch.Generator().manual_seed(4)
    row_std = 0.005 * 10 ** torch.rand(192, 1, generator=g)  # 0.005 to 0.05
    return torch.randn(192, 576, generator=g) * row_std


def reference_quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per output row: scale = max|w| / 127, round, clamp."""
    scale = (w.detach().float().abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-12)
    q = torch.round(w.detach().float() / scale).clamp(-127, 127).to(torch.int8)
    return q, scale


def reference_dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale


def reference_prompt(message: str) -> str:
    """What the chat template gives for SYSTEM plus one user message: q5's target."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": message}]
    return render_chat(CHAT_TEMPLATE, messages)


def _is_blank(ns: Mapping[str, Any], name: str) -> bool:
    try:
        learner_answer(ns, name)
    except PlaceholderError:
        return True
    return False


def _part_two_blank(name: str, question: str) -> Result:
    return Result(
        Outcome.NOT_ATTEMPTED,
        f"the first part is right; now replace ____ in `{name}`, then run {question}.check() again",
    )


class Lab04Exercise(Exercise):
    """An exercise of lab 04; ``qN.solution()`` shows its answer from this source notebook."""

    notebook = "04_deployment.ipynb"  # in labs/source/


class ExpectedSizes(Lab04Exercise):
    name, title, tier, var = "q1", "Expected file size per precision", "warm-up", None
    hint_text = (
        "Bits per weight over 8 gives bytes per weight; the course counts MiB, 2^20 bytes, not 10^6. For "
        "int4_block_mib, spread each block's 32-bit scale over the weights of its block."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        sizes = learner_answer(ns, "expected_mib")
        if not isinstance(sizes, Mapping):
            return incorrect(f"`expected_mib` should be a dict from precision name to MiB, got {type(sizes).__name__}.")
        if blanks := [p for p in PRECISION_BITS if sizes.get(p) is ____]:
            raise PlaceholderError(f"expected_mib still has ____ for {blanks}")
        if missing := [p for p in PRECISION_BITS if p not in sizes]:
            return incorrect(
                f"`expected_mib` is missing {missing}; it needs a size for each of {list(PRECISION_BITS)}."
            )
        for precision, bits in PRECISION_BITS.items():
            got, name = sizes[precision], f"expected_mib[{precision!r}]"
            if wrong := is_number(got, name=name):
                return wrong
            if close(got, size_mib(N_PARAMS, bits) * MIB / DECIMAL_MB, rtol=1e-3) is None:
                return _wrong_unit(name)
            if close(got, size_mib(N_PARAMS, bits) * 8, rtol=1e-3) is None:
                return incorrect(f"`{name}` counts bits, not bytes: bytes per weight = bits / 8.")
            if wrong := close(got, size_mib(N_PARAMS, bits), rtol=1e-3, name=name):
                return incorrect(wrong.message + ". Bytes per weight = bits / 8.")
        if _is_blank(ns, "int4_block_mib"):
            return _part_two_blank("int4_block_mib", self.name)
        got = learner_answer(ns, "int4_block_mib")
        if wrong := is_number(got, name="int4_block_mib"):
            return wrong
        if close(got, size_mib(N_PARAMS, 4 + SCALE_BITS / BLOCK) * MIB / DECIMAL_MB, rtol=1e-3) is None:
            return _wrong_unit("int4_block_mib")
        if close(got, size_mib(N_PARAMS, 4), rtol=1e-3) is None:
            return incorrect("`int4_block_mib` equals plain int4: add the fp32 scale each block of 32 weights stores.")
        if wrong := close(got, size_mib(N_PARAMS, 4 + SCALE_BITS / BLOCK), rtol=1e-3, name="int4_block_mib"):
            return incorrect(wrong.message + ". A 32-bit scale shared by 32 weights costs how many bits per weight?")
        return None


class QuantizeInt8(Lab04Exercise):
    name, title, tier, var = "q2", "int8 per-row quantization and its error", "core", None
    course_twins = (reference_quantize_int8, reference_dequantize_int8, quantize_weight)
    hint_text = (
        "One scale per row: the row's largest |w| must land on 127, and the scale must broadcast against the "
        "(rows, columns) weight. Round, clamp to the int8 range, then convert the dtype. The error compares the "
        "Frobenius norm of what was lost with that of W; return a Python float."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        quantize, dequantize = learner_answer(ns, "quantize_int8"), learner_answer(ns, "dequantize_int8")
        g = torch.Generator().manual_seed(fresh_seed())  # hidden matrices, new at every attempt
        shapes = [tuple(int(n) for n in torch.randint(4, 64, (2,), generator=g)) for _ in range(2)]
        cases = [torch.randn(*shapes[0], generator=g), torch.randn(*shapes[1], generator=g) * 0.02, example_weight()]
        cases[0][3] *= 40  # one row far larger than the others: its scale must not leak into theirs
        for w in cases:
            original, where = w.clone(), f"a {tuple(w.shape)} matrix"
            out = quantize(w)
            if not (isinstance(out, tuple) and len(out) == 2):
                return incorrect(f"`quantize_int8` should return a pair (q, scale), got {type(out).__name__}.")
            q, scale = out
            if q is ____ or scale is ____:
                raise PlaceholderError("`quantize_int8` still returns ____")
            if not torch.equal(w, original):
                return incorrect("`quantize_int8` changed its input; compute on w / scale, a new tensor.")
            if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
                what = q.dtype if isinstance(q, torch.Tensor) else type(q).__name__
                return incorrect(f"q should be a torch.int8 tensor, got {what}: finish with .to(torch.int8).")
            if q.shape != w.shape:
                return incorrect(f"q has shape {tuple(q.shape)} for {where}; it should keep the weight's shape.")
            if not isinstance(scale, torch.Tensor) or scale.numel() != w.shape[0]:
                size = f"{scale.numel()} values" if isinstance(scale, torch.Tensor) else type(scale).__name__
                return incorrect(
                    f"scale should be a tensor with one value per output row ({w.shape[0]} for {where}), got {size}."
                )
            ref_q, ref_scale = reference_quantize_int8(w)
            if bool((scale == scale.flatten()[0]).all()):
                return incorrect(
                    "Every row got the same scale: take max |w| along each row (dim=1), not over the whole matrix."
                )
            if wrong := close(scale.detach().flatten(), ref_scale.flatten(), rtol=1e-5, atol=0, name="scale"):
                return incorrect(f"For {where}: {wrong.message}. Each row's scale is that row's max |w| / 127.")
            off = (q.int() - ref_q.int()).abs()
            if off.max() > 1 or (off > 0).float().mean() > 0.001:
                return incorrect(
                    f"For {where}: the integers are not round(w / scale) clamped to [-127, 127]. Round to the "
                    "nearest integer; do not truncate."
                )
            w_hat = dequantize(q, scale)
            if not isinstance(w_hat, torch.Tensor):
                return incorrect(f"`dequantize_int8` should return a torch.Tensor, got {type(w_hat).__name__}.")
            if wrong := close(
                w_hat.detach(), reference_dequantize_int8(ref_q, ref_scale), rtol=1e-4, atol=1e-6, name="W_hat"
            ):
                return incorrect(f"For {where}: {wrong.message}. Dequantize as q.float() × the row's scale.")
        if _is_blank(ns, "int8_error"):
            return _part_two_blank("int8_error", self.name)
        got = learner_answer(ns, "int8_error")
        if wrong := is_number(got, name="int8_error"):
            return wrong
        w = example_weight()
        expected = relative_error(w, reference_dequantize_int8(*reference_quantize_int8(w)))
        if close(got, expected * 100, rtol=0.02) is None:
            return incorrect("`int8_error` looks like a percentage; report the plain ratio ‖W − W_hat‖ / ‖W‖.")
        if wrong := close(got, expected, rtol=0.02, atol=0, name="int8_error"):
            return incorrect(
                wrong.message + ". Measure it on W from this lab: the Frobenius norm of W − W_hat divided by that of W."
            )
        return None


def _first_difference(got: str, want: str) -> int:
    return next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))


class InferenceModel(Lab04Exercise):
    name, title, tier, var = "q5", "Write inference_model.json", "core", "inference_model"
    hint_text = (
        "Do not type the prompt: render CHAT_TEMPLATE with render_chat, for a system message and a user message "
        "whose content is the placeholder the runtime replaces. Keep everything the template adds after the "
        "user's turn: the model answers after it."
    )

    def check_value(self, spec: Any) -> Result | None:
        if contains_blank(spec):
            raise PlaceholderError("`inference_model` still holds ____")
        try:
            validate_inference_model(spec)
        except PackageError as err:
            return incorrect(str(err))
        try:
            as_json = json.loads(json.dumps(spec))
        except (TypeError, ValueError) as err:
            return incorrect(f"`inference_model` must hold only JSON values (str, dict, list, numbers): {err}.")
        if as_json != spec:
            return incorrect("`inference_model` changes when written as JSON; use only str keys and JSON values.")
        if spec["Name"] != MODEL_NAME:
            return incorrect(f"`Name` is {spec['Name']!r}; use MODEL_NAME, the name the server will list.")
        template = spec["PromptTemplate"]["prompt"]
        g = torch.Generator().manual_seed(fresh_seed())  # a hidden user message too, new at every attempt
        words = ("reset", "my", "hub", "E-104", "{braces}", "ünïcode ✓", "\n", "price", "?")
        hidden = " ".join(words[int(i)] for i in torch.randint(0, len(words), (6,), generator=g))
        for message in (*_TEST_MESSAGES, hidden):
            got, want = template.replace(CONTENT, message), reference_prompt(message)
            if got == want:
                continue
            if SYSTEM not in got:
                return incorrect("The prompt does not contain SYSTEM: the system message must be in the template.")
            if got.strip() == want.strip():
                return incorrect(
                    "Right text, but the whitespace at the start or end differs from what the chat template "
                    "renders (a newline counts: the model was trained on the exact text)."
                )
            if want.startswith(got):
                return incorrect(
                    "The prompt stops too early: after the user's turn, the template adds the generation prompt "
                    "that opens the assistant's turn."
                )
            at = _first_difference(got, want)
            return incorrect(
                f"With {CONTENT} replaced by {message!r}, the prompt differs from the chat template's rendering "
                f"at character {at} (yours reads {got[max(0, at - 15) : at + 15]!r} there). Render the "
                "template rather than typing it."
            )
        return None


class Int4Breakdown(Lab04Exercise):
    name, title, tier, var = "q8", "Where the int4 file's size goes", "stretch", "int4_mixed_mib"
    hint_text = (
        "Two groups of weights, priced separately: the embedding in int8 blocks and everything else in int4 "
        "blocks, each block with its fp32 scale. Is the embedding counted inside N_PARAMS?"
    )

    def check_value(self, int4_mixed_mib: Any) -> Result | None:
        rest = N_PARAMS - EMBEDDING_PARAMS
        expected = size_mib(rest, 4 + SCALE_BITS / BLOCK) + size_mib(EMBEDDING_PARAMS, 8 + SCALE_BITS / BLOCK)
        if wrong := is_number(int4_mixed_mib, name="int4_mixed_mib"):
            return wrong
        if close(int4_mixed_mib, expected * MIB / DECIMAL_MB, rtol=1e-3) is None:
            return _wrong_unit("int4_mixed_mib")
        if close(int4_mixed_mib, size_mib(rest, 5) + size_mib(EMBEDDING_PARAMS, 8), rtol=1e-3) is None:
            return incorrect("Almost: the int8 embedding blocks store an fp32 scale per 32 weights too.")
        if close(int4_mixed_mib, size_mib(N_PARAMS, 5) + size_mib(EMBEDDING_PARAMS, 9), rtol=1e-3) is None:
            return incorrect("The embedding is counted twice: take it out of N_PARAMS before pricing the rest at int4.")
        if wrong := close(int4_mixed_mib, expected, rtol=1e-3, name="int4_mixed_mib"):
            return incorrect(wrong.message + ". Two groups: the embedding at 9 bits per weight, the rest at 5.")
        return None


EXERCISES = [
    ExpectedSizes,
    QuantizeInt8,
    CountFlips,
    BenchAndGate,
    InferenceModel,
    DraftPays,
    FieldMask,
    Int4Breakdown,
    StreamReport,
    PackageCloser,
    AskTheServer,
]
