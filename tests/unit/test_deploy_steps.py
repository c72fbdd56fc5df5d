"""Notebook 04's steps, readings and the choice of what to deploy, on tiny models and hand-made rows."""

import shutil

import pytest

from slmops_helpers import evaluate
from slmops_helpers.deploy import choose, export, report, steps
from slmops_helpers.deploy.runtime import OnnxCausalLM, TorchCausalLM

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
    origin = steps.lineage("base", tiny_source, "the tuned model", "onnx_int4", recipe, "abc", adapter="LoRA r=8")
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
    genai = {"genai_tok_s": 50.0, "genai_agreement": 0.5, "genai_divergence_margin": 1e-5}
    assert "near-tie" in report.genai_reading(genai, parted=True) and "near-tie" not in report.genai_reading(
        genai, False
    )


def test_deploy_candidates_prefer_trained_models_and_end_with_the_untuned_base(tmp_path, monkeypatch, tiny_source):
    merged = tmp_path / "artifacts" / "03_fine_tuning" / "merged_lora"
    shutil.copytree(tiny_source, merged)
    monkeypatch.setattr(choose, "artifacts_dir", lambda: tmp_path / "artifacts")
    monkeypatch.setattr(choose, "tuned_dir", lambda name: tmp_path / "no_tuned_model")
    monkeypatch.setattr(choose, "prepare_model", lambda name: str(tiny_source))
    assert [c.label for c in choose.deploy_candidates()] == [choose.MERGED, choose.UNTUNED]
    assert [c.label for c in choose.deploy_candidates(explicit=tiny_source)][-1] == choose.UNTUNED


def test_choose_deploys_the_best_score_or_the_explicit_folder(monkeypatch, tmp_path):
    candidates = [choose.Candidate(choose.MERGED, tmp_path / "m"), choose.Candidate(choose.TUNED, tmp_path / "t")]
    candidates.append(choose.Candidate(choose.UNTUNED, tmp_path / "u"))
    scores = {str(tmp_path / "m"): 16.9, str(tmp_path / "t"): 52.1, str(tmp_path / "u"): 21.4}
    monkeypatch.setattr(choose, "deploy_candidates", lambda explicit, name: candidates)
    monkeypatch.setattr(choose, "load_model", lambda source, **kw: (source, None))
    monkeypatch.setattr(
        choose, "score_model", lambda model, tok, rows, n: evaluate.Scored({"score": scores[model]}, [])
    )
    choice = choose.choose_deploy_source([{}] * 8, 16)
    assert choice.chosen.label == choose.TUNED and choice.untuned_score == 21.4
    assert choice.metrics() == {
        "deployed_source": choose.TUNED,
        "deployed_score": 52.1,
        "untuned_score": 21.4,
        "deploy_candidates": 3,
        "deploy_choice_tickets": 8,
    }
    assert "the best task score" in choice.reason() and "below the untuned" not in choice.reason()
    explicit = choose.choose_deploy_source([{}] * 8, 16, explicit=tmp_path / "m")
    assert explicit.chosen.label == choose.MERGED and "below the untuned base" in explicit.reason()
