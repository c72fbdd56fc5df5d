import dataclasses

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from slmops_helpers import plots  # noqa: E402
from slmops_helpers.fleet import (  # noqa: E402
    DeviceClass,
    FleetConfig,
    Variant,
    build_fleet,
    pick_variants,
    variants_from_metrics,
)
from slmops_helpers.pipeline.rollout import RolloutConfig, Stage, load_fleet_config, simulate_rollout, time_rollout  # noqa: E402

# name: (size_mib, peak_mib, ms_per_token_p50, score); hand-made stand-ins for 04_deployment.json
MEASURED = {
    "torch_fp32": (513.0, 1100.0, 66.0, 62.0),
    "onnx_fp32": (540.0, 900.0, 40.0, 62.0),
    "onnx_int8": (170.0, 450.0, 20.0, 58.0),
    "onnx_int4": (86.0, 300.0, 10.0, 52.0),
}


def _metrics(measured=MEASURED):
    metrics = {"profile": "smoke", "model": "m"}
    for name, (mb, peak, ms, score) in measured.items():
        metrics |= {f"{name}_size_mib": mb, f"{name}_peak_mib": peak, f"{name}_ms_per_token_p50": ms}
        metrics |= {f"{name}_tok_s": 1000 / ms, f"{name}_score": score}
    return metrics


@pytest.fixture
def variants():
    return variants_from_metrics(_metrics())


@pytest.fixture
def config(root):
    return load_fleet_config(root / "notebooks" / "configs" / "fleet.yaml")


def test_variants_come_from_the_measured_keys():
    found = variants_from_metrics(_metrics())
    assert [v.name for v in found] == ["torch_fp32", "onnx_fp32", "onnx_int8", "onnx_int4"]
    assert found[-1] == Variant("onnx_int4", 86.0, 300.0, 10.0, 100.0, 52.0)


def test_variants_with_missing_or_bad_numbers_are_refused():
    metrics = _metrics()
    del metrics["onnx_int8_score"]
    with pytest.raises(ValueError, match=r"variant 'onnx_int8' but lack \['onnx_int8_score'\]"):
        variants_from_metrics(metrics)
    with pytest.raises(ValueError, match="No package variant"):
        variants_from_metrics({"score": 50})
    with pytest.raises(ValueError, match="peak_mib must be a number > 0"):
        variants_from_metrics(_metrics({"onnx_int4": (86.0, -1.0, 10.0, 52.0)}))
    with pytest.raises(ValueError, match=r"score must be in \[0, 100\]"):
        variants_from_metrics(_metrics({"onnx_int4": (86.0, 300.0, 10.0, 152.0)}))


def test_shipped_fleet_file_builds_thousands_of_devices(config):
    spec, plan = config
    fleet = build_fleet(spec)
    assert len(fleet) == spec.devices >= 1000
    shares = np.bincount(fleet.device_class) / len(fleet)
    assert shares == pytest.approx([p.share for p in spec.classes], abs=1e-3)
    assert [s.name for s in plan.stages] == ["canary", "wider", "all"]


def _fleet_file(**changes):
    device_class = {"name": "hub", "share": 1.0, "ram_mib": 2048, "connectivity": "wifi"}
    config = {
        "fleet": {"devices": 10, "classes": [device_class]},
        "rollout": {"stages": [{"name": "all", "share": 1.0}]},
    }
    for where, value in changes.items():
        section, key = where.split("__")
        target = config["fleet"]["classes"][0] if section == "device_class" else config[section]
        target[key] = value
    return config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"device_class__ram_mib": -512}, "ram_mib must be a number > 0"),
        ({"device_class__share": 1.5}, r"share must be a share in \[0, 1\]"),
        ({"device_class__share": 0.5}, "shares sum to 0.5"),
        ({"device_class__ram_budget": 0}, r"ram_budget must be in \(0, 1\]"),
        ({"device_class__accelerator": "tpu"}, "unknown accelerator 'tpu'"),
        ({"device_class__ram_gb": 2}, r"unknown field\(s\) \['ram_gb'\]"),
        ({"fleet__devices": 0}, "devices must be a whole number >= 1"),
        ({"fleet__links_mbps": {"wifi": -3}}, "wifi must be a number > 0"),
        ({"rollout__stages": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.1}]}, "must increase"),
        ({"rollout__stages": [{"name": "a", "share": 2}]}, r"share must be in \(0, 1\]"),
        ({"rollout__stages": [{"share": 1.0}]}, "give every required field"),
        ({"rollout__error_rate": -0.1}, "error_rate must be a share"),
    ],
)
def test_impossible_fleet_files_are_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        load_fleet_config(_fleet_file(**changes))


def test_fleet_file_needs_both_sections(tmp_path):
    with pytest.raises(ValueError, match="needs two sections"):
        load_fleet_config({"fleet": {}})
    with pytest.raises(FileNotFoundError, match="No fleet file"):
        load_fleet_config(tmp_path / "fleet.yaml")


def test_each_device_gets_the_best_variant_that_fits(variants):
    classes = (
        DeviceClass("tiny", 0.25, ram_mib=512, ram_budget=0.5),  # 256 MB: nothing fits
        DeviceClass("small", 0.25, ram_mib=1024, ram_budget=0.5),  # 512 MB: int8 (58) over int4 (52)
        DeviceClass("big", 0.25, ram_mib=8192, ram_budget=0.5),  # all fit; fp32s tie at 62, onnx is smaller
        DeviceClass("big-slow", 0.25, ram_mib=8192, ram_budget=0.5, cpu_speed=0.25, latency_budget_ms=100),
    )
    fleet = build_fleet(FleetConfig(devices=4, classes=classes, speed_jitter=0.0))
    names = [v.name for v in variants] + ["none"]
    assert [names[i] for i in pick_variants(fleet, variants)] == ["none", "onnx_int8", "torch_fp32", "onnx_int8"]
    # big-slow: at 1/4 speed torch (264 ms) and onnx_fp32 (160 ms) miss 100 ms; int8 (80 ms) makes it
    assert names[pick_variants(fleet, variants, headroom=0.5)[3]] == "onnx_int4"  # 80 ms > 50 ms of headroom


def test_a_healthy_release_reaches_every_device_that_fits(config, variants):
    spec, plan = config
    fleet = build_fleet(spec)
    result = simulate_rollout(fleet, variants, plan, prompts=["my hub is offline"])
    served = int((result.choice >= 0).sum())
    assert not result.halted and result.halted_at is None
    assert [s.passed for s in result.stages] == [True, True, True]
    assert [s.on_new for s in result.stages] == sorted(s.on_new for s in result.stages)
    assert result.stages[-1].on_new == served and result.on_new[-1] == served
    assert np.all(np.diff(result.on_new) >= 0) and result.on_new[0] == 0
    assert sum(result.variant_counts().values()) == spec.devices
    assert 0 < result.stages[0].on_new <= np.ceil(plan.stages[0].share * spec.devices)
    assert 0 < len(result.feedback) == plan.max_feedback < sum(result.feedback_counts.values())
    assert {r["kind"] for r in result.feedback} <= {"failed", "low_confidence"}
    assert all(r["prompt"] == "my hub is offline" and r["variant"] in result.variant_names for r in result.feedback)
    assert "completed" in result.summary()
    again = simulate_rollout(build_fleet(spec), variants, plan, prompts=["my hub is offline"])
    assert again.rows() == result.rows() and again.feedback == result.feedback  # seeded


def test_a_bad_build_halts_at_the_canary_and_rolls_back(config, variants):
    spec, plan = config
    result = simulate_rollout(build_fleet(spec), variants, dataclasses.replace(plan, error_rate=0.08))
    assert result.halted and result.halted_at == "canary" and len(result.stages) == 1
    assert "error rate" in result.stages[0].reason
    assert result.stages[0].error_rate == pytest.approx(0.08, abs=0.02)
    assert result.on_new.max() > 0 and result.on_new[-1] == 0  # everyone went back
    assert result.hours[-1] == pytest.approx(plan.stages[0].hours + plan.rollback_hours)
    assert "HALTED at stage 'canary'" in result.summary()


def test_a_slow_build_halts_on_the_latency_budget(config, variants):
    spec, plan = config
    result = simulate_rollout(build_fleet(spec), variants, dataclasses.replace(plan, latency_factor=4.0))
    assert result.halted and "latency budget" in result.stages[-1].reason
    assert result.stages[-1].slow_share > plan.stages[0].max_slow_share


def test_time_rollout_reports_the_whole_run(config, variants):
    spec, plan = config
    timing = time_rollout(spec, variants, plan, repeats=1)
    assert timing["devices"] == spec.devices and timing["stages"] == 3 and timing["seconds"] > 0


def test_plot_rollout(config, variants):
    spec, plan = config
    fig = plots.plot_rollout(simulate_rollout(build_fleet(spec), variants, plan))
    assert len(fig.axes) == 2 and fig.axes[0].lines
    halted = simulate_rollout(build_fleet(spec), variants, dataclasses.replace(plan, error_rate=0.2))
    legend = plots.plot_rollout(halted).axes[0].get_legend()
    assert "halt" in legend.get_texts()[0].get_text()


def test_stages_built_in_code_and_a_canary_of_at_least_one_device(variants):
    spec = FleetConfig(devices=50, classes=(DeviceClass("pc", 1.0, ram_mib=8192),))
    plan = RolloutConfig(stages=(Stage("canary", 0.01, hours=2), Stage("all", 1.0, hours=4)), max_feedback=0)
    result = simulate_rollout(build_fleet(spec), variants, plan)
    assert [s.offered for s in result.stages] == [1, 49]
    assert result.stages[-1].on_new == 50 and result.feedback == []
    assert result.hours[-1] == pytest.approx(6)
