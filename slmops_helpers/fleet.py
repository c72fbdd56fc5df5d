"""A fleet footprint and cost calculator: which devices can run which model, and what
it costs to serve a fleet from the cloud versus updating models on the devices.

Pure functions over small dataclasses; the notebook's widget is only a view over
``plan_fleet``. Every price and count here is an *assumption* the learner sets, not a
market figure: the defaults exist so the calculator shows something out of the box.

The second half simulates a fleet device by device for the staged rollout (``rollout``):
device classes (RAM, CPU speed relative to the machine that measured section 4,
accelerator, connectivity) are assumptions read from ``notebooks/configs/fleet.yaml``;
the package variants are the ones section 4 *measured* (``variants_from_metrics``). Each
device gets the best-scoring variant that fits its memory and latency budget.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .models import MIB, weight_bytes
from .reference import read_reference

GB = 1e9  # egress is priced per 10^9 bytes; every memory and file size here is in MiB
DAYS_PER_MONTH = 30


def check_positive(owner: str, **values: float) -> None:
    """Raise a ValueError naming ``owner`` and the field unless every value is a finite number > 0."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{owner}: {name} must be a number > 0, got {value!r}.")


def check_share(owner: str, name: str, value: float) -> None:
    """Raise a ValueError naming ``owner`` and ``name`` unless ``value`` is a share in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{owner}: {name} must be a share in [0, 1], got {value!r}.")


@dataclass(frozen=True)
class DeviceClass:
    """A kind of device and its share of the fleet (assumptions, not measurements)."""

    name: str
    share: float  # of the fleet
    ram_mib: float
    ram_budget: float = 0.25  # share of RAM the assistant may take beside the OS and apps
    cpu_speed: float = 1.0  # relative to the CPU that measured section 4 (2 = twice as fast)
    accelerator: str = "none"  # a key of FleetConfig.accelerators
    connectivity: str = "wifi"  # a key of FleetConfig.links_mbps
    latency_budget_ms: float = 200.0  # slowest acceptable ms per generated token

    def __post_init__(self) -> None:
        where = f"DeviceClass {self.name!r}"
        check_share(where, "share", self.share)
        check_positive(where, ram_mib=self.ram_mib, cpu_speed=self.cpu_speed, latency_budget_ms=self.latency_budget_ms)
        if not 0 < self.ram_budget <= 1:
            raise ValueError(f"{where}: ram_budget must be in (0, 1], got {self.ram_budget!r}.")

    @property
    def budget_mib(self) -> float:
        return self.ram_mib * self.ram_budget


@dataclass(frozen=True)
class FleetConfig:
    """How many devices, of which classes, and what accelerators and links are worth."""

    devices: int
    classes: tuple[DeviceClass, ...]
    accelerators: dict[str, float] = dataclasses.field(default_factory=lambda: {"none": 1.0})  # speed-up factor
    links_mbps: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"ethernet": 100.0, "wifi": 40.0, "cellular": 8.0}
    )
    speed_jitter: float = 0.15  # spread (log-normal sigma) of a device's real speed around its class's
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.devices, bool) or not isinstance(self.devices, int) or self.devices < 1:
            raise ValueError(f"FleetConfig.devices must be a whole number >= 1, got {self.devices!r}.")
        if not self.classes:
            raise ValueError("FleetConfig.classes is empty. Fix: list at least one device class.")
        total = sum(c.share for c in self.classes)
        if abs(total - 1) > 1e-3:
            raise ValueError(f"FleetConfig: class shares sum to {total:.4g}. Fix: make them sum to 1.")
        for name in ("accelerators", "links_mbps"):
            table = getattr(self, name)
            if not isinstance(table, dict) or not table:
                raise ValueError(f"FleetConfig.{name} must map names to numbers, e.g. {{wifi: 40}}; got {table!r}.")
            check_positive(f"FleetConfig.{name}", **{str(k): v for k, v in table.items()})
        if not 0 <= self.speed_jitter < 2:
            raise ValueError(f"FleetConfig.speed_jitter must be in [0, 2), got {self.speed_jitter!r}.")
        for c in self.classes:
            for kind, known in (("accelerator", self.accelerators), ("connectivity", self.links_mbps)):
                if getattr(c, kind) not in known:
                    raise ValueError(
                        f"DeviceClass {c.name!r}: unknown {kind} {getattr(c, kind)!r}. Fix: use one of "
                        f"{sorted(known)} or add it to the fleet file."
                    )

    def counts(self) -> np.ndarray:
        """Devices per class: shares of ``devices``, rounded by largest remainder (they sum to it)."""
        exact = np.array([c.share for c in self.classes]) / sum(c.share for c in self.classes) * self.devices
        counts = np.floor(exact).astype(int)
        counts[np.argsort(counts - exact)[: self.devices - counts.sum()]] += 1
        return counts


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


DEFAULT_FLEET = FleetConfig(
    devices=10_000,
    classes=(
        DeviceClass("sensor gateway", 0.40, 1024),
        DeviceClass("home hub", 0.30, 2048),
        DeviceClass("tablet", 0.20, 4096),
        DeviceClass("industrial PC", 0.08, 8192),
        DeviceClass("laptop", 0.02, 16384),
    ),
)


def measured_overhead(precision: str, metrics: dict[str, Any] | None = None) -> float:
    """Peak memory ÷ file size of the course model's ONNX package at ``precision``, as section 4
    measured them (``metrics``: a ``04_deployment`` record; default: its committed full reference
    run). It holds the KV cache, activations, dequantized copies and the runtime itself, so it is
    not a constant: 1.5 for fp32 and about 3 for int4 in the reference run. Part of it (the runtime)
    does not grow with the model, so for a larger model it overstates the need: a safe side to err on."""
    if metrics is None:
        ref = read_reference("04_deployment")
        if not ref.usable:
            raise ValueError(f"No measured overhead without notebook 04's reference record: {ref.problem}")
        metrics = ref.metrics
    keys = (f"onnx_{precision}_peak_mib", f"onnx_{precision}_size_mib")
    if not all(isinstance(metrics.get(k), int | float) and metrics[k] > 0 for k in keys):
        raise ValueError(f"The record lacks a measured {keys[0]} and {keys[1]}. Fix: run notebook 04 (section 4.5).")
    return metrics[keys[0]] / metrics[keys[1]]


def model_ram_mib(n_params: int, precision: str, overhead: float | None = None) -> float:
    """RAM to run a model: its weights at ``precision`` times the runtime's overhead, by default the
    one section 4 measured for that precision (``measured_overhead``)."""
    weights = weight_bytes(n_params, precision)  # refuses an unknown precision first
    factor = measured_overhead(precision) if overhead is None else overhead
    check_positive("model_ram_mib", overhead=factor)
    return weights * factor / MIB


@dataclass(frozen=True)
class FleetEstimate:
    model_mib: float
    rows: list[dict]  # one per device class: name, count, budget_mib, fits
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
    fleet: FleetConfig = DEFAULT_FLEET,
    costs: CostAssumptions = CostAssumptions(),
) -> FleetEstimate:
    """Which device classes can hold the model, and the monthly cost of each way to serve.

    Edge: every fitting device downloads each model update (egress). Cloud: every
    device's requests are served by a hosted model at a per-token price.
    """
    model_mib = model_ram_mib(n_params, precision)
    rows = [
        {"name": c.name, "count": int(n), "budget_mib": c.budget_mib, "fits": model_mib <= c.budget_mib}
        for c, n in zip(fleet.classes, fleet.counts(), strict=True)
    ]
    fitting = sum(r["count"] for r in rows if r["fits"])
    download_gb = weight_bytes(n_params, precision) / GB
    tokens = fleet.devices * costs.requests_per_device_per_day * DAYS_PER_MONTH * costs.tokens_per_request
    return FleetEstimate(
        model_mib=model_mib,
        rows=rows,
        devices_total=fleet.devices,
        devices_fitting=fitting,
        edge_update_usd_per_month=fitting * download_gb * costs.updates_per_month * costs.egress_usd_per_gb,
        cloud_usd_per_month=tokens / 1e6 * costs.cloud_usd_per_million_tokens,
    )


# -- a simulated fleet, one array entry per device ------------------------------------
VARIANTS = ("torch_fp32", "onnx_fp32", "onnx_fp16", "onnx_int8", "onnx_int4")


@dataclass(frozen=True)
class Variant:
    """One measured package: what it costs to ship and run, and how well it answers."""

    name: str
    size_mib: float  # on disk: what each device downloads
    peak_mib: float  # peak memory while answering
    ms_per_token_p50: float  # on the machine that measured it
    tok_s: float
    score: float  # held-out task score, 0-100

    def __post_init__(self) -> None:
        check_positive(f"Variant {self.name!r}", size_mib=self.size_mib, peak_mib=self.peak_mib)
        check_positive(f"Variant {self.name!r}", ms_per_token_p50=self.ms_per_token_p50, tok_s=self.tok_s)
        if not 0 <= self.score <= 100:
            raise ValueError(f"Variant {self.name!r}: score must be in [0, 100], got {self.score!r}.")


def variants_from_metrics(metrics: dict[str, Any]) -> list[Variant]:
    """The variants recorded in a metrics dict (section 4's ``04_deployment.json``).

    For each name in ``VARIANTS`` with any key present, ``<name>_<field>`` must be there
    for every field of ``Variant`` (``onnx_int4_size_mib``, ``onnx_int4_peak_mib``, ...).
    """
    fields = [f.name for f in dataclasses.fields(Variant) if f.name != "name"]
    found = []
    for name in VARIANTS:
        keys = {f: f"{name}_{f}" for f in fields}
        if not any(k in metrics for k in keys.values()):
            continue
        missing = [k for k in keys.values() if k not in metrics]
        if missing:
            raise ValueError(f"Metrics record variant {name!r} but lack {missing}. Fix: re-run notebook 04.")
        found.append(Variant(name, **{f: metrics[k] for f, k in keys.items()}))
    if not found:
        raise ValueError(
            f"No package variant in these metrics (looked for {list(VARIANTS)} with _{', _'.join(fields)}). "
            "Fix: run notebook 04 and pass artifacts/metrics/04_deployment.json."
        )
    return found


@dataclass(frozen=True)
class Fleet:
    """One array entry per device."""

    config: FleetConfig
    device_class: np.ndarray  # (N,) index into config.classes
    budget_mib: np.ndarray  # (N,) RAM the assistant may use
    nominal_speed: np.ndarray  # (N,) what the class promises: cpu_speed × accelerator speed-up
    speed: np.ndarray  # (N,) what the device really runs at
    mbps: np.ndarray  # (N,)
    latency_budget_ms: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.device_class)


def build_fleet(config: FleetConfig) -> Fleet:
    """Draw ``config.devices`` devices, class counts by share (``FleetConfig.counts``)."""
    rng = np.random.default_rng(config.seed)
    device_class = np.repeat(np.arange(len(config.classes)), config.counts())

    def per_device(get) -> np.ndarray:
        return np.array([float(get(c)) for c in config.classes])[device_class]

    nominal = per_device(lambda c: c.cpu_speed * config.accelerators[c.accelerator])
    return Fleet(
        config=config,
        device_class=device_class,
        budget_mib=per_device(lambda c: c.budget_mib),
        nominal_speed=nominal,
        speed=nominal * rng.lognormal(0.0, config.speed_jitter, len(device_class)),
        mbps=per_device(lambda c: config.links_mbps[c.connectivity]),
        latency_budget_ms=per_device(lambda c: c.latency_budget_ms),
    )


def pick_variants(fleet: Fleet, variants: list[Variant], headroom: float = 1.0) -> np.ndarray:
    """Per device, the index of the best-scoring variant (then the smallest) that fits, or -1.

    Fits: its peak memory is within the device's RAM budget and its ms per token, at the
    class's nominal speed, within ``headroom`` × the latency budget (0.8 leaves 20 %
    for devices slower than their class promises).
    """
    if not 0 < headroom <= 1:
        raise ValueError(f"headroom must be in (0, 1], got {headroom!r}.")
    order = sorted(range(len(variants)), key=lambda i: (-variants[i].score, variants[i].size_mib))
    peak = np.array([variants[i].peak_mib for i in order])
    ms = np.array([variants[i].ms_per_token_p50 for i in order])
    fits = (peak[None, :] <= fleet.budget_mib[:, None]) & (
        ms[None, :] / fleet.nominal_speed[:, None] <= headroom * fleet.latency_budget_ms[:, None]
    )  # (N, V) in preference order
    first = fits.argmax(axis=1)
    return np.where(fits.any(axis=1), np.array(order)[first], -1)
