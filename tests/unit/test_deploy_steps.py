"""Notebook 04's steps, readings and the choice of what to deploy, on tiny models and hand-made rows."""

import shutil

import pytest

from slmops_helpers import evaluate, finetune
from slmops_helpers.deploy import choose, export, report, steps
from slmops_helpers.deploy.runtime import OnnxCausalLM, TorchCausalLM
from slmops_helpers.reference import Reference
from slmops_helpers.uncertainty import TicketScores

VARIANTS = report.VARIANTS


N_VAL = 48
VAL_ROWS = [{"id": f"v{i}", "split": "validation"} for i in range(N_VAL)]


def _tickets(mean, spread=0.0, n=N_VAL):
    return TicketScores(
        tuple(f"v{i}" for i in range(n)), tuple(mean + (spread if i % 2 else -spread) for i in range(n))
    )


def _table(scores, spreads=None, variants=VARIANTS):
    spreads = spreads or [0.0] * len(scores)
    return [
        {"variant": v, "score": s, "tickets": _tickets(s, d)} for v, s, d in zip(variants, scores, spreads, strict=True)
    ]


def test_quality_gate_is_the_course_gates_non_inferiority_rule_on_validation_tickets():
    # the same per-ticket shift on every ticket: the bound is the drop itself
    gate = steps.quality_gate(_table([50.0, 50.0, 49.0, 45.0, 44.9]), VAL_ROWS, margin=5, significance=0.05)
    assert {k: v for k, v in gate.metrics().items() if k.endswith("_quality_ok")} == {
        "torch_fp32_quality_ok": True,
        "onnx_fp32_quality_ok": True,
        "onnx_fp16_quality_ok": True,
        "onnx_int8_quality_ok": True,  # shown to be exactly 5 points below: still within
        "onnx_int4_quality_ok": False,
    }
    assert gate.metrics()["quality_choice_split"] == "validation" and gate.metrics()["quality_margin_points"] == 5
    assert steps.chosen_variant(gate) == "onnx_int8"
    assert steps.chosen_variant(steps.QualityGate(5, {"onnx_int4": 4.9, "onnx_fp32": 0.0}, {})) == "onnx_int4"
    with pytest.raises(ValueError, match="No ONNX variant passed"):
        steps.chosen_variant(steps.QualityGate(5, {"onnx_fp32": 6.0}, {}))
    # a 2-point mean drop whose tickets swing by ±16 cannot be shown to stay within 5 points: refused
    noisy = steps.quality_gate(_table([50.0, 50.0, 50.0, 48.0, 30.0], [0, 0, 0, 16.0, 0]), VAL_ROWS, 5, 0.05)
    assert noisy.metrics()["onnx_int8_quality_ok"] is False and noisy.drop_bounds["onnx_int8"] > 5
    assert steps.chosen_variant(noisy) == "onnx_fp16"


def test_quality_gate_refuses_to_choose_on_test_tickets():
    rows = VAL_ROWS[:-1] + [{"id": "t3", "split": "test"}]
    with pytest.raises(ValueError, match="Choosing which precision to ship is a choice"):
        steps.quality_gate(_table([50.0] * 5), rows, 5, 0.05)


def test_lineage_names_the_exported_model_and_the_recipe(tiny_source):
    recipe = export.RECIPES["onnx_int4"]
    origin = steps.lineage("base", tiny_source, "the tuned model", "onnx_int4", recipe.note, "abc", adapter="LoRA r=8")
    assert origin["source_fingerprint"] == export.source_fingerprint(tiny_source)
    assert (origin["deployed_from"], origin["recipe"], origin["adapter"]) == (
        "the tuned model",
        recipe.note,
        "LoRA r=8",
    )
    table = [
        {"variant": "onnx_int4", "score": 50.0, "tok_s": 9.0, "tickets": None},
        {"variant": "onnx_int8", "score": 4},
    ]
    gate = steps.QualityGate(5, {"onnx_int4": 1.5, "onnx_int8": 9.0}, {})
    assert steps.variant_figures(table, gate, "onnx_int4") == {
        "score": 50.0,
        "tok_s": 9.0,
        "drop_bound_points": 1.5,
        "quality_ok": True,
    }


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
            f"{v}_drop_bound_points": 0.5,
        }  # fmt: skip
    return {**m, "int4_speedup_vs_torch": 5.0, "quality_margin_points": 5.0, **changes}


def test_benchmark_reading_covers_every_column_and_the_gate():
    text = report.benchmark_reading(_bench_metrics(onnx_int4_quality_ok=False), n_tickets=8)
    for needle in ("tokens/s", "p95", "Time to first token", "fp16", "peak memory", "loads in", "onnx_int4 **fails**"):
        assert needle in text
    assert "validation tickets" in text and "at most 5 points below" in text


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


def test_constrained_reading_explains_fields_that_moved():
    m = {
        f"{kind}_{k}": v
        for kind in ("constrained", "unconstrained")
        for k, v in (("format_ok", 1.0), ("category_acc", 0.25), ("error_code_acc", 0.75), ("ms_per_token", 10.0))
    }
    m |= {"constrained_vs_unconstrained_score_diff": 0.0, "constrained_vs_unconstrained_score_diff_ci_low": -1.0,
          "constrained_vs_unconstrained_score_diff_ci_high": 1.0, "constrained_mask_overhead_pct": 0.0}  # fmt: skip
    assert "prefix it would not have written" not in report.constrained_reading(m, 8)
    for field in ("category_acc", "error_code_acc"):
        moved = report.constrained_reading({**m, f"constrained_{field}": 0.5}, 8)
        assert "prefix it would not have written" in moved
    # with section 1's record, the reading adds what the mask did for the untuned model, from that record
    untuned = Reference("01", {"n_eval": 48, "base_format_ok": 0.0, "base_masked_format_ok": 1.0,
                               "base_score": 10.0, "base_masked_score": 21.5})  # fmt: skip
    assert "from 0% to 100% and the score from 10.0 to 21.5" in report.constrained_reading(m, 8, untuned)
    assert "untuned model" not in report.constrained_reading(m, 8, Reference("01", problem="no record"))


def test_deploy_candidates_prefer_trained_models_and_end_with_the_untuned_base(tmp_path, monkeypatch, tiny_source):
    merged = tmp_path / "artifacts" / "03_fine_tuning" / "merged_lora"
    shutil.copytree(tiny_source, merged)
    monkeypatch.setattr(export, "artifacts_dir", lambda output_dir=None: tmp_path / "artifacts")
    monkeypatch.setattr(finetune, "tuned_dir", lambda name=None: tmp_path / "no_tuned_model")
    monkeypatch.setattr(export, "prepare_model", lambda name: str(tiny_source))
    assert [c.label for c in choose.deploy_candidates()] == [choose.MERGED, choose.UNTUNED]
    assert [c.label for c in choose.deploy_candidates(explicit=tiny_source)][-1] == choose.UNTUNED


def test_choose_picks_on_validation_and_reports_once_on_test(monkeypatch, tmp_path):
    candidates = [choose.Candidate(choose.MERGED, tmp_path / "m"), choose.Candidate(choose.TUNED, tmp_path / "t")]
    candidates.append(choose.Candidate(choose.UNTUNED, tmp_path / "u"))
    ids = tuple(f"t{i}" for i in range(8))
    # validation: means 16.9, 52.1 and 21.4, so the tuned model wins; on test it scores lower (40.0)
    per_ticket = {
        ("validation", str(tmp_path / "m")): (16.9,) * 8,
        ("validation", str(tmp_path / "t")): (42.1, 62.1) * 4,
        ("validation", str(tmp_path / "u")): (11.4, 31.4) * 4,
        ("test", str(tmp_path / "t")): (30.0, 50.0) * 4,
        ("test", str(tmp_path / "u")): (10.0, 30.0) * 4,
        ("test", str(tmp_path / "m")): (10.0,) * 8,
    }
    scored = []
    monkeypatch.setattr(choose, "deploy_candidates", lambda explicit, name: candidates)
    monkeypatch.setattr(choose, "load_model", lambda source, **kw: (source, None))

    def score_model(model, tok, rows, n):
        scored.append((rows[0]["split"], model))
        return evaluate.Scored({}, [], TicketScores(ids, per_ticket[rows[0]["split"], model]))

    monkeypatch.setattr(choose, "score_model", score_model)
    validation, test = [{"split": "validation"}] * 8, [{"split": "test", "id": "x"}] * 8
    choice = choose.choose_deploy_source(validation, 16)
    assert choice.chosen.label == choose.TUNED and choice.scores[choose.UNTUNED] == pytest.approx(21.4)
    with pytest.raises(ValueError, match="no test scores yet"):
        choice.metrics()
    choice.score_on_test(test, 16)
    assert [split for split, _ in scored] == ["validation"] * 3 + ["test"] * 2  # test: the chosen and the floor
    m = choice.metrics()
    assert {k: m[k] for k in ("deployed_source", "deploy_candidates", "deploy_choice_tickets")} == {
        "deployed_source": choose.TUNED,
        "deploy_candidates": 3,
        "deploy_choice_tickets": 8,
    }
    assert m["deploy_choice_split"] == "validation" and m["deployed_validation_score"] == pytest.approx(52.1)
    assert m["deployed_score"] == pytest.approx(40.0) and m["untuned_score"] == pytest.approx(20.0)  # test scores
    assert m["deployed_vs_untuned_score_diff"] == pytest.approx(20.0)
    assert m["deployed_vs_untuned_score_diff_ci_low"] == pytest.approx(20.0)  # the same gap on every ticket
    assert m["deployed_score_ci_low"] < 40.0 < m["deployed_score_ci_high"]
    assert "the best task score" in choice.reason() and "below the untuned" not in choice.reason()
    assert "deployed is better" in choice.reason() and "8 validation tickets" in choice.reason()
    with pytest.raises(ValueError, match="Fix: pass test rows"):
        choice.score_on_test(validation, 16)
    explicit = choose.choose_deploy_source(validation, 16, explicit=tmp_path / "m")
    explicit.score_on_test(test, 16)
    assert explicit.chosen.label == choose.MERGED and "below the untuned base" in explicit.reason()


def test_choosing_on_test_tickets_is_refused(monkeypatch):
    monkeypatch.setattr(choose, "deploy_candidates", lambda explicit, name: pytest.fail("must refuse before loading"))
    rows = [{"split": "validation", "id": "v1"}, {"split": "test", "id": "t7"}]
    with pytest.raises(ValueError, match=r"Choosing the model to deploy is a choice, and 1 of its rows are test"):
        choose.choose_deploy_source(rows, 16)


def test_quality_gate_adds_each_precisions_paired_difference_and_the_reading_gives_the_verdict():
    table = _table(
        [50.0, 50.0, 49.0, 45.0, 30.0],
        [0.0, 0.0, 0.0, 12.0, 2.0],
    )
    m = steps.quality_gate(table, VAL_ROWS, 5, 0.05).metrics()
    assert m["fp16_vs_fp32_score_diff"] == pytest.approx(-1.0) == m["fp16_vs_fp32_score_diff_ci_low"]
    assert m["int8_vs_fp32_score_diff_ci_low"] < -5 < m["int8_vs_fp32_score_diff_ci_high"]
    text = report.quality_noise_reading(m, N_VAL)
    assert "fp16 − fp32: **-1.0** points" in text and "at most 1.0 points worse" in text and "it may ship" in text
    assert "int8 − fp32" in text and "beyond the 5-point margin: refused" in text
    assert "validation tickets" in text


def _race_table(int4_tok_s=170.0):
    rows = [{"variant": "onnx_int4", "tok_s": int4_tok_s, "peak_mib": 300.0, "ttft_ms": 90.0}]
    rows.append({"variant": "genai_int4", "tok_s": 150.0, "peak_mib": 300.0, "ttft_ms": 90.0})
    for variant, tok_s in (("gguf_q4_0", 180.0), ("gguf_q4_k_m", 120.0)):
        rows.append({"variant": variant, "tok_s": tok_s, "peak_mib": 200.0, "ttft_ms": 80.0})
    return rows


def _race_metrics(table):
    return {f"{row['variant']}_{k}": v for row in table for k, v in row.items() if k != "variant"}


def test_runtime_race_compares_int4_onnx_with_the_fastest_llama_cpp_4_bit_file():
    race = steps.runtime_race(_race_table())
    assert race == {"llamacpp_best_4bit": "gguf_q4_0", "int4_vs_llamacpp": pytest.approx(170 / 180)}
    assert steps.runtime_race(_race_table()[:2]) == {}  # llama.cpp did not run: nothing to race
    text = report.runtime_reading(_race_metrics(_race_table()) | race, 8)
    assert "×0.94**, level with llama.cpp" in text and "gguf_q4_0" in text and "a tie" in text
    slow = _race_table(int4_tok_s=90.0)  # ×0.50: beyond any drift between runs
    assert "×0.50**, slower than llama.cpp" in report.runtime_reading(_race_metrics(slow) | steps.runtime_race(slow), 8)
    assert "did not run" in report.runtime_reading(_race_metrics(_race_table()), 8)


def test_the_gguf_package_is_the_smallest_gguf_variant_that_passes_the_gate():
    variants = ("onnx_fp32", "gguf_q4_0", "gguf_q4_k_m")
    gate = steps.quality_gate(_table([50.0, 44.0, 46.0], variants=variants), VAL_ROWS, 5, 0.05)
    assert not gate.passed("gguf_q4_0") and steps.chosen_gguf(gate) == "gguf_q4_k_m"
    assert steps.chosen_gguf(steps.QualityGate(5, {}, {})) is None
    assert steps.write_gguf_package({}, None, [], gate, {}, None) is None  # nothing passed: no package, no error


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
    from slmops_helpers.deploy import llamacpp, quant_study

    built = steps.build_course_exports(course_source)
    for name, recipe in export.RECIPES.items():
        assert built[name] == export.variant_dir(course_source, recipe) and export.is_built(built[name]), name
    for lever in quant_study.levers_for(True, llamacpp.availability()[0]):  # section 4.3's study, cached
        assert built[lever.name] == quant_study.build(course_source, lever), lever.name
    if llamacpp.availability()[0]:
        assert {v: built[v] for v in llamacpp.GGUF_TYPES} == llamacpp.build_all(course_source)


def test_the_test_report_scores_each_chosen_package_once_paired_against_the_deployed_model(tiny_package):
    from slmops_helpers import data
    from slmops_helpers.deploy import bench

    rows = [r | {"split": "test"} for r in data.read_rows() if r["split"] == "test"][:3]
    lm = OnnxCausalLM(tiny_package)
    prompts = [lm.chat_prompt([{"role": "user", "content": r["message"][:40]}]) for r in rows]  # a 128-token context
    settings = bench.BenchConfig(prompts, max_new_tokens=4, timing_prompt=prompts[0], timing_tokens=8, repeats=3)
    deployed = TicketScores(tuple(r["id"] for r in rows), (10.0, 20.0, 30.0))
    m = steps.test_report({"package": ("onnx", tiny_package)}, settings, rows, deployed)
    assert m["report_split"] == "test" and m["report_tickets"] == 3
    assert m["package_test_score_ci_low"] <= m["package_test_score"] <= m["package_test_score_ci_high"]
    assert m["package_vs_deployed_score_diff"] == pytest.approx(m["package_test_score"] - 20.0)
    text = report.test_reading(
        m
        | {
            "package_variant": "onnx_int4",
            "deployed_score": 20.0,
            "deployed_score_ci_low": 10.0,
            "deployed_score_ci_high": 30.0,
        }  # fmt: skip
    )
    assert "Scored once on 3 test tickets" in text and "the onnx_int4 package" in text
    with pytest.raises(ValueError, match="Fix: pass test rows"):
        steps.test_report({"package": ("onnx", tiny_package)}, settings, VAL_ROWS[:3], deployed)
