"""Lab 04's checks: right answers pass, blanks are "not attempted", and the usual slips
are caught with a message that names them, never the expected value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slmops_helpers.deploy.runtime import render_chat
from slmops_helpers.labs import Outcome, Question, ____
from slmops_helpers.labs.lab04.bench import (
    STREAMS_BEFORE,
    BenchAndGate,
    CountFlips,
    StreamReport,
    parity_cases,
    reference_flips,
)
from slmops_helpers.labs.lab04.exercises import (
    CHAT_TEMPLATE,
    EMBEDDING_PARAMS,
    MODEL_NAME,
    N_PARAMS,
    SYSTEM,
    ExpectedSizes,
    InferenceModel,
    Int4Breakdown,
    QuantizeInt8,
    example_weight,
)
from slmops_helpers.labs.measured import measured
from slmops_helpers.reference import read_reference

BITS = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4}
RIGHT_SIZES = {p: N_PARAMS * b / 8 / 2**20 for p, b in BITS.items()}  # independent arithmetic, in MiB
RIGHT_BLOCK = N_PARAMS * 5 / 8 / 2**20


def result(exercise, value):
    """The verdict for ``value``: a namespace dict for questions that read several names."""
    namespace = value if exercise.var is None else {exercise.var: value}
    return Question(exercise(), namespace).result()


def assert_no_leak(message: str, *expected: float) -> None:
    for value in expected:
        for shown in (f"{value:.3g}", f"{value:.4g}", f"{value:.5g}"):
            assert shown not in message, f"the message gives the answer away: {message}"


# --- q1: sizes -------------------------------------------------------------------------


def test_sizes_right_answer_passes():
    assert (
        result(ExpectedSizes, {"expected_mib": RIGHT_SIZES, "int4_block_mib": RIGHT_BLOCK}).outcome is Outcome.CORRECT
    )


@pytest.mark.parametrize(
    "namespace",
    [
        {"expected_mib": ____, "int4_block_mib": ____},
        {"expected_mib": dict.fromkeys(BITS, ____), "int4_block_mib": ____},
        {"expected_mib": {**RIGHT_SIZES, "int4": ____}, "int4_block_mib": RIGHT_BLOCK},
        {},  # the cell was never run
    ],
)
def test_sizes_blank_is_not_attempted(namespace):
    assert result(ExpectedSizes, namespace).outcome is Outcome.NOT_ATTEMPTED


def test_measured_sizes_come_from_the_records_not_the_code():
    size = measured("04_deployment", "onnx_int4_size_mib", prefer_run=False)
    assert size.value == read_reference("04_deployment").get("onnx_int4_size_mib") and "reference" in size.source
    assert RIGHT_SIZES["int4"] < size.value < RIGHT_SIZES["int8"]  # scales and the int8 embedding, measured


def test_sizes_second_part_blank_says_the_first_is_right():
    verdict = result(ExpectedSizes, {"expected_mib": RIGHT_SIZES, "int4_block_mib": ____})
    assert verdict.outcome is Outcome.NOT_ATTEMPTED and "first part is right" in verdict.message


@pytest.mark.parametrize(
    "sizes, block, says",
    [
        ({p: v * 2**20 / 1e6 for p, v in RIGHT_SIZES.items()}, RIGHT_BLOCK, "this course uses MiB"),  # 10^6-byte MB
        (RIGHT_SIZES, RIGHT_BLOCK * 2**20 / 1e6, "this course uses MiB"),
        ({p: v * 8 for p, v in RIGHT_SIZES.items()}, RIGHT_BLOCK, "bits, not bytes"),
        ({**RIGHT_SIZES, "int4": RIGHT_SIZES["int8"]}, RIGHT_BLOCK, "expected_mib['int4']"),
        ({k: v for k, v in RIGHT_SIZES.items() if k != "fp16"}, RIGHT_BLOCK, "missing ['fp16']"),
        ([513, 257, 128, 64], RIGHT_BLOCK, "dict"),
        ({**RIGHT_SIZES, "fp32": torch.tensor(RIGHT_SIZES["fp32"])}, RIGHT_BLOCK, ".item()"),
        (RIGHT_SIZES, RIGHT_SIZES["int4"], "plain int4"),
        (RIGHT_SIZES, N_PARAMS * (4 + 32 / 8) / 8 / 2**20, "int4_block_mib"),  # scale counted per 8
    ],
)
def test_sizes_mistakes_are_named(sizes, block, says):
    verdict = result(ExpectedSizes, {"expected_mib": sizes, "int4_block_mib": block})
    assert verdict.outcome is Outcome.INCORRECT
    assert says in verdict.message
    assert_no_leak(verdict.message, *RIGHT_SIZES.values(), RIGHT_BLOCK)


# --- q2: int8 per-row quantization ------------------------------------------------------


def right_quantize(w):
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    return torch.round(w / scale).clamp(-127, 127).to(torch.int8), scale


def flat_scale_quantize(w):  # scale of shape (rows,), also fine
    scale = w.abs().amax(dim=1) / 127
    return torch.round(w / scale[:, None]).clamp(-128, 127).to(torch.int8), scale


def right_dequantize(q, scale):
    return q.float() * (scale if scale.dim() == 2 else scale[:, None])


def per_tensor_quantize(w):
    scale = w.abs().max() / 127
    return torch.round(w / scale).to(torch.int8), scale.expand(w.shape[0])


def per_column_quantize(w):
    scale = w.abs().amax(dim=0, keepdim=True) / 127
    return torch.round(w / scale).to(torch.int8), scale


def truncating_quantize(w):
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    return (w / scale).to(torch.int8), scale


def float_quantize(w):
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    return torch.round(w / scale), scale


def in_place_quantize(w):
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    w /= scale
    return torch.round(w).to(torch.int8), scale


def forgot_scale_dequantize(q, scale):
    return q.float()


def blank_quantize(w):
    return ____


def half_blank_quantize(w):
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    q = ____
    return q, scale


def blank_dequantize(q, scale):
    return ____


def raising_quantize(w):
    raise RuntimeError("boom")


def measured_error(quantize=right_quantize, dequantize=right_dequantize) -> float:
    w = example_weight()
    return (torch.linalg.norm(w - dequantize(*quantize(w))) / torch.linalg.norm(w)).item()


def q2_namespace(quantize=right_quantize, dequantize=right_dequantize, error=None):
    return {
        "quantize_int8": quantize,
        "dequantize_int8": dequantize,
        "int8_error": measured_error() if error is None else error,
    }


@pytest.mark.parametrize("quantize", [right_quantize, flat_scale_quantize])
def test_quantize_right_answers_pass(quantize):
    verdict = result(QuantizeInt8, q2_namespace(quantize))
    assert verdict.outcome is Outcome.CORRECT, verdict.message


def test_error_is_a_small_plain_ratio():
    assert 0.001 < measured_error() < 0.02
    assert measured_error(per_tensor_quantize) > 2 * measured_error()  # why per-row scales


@pytest.mark.parametrize(
    "namespace",
    [
        q2_namespace(blank_quantize, blank_dequantize, ____),
        q2_namespace(half_blank_quantize, blank_dequantize, ____),
        q2_namespace(right_quantize, blank_dequantize, ____),
        {"int8_error": ____},
    ],
)
def test_quantize_blank_is_not_attempted(namespace):
    assert result(QuantizeInt8, namespace).outcome is Outcome.NOT_ATTEMPTED


def test_error_blank_says_the_functions_are_right():
    verdict = result(QuantizeInt8, q2_namespace(error=____))
    assert verdict.outcome is Outcome.NOT_ATTEMPTED and "first part is right" in verdict.message


@pytest.mark.parametrize(
    "namespace, says",
    [
        (q2_namespace(per_tensor_quantize), "same scale"),
        (q2_namespace(lambda w: right_quantize(w * 127 / 128)), "max |w| / 127"),  # scale = max / 128
        (q2_namespace(per_column_quantize), "one value per output row"),
        (q2_namespace(truncating_quantize), "do not truncate"),
        (q2_namespace(float_quantize), "torch.int8"),
        (q2_namespace(in_place_quantize), "changed its input"),
        (q2_namespace(lambda w: right_quantize(w)[0]), "pair"),
        (q2_namespace(dequantize=forgot_scale_dequantize), "W_hat"),
        (q2_namespace(raising_quantize), "RuntimeError: boom"),
        (q2_namespace(error=measured_error() * 100), "percentage"),
        (q2_namespace(error=measured_error(per_tensor_quantize)), "int8_error"),
        (q2_namespace(error=torch.tensor(measured_error())), ".item()"),
    ],
)
def test_quantize_mistakes_are_named(namespace, says):
    verdict = result(QuantizeInt8, namespace)
    assert verdict.outcome is Outcome.INCORRECT
    assert says in verdict.message, verdict.message
    assert_no_leak(verdict.message, measured_error())


# --- q5: inference_model.json -----------------------------------------------------------


def prompt_for(content: str, system: str | None = SYSTEM, generation_prompt: bool = True) -> str:
    messages = [{"role": "system", "content": system}] if system else []
    return render_chat(CHAT_TEMPLATE, [*messages, {"role": "user", "content": content}], generation_prompt)


BY_HAND = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{{Content}}<|im_end|>\n<|im_start|>assistant\n"


def spec(prompt: str = BY_HAND, name: str = MODEL_NAME) -> dict:
    return {"Name": name, "PromptTemplate": {"prompt": prompt}}


@pytest.mark.parametrize("prompt", [BY_HAND, prompt_for("{Content}")])
def test_inference_model_right_answers_pass(prompt):
    verdict = result(InferenceModel, spec(prompt))
    assert verdict.outcome is Outcome.CORRECT, verdict.message


@pytest.mark.parametrize("value", [____, spec(____, ____), spec(____), {"Name": MODEL_NAME, "PromptTemplate": ____}])
def test_inference_model_blank_is_not_attempted(value):
    assert result(InferenceModel, value).outcome is Outcome.NOT_ATTEMPTED


@pytest.mark.parametrize(
    "value, says",
    [
        (spec(BY_HAND.replace("{Content}", "{content}")), "{Content}"),
        (spec(BY_HAND + "{Content}"), "exactly one"),
        ({"PromptTemplate": {"prompt": BY_HAND}}, "Name"),
        ({"Name": MODEL_NAME, "prompt": BY_HAND}, "PromptTemplate"),
        (spec(name="SmolLM2"), "MODEL_NAME"),
        ({**spec(), "Extra": {1, 2}}, "JSON"),
        (spec(prompt_for("{Content}", system=None)), "SYSTEM"),
        (spec(prompt_for("{Content}", generation_prompt=False)), "generation prompt"),
        (spec(BY_HAND.rstrip("\n")), "whitespace"),
        (spec(BY_HAND.replace("<|im_end|>\n<|im_start|>user", "<|im_end|><|im_start|>user")), "character"),
        ("{Content}", "Name"),
    ],
)
def test_inference_model_mistakes_are_named(value, says):
    verdict = result(InferenceModel, value)
    assert verdict.outcome is Outcome.INCORRECT
    assert says in verdict.message, verdict.message


# --- q8: int4 breakdown -----------------------------------------------------------------

RIGHT_MIXED = ((N_PARAMS - EMBEDDING_PARAMS) * 5 + EMBEDDING_PARAMS * 9) / 8 / 2**20


def test_breakdown_right_answer_passes_and_is_near_the_measured_size():
    assert result(Int4Breakdown, RIGHT_MIXED).outcome is Outcome.CORRECT
    assert 90 < RIGHT_MIXED < 98.4  # the int4 file measured in notebook 04: 98.4 MiB


@pytest.mark.parametrize(
    "value, says",
    [
        (((N_PARAMS - EMBEDDING_PARAMS) * 5 + EMBEDDING_PARAMS * 8) / 8 / 2**20, "scale"),
        ((N_PARAMS * 5 + EMBEDDING_PARAMS * 9) / 8 / 2**20, "counted twice"),
        (N_PARAMS * 5 / 8 / 2**20, "int4_mixed_mib"),
        (RIGHT_MIXED * 2**20 / 1e6, "this course uses MiB"),  # in 10^6-byte MB
        ("94 MiB", "number"),
    ],
)
def test_breakdown_mistakes_are_named(value, says):
    verdict = result(Int4Breakdown, value)
    assert verdict.outcome is Outcome.INCORRECT and says in verdict.message, verdict.message
    assert_no_leak(verdict.message, RIGHT_MIXED)


def test_breakdown_blank_is_not_attempted():
    assert result(Int4Breakdown, ____).outcome is Outcome.NOT_ATTEMPTED


# --- q3: parity flips ------------------------------------------------------------------


def right_flips(ref, cand, bound):
    top2 = np.sort(ref, axis=1)[:, -2:]
    return int((((top2[:, 1] - top2[:, 0]) > 2 * bound) & (ref.argmax(1) != cand.argmax(1))).sum())


def test_flips_cases_hold_a_near_tie_and_a_real_flip():
    for ref, cand, bound in parity_cases():
        assert (ref.argmax(1) != cand.argmax(1)).sum() == 2 and reference_flips(ref, cand, bound) == 1


@pytest.mark.parametrize(
    "fn, says",
    [
        (lambda r, c, b: int((r.argmax(1) != c.argmax(1)).sum()), "near-tie"),
        (lambda r, c, b: int((np.diff(np.sort(r, axis=1)[:, -2:], axis=1) > 2 * b).sum()), "argmax differs"),
        (lambda r, c, b: float(right_flips(r, c, b)), "an int"),
        (lambda r, c, b: right_flips(r, c, b) > 0, "an int"),
    ],
)
def test_flip_slips_are_named(fn, says):
    verdict = result(CountFlips, fn)
    assert verdict.outcome is Outcome.INCORRECT and says in verdict.message, verdict.message


def test_flips_right_and_blank():
    assert result(CountFlips, right_flips).outcome is Outcome.CORRECT
    assert result(CountFlips, lambda r, c, b: np.int64(right_flips(r, c, b))).outcome is Outcome.CORRECT
    assert result(CountFlips, ____).outcome is Outcome.NOT_ATTEMPTED


# --- q4: percentiles and the gate -------------------------------------------------------


def right_percentiles(token_s):
    return float(np.percentile(token_s, 50)) * 1000, float(np.percentile(token_s, 95)) * 1000


def right_ships(score, fp32):
    return score >= fp32 - 5


def test_bench_right_and_blank():
    ns = {"percentiles_ms": right_percentiles, "ships": right_ships}
    assert result(BenchAndGate, ns).outcome is Outcome.CORRECT
    assert result(BenchAndGate, {**ns, "ships": ____}).outcome is Outcome.NOT_ATTEMPTED
    assert result(BenchAndGate, {"percentiles_ms": ____, "ships": ____}).outcome is Outcome.NOT_ATTEMPTED


@pytest.mark.parametrize(
    "ns, says",
    [
        ({"percentiles_ms": lambda t: (np.percentile(t, 50), np.percentile(t, 95))}, "seconds"),
        ({"percentiles_ms": lambda t: (1000 * np.mean(t), 1000 * np.percentile(t, 95))}, "mean"),
        ({"percentiles_ms": lambda t: (1000 * np.median(t), 1000 * max(t))}, "interpolation"),
        ({"percentiles_ms": lambda t: 1000 * np.median(t)}, "pair"),
        ({"ships": lambda s, f: s > f - 5}, "MAX_DROP"),  # wrong only on the boundary itself
        ({"ships": lambda s, f: s >= f}, "MAX_DROP"),
        ({"ships": lambda s, f: "yes"}, "True or False"),
    ],
)
def test_bench_slips_are_named(ns, says):
    verdict = result(BenchAndGate, {"percentiles_ms": right_percentiles, "ships": right_ships, **ns})
    assert verdict.outcome is Outcome.INCORRECT and says in verdict.message, verdict.message


def _stream_report(arrivals, *, gaps=True, unit=1000, before=STREAMS_BEFORE):
    pauses = np.diff(arrivals) if gaps else np.asarray(arrivals)
    pauses = pauses if pauses.size else np.zeros(1)
    return {
        "ttft_ms": unit * arrivals[0],
        "total_ms": unit * arrivals[-1],
        "gap_p95_ms": unit * float(np.percentile(pauses, 95)),
        "streams": bool(arrivals[0] < before * arrivals[-1]),
    }


def test_a_stream_report_is_right_and_a_blank_is_not_attempted():
    assert result(StreamReport, _stream_report).outcome is Outcome.CORRECT
    assert result(StreamReport, ____).outcome is Outcome.NOT_ATTEMPTED


@pytest.mark.parametrize(
    "fn, says",
    [
        (lambda a: _stream_report(a, gaps=False), "gaps between them"),
        (lambda a: _stream_report(a, unit=1), "seconds"),
        (lambda a: _stream_report(a, before=1.01), "before 0.33"),  # "streams" as "arrived at all"
        (lambda a: {**_stream_report(a), "streams": "yes"}, "True or False"),
        (lambda a: {k: v for k, v in _stream_report(a).items() if k != "streams"}, "missing"),
        (lambda a: list(_stream_report(a).values()), "dict"),
    ],
)
def test_stream_report_slips_are_named(fn, says):
    verdict = result(StreamReport, fn)
    assert verdict.outcome is Outcome.INCORRECT and says in verdict.message, verdict.message
