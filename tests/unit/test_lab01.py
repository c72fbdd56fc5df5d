"""Lab 01's checks: blank is "not attempted", the source notebook's solution is right, and the
usual slips are wrong with a message saying what to look at."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig

from slmops_helpers import fleet, models
from slmops_helpers.distill import count_config_parameters
from slmops_helpers.labs import Outcome, Question, ____
from slmops_helpers.labs.lab01 import exercises as lab01
from slmops_helpers.labs.lab01 import real as lab01_real
from slmops_helpers.labs.solutions import solution_code


def outcome(exercise, value):
    namespace = value if exercise.var is None else {exercise.var: value}
    result = Question(exercise(), namespace).result()
    return result.outcome, result.message


def solution_namespace(exercise) -> dict:
    """Run the exercise's solution, as printed by qN.solution(), and return what it defined."""
    namespace = {"np": np, "torch": torch, "fleet": fleet, "models": models}
    exec(solution_code(exercise.notebook, exercise.name), namespace)
    return namespace


@pytest.mark.parametrize("exercise", [e for e in lab01.EXERCISES if not e.real_tools], ids=lambda e: e.name)
def test_blank_is_not_attempted_and_the_solution_is_right(exercise):
    blank = {"largest_on_tablet": ____, "largest_need_mib": ____} if exercise.var is None else ____
    assert outcome(exercise, blank)[0] is Outcome.NOT_ATTEMPTED
    namespace = solution_namespace(exercise)
    got = outcome(exercise, namespace if exercise.var is None else namespace[exercise.var])
    assert got[0] is Outcome.CORRECT, got[1]


def test_the_lab_goes_warm_up_core_stretch_with_six_or_more_exercises():
    tiers = [e.tier for e in lab01.EXERCISES]
    assert len(tiers) >= 6 and tiers[0] == "warm-up" and tiers[-1] == "stretch" and tiers.count("core") >= 3
    assert tiers == sorted(tiers, key=["warm-up", "core", "stretch"].index)
    assert [e.name for e in lab01.EXERCISES] == [f"q{i}" for i in range(1, len(tiers) + 1)]


@pytest.mark.parametrize(
    "wrong, says",
    [
        (
            lambda t, s: {
                "ttft_ms": t * 1000,
                "tok_s": (len(s) + 1) / (t + sum(s)),
                "ms_per_token_p50": np.median(s) * 1e3,
                "ms_per_token_p95": np.percentile(s, 95) * 1e3,
            },
            "first token",
        ),  # noqa: E501
        (
            lambda t, s: {"ttft_ms": t, "tok_s": len(s) / sum(s), "ms_per_token_p50": 0, "ms_per_token_p95": 0},
            "seconds",
        ),
        (
            lambda t, s: {
                "ttft_ms": t * 1000,
                "tok_s": len(s) / sum(s),
                "ms_per_token_p50": np.mean(s) * 1e3,
                "ms_per_token_p95": max(s) * 1e3,
            },
            "ms_per_token_p50",
        ),  # noqa: E501
        (lambda t, s: {"ttft_ms": t * 1000}, "missing"),
        (lambda t, s: [t, s], "dict"),
    ],
)
def test_speed_slips_are_named(wrong, says):
    got, message = outcome(lab01.SpeedSummary, wrong)
    assert got is Outcome.INCORRECT and says in message, message


@pytest.mark.parametrize(
    "wrong, says",
    [
        (lambda labels: max(labels.count(x) for x in set(labels)), "count"),
        (lambda labels: 1 / len(set(labels)), "random guessing"),
        (lambda labels: labels.count(min(set(labels), key=labels.count)) / len(labels), "most common"),
        (lambda labels: "0.6", "number"),
    ],
)
def test_floor_slips_are_named(wrong, says):
    got, message = outcome(lab01.MajorityFloor, wrong)
    assert got is Outcome.INCORRECT and says in message, message


def test_pruning_catches_an_in_place_change_and_the_wrong_entries():
    def in_place(w, s):
        w[w.abs() < w.abs().flatten().kthvalue(max(1, round(s * w.numel()))).values] = 0
        return w

    assert "changed its input" in outcome(lab01.MagnitudePrune, in_place)[1]
    got, message = outcome(lab01.MagnitudePrune, lambda w, s: w * (torch.rand_like(w) > s))
    assert got is Outcome.INCORRECT and "smallest |w|" in message


@pytest.mark.parametrize(
    "wrong",
    [lambda v, i: v / (v + i), lambda v, i: 0.5, lambda v, i: i / v],
)
def test_csr_break_even_rejects_the_usual_inversions(wrong):
    got, message = outcome(lab01.CsrBreakEven, wrong)
    assert got is Outcome.INCORRECT and "csr_break_even(" in message


def test_no_preset_name_passes_without_the_ram_that_justifies_it():
    """Trying every preset name, with the justification blank, wrong or of the wrong type: none passes."""
    for name, preset in models.PRESETS.items():
        need = fleet.model_ram_mib(int(preset.params_millions * 1e6), "int4")
        for justification in (____, None, "1024", float("nan"), [need], need * 2**20 / 1e6 * 1.1, 0):
            got, message = outcome(
                lab01.LargestOnTablet, {"largest_on_tablet": name, "largest_need_mib": justification}
            )
            assert got is not Outcome.CORRECT, (name, justification)
            assert "Traceback" not in message and "raised" not in message


def test_a_preset_that_does_not_fit_or_is_too_small_is_told_why():
    budget = lab01.TABLET_BUDGET_MIB
    needs = {n: fleet.model_ram_mib(int(p.params_millions * 1e6), "int4") for n, p in models.PRESETS.items()}
    too_big = [n for n, v in needs.items() if v > budget]
    too_small = sorted((n for n, v in needs.items() if v <= budget), key=needs.get)[:-1]
    for name in too_big[:1]:
        assert (
            "share of the tablet"
            in outcome(lab01.LargestOnTablet, {"largest_on_tablet": name, "largest_need_mib": needs[name]})[1]
        )  # noqa: E501
    for name in too_small[:1]:
        assert (
            "compare every preset's need"
            in outcome(lab01.LargestOnTablet, {"largest_on_tablet": name, "largest_need_mib": needs[name]})[1]
        )  # noqa: E501
    assert "preset name" in outcome(lab01.LargestOnTablet, {"largest_on_tablet": 3, "largest_need_mib": 1.0})[1]


@pytest.mark.parametrize("wrong", [lambda g, s: 0.5, lambda g, s: 0.5 + s * g, lambda g, s: (4 + s * 8 / g) / 8 + 1])
def test_int4_bytes_slips(wrong):
    got, message = outcome(lab01.Int4BytesPerWeight, wrong)
    assert got is Outcome.INCORRECT and "int4_bytes_per_weight(" in message


@pytest.mark.parametrize("bad", [None, "4", [1, 2], float("nan"), torch.tensor([1.0, 2.0])])
def test_bad_answers_from_a_footprint_function_are_incorrect_not_a_crash(bad):
    got, message = outcome(lab01.FootprintMiB, lambda n, p: bad)
    assert got is Outcome.INCORRECT and ("number" in message or "NaN" in message), message


@pytest.mark.parametrize(
    "wrong, says",
    [
        (lambda n, p: n * {"fp32": 4, "fp16": 2, "int8": 1, "int4": 0.5}[p] / 1e6, "MB (10**6 bytes)"),
        (lambda n, p: n * {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4}[p] / 2**20, "bits, not bytes"),
        (lambda n, p: n * {"fp32": 4, "fp16": 2, "int8": 1, "int4": 0.5}[p], "in bytes"),
        (lambda n, p: n * {"fp32": 4, "fp16": 2, "int8": 1, "int4": 1}[p] / 2**20, "how many bytes does one weight"),
    ],
)
def test_footprint_slips_are_named_by_their_kind_never_by_their_distance(wrong, says):
    got, message = outcome(lab01.FootprintMiB, wrong)
    assert got is Outcome.INCORRECT and "footprint_mib(" in message and says in message, message
    assert "off by" not in message and "too " not in message


def _count(config, *, kv_heads=None, tied=None, norms=True, mlp_matrices=3):
    """A parameter count by hand, with the knobs the usual slips turn."""
    h, layers, head_dim = config.hidden_size, config.num_hidden_layers, config.head_dim
    kv = (config.num_key_value_heads if kv_heads is None else kv_heads(config)) * head_dim
    block = 2 * h * config.num_attention_heads * head_dim + 2 * h * kv + mlp_matrices * h * config.intermediate_size
    tied = config.tie_word_embeddings if tied is None else tied
    return config.vocab_size * h * (1 if tied else 2) + layers * (block + (2 * h if norms else 0)) + (h if norms else 0)


@pytest.mark.parametrize(
    "wrong, says",
    [
        (lambda c: _count(c, kv_heads=lambda c: c.num_attention_heads), "num_key_value_heads"),
        (lambda c: _count(c, tied=False), "output layer twice"),
        (lambda c: _count(c, norms=False), "RMSNorm"),
        (lambda c: _count(c, mlp_matrices=2), "three"),
        (lambda c: _count(c) + 1, "walk one block again"),
        (lambda c: str(_count(c)), "number"),
    ],
)
def test_parameter_count_slips_are_named(wrong, says):
    rng = np.random.default_rng(0)
    for shape in (lab01.random_shape(rng) for _ in range(20)):  # the hand count the slips start from is right
        assert _count(LlamaConfig(**shape)) == count_config_parameters(LlamaConfig(**shape))
    got, message = outcome(lab01.ParametersFromConfig, wrong)
    assert got is Outcome.INCORRECT and says in message, message


def test_an_untied_model_without_its_output_layer_is_told_so():
    got, message = outcome(lab01.ParametersFromConfig, lambda c: _count(c, tied=True))
    assert got is Outcome.INCORRECT and "no output layer" in message, message


# --- q9 and q10: on the real tools, checked here on a tiny random Llama -----------------------


def _timed(model, tokenizer, prompt, n_tokens, *, first_s=0.1, next_s=0.01, cache=True, scale=1.0, wrong_at=None):
    """A learner's time_generation whose passes take known times (slept), greedy or not."""
    import time

    ids, tokens, seconds = tokenizer(prompt).input_ids, [], []
    with torch.inference_mode():
        model(input_ids=torch.tensor([ids]))  # warm-up: the first call's one-off costs stay out of the times
        for i in range(n_tokens):
            start = time.perf_counter()
            logits = model(input_ids=torch.tensor([ids + tokens])).logits[0, -1]
            token = int(logits.argmax()) if i != wrong_at else int(logits.argmin())
            time.sleep(first_s if i == 0 or not cache else next_s)
            seconds.append((time.perf_counter() - start) * scale)
            tokens.append(token)
    return {"tokens": tokens, "ttft_s": seconds[0], "token_s": seconds[1:]}


def _q9(tiny_tokenizer, tiny_model, **kwargs):
    def time_generation(model, tokenizer, prompt, n_tokens):
        return _timed(model, tokenizer, prompt, n_tokens, **kwargs)

    namespace = {"model": tiny_model, "tokenizer": tiny_tokenizer, "time_generation": time_generation}
    result = Question(lab01_real.TimeGeneration(), namespace).result()
    return result.outcome, result.message


def test_q9_passes_greedy_tokens_with_times_that_account_for_the_call(tiny_tokenizer, tiny_model):
    assert _q9(tiny_tokenizer, tiny_model)[0] is Outcome.CORRECT


@pytest.mark.parametrize(
    "slip, says",
    [
        ({"wrong_at": 0}, "first token"),
        ({"wrong_at": 3}, "token 3"),
        ({"cache": False}, "KV cache"),
        ({"scale": 1000.0}, "milliseconds"),
        ({"scale": 0.2}, "less than half"),
    ],
)
def test_q9_names_each_slip(tiny_tokenizer, tiny_model, slip, says):
    got, message = _q9(tiny_tokenizer, tiny_model, **slip)
    assert got is Outcome.INCORRECT and says in message, message


def test_q9_refuses_the_course_timer(tiny_tokenizer, tiny_model):
    from slmops_helpers.decoding import generate

    def time_generation(model, tokenizer, prompt, n_tokens):
        timed = generate.generate_timed(model, tokenizer, prompt, n_tokens)
        return {"tokens": [], "ttft_s": timed.ttft_s, "token_s": timed.token_s}

    namespace = {"model": tiny_model, "tokenizer": tiny_tokenizer, "time_generation": time_generation}
    result = Question(lab01_real.TimeGeneration(), namespace).result()
    assert result.outcome is Outcome.INCORRECT and "write it yourself" in result.message


def _q10(model, folder, size):
    namespace = {"model": model, "fp16_dir": folder, "fp16_mib": size}
    result = Question(lab01_real.HalfPrecisionCopy(), namespace).result()
    return result.outcome, result.message


def test_q10_reads_the_folder_and_the_measured_size(tiny_model, tmp_path):
    import copy

    copy.deepcopy(tiny_model).to(torch.float16).save_pretrained(tmp_path / "half")
    on_disk = models.files_mib(tmp_path / "half")
    assert _q10(tiny_model, tmp_path / "half", ____)[0] is Outcome.NOT_ATTEMPTED
    assert _q10(tiny_model, tmp_path / "half", on_disk)[0] is Outcome.CORRECT
    n_params = models.count_parameters(tiny_model)
    got, message = _q10(tiny_model, tmp_path / "half", n_params * 2 / 2**20)  # the formula, not the files
    assert got is Outcome.INCORRECT and "formula" in message
    got, message = _q10(tiny_model, tmp_path / "half", on_disk * 1.001)
    assert got is Outcome.INCORRECT and "not the size" in message
    got, message = _q10(tiny_model, tmp_path / "missing", on_disk)
    assert got is Outcome.INCORRECT and "not a folder" in message


def test_q10_refuses_float32_files_other_weights_and_a_model_halved_in_place(
    tiny_tokenizer, tiny_model, tiny_llama_factory, tmp_path
):
    import copy

    tiny_model.save_pretrained(tmp_path / "fp32")
    got, message = _q10(tiny_model, tmp_path / "fp32", models.files_mib(tmp_path / "fp32"))
    assert got is Outcome.INCORRECT and "not float16" in message
    other = tiny_llama_factory(tiny_tokenizer)
    torch.nn.init.normal_(other.model.layers[0].mlp.up_proj.weight)
    other.to(torch.float16).save_pretrained(tmp_path / "other")
    got, message = _q10(tiny_model, tmp_path / "other", models.files_mib(tmp_path / "other"))
    assert got is Outcome.INCORRECT and "not the course model's weight" in message
    halved = copy.deepcopy(tiny_model).to(torch.float16)
    halved.save_pretrained(tmp_path / "half")
    got, message = _q10(halved, tmp_path / "half", models.files_mib(tmp_path / "half"))
    assert got is Outcome.INCORRECT and "in place" in message
