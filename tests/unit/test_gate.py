import json

import pytest

from slmops_helpers import cli
from slmops_helpers.pipeline.gate import Rule, check_rule, evaluate_gate, load_policy
from slmops_helpers.pipeline.registry import Registry

REFERENCE = {"score": 60.0, "ms_per_token_p50": 20.0, "size_mib": 90.0, "peak_mib": 400.0, "profile": "smoke"}
POLICY = {
    "score": {"max_drop": 2},
    "ms_per_token_p50": {"max_increase_pct": 10},
    "size_mib": {"max": 100},
    "peak_mib": {"max_increase_pct": 15},
}


def test_a_candidate_within_policy_passes():
    candidate = {**REFERENCE, "score": 58.5, "ms_per_token_p50": 21.9, "size_mib": 100.0, "peak_mib": 380.0}
    report = evaluate_gate(candidate, REFERENCE, POLICY)
    assert report.passed and not report.failures
    assert [r.rule.metric for r in report.results] == list(POLICY)
    row = report.rows()[1]
    assert row["metric"] == "ms_per_token_p50" and row["value"] == pytest.approx(9.5) and row["passed"]
    assert "PASSED" in report.format()
    assert "ok    peak_mib 380 vs reference 400: fell 5% (allowed 15%): within the limit" in report.format()


def test_a_regression_fails_naming_the_metric_and_by_how_much():
    candidate = {**REFERENCE, "score": 56.0, "size_mib": 120.0}
    report = evaluate_gate(candidate, REFERENCE, POLICY)
    assert not report.passed
    failed = {r.rule.metric: r for r in report.failures}
    assert set(failed) == {"score", "size_mib"}
    assert failed["score"].value == pytest.approx(4.0) and failed["score"].excess == pytest.approx(2.0)
    assert failed["size_mib"].excess == pytest.approx(20.0)
    text = report.format()
    assert "FAILED (2 of 4 checks)" in text
    assert "FAIL  score 56 vs reference 60: dropped 4 (allowed 2): over by 2" in text
    assert "FAIL  size_mib 120 (max 100): over by 20" in text


@pytest.mark.parametrize(
    "check, limit, candidate, reference, value, passed",
    [
        ("max", 100, 100.0, None, 100.0, True),  # exactly at the limit passes
        ("min", 50, 49.0, None, 49.0, False),
        ("max_drop_pct", 5, 57.0, 60.0, 5.0, True),
        ("max_drop_pct", 5, 56.0, 60.0, 100 * 4 / 60, False),
        ("max_increase", 1.5, 21.0, 20.0, 1.0, True),
        ("max_increase_pct", 10, 23.0, 20.0, 15.0, False),
        ("max_drop", 2, 65.0, 60.0, -5.0, True),  # an improvement is no drop
    ],
)
def test_each_check(check, limit, candidate, reference, value, passed):
    result = check_rule(Rule("m", check, limit), candidate, reference)
    assert result.value == pytest.approx(value)
    assert result.passed is passed


@pytest.mark.parametrize(
    "policy, message",
    [
        ({"scroe": {"max_drop": 2}}, r"names metric 'scroe'.*Did you mean \['score'\]"),
        ({"score": {"max_dorp": 2}}, r"unknown check 'max_dorp' \(did you mean 'max_drop'\?\)"),
        ({"score": 2}, "must map checks to limits"),
        ({"score": {"max_drop": "two"}}, "the limit must be a number"),
        ({"score": {"max_drop": -1}}, "a tolerance must be >= 0"),
        ({"profile": {"max": 1}}, "not a finite number"),
        ([{"score": {"max": 1}}], "must map metric names to checks"),
        ({}, "must map metric names to checks"),
    ],
)
def test_bad_policies_are_clear_errors(policy, message):
    with pytest.raises(ValueError, match=message):
        evaluate_gate(REFERENCE, REFERENCE, policy)


def test_relative_checks_need_a_usable_baseline():
    with pytest.raises(ValueError, match="Fix: pass --reference"):
        evaluate_gate(REFERENCE, None, {"score": {"max_drop": 2}})
    assert evaluate_gate(REFERENCE, None, {"size_mib": {"max": 100}}).passed  # absolute checks need none
    with pytest.raises(ValueError, match="reference is 0"):
        evaluate_gate(REFERENCE, {**REFERENCE, "peak_mib": 0}, {"peak_mib": {"max_increase_pct": 5}})
    with pytest.raises(ValueError, match="which reference .* does not record"):
        evaluate_gate(REFERENCE, {"size_mib": 1.0}, {"score": {"max_drop": 2}})


def test_shipped_policy_loads(root):
    rules = load_policy(root / "notebooks" / "configs" / "gate.yaml")
    assert {(r.metric, r.check) for r in rules} >= {("score", "max_drop"), ("size_mib", "max_increase_pct")}


def test_policy_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No policy file"):
        load_policy(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("score: {max_drop: [\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_policy(bad)


def _files(tmp_path, candidate):
    paths = {}
    for name, data in (("candidate", candidate), ("reference", REFERENCE), ("policy", POLICY)):
        paths[name] = tmp_path / f"{name}.{'yaml' if name == 'policy' else 'json'}"
        paths[name].write_text(json.dumps(data))  # JSON is YAML too
    return [str(paths[k]) for k in ("candidate", "reference", "policy")]


def test_cli_gate_exit_codes(tmp_path, capsys):
    cand, base, policy = _files(tmp_path, {**REFERENCE, "score": 59.0})
    assert cli.main(["gate", "--candidate", cand, "--reference", base, "--policy", policy]) == 0
    assert "PASSED" in capsys.readouterr().out

    cand, base, policy = _files(tmp_path, {**REFERENCE, "score": 50.0, "ms_per_token_p50": 30.0})
    assert cli.main(["gate", "--candidate", cand, "--reference", base, "--policy", policy]) == 1
    out = capsys.readouterr().out
    assert "FAIL  score" in out and "over by 8" in out
    assert "FAIL  ms_per_token_p50" in out and "rose 50%" in out and "over by 40%" in out

    assert cli.main(["gate", "--candidate", str(tmp_path / "nope.json"), "--reference", base, "--policy", policy]) == 2
    assert "neither a metrics file nor a registry entry" in capsys.readouterr().err
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("tokens_per_joule: {min: 3}\n")
    assert cli.main(["gate", "--candidate", cand, "--reference", base, "--policy", str(unknown)]) == 2
    assert "tokens_per_joule" in capsys.readouterr().err


def test_cli_gate_reads_registry_entries(tmp_path, capsys):
    reg = Registry(tmp_path / "reg")
    base = reg.register("assistant", base_model="m", metrics=REFERENCE)
    cand = reg.register("assistant", base_model="m", metrics={**REFERENCE, "size_mib": 101.0}, parent=base.id)
    *_, policy = _files(tmp_path, REFERENCE)
    args = ["gate", "--candidate", cand.id, "--reference", base.id, "--policy", policy, "--registry", str(reg.root)]
    assert cli.main(args) == 1
    assert "FAIL  size_mib 101 (max 100): over by 1" in capsys.readouterr().out
