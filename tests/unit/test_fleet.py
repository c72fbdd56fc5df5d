import pytest

from slmops_helpers.fleet import CostAssumptions, DeviceClass, model_ram_gb, plan_fleet


def test_plan_fleet_fits_by_ram_budget():
    fleet = (DeviceClass("small", 10, 1.0, 0.5), DeviceClass("big", 5, 8.0, 0.5))
    plan = plan_fleet(1_000_000_000, "int4", fleet)  # 0.5 GB weights → 0.6 GB with overhead
    assert plan.model_gb == pytest.approx(0.6)
    assert [r["fits"] for r in plan.rows] == [False, True]
    assert (plan.devices_fitting, plan.devices_total) == (5, 15)
    assert plan.share_fitting == pytest.approx(5 / 15)


def test_plan_fleet_costs():
    fleet = (DeviceClass("d", 100, 16.0),)
    costs = CostAssumptions(
        requests_per_device_per_day=10,
        tokens_per_request=100,
        cloud_usd_per_million_tokens=1.0,
        egress_usd_per_gb=0.1,
        updates_per_month=2,
    )
    plan = plan_fleet(1_000_000_000, "fp16", fleet, costs)  # 2 GB download
    assert plan.cloud_usd_per_month == pytest.approx(100 * 10 * 30 * 100 / 1e6)
    assert plan.edge_update_usd_per_month == pytest.approx(100 * 2.0 * 2 * 0.1)


def test_lower_precision_fits_more_devices():
    n = 1_700_000_000
    assert plan_fleet(n, "int4").devices_fitting > plan_fleet(n, "fp32").devices_fitting
    assert model_ram_gb(n, "int4") < model_ram_gb(n, "fp32")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DeviceClass("x", 1, -1.0), "ram_gb must be > 0"),
        (lambda: DeviceClass("x", -3, 1.0), "count must be >= 0"),
        (lambda: DeviceClass("x", 1, 1.0, 1.5), r"ram_budget must be in \(0, 1\]"),
        (lambda: CostAssumptions(egress_usd_per_gb=-1), "egress_usd_per_gb must be >= 0"),
    ],
)
def test_bad_values_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_precision():
    with pytest.raises(ValueError, match="Unknown precision"):
        plan_fleet(10, "int2")
