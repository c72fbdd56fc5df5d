import json
import re

import pytest

from slmops_helpers import metrics, reference
from slmops_helpers.models import DEFAULT_MODEL

GOOD = {"profile": "full", "commit": "abc1234", "date": "2026-12-01T10:00:00+00:00", "machine": "x86_64 CPU"}


def _write(root, stem, content):
    path = reference.reference_path(stem, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_a_good_record_is_read_and_described(tmp_path):
    _write(tmp_path, "02_x", {**GOOD, "notebook_s": 1800.0, "student_score": 60.4})
    ref = reference.read_reference("02_x", tmp_path)
    assert ref.usable and ref.get("student_score") == 60.4 and ref.get("nope") is None
    assert "x86_64 CPU" in ref.describe() and "30 min" in ref.describe() and "abc1234" in ref.describe()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "02_x.full.json is missing"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "holds list, not a metrics record"),
        ({"profile": "full", "student_score": 1.0}, r"lacks \['commit', 'date', 'machine', 'notebook_s'\]"),
        ({**GOOD, "notebook_s": 10.0, "profile": "smoke"}, "is from a 'smoke' run, not a full one"),
    ],
)
def test_a_bad_record_says_what_is_wrong_and_the_command(tmp_path, content, message):
    if content is not None:
        _write(tmp_path, "02_x", content)
    ref = reference.read_reference("02_x", tmp_path)
    assert not ref.usable and ref.get("student_score") is None
    assert ref.problem is not None
    assert re.search(message, ref.problem)
    assert "slmops run --profile full --only 02" in ref.problem
    assert ref.describe().startswith("No full reference run")


def test_compare_table_marks_what_is_absent(tmp_path):
    _write(tmp_path, "02_x", {**GOOD, "notebook_s": 60.0, "a_score": 60.44})
    ref = reference.read_reference("02_x", tmp_path)
    rows = [("a", "a_score", "{:.1f}".format), ("b", "b_score", "{:.1f}".format)]
    table = reference.compare_table({"a_score": 10.0}, ref, rows)
    assert table.splitlines()[2] == "| a | 10.0 | 60.4 |" and table.splitlines()[3] == "| b | — | — |"
    missing = reference.read_reference("09_none", tmp_path)
    assert reference.compare_table({"a_score": 10.0}, missing, rows[:1]).splitlines()[2] == "| a | 10.0 | — |"


def test_stale_keys_are_this_runs_findings_the_record_lacks(tmp_path):
    _write(tmp_path, "02_x", {**GOOD, "notebook_s": 60.0, "a_score": 1.0})
    ref = reference.read_reference("02_x", tmp_path)
    run = {"a_score": 2.0, "b_score": 3.0, "version_torch": "2", "device": "cpu", "profile": "smoke"}
    assert reference.stale_keys(run, ref) == ["b_score"]


def test_only_a_full_run_of_the_course_model_into_artifacts_writes_the_reference(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "artifacts_dir", lambda output_dir=None: tmp_path / "artifacts")
    monkeypatch.setattr(reference, "project_root", lambda: tmp_path)
    record = {"a_score": 50.0, "notebook_s": 12.0}
    metrics.write_metrics("02_x", record, profile="smoke", model=DEFAULT_MODEL, device="cpu")
    metrics.write_metrics("02_x", record, profile="full", model="someone/else", device="cpu")
    metrics.write_metrics("02_x", record, profile="full", model=DEFAULT_MODEL, device="cpu", output_dir=tmp_path / "o")
    assert not reference.reference_path("02_x", tmp_path).exists()
    metrics.write_metrics("02_x", record, profile="full", model=DEFAULT_MODEL, device="cpu")
    ref = reference.read_reference("02_x", tmp_path)
    assert ref.usable and ref.get("a_score") == 50.0 and ref.get("version_torch")


def test_write_reference_refuses_a_smoke_record(tmp_path):
    with pytest.raises(ValueError, match="comes from a full run"):
        reference.write_reference("02_x", {"profile": "smoke"}, tmp_path)


def test_lesson_table_says_where_the_reference_comes_from(tmp_path):
    _write(tmp_path, "02_x", {**GOOD, "notebook_s": 60.0, "a_score": 60.44})
    ref = reference.read_reference("02_x", tmp_path)
    table = reference.lesson_table({"a_score": 10.0}, ref, [("a", "a_score", "{:.1f}".format)], "smoke")
    assert table.startswith("The full reference run:") and "| | this run (smoke) | full reference run |" in table
