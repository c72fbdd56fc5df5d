import pytest

from slmops_helpers.fleet import (
    CostAssumptions,
    DeviceClass,
    FleetConfig,
    measured_overhead,
    model_ram_mib,
    plan_fleet,
)
from slmops_helpers.models import MIB


def test_plan_fleet_fits_by_ram_budget():
    fleet = FleetConfig(15, (DeviceClass("small", 10 / 15, 1024, 0.5), DeviceClass("big", 5 / 15, 8192, 0.5)))
    plan = plan_fleet(1_000_000_000, "int4", fleet)  # 0.5e9 bytes of weights, × the measured overhead
    assert plan.model_mib == pytest.approx(0.5e9 * measured_overhead("int4") / MIB)  # over small's 512 MiB
    assert plan.model_mib < 4096  # under big's
    assert [r["fits"] for r in plan.rows] == [False, True]
    assert [r["count"] for r in plan.rows] == [10, 5]
    assert (plan.devices_fitting, plan.devices_total) == (5, 15)
    assert plan.share_fitting == pytest.approx(5 / 15)


def test_counts_follow_shares_and_sum_to_the_fleet():
    fleet = FleetConfig(7, (DeviceClass("a", 0.5, 1024), DeviceClass("b", 0.3, 1024), DeviceClass("c", 0.2, 1024)))
    assert list(fleet.counts()) == [4, 2, 1]  # 3.5 / 2.1 / 1.4: largest remainders get the spare device


def test_plan_fleet_costs():
    fleet = FleetConfig(100, (DeviceClass("d", 1.0, 65536),))  # 16 GiB budget: the fp16 model fits
    costs = CostAssumptions(
        requests_per_device_per_day=10,
        tokens_per_request=100,
        cloud_usd_per_million_tokens=1.0,
        egress_usd_per_gb=0.1,
        updates_per_month=2,
    )
    plan = plan_fleet(1_000_000_000, "fp16", fleet, costs)  # 2e9 bytes to download, priced per 10^9
    assert plan.cloud_usd_per_month == pytest.approx(100 * 10 * 30 * 100 / 1e6)
    assert plan.edge_update_usd_per_month == pytest.approx(100 * 2.0 * 2 * 0.1)


def test_lower_precision_fits_more_devices():
    n = 1_700_000_000
    assert plan_fleet(n, "int4").devices_fitting > plan_fleet(n, "fp32").devices_fitting
    assert model_ram_mib(n, "int4") < model_ram_mib(n, "fp32")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DeviceClass("x", 1.0, -1.0), "ram_mib must be a number > 0"),
        (lambda: DeviceClass("x", -0.5, 1024), r"share must be a share in \[0, 1\]"),
        (lambda: DeviceClass("x", 1.0, 1024, 1.5), r"ram_budget must be in \(0, 1\]"),
        (lambda: FleetConfig(10, (DeviceClass("x", 0.5, 1024),)), "shares sum to 0.5"),
        (lambda: CostAssumptions(egress_usd_per_gb=-1), "egress_usd_per_gb must be >= 0"),
    ],
)
def test_bad_values_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_precision():
    with pytest.raises(ValueError, match="Unknown precision"):
        plan_fleet(10, "int2")


def test_the_overhead_is_what_section_4_measured_not_a_constant():
    record = {"onnx_int4_peak_mib": 300.0, "onnx_int4_size_mib": 100.0, "onnx_fp32_peak_mib": 780.0}
    assert measured_overhead("int4", record) == pytest.approx(3.0)
    assert model_ram_mib(10_000_000, "int4", overhead=3.0) == pytest.approx(10_000_000 * 0.5 * 3.0 / MIB)
    with pytest.raises(ValueError, match="lacks a measured onnx_fp32_peak_mib and onnx_fp32_size_mib"):
        measured_overhead("fp32", record)
    # the committed reference: every precision measured, and the smaller files carry more runtime per byte
    ratios = {p: measured_overhead(p) for p in ("fp32", "fp16", "int8", "int4")}
    assert all(r > 1 for r in ratios.values()) and ratios["int4"] > ratios["fp32"]
    with pytest.raises(ValueError, match="overhead"):
        model_ram_mib(10, "int4", overhead=0.0)
