"""A fleet footprint and cost calculator: which devices can run which model, and what
it costs to serve a fleet from the cloud versus updating models on the devices.

Pure functions over small dataclasses; the notebook's widget is only a view over
``plan_fleet``. Every price and count here is an *assumption* the learner sets, not a
market figure: the defaults exist so the calculator shows something out of the box.

The second half simulates a fleet device by device for the staged rollout (``rollout``):
device profiles (RAM, CPU speed relative to the machine that measured section 4,
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


# -- a simulated fleet, one array entry per device ------------------------------------
VARIANTS = ("torch_fp32", "onnx_fp32", "onnx_fp16", "onnx_int8", "onnx_int4")
VARIANT_KEYS = {"size_mb": "mb", "peak_mb": "peak_mb", "ms_per_token_p50": "ms_per_token_p50", "tok_s": "tok_s"}


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
class Variant:
    """One measured package: what it costs to ship and run, and how well it answers."""

    name: str
    size_mb: float  # on disk: what each device downloads
    peak_mb: float  # peak memory while answering
    ms_per_token_p50: float  # on the machine that measured it
    tok_s: float
    score: float  # held-out task score, 0-100

    def __post_init__(self) -> None:
        check_positive(f"Variant {self.name!r}", size_mb=self.size_mb, peak_mb=self.peak_mb)
        check_positive(f"Variant {self.name!r}", ms_per_token_p50=self.ms_per_token_p50, tok_s=self.tok_s)
        if not 0 <= self.score <= 100:
            raise ValueError(f"Variant {self.name!r}: score must be in [0, 100], got {self.score!r}.")


def variants_from_metrics(metrics: dict[str, Any]) -> list[Variant]:
    """The variants recorded in a metrics dict (section 4's ``04_deployment.json``).

    For each name in ``VARIANTS`` with any key present, all of ``<name>_mb``,
    ``<name>_peak_mb``, ``<name>_ms_per_token_p50``, ``<name>_tok_s`` and
    ``<name>_score`` must be there.
    """
    found = []
    for name in VARIANTS:
        keys = {field_: f"{name}_{suffix}" for field_, suffix in {**VARIANT_KEYS, "score": "score"}.items()}
        present = [k for k in keys.values() if k in metrics]
        if not present:
            continue
        missing = [k for k in keys.values() if k not in metrics]
        if missing:
            raise ValueError(f"Metrics record variant {name!r} but lack {missing}. Fix: re-run notebook 04.")
        found.append(Variant(name, **{f: metrics[k] for f, k in keys.items()}))
    if not found:
        raise ValueError(
            f"No package variant in these metrics (looked for {list(VARIANTS)} with _mb, _peak_mb, "
            "_ms_per_token_p50, _tok_s, _score). Fix: run notebook 04 and pass artifacts/metrics/04_deployment.json."
        )
    return found


@dataclass(frozen=True)
class DeviceProfile:
    """A kind of device and its share of the fleet (assumptions, not measurements)."""

    name: str
    share: float  # of the fleet
    ram_mb: float
    ram_budget: float = 0.25  # share of RAM the assistant may take beside the OS and apps
    cpu_speed: float = 1.0  # relative to the CPU that measured section 4 (2 = twice as fast)
    accelerator: str = "none"  # a key of FleetSpec.accelerators
    connectivity: str = "wifi"  # a key of FleetSpec.links_mbps
    latency_budget_ms: float = 200.0  # slowest acceptable ms per generated token

    def __post_init__(self) -> None:
        where = f"DeviceProfile {self.name!r}"
        check_share(where, "share", self.share)
        check_positive(where, ram_mb=self.ram_mb, cpu_speed=self.cpu_speed, latency_budget_ms=self.latency_budget_ms)
        if not 0 < self.ram_budget <= 1:
            raise ValueError(f"{where}: ram_budget must be in (0, 1], got {self.ram_budget!r}.")


@dataclass(frozen=True)
class FleetSpec:
    """How many devices, of which profiles, and what accelerators and links are worth."""

    devices: int
    profiles: tuple[DeviceProfile, ...]
    accelerators: dict[str, float] = dataclasses.field(default_factory=lambda: {"none": 1.0})  # speed-up factor
    links_mbps: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"ethernet": 100.0, "wifi": 40.0, "cellular": 8.0}
    )
    speed_jitter: float = 0.15  # spread (log-normal sigma) of a device's real speed around its profile's
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.devices, bool) or not isinstance(self.devices, int) or self.devices < 1:
            raise ValueError(f"FleetSpec.devices must be a whole number >= 1, got {self.devices!r}.")
        if not self.profiles:
            raise ValueError("FleetSpec.profiles is empty. Fix: list at least one device profile.")
        total = sum(p.share for p in self.profiles)
        if abs(total - 1) > 1e-3:
            raise ValueError(f"FleetSpec: profile shares sum to {total:.4g}. Fix: make them sum to 1.")
        for name in ("accelerators", "links_mbps"):
            table = getattr(self, name)
            if not isinstance(table, dict) or not table:
                raise ValueError(f"FleetSpec.{name} must map names to numbers, e.g. {{wifi: 40}}; got {table!r}.")
            check_positive(f"FleetSpec.{name}", **{str(k): v for k, v in table.items()})
        if not 0 <= self.speed_jitter < 2:
            raise ValueError(f"FleetSpec.speed_jitter must be in [0, 2), got {self.speed_jitter!r}.")
        for p in self.profiles:
            for kind, known in (("accelerator", self.accelerators), ("connectivity", self.links_mbps)):
                if getattr(p, kind) not in known:
                    raise ValueError(
                        f"DeviceProfile {p.name!r}: unknown {kind} {getattr(p, kind)!r}. Fix: use one of "
                        f"{sorted(known)} or add it to the fleet file."
                    )


@dataclass(frozen=True)
class Fleet:
    """One array entry per device."""

    spec: FleetSpec
    profile: np.ndarray  # (N,) index into spec.profiles
    budget_mb: np.ndarray  # (N,) RAM the assistant may use
    nominal_speed: np.ndarray  # (N,) what the profile promises: cpu_speed × accelerator speed-up
    speed: np.ndarray  # (N,) what the device really runs at
    mbps: np.ndarray  # (N,)
    latency_budget_ms: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.profile)


def build_fleet(spec: FleetSpec) -> Fleet:
    """Draw ``spec.devices`` devices, profile counts by share (largest remainder)."""
    rng = np.random.default_rng(spec.seed)
    exact = np.array([p.share for p in spec.profiles]) / sum(p.share for p in spec.profiles) * spec.devices
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact)[: spec.devices - counts.sum()]] += 1
    profile = np.repeat(np.arange(len(spec.profiles)), counts)

    def per_device(get) -> np.ndarray:
        return np.array([float(get(p)) for p in spec.profiles])[profile]

    nominal = per_device(lambda p: p.cpu_speed * spec.accelerators[p.accelerator])
    return Fleet(
        spec=spec,
        profile=profile,
        budget_mb=per_device(lambda p: p.ram_mb * p.ram_budget),
        nominal_speed=nominal,
        speed=nominal * rng.lognormal(0.0, spec.speed_jitter, len(profile)),
        mbps=per_device(lambda p: spec.links_mbps[p.connectivity]),
        latency_budget_ms=per_device(lambda p: p.latency_budget_ms),
    )


def pick_variants(fleet: Fleet, variants: list[Variant], headroom: float = 1.0) -> np.ndarray:
    """Per device, the index of the best-scoring variant (then the smallest) that fits, or -1.

    Fits: its peak memory is within the device's RAM budget and its ms per token, at the
    profile's nominal speed, within ``headroom`` × the latency budget (0.8 leaves 20 %
    for devices slower than their profile promises).
    """
    if not 0 < headroom <= 1:
        raise ValueError(f"headroom must be in (0, 1], got {headroom!r}.")
    order = sorted(range(len(variants)), key=lambda i: (-variants[i].score, variants[i].size_mb))
    peak = np.array([variants[i].peak_mb for i in order])
    ms = np.array([variants[i].ms_per_token_p50 for i in order])
    fits = (peak[None, :] <= fleet.budget_mb[:, None]) & (
        ms[None, :] / fleet.nominal_speed[:, None] <= headroom * fleet.latency_budget_ms[:, None]
    )  # (N, V) in preference order
    first = fits.argmax(axis=1)
    return np.where(fits.any(axis=1), np.array(order)[first], -1)
