"""Concept diagrams: the pictures behind the code, drawn from a model's own sizes.

Each function takes plain numbers (a layer's shape, a block of real weights, a round's
gamma) and returns a matplotlib Figure; nothing is measured or recorded. Plots of
measurements live in ``plots``; these draw ideas whose shape is spatial:

- ``lora``: the frozen matrix W beside the two thin matrices B and A that train;
- ``kv_cache``: one decoding step reading the cached keys and values;
- ``speculative_round``: a draft's guesses, the target's single check, what is kept;
- ``quant_block``: one block of weights on its integer grid, and how it is stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

FROZEN, TRAINED, CACHED, NEW = "lightgrey", "tab:orange", "tab:blue", "tab:orange"
KEPT, REJECTED, DISCARDED, OWN = "tab:green", "tab:red", "whitesmoke", "tab:blue"
THIN = 0.12  # the drawn width of a rank-r side, so that r = 8 beside 576 stays visible


def _box(ax, x: float, y: float, w: float, h: float, color: str, label: str, gid: str, size: int = 9) -> Rectangle:
    rect = Rectangle((x, y), w, h, facecolor=color, edgecolor="black", gid=gid)
    ax.add_patch(rect)
    ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=size)
    return rect


def _blank(ax) -> None:
    ax.set_aspect("equal")
    ax.axis("off")
    ax.autoscale_view()


def lora(d_out: int, d_in: int, rank: int) -> Figure:
    """W (d_out × d_in, frozen) + B (d_out × r) · A (r × d_in), drawn to scale except the
    rank's side, which is widened to stay visible; the title counts what trains."""
    if not 0 < rank <= min(d_out, d_in):
        raise ValueError(f"rank must be in [1, min(d_out, d_in)] = [1, {min(d_out, d_in)}], got {rank}.")
    s = 2.0 / max(d_out, d_in)  # the larger side of W is 2 units long
    h, w, r = d_out * s, d_in * s, max(rank * s, THIN)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    _box(ax, 0, 0, w, h, FROZEN, f"W (frozen)\n{d_out} × {d_in}", "W")
    ax.text(w + 0.25, h / 2, "+", fontsize=18, ha="center", va="center")
    _box(ax, w + 0.5, 0, r, h, TRAINED, "", "B")
    ax.text(w + 0.5 + r / 2, -0.15, f"B\n{d_out} × {rank}", ha="center", va="top", fontsize=9)
    ax.text(w + 0.75 + r, h / 2, "·", fontsize=22, ha="center", va="center")
    _box(ax, w + 1.0 + r, h - r, w, r, TRAINED, "", "A")
    ax.text(w + 1.0 + r + w / 2, h - r - 0.1, f"A\n{rank} × {d_in}", ha="center", va="top", fontsize=9)
    trained, full = rank * (d_in + d_out), d_in * d_out
    ax.set_title(
        f"LoRA on one {d_out} × {d_in} layer: y = W·x + (α/r)·B·(A·x)\n{trained:,} weights train "
        f"instead of {full:,} ({trained / full:.1%}); merging adds (α/r)·B·A into W",
        fontsize=10,
    )
    _blank(ax)
    ax.set_xlim(-0.1, 2 * w + r + 1.1)
    ax.set_ylim(-0.7, h + 0.1)
    return fig


def kv_cache(tokens: Sequence[str], new_token: str) -> Figure:
    """One decoding step with a KV cache: the new token's query reads every cached key (and
    value), and only the new token's own key and value are computed and appended."""
    if not tokens:
        raise ValueError("kv_cache needs at least one earlier token to cache; pass the prompt's tokens.")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * (len(tokens) + 2)), 3.4))
    every = [*tokens, new_token]
    for i, tok in enumerate(every):
        color = NEW if i == len(tokens) else CACHED
        ax.text(i + 0.45, -0.2, repr(tok), ha="right", va="top", fontsize=8, rotation=30)
        _box(ax, i, 0, 0.9, 0.6, color, "K", f"K{i}")
        _box(ax, i, 0.7, 0.9, 0.6, color, "V", f"V{i}")
    q = len(tokens) + 0.45
    _box(ax, len(tokens), 2.0, 0.9, 0.6, NEW, "q", "query")
    for i in range(len(every)):
        arrow = FancyArrowPatch(
            (q, 2.0), (i + 0.45, 1.3), arrowstyle="->", mutation_scale=10, color="grey", connectionstyle="arc3,rad=0.15"
        )
        arrow.set_gid(f"reads{i}")
        ax.add_patch(arrow)
    ax.legend(
        handles=[
            Patch(facecolor=CACHED, edgecolor="black", label="cached: computed at earlier steps, kept"),
            Patch(facecolor=NEW, edgecolor="black", label="computed at this step, then appended"),
        ],
        loc="upper left",
        fontsize=8,
    )
    ax.set_title(
        f"Step {len(every)}: one new key and value, {len(tokens)} read from the cache\n"
        "(without it, every step recomputes all of them)",
        fontsize=10,
    )
    _blank(ax)
    ax.set_xlim(-0.2, len(every) + 0.2)
    ax.set_ylim(-0.8, 3.4)
    return fig


def speculative_round(gamma: int, accepted: int, draft_cost: float) -> Figure:
    """One round on a time axis (a target pass = 1): ``gamma`` draft passes of ``draft_cost``
    each, one target pass that checks every guess, then the tokens kept: the accepted
    guesses and the target's own next token; guesses after the first rejection are dropped."""
    if gamma < 1:
        raise ValueError(f"gamma must be at least 1, got {gamma}.")
    if not 0 <= accepted <= gamma:
        raise ValueError(f"accepted must be in [0, gamma] = [0, {gamma}], got {accepted}.")
    if not 0 < draft_cost <= 1:
        raise ValueError(f"draft_cost is a draft pass over a target pass, in (0, 1]; got {draft_cost}.")
    fig, ax = plt.subplots(figsize=(9, 3.0))
    for i in range(gamma):
        _box(ax, i * draft_cost, 1.2, draft_cost, 0.6, FROZEN, f"g{i + 1}", f"draft{i + 1}")
    start = gamma * draft_cost
    _box(ax, start, 1.2, 1.0, 0.6, CACHED, f"target checks\n{gamma + 1} positions", "verify")
    for i in range(gamma):
        color, mark = (KEPT, "kept") if i < accepted else (REJECTED, "no") if i == accepted else (DISCARDED, "–")
        _box(ax, i * draft_cost, 0.0, draft_cost, 0.6, color, mark, f"guess{i + 1}")
    _box(ax, start, 0.0, 0.5, 0.6, OWN, "+1", "own")
    ax.legend(
        handles=[
            Patch(facecolor=KEPT, edgecolor="black", label="guess the target agrees with"),
            Patch(facecolor=REJECTED, edgecolor="black", label="first disagreement"),
            Patch(facecolor=DISCARDED, edgecolor="black", label="dropped: after a disagreement"),
            Patch(facecolor=OWN, edgecolor="black", label="the target's own next token"),
        ],
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=8,
    )
    ax.text(-0.05, 1.5, "time →", ha="right", va="center", fontsize=9)
    ax.text(-0.05, 0.3, "tokens", ha="right", va="center", fontsize=9)
    cost = gamma * draft_cost + 1
    ax.set_title(
        f"One round (an example): γ = {gamma} guesses, {accepted} accepted → {accepted + 1} tokens\n"
        f"for {cost:.2f} target passes' time (a draft pass costs {draft_cost:.2f} of one)",
        fontsize=10,
    )
    _blank(ax)
    ax.set_xlim(-0.9, cost + 0.1)
    ax.set_ylim(-0.2, 2.0)
    return fig


def quantize_block(weights: Sequence[float], bits: int, symmetric: bool) -> tuple[np.ndarray, float, int]:
    """(integers, scale, zero point) of one block: symmetric absmax onto [−(2^(b−1)−1), 2^(b−1)−1]
    with zero point 0, or asymmetric min–max onto [0, 2^b − 1] with an integer zero point."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size < 2:
        raise ValueError(f"weights must be one block: a 1-D sequence of at least 2 values, got shape {w.shape}.")
    if bits not in (2, 3, 4, 8):
        raise ValueError(f"bits must be 2, 3, 4 or 8, got {bits}.")
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = float(np.abs(w).max()) / qmax or 1.0
        return np.clip(np.round(w / scale), -qmax - 1, qmax).astype(int), scale, 0
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    scale = (hi - lo) / (2**bits - 1) or 1.0
    zero = int(round(-lo / scale))
    return np.clip(np.round(w / scale) + zero, 0, 2**bits - 1).astype(int), scale, zero


def quant_block(weights: Sequence[float], bits: int = 4, symmetric: bool = True) -> Figure:
    """Top: a block's weights on the grid of values its ``bits`` can store (dots: the weights,
    crosses: what comes back). Bottom: how the block is stored, one cell per field, widths in bits."""
    q, scale, zero = quantize_block(weights, bits, symmetric)
    w = np.asarray(weights, dtype=np.float64)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 4.8), height_ratios=(3, 1.2))
    levels = (np.arange(-(2 ** (bits - 1)), 2 ** (bits - 1)) if symmetric else np.arange(2**bits) - zero) * scale
    for level in levels:
        top.axhline(level, color="lightgrey", lw=0.6, zorder=0)
    x = np.arange(w.size)
    top.scatter(x, w, s=14, color=CACHED, label="weight", zorder=2)
    top.scatter(x, (q - zero) * scale, s=22, marker="x", color=REJECTED, label="stored value", zorder=3)
    top.set_xlabel("position in the block")
    top.set_ylabel("value")
    top.legend(loc="upper right", fontsize=8)
    kind = "symmetric: no zero point" if symmetric else f"asymmetric: zero point {zero}"
    top.set_title(f"One block of {w.size} weights at {bits} bits ({2**bits} levels, {kind})")
    fields = [("scale", 16, "fp16 scale")] + ([] if symmetric else [("zero", bits, "zp")])
    fields += [(f"q{i}", bits, str(v)) for i, v in enumerate(q)]
    x0 = 0.0
    for gid, width, label in fields:
        color = FROZEN if gid in ("scale", "zero") else TRAINED
        _box(bottom, x0, 0, width, 1, color, label if width >= 4 or gid == "zero" else "", gid, size=7)
        x0 += width
    per_weight = x0 / w.size
    bottom.set_title(f"Stored: {x0:.0f} bits for {w.size} weights = {per_weight:.3g} bits per weight", fontsize=10)
    bottom.set_xlim(0, x0)
    bottom.set_ylim(0, 1)
    bottom.axis("off")
    fig.tight_layout()
    return fig
