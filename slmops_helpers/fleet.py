"""A fleet footprint and cost calculator: which devices can run which model, and what
it costs to serve a fleet from the cloud versus updating models on the devices.

Pure functions over small dataclasses; the notebook's widget is only a view over
``plan_fleet``. Every price and count here is an *assumption* the learner sets, not a
market figure: the defaults exist so the calculator shows something out of the box.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import weight_bytes

GB = 1e9
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class DeviceClass:
    """A kind of edge device in the fleet."""

    name: str
    count: int
    ram_gb: float
    ram_budget: float = 0.25  # share of RAM the assistant may take beside the OS and apps

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"DeviceClass {self.name!r}: count must be >= 0, got {self.count}.")
        if self.ram_gb <= 0:
            raise ValueError(f"DeviceClass {self.name!r}: ram_gb must be > 0, got {self.ram_gb}.")
        if not 0 < self.ram_budget <= 1:
            raise ValueError(f"DeviceClass {self.name!r}: ram_budget must be in (0, 1], got {self.ram_budget}.")


@dataclass(frozen=True)
class CostAssumptions:
    """Prices and usage; change them to your own numbers."""

    requests_per_device_per_day: float = 20
    tokens_per_request: int = 400  # prompt + answer
    cloud_usd_per_million_tokens: float = 0.50
    egress_usd_per_gb: float = 0.08  # to ship each model update to each device
    updates_per_month: float = 1

    def __post_init__(self) -> None:
        for field, value in vars(self).items():
            if value < 0:
                raise ValueError(f"CostAssumptions.{field} must be >= 0, got {value}.")


DEFAULT_FLEET = (
    DeviceClass("sensor gateway", 4000, 1),
    DeviceClass("home hub", 3000, 2),
    DeviceClass("tablet", 2000, 4),
    DeviceClass("industrial PC", 800, 8),
    DeviceClass("laptop", 200, 16),
)

RUNTIME_OVERHEAD = 1.2  # KV cache, activations and runtime on top of the weights


def model_ram_gb(n_params: int, precision: str) -> float:
    """RAM to run a model: weights at ``precision`` plus a fixed runtime overhead."""
    return weight_bytes(n_params, precision) * RUNTIME_OVERHEAD / GB


@dataclass(frozen=True)
class FleetPlan:
    model_gb: float
    rows: list[dict]  # one per device class: name, count, budget_gb, fits
    devices_total: int
    devices_fitting: int
    edge_update_usd_per_month: float
    cloud_usd_per_month: float

    @property
    def share_fitting(self) -> float:
        return self.devices_fitting / self.devices_total if self.devices_total else 0.0


def plan_fleet(
    n_params: int,
    precision: str,
    fleet: tuple[DeviceClass, ...] = DEFAULT_FLEET,
    costs: CostAssumptions = CostAssumptions(),
) -> FleetPlan:
    """Which device classes can hold the model, and the monthly cost of each way to serve.

    Edge: every fitting device downloads each model update (egress). Cloud: every
    device's requests are served by a hosted model at a per-token price.
    """
    model_gb = model_ram_gb(n_params, precision)
    rows = [
        {
            "name": d.name,
            "count": d.count,
            "budget_gb": d.ram_gb * d.ram_budget,
            "fits": model_gb <= d.ram_gb * d.ram_budget,
        }
        for d in fleet
    ]
    fitting = sum(r["count"] for r in rows if r["fits"])
    total = sum(d.count for d in fleet)
    download_gb = weight_bytes(n_params, precision) / GB
    tokens = total * costs.requests_per_device_per_day * DAYS_PER_MONTH * costs.tokens_per_request
    return FleetPlan(
        model_gb=model_gb,
        rows=rows,
        devices_total=total,
        devices_fitting=fitting,
        edge_update_usd_per_month=fitting * download_gb * costs.updates_per_month * costs.egress_usd_per_gb,
        cloud_usd_per_month=tokens / 1e6 * costs.cloud_usd_per_million_tokens,
    )
