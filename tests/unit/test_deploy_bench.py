"""Benchmark pieces: agreement with the reference's greedy tokens, speed figures from raw
timings, settings validation, and one real measurement of the tiny ONNX model in a fresh
process (its own peak memory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmops_helpers.deploy import bench
from slmops_helpers.deploy.bench import TABLE_KEYS, BenchConfig
from slmops_helpers.models import peak_rss_mib

ROWS = [
    {"category": "setup", "error_code": "none", "reply": "the hub is offline"},
    {"category": "billing", "error_code": "none", "reply": "help is not offline"},
]


@pytest.fixture(scope="module")
def settings(tiny_tokenizer):
    prompts = [
        tiny_tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        for text in ("the hub is offline", "my wifi app is not setup")
    ]
    return BenchConfig(prompts, max_new_tokens=6, timing_prompt=prompts[0], timing_tokens=5, repeats=2)


@pytest.mark.parametrize(
    "candidate, reference, expected",
    [
        ([[1, 2, 3]], [[1, 2, 3]], 1.0),
        ([[1, 2, 9, 4]], [[1, 2, 3, 4]], 0.5),  # diverges at the 3rd token: later matches do not count
        ([[9, 2, 3]], [[1, 2, 3]], 0.0),
        ([[1, 2]], [[1, 2, 3, 4]], 0.5),  # stopped early
        ([[1, 2, 3, 4, 5]], [[1, 2]], 1.0),  # kept going after the reference stopped
        ([[1, 2, 3], [7]], [[1, 2, 3], [8, 9]], 0.5),  # averaged over prompts
        ([[]], [[]], 1.0),  # both answered nothing
        ([[5]], [[]], 0.0),
        ([[]], [[5]], 0.0),
    ],
)
def test_prefix_agreement(candidate, reference, expected):
    assert bench.prefix_agreement(candidate, reference) == pytest.approx(expected)


def test_prefix_agreement_needs_one_answer_per_reference():
    with pytest.raises(ValueError, match="one answer per reference answer; got 1 for 2"):
        bench.prefix_agreement([[1]], [[1], [2]])
    with pytest.raises(ValueError, match="got 0 for 0"):
        bench.prefix_agreement([], [])


def test_summarize_hand_made_timings():
    raw = {"load_s": 1.5, "runs_s": [[0.5, 0.1, 0.1, 0.3], [0.7, 0.1, 0.1, 0.1]], "peak_mib": 123.0}
    summary = bench.summarize(raw)
    assert summary == pytest.approx(
        {
            "load_s": 1.5,
            "ttft_ms": 600.0,  # median of the first tokens, 0.5 s and 0.7 s
            "ms_per_token_p50": 100.0,  # the later tokens, pooled over both runs
            "ms_per_token_p95": 250.0,  # linear interpolation between 0.1 and 0.3
            "tok_s": 6 / 0.8,  # six later tokens in 0.8 s; the first is not a decoding step
            "peak_mib": 123.0,
        }
    )


def test_summarize_one_later_token():
    summary = bench.summarize({"load_s": 0.0, "runs_s": [[0.2, 0.05]], "peak_mib": 1.0})
    assert summary["ms_per_token_p50"] == summary["ms_per_token_p95"] == pytest.approx(50.0)
    assert summary["tok_s"] == pytest.approx(20.0)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1, got 0"),
        ({"repeats": 0}, "repeats must be >= 1"),
        ({"timing_tokens": 0}, "timing_tokens must be >= 1"),
        ({"timing_tokens": 1}, "timing_tokens must be >= 2: the first token only measures the prompt"),
    ],
)
def test_bench_settings_validation(changes, match):
    good = {"prompts": ["p"], "max_new_tokens": 4, "timing_prompt": "p", "timing_tokens": 4, "repeats": 1}
    BenchConfig(**good)
    with pytest.raises(ValueError, match=match):
        BenchConfig(**(good | changes))


def test_unknown_runtime_kind(tiny_onnx):
    with pytest.raises(ValueError, match=r"Unknown runtime 'tflite'; use one of \['torch', 'onnx', 'genai', 'gguf'\]"):
        bench.load_runtime("tflite", tiny_onnx)


def _check_raw(raw, settings):
    assert set(raw) == {"load_s", "runs_s", "token_ids", "answers", "peak_mib"}
    assert raw["load_s"] > 0 and raw["peak_mib"] > 0
    assert len(raw["runs_s"]) == settings.repeats
    assert all(len(run) == settings.timing_tokens and min(run) > 0 for run in raw["runs_s"])  # no early stop
    assert len(raw["token_ids"]) == len(raw["answers"]) == len(settings.prompts)
    assert all(len(ids) <= settings.max_new_tokens for ids in raw["token_ids"])  # fewer: stopped at eos


def test_measure_isolated_runs_in_a_fresh_process(tiny_onnx, tiny_source, settings):
    raw = bench.measure_isolated("onnx", tiny_onnx, settings, timeout_s=120)
    _check_raw(raw, settings)
    # a fresh onnxruntime process: its own peak, far below this torch-laden test process
    assert raw["peak_mib"] < peak_rss_mib()
    # same greedy tokens as torch eager on the same prompts (measured here, in process)
    reference = bench.measure("torch", tiny_source, settings)
    _check_raw(reference, settings)
    assert raw["token_ids"] == reference["token_ids"]
    assert bench.prefix_agreement(raw["token_ids"], reference["token_ids"]) == 1.0


def test_onnxruntime_genai_is_measured_like_our_loop(tiny_onnx, settings):
    """The genai row: same work (no early stop in the speed runs), same greedy tokens as our loop."""
    raw = bench.measure_isolated("genai", tiny_onnx, settings, timeout_s=120)
    _check_raw(raw, settings)
    assert raw["token_ids"] == bench.measure("onnx", tiny_onnx, settings)["token_ids"]


def test_course_variants_orders_the_rows_by_runtime(tmp_path):
    onnx = {"onnx_fp32": tmp_path / "a", "onnx_int4": tmp_path / "b"}
    rows = bench.course_variants(tmp_path / "src", onnx, {"gguf_q4_0": tmp_path / "c"})
    # torch first: it is the reference for agreement
    assert list(rows) == ["torch_fp32", "onnx_fp32", "onnx_int4", "genai_int4", "gguf_q4_0"]
    assert rows["genai_int4"] == ("genai", tmp_path / "b") and rows["gguf_q4_0"][0] == "gguf"
    assert "genai_int4" not in bench.course_variants(tmp_path, {"onnx_fp32": tmp_path / "a"}, {})


def test_measure_isolated_reports_the_childs_error(tmp_path, settings):
    with pytest.raises(RuntimeError, match=r"Benchmark of .* failed:[\s\S]*genai_config\.json is missing"):
        bench.measure_isolated("onnx", tmp_path, settings, timeout_s=120)


def test_bench_variants_table(tiny_onnx, tiny_int8, settings):
    variants = {"onnx_fp32": ("onnx", tiny_onnx), "onnx_int8": ("onnx", tiny_int8)}
    table, answers = bench.bench_variants(variants, settings, ROWS)
    assert [row["variant"] for row in table] == ["onnx_fp32", "onnx_int8"]
    fp32, int8 = table
    assert fp32["agreement"] == 1.0  # the first variant is the reference
    assert 0.0 <= int8["agreement"] <= 1.0  # its computation is checked on scripted answers below
    assert int8["size_mib"] < fp32["size_mib"]
    for row in table:
        assert set(TABLE_KEYS) <= set(row)
        assert 0.0 <= row["score"] <= 100.0
        assert row["ms_per_token_p50"] <= row["ms_per_token_p95"]
    assert set(answers) == set(variants) and all(len(a) == len(ROWS) for a in answers.values())
    flat = bench.flat_metrics(table)
    assert len(flat) == 2 * (len(TABLE_KEYS) + len(bench.INTERVAL_KEYS))  # each score with its interval
    assert flat["onnx_int8_size_mib"] == int8["size_mib"] and "onnx_fp32_ms_per_token_p95" in flat
    lines = bench.format_table(table).splitlines()
    assert len(lines) == 3 and lines[0].split() == ["variant", *TABLE_KEYS]
    assert lines[1].startswith("onnx_fp32") and lines[2].startswith("onnx_int8")


def test_own_peak_rss_is_this_processes():
    import resource

    own = peak_rss_mib()
    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert 0 < own <= inherited + 1  # VmHWM never exceeds ru_maxrss (which can include a parent's)


def test_bench_variants_scores_agreement_against_the_first_variant(monkeypatch, tmp_path, settings):
    """Scripted runs: a candidate that leaves the reference's greedy tokens halfway scores 0.5,
    one that never matches scores 0, whatever order the later variants come in."""
    tokens = {"ref": [[1, 2, 3, 4], [5, 6]], "half": [[1, 2, 9, 9], [5, 9]], "none": [[7], [7, 7]]}

    def scripted(kind, folder, settings, timeout_s=1800):
        ids = tokens[Path(folder).name]
        return {
            "load_s": 0.1,
            "runs_s": [[0.01, 0.02, 0.02]],
            "peak_mib": 10.0,
            "token_ids": ids,
            "answers": ["x", "y"],
        }

    monkeypatch.setattr(bench, "measure_isolated", scripted)
    variants = {name: ("torch", tmp_path / name) for name in ("ref", "half", "none")}
    table, _ = bench.bench_variants(variants, settings, ROWS)
    assert [r["agreement"] for r in table] == [1.0, 0.5, 0.0]


def test_divergence_margin_reads_the_reference_where_the_answers_part():
    import numpy as np

    from slmops_helpers.decoding import divergence_margin

    seen = []

    def next_logits(ids):  # the top two differ by 0.25 after 3 tokens, by 0.5 elsewhere
        seen.append(ids)
        row = np.zeros(5, dtype=np.float32)
        row[2], row[3] = 1.0, (0.75 if len(ids) == 3 else 0.5)
        return row

    assert divergence_margin(next_logits, [9, 9], [2, 2, 2], [2, 2, 2]) == 0.0 and not seen  # never parted
    assert divergence_margin(next_logits, [9, 9], [2, 2, 2], [2, 3, 2]) == pytest.approx(0.25)
    assert seen[-1] == [9, 9, 2]  # the prompt and the agreed prefix, up to the step that differed
    # one answer stopped (the streams drop EOS) where the other went on: they parted at the shorter one's end,
    # measured there from either side, not reported as "never parted" (0.0) or as a certain bug (infinity)
    for ours, theirs in (([2], [2, 4]), ([2, 4], [2])):
        assert divergence_margin(next_logits, [9, 9], ours, theirs) == pytest.approx(0.25)
        assert seen[-1] == [9, 9, 2]
    assert divergence_margin(next_logits, [9, 9], [], [4]) == pytest.approx(0.5) and seen[-1] == [9, 9]
