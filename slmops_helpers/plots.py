"""Plots the notebooks show: each takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

LIFECYCLE = ("select", "compress", "adapt", "package", "deploy", "monitor", "update")


def plot_lifecycle(stages: tuple[str, ...] = LIFECYCLE, highlight: str | None = None) -> Figure:
    """The SLMOps life cycle as a loop of stages; ``highlight`` marks one of them."""
    fig, ax = plt.subplots(figsize=(6, 6))
    n = len(stages)
    points = [
        (math.cos(math.pi / 2 - 2 * math.pi * i / n), math.sin(math.pi / 2 - 2 * math.pi * i / n)) for i in range(n)
    ]
    for i, (stage, (x, y)) in enumerate(zip(stages, points, strict=True)):
        nx, ny = points[(i + 1) % n]
        ax.annotate(
            "",
            xy=(0.8 * nx, 0.8 * ny),
            xytext=(0.8 * x, 0.8 * y),
            arrowprops={"arrowstyle": "->", "color": "grey", "connectionstyle": "arc3,rad=-0.25"},
        )
        color = "tab:orange" if stage == highlight else "tab:blue"
        ax.text(
            x,
            y,
            stage,
            ha="center",
            va="center",
            fontsize=12,
            color="white",
            bbox={"boxstyle": "round,pad=0.5", "fc": color, "ec": "none"},
        )
    ax.text(0, 0, "SLMOps\nlife cycle", ha="center", va="center", fontsize=14)
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.35, 1.35)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig


def plot_footprint(rows: list[dict[str, Any]], measured: dict[str, float] | None = None) -> Figure:
    """Bars of computed size per precision, with measured sizes beside them."""
    fig, ax = plt.subplots(figsize=(7, 4))
    names = [r["precision"] for r in rows]
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [r["size_mib"] for r in rows], width=0.4, label="computed: params × bytes/weight")
    if measured:
        ax.bar([i + 0.2 for i in x], [measured.get(n, 0) for n in names], width=0.4, label="measured: stored tensors")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("MiB")
    ax.set_title("Model footprint by precision")
    ax.legend()
    return fig


def plot_pruning(rows: list[dict[str, Any]]) -> Figure:
    """KL divergence and top-1 agreement against sparsity, one line per method."""
    fig, (ax_kl, ax_agree) = plt.subplots(1, 2, figsize=(10, 4))
    for method in sorted({r["method"] for r in rows}):
        sub = [r for r in rows if r["method"] == method]
        ax_kl.plot([r["sparsity"] for r in sub], [r["kl"] for r in sub], marker="o", label=method)
        ax_agree.plot([r["sparsity"] for r in sub], [r["top1_agreement"] for r in sub], marker="o", label=method)
    ax_kl.set(xlabel="sparsity of the layer", ylabel="KL(original ‖ pruned), nats", title="How far the outputs move")
    ax_agree.set(xlabel="sparsity of the layer", ylabel="top-1 agreement", title="Same next token as before?")
    ax_kl.legend()
    ax_agree.legend()
    fig.tight_layout()
    return fig


def plot_fleet(plan: Any) -> Figure:
    """Which device classes can hold the model: RAM budget per class against model size."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r["name"] for r in plan.rows]
    colors = ["tab:green" if r["fits"] else "tab:red" for r in plan.rows]
    ax.barh(names, [r["budget_gb"] for r in plan.rows], color=colors)
    ax.axvline(plan.model_gb, color="black", linestyle="--", label=f"model needs {plan.model_gb:.2f} GB")
    ax.set_xlabel("RAM budget for the assistant (GB)")
    ax.set_xscale("log")
    ax.legend(loc="lower right")
    ax.set_title(f"{plan.devices_fitting:,} of {plan.devices_total:,} devices can run it")
    fig.tight_layout()
    return fig
