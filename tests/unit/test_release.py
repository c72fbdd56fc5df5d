"""Notebook 05's release round: metrics, registration from a package's own lineage, readings."""

import shutil
from types import SimpleNamespace

import pytest
from readings import bold, in_parentheses, numbers

from slmops_helpers.deploy import export, package
from slmops_helpers.deploy.steps import lineage
from slmops_helpers.pipeline import gate, registry, report, stages, steps
from slmops_helpers.uncertainty import TicketScores

IDS = tuple(f"t{i}" for i in range(24))


def _row(variant, score, size=100.0, ms=10.0, peak=300.0, spread=10.0):
    """A benchmark row whose 24 per-ticket scores average ``score``, alternating ± ``spread``."""
    tickets = TicketScores(IDS, tuple(score + (spread if i % 2 else -spread) for i in range(24)))
    return {
        "variant": variant, "score": score, "size_mib": size, "ms_per_token_p50": ms, "ms_per_token_p95": ms * 1.2,
        "tok_s": 1000 / ms, "ttft_ms": 50.0, "peak_mib": peak, "agreement": 1.0, "tickets": tickets,
    }  # fmt: skip


def test_measured_metrics_name_each_package():
    table = [_row("production", 50.0), _row("candidate", 52.0), _row("over_quantized", 30.0, size=80.0)]
    measured, m = steps.measured_metrics(table, 24)
    assert measured["candidate"]["score"] == 52.0
    assert TicketScores.from_json(measured["candidate"]["per_ticket"]["score"]).mean == pytest.approx(52.0)
    assert (m["candidate_score"], m["production_score"], m["bad_candidate_score"], m["n_eval"]) == (
        52.0,
        50.0,
        30.0,
        24,
    )
    assert m["over_quantized_size_mib"] == 80.0
    assert m["candidate_score_ci_low"] < 52.0 < m["candidate_score_ci_high"]
    # the same ±10 pattern on every ticket: the paired difference is exactly +2 on each
    assert m["candidate_vs_production_score_diff"] == pytest.approx(2.0)
    assert m["candidate_vs_production_score_diff_ci_low"] == pytest.approx(2.0)
    text = report.measured_reading(m)
    # production, candidate, over-quantized, then the two paired differences with production
    assert bold(text) == ["50.0", "52.0", "30.0", "+2.0", "-20.0"] and in_parentheses(text)[0] == [80, 100]
    candidate, over_quantized = (line for line in text.splitlines() if line.startswith("- "))
    assert in_parentheses(candidate) == [[95, 2.0, 2.0]] and in_parentheses(over_quantized) == [[95, -20.0, -20.0]]
    assert "better" in candidate and "worse" in over_quantized
    needed = steps.tickets_needed_metrics(measured, 24)
    assert needed["paired_diff_sd_points"] == pytest.approx(0.0, abs=1e-9)
    assert needed["tickets_needed_margin2"] == needed["tickets_needed_margin5"] == 2  # no spread: the floor of 2
    assert needed["certifiable_margin_points"] == pytest.approx(0.0, abs=1e-6)


def test_tickets_needed_grow_with_the_spread_of_the_differences():
    table = [_row("production", 50.0, spread=10.0), _row("candidate", 50.0, spread=-10.0)]
    table.append(_row("over_quantized", 30.0))
    measured, m = steps.measured_metrics(table, 24)
    needed = steps.tickets_needed_metrics(measured, 24)
    # per-ticket differences are ±20: (1.645 + 0.842)^2 * (20.4 / 2)^2 ≈ 644 tickets to certify a 2-point margin
    assert needed["paired_diff_sd_points"] == pytest.approx(20 * (24 / 23) ** 0.5)
    assert 600 < needed["tickets_needed_margin2"] < 700 and needed["tickets_needed_margin5"] < 120
    # 24 tickets certify (1.645 + 0.842) * 20.4 / sqrt(24) ≈ 10.4 points
    assert needed["certifiable_margin_points"] == pytest.approx(2.4865 * 20 * (24 / 23) ** 0.5 / 24**0.5, rel=1e-3)
    for margin, vouched in ((5.0, False), (12.0, True)):
        text = report.tickets_reading({**m, **needed, "gate_margin_points": margin})
        assert ("the tickets can vouch for the policy" in text) is vouched
        # the spread, the tickets for a 2- and a 5-point margin, the margin these tickets certify
        sd, certified = round(needed["paired_diff_sd_points"], 1), round(needed["certifiable_margin_points"], 1)
        shown = [[sd], [needed["tickets_needed_margin2"]], [needed["tickets_needed_margin5"]], [certified]]
        assert [numbers(b) for b in bold(text)] == shown
        assert numbers(text)[-3:] == [24, certified, margin]  # this round's tickets, what they certify, the policy's


@pytest.fixture
def two_packages(tiny_onnx, tiny_source, tmp_path):
    recipe = export.RECIPES["onnx_fp32"]
    made = {}
    for name, extra in (("production", {}), ("candidate", {"adapter": "LoRA r=8", "parent": "prod"})):
        origin = lineage("tiny-base", tiny_source, "the tiny model", "onnx_fp32", recipe.note, "d" * 64, **extra)
        made[name] = package.write_package(tiny_onnx, tmp_path / name, stages.PACKAGE_NAME, "1.0.0", origin)
    return made


def test_register_package_takes_the_lineage_its_manifest_records(two_packages, tmp_path):
    reg = registry.Registry(tmp_path / "registry")
    prod = steps.register_package(reg, two_packages["production"], {"score": 50.0}, stage="production")
    cand = steps.register_package(
        reg, two_packages["candidate"], {"score": 52.0}, parent=prod.id, hyperparameters={"steps": 8}
    )
    assert (prod.base_model, prod.adapter, prod.data_hash) == ("tiny-base", "the tiny model", "d" * 64)
    assert cand.adapter == "LoRA r=8" and cand.parent == prod.id
    assert cand.hyperparameters == {"variant": "onnx_fp32", "recipe": export.RECIPES["onnx_fp32"].note, "steps": 8}
    assert [e.id for e in reg.lineage(cand.id)] == [cand.id, prod.id]


def test_register_package_keeps_per_ticket_results_for_the_noise_aware_gate(two_packages, tmp_path):
    reg = registry.Registry(tmp_path / "registry")
    measured, _ = steps.measured_metrics([_row("production", 50.0), _row("candidate", 49.0, spread=14.0),
                                            _row("over_quantized", 30.0)], 24)  # fmt: skip
    prod = steps.register_package(reg, two_packages["production"], measured["production"], stage="production")
    cand = steps.register_package(reg, two_packages["candidate"], measured["candidate"], parent=prod.id)
    assert "per_ticket" not in cand.metrics and cand.per_ticket["score"]["ids"] == list(IDS)
    policy = {"score": {"max_drop": 2, "significance": 0.05}}
    verdict = gate.evaluate_gate(cand.id, prod.id, policy, registry_root=reg.root)
    # a 1-point drop is within the 2-point margin, but 24 tickets swinging ±14 cannot show that it is
    assert not verdict.passed and verdict.results[0].value == pytest.approx(1.0) and verdict.results[0].bound > 2
    assert gate.evaluate_gate(cand.id, prod.id, gate.without_significance(gate.load_policy(policy)),
                              registry_root=reg.root).passed  # fmt: skip


def test_register_package_refuses_a_changed_package(two_packages, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(two_packages["production"], broken)
    (broken / "genai_config.json").write_text("{}")
    with pytest.raises(package.PackageError):
        steps.register_package(registry.Registry(tmp_path / "registry"), broken, {"score": 1.0})


def _failure(metric, excess):
    return SimpleNamespace(rule=SimpleNamespace(metric=metric), excess=excess, describe=lambda: f"{metric} over")


def test_gate_metrics_and_reading():
    rules = [
        SimpleNamespace(rule=r)
        for r in gate.load_policy(
            {"score": {"max_drop": 5, "significance": 0.05}, "size_mib": {"max": 100}, "peak_mib": {"max": 900}}
        )
    ]
    verdict = SimpleNamespace(passed=True, results=rules, failures=[])
    refusal = SimpleNamespace(
        passed=False, results=rules, failures=[_failure("score", 9.0), _failure("agreement", 0.1)]
    )
    m = steps.gate_metrics(verdict, refusal, exit_code=1, plain=verdict)
    assert m["gate_plain_passed"] is True and m["gate_margin_points"] == 5
    assert (m["gate_checks"], m["bad_candidate_failed_checks"], m["bad_candidate_worst_metric"]) == (3, 2, "score")
    assert m["bad_candidate_failed_metrics"] == "score,agreement"
    full = {**m, "over_quantized_size_mib": 80.0, "candidate_size_mib": 98.0}
    full |= {"over_quantized_ms_per_token_p50": 9.0, "candidate_ms_per_token_p50": 10.0}
    text = report.gate_reading(full, verdict, refusal)
    assert bold(text) == ["passes", "refused"] and all(f.describe() in text for f in refusal.failures)
    # 3 checks; the refused build's size and speed beside the candidate's; the CLI's exit code
    assert numbers(text) == [3, 80, 98, 9.0, 10.0, 1]
    # a bad build that slips through on too few tickets is said to have, with its drop and the CLI's verdict
    score_check = SimpleNamespace(rule=SimpleNamespace(metric="score"), describe=lambda: "dropped 11; at least 0.85")
    passed = SimpleNamespace(passed=True, results=[score_check], failures=[])
    loose = full | {"gate_cli_exit_code_bad": 0, "over_quantized_vs_production_score_diff": -11.0, "n_eval": 24}
    text = report.gate_reading(loose, verdict, passed)
    assert bold(text) == ["passes", "passed too"]
    assert score_check.describe() in text  # the gate's own words, not a restatement
    assert numbers(text) == [3, 11.0, 24, 0, 11, 0.85]  # its drop, on how many tickets, the CLI's exit code


def test_rollout_and_feedback_metrics():
    stage = SimpleNamespace(on_new=9000, unserved=100, error_rate=0.06, reason="error rate 6% over 2%")
    result = SimpleNamespace(
        halted=False, stages=[stage], hours=[0.0, 30.0], feedback=[{}] * 5, feedback_counts={"failed": 7}
    )
    shippable = steps.shippable_builds(SimpleNamespace(passed=True), SimpleNamespace(passed=False))
    assert shippable == {"candidate": True, "over_quantized": False}
    assert steps.shippable_builds(SimpleNamespace(passed=False), SimpleNamespace(passed=True)) == {"production": True}
    m = steps.rollout_metrics(result, [SimpleNamespace(name="candidate")], shippable, 10_000, 0.5)
    assert m["rollout_on_new"] == 9000 and m["rollout_variants"] == "candidate"
    assert m["rollout_refused_builds"] == "over_quantized" and m["rollout_unserved_pct"] == pytest.approx(1.0)
    assert steps.feedback_metrics(result) == {
        "feedback_records": 5, "feedback_flagged": 7, "feedback_failed": 7, "feedback_low_confidence": 0,
    }  # fmt: skip
    bad = SimpleNamespace(
        halted=True, halted_at="canary", stages=[SimpleNamespace(on_new=100, error_rate=0.05, reason="error rate over")]
    )
    m |= steps.bad_rollout_metrics(bad)
    assert m["bad_rollout_halted_at"] == "canary" and m["bad_rollout_rolled_back"] == 100
    text = report.rollout_reading(m, bad, 6.0)
    # reached, unserved (and its share), the bad build's halt and its rolled-back devices
    assert [numbers(b) for b in bold(text)] == [[9000], [100, 1], [], [100]] and "canary" in bold(text)[2]
    assert numbers(text) == [9000, 10_000, 30, 0.5, 100, 1, 100, 6, 9900] and bad.stages[-1].reason in text
    assert m["rollout_variants"] in text and m["rollout_refused_builds"] in text  # offered and refused builds
