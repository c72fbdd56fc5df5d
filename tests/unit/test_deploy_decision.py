"""Section 4's decision, kept by notebook 04 and read back by notebook 04b."""

import json
import shutil

import pytest

from slmops_helpers.deploy import choose, decision, export, report, steps
from slmops_helpers.uncertainty import TicketScores

ROWS = [{"id": f"v{i}", "split": "validation"} for i in range(4)]
TEST_IDS = tuple(f"t{i}" for i in range(4))


def _row(variant, score, size_mib):
    tickets = TicketScores(tuple(r["id"] for r in ROWS), (score - 2, score + 2, score - 2, score + 2))
    return {"variant": variant, "score": score, "size_mib": size_mib, "tok_s": 40.0, "tickets": tickets}


def _decision(source, profile="smoke"):
    table = [_row("onnx_fp32", 50.0, 500.0), _row("onnx_int4", 48.0, 100.0), _row("gguf_q8_0", 50.0, 140.0)]
    gate = steps.quality_gate(table, ROWS, margin=5.0, significance=0.05)
    choice = choose.DeployChoice(
        choose.Candidate(choose.TUNED, source),
        {choose.TUNED: table[0]["tickets"], choose.UNTUNED: table[1]["tickets"]},
        test={choose.TUNED: TicketScores(TEST_IDS, (40.0, 60.0, 40.0, 60.0))},
    )
    answers = {r["variant"]: [f"answer {i}" for i in range(len(ROWS))] for r in table}
    return decision.decide(choice, profile, "smollm2-135m-instruct", ROWS, table, answers, gate)


def test_the_decision_survives_its_file_and_names_what_notebook_04_chose(tiny_source, tmp_path):
    kept = _decision(tiny_source)
    assert kept.onnx_variant == steps.chosen_variant(kept.gate) and kept.source_label == choose.TUNED
    path = decision.write_decision(tmp_path, kept)
    assert path == tmp_path / decision.FILE and not list(tmp_path.glob(".*.tmp"))  # written whole, nothing left over
    back = decision.read_decision(tmp_path, "smoke", ROWS)
    assert back.to_json() == kept.to_json()
    assert back.deployed_test == kept.deployed_test and back.table[1]["tickets"] == kept.table[1]["tickets"]
    assert back.score("onnx_int4") == 48.0 and back.figures("onnx_int4")["quality_ok"] is kept.gate.passed("onnx_int4")
    m = back.metrics()
    assert m["onnx_int4_size_mib"] == 100.0 and m["chosen_onnx_variant"] == kept.onnx_variant
    assert m["chosen_gguf_variant"] == kept.gguf_variant == steps.chosen_gguf(kept.gate)
    assert kept.onnx_variant in report.decision_reading(m) and "MiB" in report.decision_reading(m)


def test_a_choice_without_test_scores_is_refused(tiny_source):
    choice = choose.DeployChoice(choose.Candidate(choose.TUNED, tiny_source), {})
    with pytest.raises(ValueError, match="score_on_test"):
        decision.decide(choice, "smoke", "m", ROWS, [], {}, steps.QualityGate(5, {}, {}))


def test_reading_refuses_a_missing_or_foreign_decision_naming_the_fix(tiny_source, tmp_path):
    with pytest.raises(FileNotFoundError, match="notebook 04 has not run here.*04_deployment.ipynb"):
        decision.read_decision(tmp_path, "smoke", ROWS)
    decision.write_decision(tmp_path, _decision(tiny_source, profile="full"))
    with pytest.raises(ValueError, match="'full' run, and this one is 'smoke'.*Fix: run"):
        decision.read_decision(tmp_path, "smoke", ROWS)
    with pytest.raises(ValueError, match="other validation tickets than these 3"):
        decision.read_decision(tmp_path, "full", ROWS[:3])
    (tmp_path / decision.FILE).write_text(json.dumps({"profile": "full"}))
    with pytest.raises(ValueError, match="is not a decision notebook 04 wrote"):
        decision.read_decision(tmp_path, "full", ROWS)


def test_reading_refuses_a_decision_about_a_model_that_changed(tiny_source, tmp_path):
    source = tmp_path / "model"
    shutil.copytree(tiny_source, source)
    decision.write_decision(tmp_path, _decision(source))
    weights = next(source.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")
    assert export.source_fingerprint(source) != _fingerprint(tmp_path)
    with pytest.raises(ValueError, match="changed after notebook 04 chose it"):
        decision.read_decision(tmp_path, "smoke", ROWS)


def _fingerprint(folder):
    return json.loads((folder / decision.FILE).read_text())["source_fingerprint"]
