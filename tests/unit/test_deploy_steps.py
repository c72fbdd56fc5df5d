"""Notebook 04's steps, readings and the choice of what to deploy, on tiny models and hand-made rows."""

import shutil

import pytest

from slmops_helpers import evaluate, finetune
from slmops_helpers.deploy import choose, export, report, steps
from slmops_helpers.deploy.runtime import OnnxCausalLM, TorchCausalLM
from slmops_helpers.uncertainty import TicketScores

VARIANTS = report.VARIANTS


def _table(scores):
    return [{"variant": v, "score": s} for v, s in zip(VARIANTS, scores, strict=True)]


def test_quality_gate_allows_five_points_below_fp32_and_picks_the_smallest_passing_variant():
    gate = steps.quality_gate(_table([50.0, 50.0, 49.0, 45.0, 44.9]))
    assert gate == {
        "torch_fp32_quality_ok": True,
        "onnx_fp32_quality_ok": True,
        "onnx_fp16_quality_ok": True,
        "onnx_int8_quality_ok": True,  # exactly 5 points below: still within
        "onnx_int4_quality_ok": False,
    }
    assert steps.chosen_variant(gate) == "onnx_int8"
    assert steps.chosen_variant({"onnx_int4_quality_ok": True}) == "onnx_int4"


def test_study_metrics_and_table():
    results = [
        {"recipe": name, "size_mib": 10.0 * i, "agreement": 1 - i / 10, "score": 40.0}
        for i, name in enumerate(steps.quantization_study(2), start=1)
    ]
    m = steps.study_metrics(results)
    assert m["int8_all_agreement"] == 0.8 and m["int4_kquant_agreement"] == pytest.approx(0.4)
    assert (m["int8_all_mib"], m["int8_keep_lm_head_mib"]) == (20.0, 30.0)
    assert "int8 keep lm_head+down" in steps.format_study(results)
    assert steps.quantization_study(2)["int8 keep lm_head+down"].exclude[-1] == "/model/layers.1/mlp/down_proj/MatMul"


def test_lineage_names_the_exported_model_and_the_recipe(tiny_source):
    recipe = export.RECIPES["onnx_int4"]
    origin = steps.lineage("base", tiny_source, "the tuned model", "onnx_int4", recipe.note, "abc", adapter="LoRA r=8")
    assert origin["source_fingerprint"] == export.source_fingerprint(tiny_source)
    assert (origin["deployed_from"], origin["recipe"], origin["adapter"]) == (
        "the tuned model",
        recipe.note,
        "LoRA r=8",
    )
    assert steps.variant_metrics({"onnx_int4_score": 50, "onnx_int8_score": 40, "x": 1}, "onnx_int4") == {"score": 50}


def test_tamper_check_detects_a_flipped_byte_and_cleans_up(tiny_package, tmp_path):
    detected, refusal = steps.tamper_check(tiny_package, tmp_path)
    assert detected and "model.onnx.data" in refusal and not (tmp_path / "tampered").exists()


def test_parity_of_the_tiny_export(tiny_source, tiny_onnx):
    torch_lm = TorchCausalLM(tiny_source)
    parity, m = steps.parity_metrics(torch_lm, OnnxCausalLM(tiny_onnx), ["the hub is offline"], new_tokens=4)
    assert m["onnx_max_abs_diff"] <= m["onnx_parity_bound"] and m["onnx_argmax_flips"] == 0
    assert 0 < m["onnx_greedy_agreement"] <= 1 and parity.positions > 0
    assert "Greedy answers agree" in report.parity_reading(m, parity.positions)


def _bench_metrics(**changes):
    m = {}
    for i, v in enumerate(VARIANTS):
        m |= {
            f"{v}_tok_s": 10.0 * (i + 1), f"{v}_size_mib": 500.0 / (i + 1), f"{v}_peak_mib": 600.0 - 50 * i,
            f"{v}_ms_per_token_p50": 100.0 / (i + 1), f"{v}_ms_per_token_p95": 120.0 / (i + 1),
            f"{v}_ttft_ms": 300.0, f"{v}_load_s": 1.0, f"{v}_score": 50.0, f"{v}_quality_ok": True,
        }  # fmt: skip
    return {**m, "int4_speedup_vs_torch": 5.0, **changes}


def test_benchmark_reading_covers_every_column_and_the_gate():
    text = report.benchmark_reading(_bench_metrics(onnx_int4_quality_ok=False), n_tickets=8)
    for needle in ("tokens/s", "p95", "Time to first token", "fp16", "peak memory", "loads in", "onnx_int4 **fails**"):
        assert needle in text


def test_other_readings():
    m = {"package_variant": "onnx_int4", "package_mib": 98.4, "tamper_detected": True}
    assert "**refused**: bad hash" in report.package_reading(m, 7, "bad hash")
    assert "**accepted**" in report.package_reading({**m, "tamper_detected": False}, 7, "")
    passed = {"checklist_passed": 5, "checklist_total": 5, "checklist_domain": True}
    assert "ready for the pipeline" in report.checklist_reading(passed)
    failed = {"checklist_passed": 4, "checklist_total": 5, "checklist_domain": False, "checklist_format": True}
    assert "failing: domain" in report.checklist_reading(failed)
    genai = {"genai_int4_tok_s": 50.0, "onnx_int4_tok_s": 60.0, "genai_agreement": 0.5, "genai_divergence_margin": 1e-5}
    assert "near-tie" in report.genai_reading(genai, parted=True) and "near-tie" not in report.genai_reading(
        genai, False
    )


def test_deploy_candidates_prefer_trained_models_and_end_with_the_untuned_base(tmp_path, monkeypatch, tiny_source):
    merged = tmp_path / "artifacts" / "03_fine_tuning" / "merged_lora"
    shutil.copytree(tiny_source, merged)
    monkeypatch.setattr(export, "artifacts_dir", lambda output_dir=None: tmp_path / "artifacts")
    monkeypatch.setattr(finetune, "tuned_dir", lambda name=None: tmp_path / "no_tuned_model")
    monkeypatch.setattr(export, "prepare_model", lambda name: str(tiny_source))
    assert [c.label for c in choose.deploy_candidates()] == [choose.MERGED, choose.UNTUNED]
    assert [c.label for c in choose.deploy_candidates(explicit=tiny_source)][-1] == choose.UNTUNED


def test_choose_deploys_the_best_score_or_the_explicit_folder(monkeypatch, tmp_path):
    candidates = [choose.Candidate(choose.MERGED, tmp_path / "m"), choose.Candidate(choose.TUNED, tmp_path / "t")]
    candidates.append(choose.Candidate(choose.UNTUNED, tmp_path / "u"))
    ids = tuple(f"t{i}" for i in range(8))
    # per-ticket scores whose means are 16.9, 52.1 and 21.4: the tuned model wins on every ticket
    per_ticket = {
        str(tmp_path / "m"): (16.9,) * 8,
        str(tmp_path / "t"): (42.1, 62.1) * 4,
        str(tmp_path / "u"): (11.4, 31.4) * 4,
    }
    monkeypatch.setattr(choose, "deploy_candidates", lambda explicit, name: candidates)
    monkeypatch.setattr(choose, "load_model", lambda source, **kw: (source, None))
    monkeypatch.setattr(
        choose,
        "score_model",
        lambda model, tok, rows, n: evaluate.Scored({}, [], TicketScores(ids, per_ticket[model])),
    )
    choice = choose.choose_deploy_source([{}] * 8, 16)
    assert choice.chosen.label == choose.TUNED and choice.untuned_score == pytest.approx(21.4)
    m = choice.metrics()
    assert {k: m[k] for k in ("deployed_source", "deploy_candidates", "deploy_choice_tickets")} == {
        "deployed_source": choose.TUNED,
        "deploy_candidates": 3,
        "deploy_choice_tickets": 8,
    }
    assert m["deployed_score"] == pytest.approx(52.1) and m["untuned_score"] == pytest.approx(21.4)
    assert m["deployed_vs_untuned_score_diff"] == pytest.approx(30.7)
    assert m["deployed_vs_untuned_score_diff_ci_low"] == pytest.approx(30.7)  # the same gap on every ticket
    assert m["deployed_score_ci_low"] < 52.1 < m["deployed_score_ci_high"]
    assert "the best task score" in choice.reason() and "below the untuned" not in choice.reason()
    assert "deployed is better" in choice.reason()
    explicit = choose.choose_deploy_source([{}] * 8, 16, explicit=tmp_path / "m")
    assert explicit.chosen.label == choose.MERGED and "below the untuned base" in explicit.reason()


def test_quality_gate_adds_each_precisions_paired_difference_and_the_reading_says_how_firm_it_is():
    ids = tuple(f"t{i}" for i in range(8))
    table = _table([50.0, 50.0, 49.0, 45.0, 30.0])
    spreads = {"onnx_fp32": 0.0, "onnx_fp16": 0.0, "onnx_int8": 12.0, "onnx_int4": 2.0}
    for row in table:
        s = spreads.get(row["variant"], 0.0)
        row["tickets"] = TicketScores(ids, tuple(row["score"] + (s if i % 2 else -s) for i in range(8)))
    m = steps.quality_gate(table)
    assert m["fp16_vs_fp32_score_diff"] == pytest.approx(-1.0) == m["fp16_vs_fp32_score_diff_ci_low"]
    assert m["int8_vs_fp32_score_diff_ci_low"] < -5 < m["int8_vs_fp32_score_diff_ci_high"]
    text = report.quality_noise_reading(m, 8)
    assert (
        "fp16 − fp32: **-1.0** points" in text
        and "fp16 is worse; the gate's pass holds across the whole interval" in text
    )
    assert "int8 − fp32" in text and "decided inside the noise" in text
    assert "int4 is worse; the gate's refusal holds across the whole interval" in text


def _race_metrics(**changes):
    m = {"onnx_int4_tok_s": 170.0, "genai_int4_tok_s": 150.0, "onnx_int4_peak_mib": 300.0, "onnx_int4_ttft_ms": 90.0}
    for variant, tok_s in (("gguf_q4_0", 180.0), ("gguf_q4_k_m", 120.0)):
        m |= {f"{variant}_tok_s": tok_s, f"{variant}_peak_mib": 200.0, f"{variant}_ttft_ms": 80.0}
    return m | changes


def test_runtime_race_compares_int4_onnx_with_the_fastest_llama_cpp_4_bit_file():
    race = steps.runtime_race(_race_metrics())
    assert race == {"llamacpp_best_4bit": "gguf_q4_0", "int4_vs_llamacpp": pytest.approx(170 / 180)}
    assert steps.runtime_race({"onnx_int4_tok_s": 170.0}) == {}  # llama.cpp did not run: nothing to race
    text = report.runtime_reading(_race_metrics() | race, 8)
    assert "×0.94**, level with llama.cpp" in text and "gguf_q4_0" in text and "a tie" in text
    slow = _race_metrics(onnx_int4_tok_s=90.0)  # ×0.50: beyond any drift between runs
    assert "×0.50**, slower than llama.cpp" in report.runtime_reading(slow | steps.runtime_race(slow), 8)
    assert "did not run" in report.runtime_reading(_race_metrics(), 8)


def test_the_gguf_package_is_the_smallest_gguf_variant_that_passes_the_gate():
    gate = steps.quality_gate(
        [{"variant": v, "score": s} for v, s in [("onnx_fp32", 50.0), ("gguf_q4_0", 44.0), ("gguf_q4_k_m", 46.0)]]
    )
    assert gate["gguf_q4_0_quality_ok"] is False and steps.chosen_gguf(gate) == "gguf_q4_k_m"
    assert steps.chosen_gguf({}) is None
    assert steps.write_gguf_package({}, None, {}, {}, None) is None  # nothing passed: no package, no error


def test_gguf_readings():
    rows = [{"variant": "gguf_q4_k_m", "size_mib": 100.4, "types": {"Q5_0": 60.2, "Q6_K": 30.0, "F32": 0.1}}]
    table = report.gguf_reading(rows, "llama.cpp is installed")
    assert "| gguf_q4_k_m | 100 | Q5_0 60, Q6_K 30 |" in table  # types under half a MiB are left out
    assert "not available here**: no build. Fix" in report.gguf_reading([], "no build. Fix: run `make setup`.")
    served = {"gguf_server_ok": True, "gguf_server_same_answer": True, "gguf_package_variant": "gguf_q4_0"}
    assert "the same answer llama.cpp gave" in report.gguf_server_reading(served)
    assert "only ONNX was served" in report.gguf_server_reading({})


@pytest.mark.slow
def test_course_exports_are_every_export_notebook_04_builds(course_source):
    # `make model` builds these at setup, so notebook 04's first run finds each one cached
    import json

    from slmops_helpers.deploy import llamacpp

    built = steps.build_course_exports(course_source)
    n_layers = json.loads((course_source / "config.json").read_text())["num_hidden_layers"]
    for name, recipe in (steps.quantization_study(n_layers) | export.RECIPES).items():
        assert built[name] == export.variant_dir(course_source, recipe) and export.is_built(built[name]), name
    if llamacpp.availability()[0]:
        assert {v: built[v] for v in llamacpp.GGUF_TYPES} == llamacpp.build_all(course_source)
