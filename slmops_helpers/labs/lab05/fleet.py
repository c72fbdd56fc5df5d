"""Lab 05's simulated fleet: the device classes, the measured variants and the staged plan that
q1, q3 and q6 roll out on. Seeded, so the check and the learner look at the same report:
``lab_rollout()`` gives the same result every time it is called."""

from __future__ import annotations

import functools

from ...fleet import DeviceClass, FleetConfig, Variant, build_fleet
from ...pipeline.rollout import RolloutConfig, RolloutResult, Stage, simulate_rollout
from ..measured import measured

# q1/q3/q6: a 2,000-device fleet. The device classes are assumptions; the variants are measured (notebook 04's
# committed full reference run, read by lab_variants(): a quick smoke run's timings would move the story).
VARIANT_RECIPES = ("fp32", "int8", "int4")
HUB_SPEED, FIT_HEADROOM = 0.5, 0.8  # the home hub's CPU against the measuring machine; the fit's latency headroom


@functools.cache
def lab_variants() -> tuple[Variant, ...]:
    """The packages the rollout can ship, as notebook 04 measured them."""

    def value(recipe: str, key: str) -> float:
        return float(measured("04_deployment", f"onnx_{recipe}_{key}", prefer_run=False).value)

    return tuple(
        Variant(f"onnx_{r}", *(value(r, k) for k in ("size_mib", "peak_mib", "ms_per_token_p50", "tok_s", "score")))
        for r in VARIANT_RECIPES
    )


def lab_profiles() -> tuple[DeviceClass, ...]:
    """The fleet's device classes. The home hub was specified for the int4 build: its latency budget is
    what measured int4 needs at the hub's speed with the fit's headroom, plus 0.5 % (an assumption)."""
    int4_ms = next(v for v in lab_variants() if v.name == "onnx_int4").ms_per_token_p50
    hub_budget_ms = round(int4_ms / HUB_SPEED / FIT_HEADROOM * 1.005, 2)
    return (
        DeviceClass("sensor gateway", 0.40, 1024, 0.35, 0.25, "none", "cellular", 250),
        DeviceClass("home hub", 0.20, 2048, 0.25, HUB_SPEED, "none", "wifi", hub_budget_ms),
        DeviceClass("tablet", 0.30, 4096, 0.25, 1.0, "npu", "wifi", 100),
        DeviceClass("laptop", 0.10, 16384, 0.25, 2.0, "gpu", "wifi", 60),
    )


LAB_STAGES = (
    Stage("canary", 0.02, 24, max_error_rate=0.02, max_slow_share=0.10),  # opted-in testers: a looser budget
    Stage("wider", 0.25, 48, max_error_rate=0.02, max_slow_share=0.05),
    Stage("all", 1.00, 72, max_error_rate=0.02, max_slow_share=0.05),
)
SLOW_BUILD = 1.2  # the release runs 20 % slower in the field than it measured on the build machine
SEED = 1


def lab_fleet_spec() -> FleetConfig:
    return FleetConfig(
        2000,
        lab_profiles(),
        accelerators={"none": 1.0, "npu": 1.5, "gpu": 2.0},
        links_mbps={"wifi": 40.0, "cellular": 8.0},
        seed=SEED,
    )


def lab_plan(latency_factor: float = SLOW_BUILD) -> RolloutConfig:
    return RolloutConfig(
        LAB_STAGES, latency_factor=latency_factor, latency_headroom=FIT_HEADROOM, max_feedback=200, seed=SEED
    )


def lab_rollout(latency_factor: float = SLOW_BUILD) -> RolloutResult:
    """q3's rollout: the slow build, on the lab's fleet; the same result at every call."""
    return simulate_rollout(build_fleet(lab_fleet_spec()), list(lab_variants()), lab_plan(latency_factor))
