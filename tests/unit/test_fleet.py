import pytest

from slmops_helpers.fleet import CostAssumptions, DeviceClass, FleetConfig, model_ram_mib, plan_fleet
from slmops_helpers.models import MIB


def test_plan_fleet_fits_by_ram_budget():
    fleet = FleetConfig(15, (DeviceClass("small", 10 / 15, 1024, 0.5), DeviceClass("big", 5 / 15, 8192, 0.5)))
    plan = plan_fleet(1_000_000_000, "int4", fleet)  # 0.5e9 bytes of weights, × 1.2 with overhead
    assert plan.model_mib == pytest.approx(0.6e9 / MIB)  # 572 MiB: over small's 512, under big's 4096
    assert [r["fits"] for r in plan.rows] == [False, True]
    assert [r["count"] for r in plan.rows] == [10, 5]
    assert (plan.devices_fitting, plan.devices_total) == (5, 15)
    assert plan.share_fitting == pytest.approx(5 / 15)


def test_counts_follow_shares_and_sum_to_the_fleet():
    fleet = FleetConfig(7, (DeviceClass("a", 0.5, 1024), DeviceClass("b", 0.3, 1024), DeviceClass("c", 0.2, 1024)))
    assert list(fleet.counts()) == [4, 2, 1]  # 3.5 / 2.1 / 1.4: largest remainders get the spare device


def test_plan_fleet_costs():
    fleet = FleetConfig(100, (DeviceClass("d", 1.0, 16384),))
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
