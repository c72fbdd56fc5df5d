"""Plots the notebooks show: each takes plain data and returns a matplotlib Figure."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

MEMORY_PARTS = ("weights", "gradients", "optimizer", "activations")
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
    """Which device classes can hold the model: RAM budget per class against model size.

    Built without pyplot, like every plot a widget redraws: ipykernel runs widget callbacks
    concurrently, and pyplot's global state then draws blank or half-drawn figures.
    """
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    names = [r["name"] for r in plan.rows]
    colors = ["tab:green" if r["fits"] else "tab:red" for r in plan.rows]
    ax.barh(names, [r["budget_mib"] for r in plan.rows], color=colors)
    ax.axvline(plan.model_mib, color="black", linestyle="--", label=f"model needs {plan.model_mib:,.0f} MiB")
    ax.set_xlabel("RAM budget for the assistant (MiB)")
    ax.set_xscale("log")
    ax.legend(loc="lower right")
    ax.set_title(f"{plan.devices_fitting:,} of {plan.devices_total:,} devices can run it")
    fig.tight_layout()
    return fig


def score_errors(rows: list[dict[str, Any]], key: str = "score") -> list[list[float]] | None:
    """matplotlib's asymmetric ``yerr`` from each row's ``<key>_ci_low`` / ``<key>_ci_high``
    (None when a row has no interval, so the bars draw without)."""
    if not all(f"{key}_ci_low" in r and f"{key}_ci_high" in r for r in rows):
        return None
    return [[r[key] - r[f"{key}_ci_low"] for r in rows], [r[f"{key}_ci_high"] - r[key] for r in rows]]


def plot_methods(rows: list[dict[str, Any]], base_score: float) -> Figure:
    """Fine-tuning methods side by side: task score (with each training seed's, when rows hold
    ``seed_scores``), trainable %, peak memory, artifact size."""
    panels = [
        ("score", "held-out task score (0–100)", False),
        ("trainable_pct", "trainable parameters (%)", True),
        ("peak_mib", "training memory (MiB)", False),
        ("artifact_mib", "artifact to ship (MiB)", True),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 3.6))
    names = [r["method"] for r in rows]
    for ax, (key, label, log) in zip(axes, panels, strict=True):
        if key == "peak_mib":  # stacked: where the memory goes
            bottom = [0.0] * len(rows)
            for part in MEMORY_PARTS:
                heights = [r[f"{part}_mib"] for r in rows]
                ax.bar(names, heights, bottom=bottom, label=part)
                bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
            ax.legend(fontsize=7)
        elif key == "score":  # with its 95 % bootstrap interval over the tickets, and each seed's score as a dot
            ax.bar(names, [r[key] for r in rows], yerr=score_errors(rows), capsize=4, color="tab:blue")
            for i, r in enumerate(rows):
                seeds = r.get("seed_scores", [])
                ax.plot([i] * len(seeds), seeds, "o", color="black", markersize=3, label="one seed" if i == 0 else None)
        else:
            ax.bar(names, [r[key] for r in rows], color="tab:blue")
        ax.set_title(label, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=30)
    axes[0].axhline(base_score, color="black", linestyle="--", label="untuned base")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_loss_curves(histories: dict[str, list[dict[str, float]]], stopped_at: dict[str, int] | None = None) -> Figure:
    """Training loss (thin) and validation loss (dots) per run; a dotted line where a run stopped early.

    When the histories carry a ``val_score`` (``training.train`` with a ``score_fn``), a
    second panel shows it beside the loss, so a reader sees where the two disagree.
    """
    with_score = any("val_score" in h for history in histories.values() for h in history)
    fig, axes = plt.subplots(1, 2 if with_score else 1, figsize=(12 if with_score else 7, 4), squeeze=False)
    ax, colors = axes[0][0], plt.rcParams["axes.prop_cycle"].by_key()["color"]
    score_ax = axes[0][1] if with_score else None
    for (name, history), color in zip(histories.items(), colors, strict=False):
        ax.plot([h["step"] for h in history], [h["train_loss"] for h in history], color=color, alpha=0.5, lw=1)
        val = [h for h in history if "val_loss" in h]
        ax.plot([h["step"] for h in val], [h["val_loss"] for h in val], "o-", color=color, label=f"{name} (validation)")
        scored = [h for h in history if "val_score" in h]
        if scored and score_ax is not None:
            score_ax.plot([h["step"] for h in scored], [h["val_score"] for h in scored], "o-", color=color, label=name)
        for panel in axes[0]:
            if stopped_at and name in stopped_at:
                panel.axvline(stopped_at[name], color=color, linestyle=":")
    ax.set(xlabel="step", ylabel="loss (nats per answer token)", title="Training (thin) and validation (dots) loss")
    ax.legend(fontsize=8)
    if score_ax is not None:
        score_ax.set(xlabel="step", ylabel="task score (0–100)", title="Validation task score")
        score_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_memory_tips(rows: list[dict[str, Any]]) -> Figure:
    """Measured activation memory and time of one training step per setting (``label`` names it)."""
    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(11, 3.8))
    labels = [r["label"] for r in rows]
    ax_mem.bar(labels, [r["activation_mib"] for r in rows], color="tab:purple")
    ax_time.bar(labels, [r["s_per_step"] for r in rows], color="tab:gray")
    ax_mem.set(ylabel="MiB", title="activations kept for the backward pass")
    ax_time.set(ylabel="seconds", title="forward + backward time")
    for ax in (ax_mem, ax_time):
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def plot_temperature(view: dict[str, Any], labels: list[str], temperature: float) -> Figure:
    """Teacher and student probabilities of the teacher's top tokens at one temperature
    (``view`` from ``distill.temperature_view``). Built without pyplot (see ``plot_fleet``)."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], view["teacher_probs"], width=0.4, label="teacher", color="tab:blue")
    ax.bar([i + 0.2 for i in x], view["student_probs"], width=0.4, label="student", color="tab:orange")
    ax.set_xticks(list(x), labels, rotation=30)
    ax.set_ylim(0, 1)
    ax.set(ylabel=f"probability at T = {temperature:g}", title=f"T²·KL = {view['kd_term']:.3f}")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_distillation_tradeoff(rows: list[dict[str, Any]]) -> Figure:
    """Task score against ms per generated token, one point per model; marker area ∝ parameters."""
    fig, ax = plt.subplots(figsize=(7, 4))
    biggest, errors = max(r["params"] for r in rows), score_errors(rows)
    for i, r in enumerate(rows):
        ax.scatter(r["ms_per_token"], r["score"], s=60 + 900 * r["params"] / biggest, alpha=0.6)
        if errors is not None:  # the score's 95 % interval over the tickets
            yerr = [[errors[0][i]], [errors[1][i]]]
            ax.errorbar(r["ms_per_token"], r["score"], yerr=yerr, color="gray", capsize=4, linewidth=1)
        ax.annotate(
            f"{r['name']}\n{r['params'] / 1e6:.0f} M params",
            (r["ms_per_token"], r["score"]),
            textcoords="offset points",
            xytext=(8, 6),
            fontsize=9,
        )
    ax.set(
        xlabel="ms per generated token (p50, lower is faster)",
        ylabel="task score on held-out references",
        title="Quality against speed: up and to the left is better",
    )
    ax.margins(0.25)
    fig.tight_layout()
    return fig


def plot_run_vs_reference(
    bars: dict[str, tuple[float, float | None]],
    ylabel: str = "task score",
    intervals: dict[str, tuple[float, float]] | None = None,
) -> Figure:
    """This run's value beside the full reference run's, per label (a missing reference draws no
    bar); ``intervals`` (label -> (low, high)) draws this run's 95 % intervals as error bars."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = range(len(bars))
    runs = [run for run, _ in bars.values()]
    yerr = None
    if intervals:
        lows, highs = zip(*(intervals[label] for label in bars), strict=True)
        yerr = [[r - lo for r, lo in zip(runs, lows, strict=True)], [hi - r for r, hi in zip(runs, highs, strict=True)]]
    ax.bar([x - 0.2 for x in xs], runs, width=0.4, yerr=yerr, capsize=4, label="this run")
    ref = [(x + 0.2, r) for x, (_, r) in zip(xs, bars.values(), strict=True) if r is not None]
    if ref:
        ax.bar([x for x, _ in ref], [r for _, r in ref], width=0.4, label="full reference run")
    ax.set_xticks(list(xs), list(bars), rotation=15)
    ax.set(ylabel=ylabel, title="This run beside the full reference run")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_rollout(result: Any) -> Figure:
    """A staged rollout (``rollout.simulate_rollout``): devices on the new version over time,
    and each stage's health against its budgets; a halted stage is drawn in red."""
    fig, (ax_time, ax_health) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    ax_time.plot(result.hours, result.on_new, color="tab:blue", lw=2)
    for i, s in enumerate(result.stages):
        color = "tab:red" if not s.passed else ("0.92" if i % 2 == 0 else "0.85")
        ax_time.axvspan(s.start_h, s.end_h, color=color, alpha=0.25 if not s.passed else 0.6, lw=0)
        ax_time.text((s.start_h + s.end_h) / 2, 1.01, s.name, transform=ax_time.get_xaxis_transform(), ha="center")
    if result.halted:
        last = result.stages[-1]
        ax_time.axvline(last.end_h, color="tab:red", linestyle="--", label=f"halt + rollback: {last.reason}")
        ax_time.legend(loc="upper left", fontsize=8)
    ax_time.set(xlabel="hours since the release", ylabel="devices on the new version", ylim=(0, None))
    ax_time.set_title("Staged rollout", pad=18)
    names = [s.name for s in result.stages]
    x = range(len(names))
    colors = ["tab:red" if not s.passed else "tab:green" for s in result.stages]
    ax_health.bar(
        [i - 0.2 for i in x], [100 * s.error_rate for s in result.stages], 0.4, color=colors, label="failed answers"
    )
    ax_health.bar(
        [i + 0.2 for i in x],
        [100 * s.slow_share for s in result.stages],
        0.4,
        color=colors,
        hatch="//",
        alpha=0.6,
        label="devices over latency budget",
    )
    for i, s in enumerate(result.stages):
        ax_health.hlines(100 * s.max_error_rate, i - 0.4, i, color="black", linestyle="--")
        ax_health.hlines(100 * s.max_slow_share, i, i + 0.4, color="black", linestyle=":")
    top = max(max(s.error_rate, s.slow_share, s.max_error_rate, s.max_slow_share) for s in result.stages)
    ax_health.set_xticks(list(x), names)
    ax_health.set(ylabel="% (dashed / dotted: the stage's budgets)", title="Health per stage", ylim=(0, 140 * top))
    ax_health.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


SIZE_PARTS = ("quantized_mib", "scales_mib", "float_mib")


def plot_size_breakdown(rows: list[dict[str, Any]]) -> Figure:
    """Stacked MiB per variant: quantized integers, scales/zero points, float weights.

    ``rows``: one dict per variant with ``variant`` and the ``SIZE_PARTS`` keys.
    """
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bottom = [0.0] * len(rows)
    names = [r["variant"] for r in rows]
    for part in SIZE_PARTS:
        values = [r[part] for r in rows]
        ax.barh(names, values, left=bottom, label=part.removesuffix("_mib").replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xlabel("MiB on disk")
    ax.legend(loc="upper right")  # the int4 bar at the top is short
    ax.set_title("What the bytes are")
    fig.tight_layout()
    return fig


RUNTIME_COLORS = {"torch": "tab:gray", "onnx": "tab:blue", "genai": "tab:purple", "gguf": "tab:orange"}


def plot_benchmark(table: list[dict[str, Any]]) -> Figure:
    """Left: decode speed per variant, coloured by runtime (the name's prefix: torch, onnx,
    genai, gguf). Right: size against task score (the trade-off)."""
    fig, (speed, tradeoff) = plt.subplots(1, 2, figsize=(11, 0.9 + 0.35 * max(len(table), 8)))
    names = [r["variant"] for r in table]
    colors = [RUNTIME_COLORS.get(name.split("_")[0], "tab:gray") for name in names]
    speed.barh(names, [r["tok_s"] for r in table], color=colors)
    speed.invert_yaxis()  # the table's order, top to bottom
    speed.set_xlabel("tokens / s (batch 1, after the first token)")
    errors = score_errors(table)
    for i, r in enumerate(table):
        yerr = None if errors is None else [[errors[0][i]], [errors[1][i]]]
        tradeoff.errorbar(r["size_mib"], r["score"], yerr=yerr, fmt="o", capsize=4, markersize=7, color=colors[i])
        tradeoff.annotate(r["variant"], (r["size_mib"], r["score"]), textcoords="offset points", xytext=(5, 4))
    tradeoff.set_xlabel("size on disk (MiB)")
    tradeoff.set_ylabel("task score (0–100), 95 % interval")
    tradeoff.set_title("smaller is not free: check the score")
    fig.tight_layout()
    return fig


def plot_tickets_needed(sd: float, n_scored: int, needed: Callable[[float], int], margin: float) -> Figure:
    """Tickets a non-inferiority gate needs against the margin it certifies (``needed(margin)``,
    e.g. ``uncertainty.tickets_needed`` at the measured spread ``sd``), beside the tickets scored
    and the policy's ``margin``."""
    margins = np.linspace(1, 20, 60)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(
        margins, [needed(d) for d in margins], color="tab:blue", label=f"needed (per-ticket spread {sd:.1f} points)"
    )
    ax.axhline(n_scored, color="black", linestyle="--", label=f"scored in this run ({n_scored})")
    ax.axvline(margin, color="tab:red", linestyle=":", label=f"the policy's margin ({margin:g} points)")
    ax.set_yscale("log")
    ax.set(
        xlabel="margin to certify (points a candidate as good as production may be shown to lose at most)",
        ylabel="held-out tickets",
        title="How many tickets a gate needs (80 % power, 95 % confidence)",
    )
    ax.legend()
    fig.tight_layout()
    return fig


def plot_speculative(rows: list[dict[str, Any]]) -> Figure:
    """Left: measured decode speedup against draft tokens per round (gamma), over the target
    alone with the same thread setting, and the cost model's prediction dashed. Right: how
    many guesses the target accepted."""
    fig, (speed, accepted) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, draft in enumerate(dict.fromkeys(r["draft"] for r in rows if r["gamma"])):
        mine = [r for r in rows if r["draft"] == draft]
        gammas, color = [r["gamma"] for r in mine], f"C{i}"
        speed.plot(gammas, [r["speedup_same_threads"] for r in mine], "o-", color=color, label=f"{draft}, measured")
        if all("expected_speedup" in r for r in mine):
            speed.plot(gammas, [r["expected_speedup"] for r in mine], "--", color=color, label=f"{draft}, cost model")
        accepted.plot(gammas, [100 * r["acceptance"] for r in mine], "o-", color=color, label=draft)
    speed.axhline(1, color="black", linewidth=0.8)
    speed.set(xlabel="draft tokens per round (gamma)", ylabel="decode speedup (same threads)")
    speed.set_title("above 1: the draft pays for itself")
    speed.legend(fontsize=8)
    accepted.set(xlabel="draft tokens per round (gamma)", ylabel="guesses accepted (%)", ylim=(0, 100))
    accepted.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_quant_study(rows: list[dict[str, Any]], margin: float) -> Figure:
    """Section 4.3's study against bits per weight, one point per recipe, coloured by runtime:
    left, the drop's upper bound the gate reads (the margin drawn); right, the mean per-token
    KL from fp32 (log scale), which separates recipes the score cannot."""
    fig, (drop, kl) = plt.subplots(1, 2, figsize=(12, 4.4))
    for r in rows[1:]:  # the first row is the fp32 reference itself
        color = RUNTIME_COLORS[r["runtime"]]
        drop.scatter(r["bits_per_weight"], r["drop_bound"], color=color, marker="o" if r["passes"] else "x")
        drop.annotate(
            r["variant"].split("_", 1)[1],
            (r["bits_per_weight"], r["drop_bound"]),
            fontsize=7,
            xytext=(3, 2),
            textcoords="offset points",
        )
        kl.scatter(r["bits_per_weight"], max(r["kl"], 1e-5), color=color)
    drop.axhline(margin, color="black", linestyle="--", label=f"the gate's margin ({margin:g} points)")
    drop.set_ylabel("drop below fp32, one-sided upper bound (points)")
    drop.set_title("o passes the gate, x fails")
    kl.set_yscale("log")
    kl.set_ylabel("mean KL from fp32 per answer token (nats)")
    for ax in (drop, kl):
        ax.set_xlabel("bits per weight (file bits / parameters)")
    handles = [
        plt.Line2D([], [], color=c, marker="o", linestyle="") for c in (RUNTIME_COLORS["onnx"], RUNTIME_COLORS["gguf"])
    ]
    kl.legend(handles, ["onnx", "gguf"])
    drop.legend(loc="upper right")
    fig.tight_layout()
    return fig
