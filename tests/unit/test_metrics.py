import json
import math

import pytest

from slmops_helpers import metrics
from slmops_helpers.metrics import format_summary, read_metrics, write_metrics


def test_write_and_read_round_trip(tmp_path):
    import numpy as np

    write_metrics(
        "01_x",
        {"score": 0.5, "n": np.int64(3), "ok": True},
        profile="smoke",
        model="m",
        device="cpu",
        output_dir=tmp_path,
    )
    data = read_metrics("01_x", tmp_path)
    assert (data["score"], data["n"], data["ok"], data["profile"]) == (0.5, 3, True, "smoke")
    assert data["version_torch"] != "not installed"


@pytest.mark.parametrize(
    "bad, message", [({"nested": {"a": 1}}, "flat"), ({"x": math.nan}, "finite"), ({"l": [1]}, "flat")]
)
def test_write_rejects_non_flat_or_nan(tmp_path, bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        write_metrics("01_x", bad, profile="smoke", model="m", device="cpu", output_dir=tmp_path)
    assert not (tmp_path / "metrics" / "01_x.json").exists()


def test_write_rejects_unknown_profile(tmp_path):
    with pytest.raises(ValueError, match="Unknown profile"):
        write_metrics("01_x", {}, profile="quick", model="m", device="cpu", output_dir=tmp_path)


def test_read_missing_or_foreign_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run notebooks/02_y.ipynb"):
        read_metrics("02_y", tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "02_y.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="lacks"):
        read_metrics("02_y", tmp_path)


def test_format_summary_lists_metrics_not_versions():
    text = format_summary(
        {"01_x": {"profile": "smoke", "model": "m", "device": "cpu", "score": 0.12345, "version_torch": "2"}}
    )
    assert "01_x" in text and "score" in text and "0.1235" in text and "version_torch" not in text


@pytest.mark.parametrize(
    "record, message",
    [
        ({"onnx_int4_size_mb": 98.4}, "does not use '_mb'. Fix: use '_mib'"),
        ({"base_task_score": 20.0}, "does not use '_task_score'. Fix: use '_score'"),
        ({"ram_gb": 2}, "does not use '_gb'"),
        ({"student_score": 101.0}, r"outside \[0, 100\]: _score means task score"),
        ({"student_score_ci_high": 100.5}, r"outside \[0, 100\]"),
        ({"kd_score_diff": -101.0}, r"outside \[-100, 100\]: _score_diff means a difference"),
        ({"ttft_ms": -1.0}, r"outside \[0, inf\]: _ms means milliseconds"),
        ({"peak_mib": -5}, "outside"),
    ],
)
def test_units_contract_refuses_what_breaks_it(record, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        metrics.check_units(record)
    with pytest.raises(ValueError, match=message):  # and nothing is written
        metrics.write_metrics("99_x", record, profile="smoke", model="m", device="cpu", output_dir=tmp_path)
    assert not metrics.metrics_path("99_x", tmp_path).exists()


def test_units_contract_accepts_the_course_keys():
    metrics.check_units(
        {"onnx_int4_size_mib": 98.4, "int4_reduction_pct": -3.0, "gen_tok_s": 14.6, "ttft_ms": 80.0, "score": 52.0}
    )
    metrics.check_units({"wifi_mbps": 40, "profile": "smoke", "lora_score": 0, "flag": True})
    metrics.check_units({"kd_score_diff": -12.5, "kd_score_diff_ci_low": -30.0, "lora_score_ci_low": 0.0})
