"""Notebook 05's release round: metrics, registration from a package's own lineage, readings."""

import shutil
from types import SimpleNamespace

import pytest

from slmops_helpers import pipeline, registry, release
from slmops_helpers import release_report as report
from slmops_helpers.deploy import export, package
from slmops_helpers.deploy.steps import lineage


def _row(variant, score, size=100.0, ms=10.0, peak=300.0):
    return {
        "variant": variant, "score": score, "size_mib": size, "ms_per_token_p50": ms, "ms_per_token_p95": ms * 1.2,
        "tok_s": 1000 / ms, "ttft_ms": 50.0, "peak_mib": peak, "agreement": 1.0,
    }  # fmt: skip


def test_measured_metrics_name_each_package():
    table = [_row("production", 50.0), _row("candidate", 52.0), _row("over_quantized", 30.0, size=80.0)]
    measured, m = release.measured_metrics(table, 24)
    assert measured["candidate"]["score"] == 52.0
    assert (m["candidate_score"], m["production_score"], m["bad_candidate_score"], m["n_eval"]) == (
        52.0,
        50.0,
        30.0,
        24,
    )
    assert m["over_quantized_size_mib"] == 80.0
    text = report.measured_reading(m)
    assert "+2.0, within the worth of two tickets, 5.6 points" in text and "80 MiB" in text


@pytest.fixture
def two_packages(tiny_onnx, tiny_source, tmp_path):
    recipe = export.RECIPES["onnx_fp32"]
    made = {}
    for name, extra in (("production", {}), ("candidate", {"adapter": "LoRA r=8", "parent": "prod"})):
        origin = lineage("tiny-base", tiny_source, "the tiny model", "onnx_fp32", recipe, "d" * 64, **extra)
        made[name] = package.write_package(tiny_onnx, tmp_path / name, pipeline.PACKAGE_NAME, "1.0.0", origin)
    return made


def test_register_package_takes_the_lineage_its_manifest_records(two_packages, tmp_path):
    reg = registry.Registry(tmp_path / "registry")
    prod = release.register_package(reg, two_packages["production"], {"score": 50.0}, stage="production")
    cand = release.register_package(
        reg, two_packages["candidate"], {"score": 52.0}, parent=prod.id, hyperparameters={"steps": 8}
    )
    assert (prod.base_model, prod.adapter, prod.data_hash) == ("tiny-base", "the tiny model", "d" * 64)
    assert cand.adapter == "LoRA r=8" and cand.parent == prod.id
    assert cand.hyperparameters == {"variant": "onnx_fp32", "recipe": export.RECIPES["onnx_fp32"].note, "steps": 8}
    assert [e.id for e in reg.lineage(cand.id)] == [cand.id, prod.id]


def test_register_package_refuses_a_changed_package(two_packages, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(two_packages["production"], broken)
    (broken / "genai_config.json").write_text("{}")
    with pytest.raises(package.PackageError):
        release.register_package(registry.Registry(tmp_path / "registry"), broken, {"score": 1.0})


def _failure(metric, excess):
    return SimpleNamespace(rule=SimpleNamespace(metric=metric), excess=excess, describe=lambda: f"{metric} over")


def test_gate_metrics_and_reading():
    verdict = SimpleNamespace(passed=True, results=[1, 2, 3], failures=[])
    refusal = SimpleNamespace(
        passed=False, results=[1, 2, 3], failures=[_failure("score", 9.0), _failure("agreement", 0.1)]
    )
    m = release.gate_metrics(verdict, refusal, exit_code=1)
    assert (m["gate_checks"], m["bad_candidate_failed_checks"], m["bad_candidate_worst_metric"]) == (3, 2, "score")
    assert m["bad_candidate_failed_metrics"] == "score,agreement"
    full = {**m, "over_quantized_size_mib": 80.0, "candidate_size_mib": 98.0}
    full |= {"over_quantized_ms_per_token_p50": 9.0, "candidate_ms_per_token_p50": 10.0}
    text = report.gate_reading(full, verdict, refusal)
    assert (
        "**passes** all 3 checks" in text
        and "**refused**: score over; agreement over" in text
        and "exit code 1" in text
    )


def test_rollout_and_feedback_metrics():
    stage = SimpleNamespace(on_new=9000, unserved=100, error_rate=0.06, reason="error rate 6% over 2%")
    result = SimpleNamespace(
        halted=False, stages=[stage], hours=[0.0, 30.0], feedback=[{}] * 5, feedback_counts={"failed": 7}
    )
    m = release.rollout_metrics(result, [SimpleNamespace(name="onnx_int4")], 10_000, 0.5, from_section_4=True)
    assert m["rollout_on_new"] == 9000 and m["rollout_variant_source"] == "04_deployment.json + this run"
    assert release.feedback_metrics(result) == {
        "feedback_records": 5, "feedback_flagged": 7, "feedback_failed": 7, "feedback_low_confidence": 0,
    }  # fmt: skip
    bad = SimpleNamespace(
        halted=True, halted_at="canary", stages=[SimpleNamespace(on_new=100, error_rate=0.05, reason="error rate over")]
    )
    m |= release.bad_rollout_metrics(bad)
    assert m["bad_rollout_halted_at"] == "canary" and m["bad_rollout_rolled_back"] == 100
    assert "**halted at the canary stage**" in report.rollout_reading(
        m, bad, 6.0
    ) and "9,900" in report.rollout_reading(m, bad, 6.0)
