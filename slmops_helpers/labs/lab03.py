"""Checks for lab 03 (fine-tuning): a LoRA forward pass checked against peft, counting
LoRA's trainable parameters, choosing target modules under a budget, and merging."""

from __future__ import annotations

from typing import Any

import torch

from . import Exercise, Result, close, incorrect, is_number
from .quiz03 import QUIZ as QUIZ  # the lab's quiz, rendered at its end

# SmolLM2-135M's linear layers, (in_features, out_features), and its depth: the numbers a
# learner reads off `model.config` (hidden 576, 3 KV heads of 64, MLP 1536, 30 layers).
SMOLLM2_135M_LINEARS = {
    "q_proj": (576, 576),
    "k_proj": (576, 192),
    "v_proj": (576, 192),
    "o_proj": (576, 576),
    "gate_proj": (576, 1536),
    "up_proj": (576, 1536),
    "down_proj": (1536, 576),
}
SMOLLM2_135M_LAYERS = 30
TARGET_BUDGET = 1_000_000  # q3: LoRA parameters allowed at rank 8
MLP = ("gate_proj", "up_proj", "down_proj")


def _peft_lora_layer(weight: torch.Tensor, bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float) -> Any:
    """A peft LoRA Linear with the given weights: the reference the learner's code is checked against."""
    from peft import LoraConfig, get_peft_model

    rank, (out_f, in_f) = a.shape[0], weight.shape

    class One(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(in_f, out_f)

    model = One()
    with torch.no_grad():
        model.proj.weight.copy_(weight)
        model.proj.bias.copy_(bias)
    wrapped = get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=["proj"]))
    layer = wrapped.base_model.model.proj
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(a)
        layer.lora_B["default"].weight.copy_(b)
    return layer.eval()


def lora_params(shapes: dict[str, tuple[int, int]], n_layers: int, rank: int, targets: list[str]) -> int:
    return n_layers * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)


class Lab03Exercise(Exercise):
    """An exercise of lab 03; ``qN.solution()`` shows its answer from this source notebook."""

    notebook = "03_fine_tuning.ipynb"  # in labs/source/


class LoraForward(Lab03Exercise):
    name, title, tier, var = "q1", "A LoRA forward pass", "core", "lora_forward"
    hint_text = (
        "A Linear computes x @ W.T + bias. LoRA adds the low-rank path x @ A.T @ B.T, scaled by alpha / r, "
        "where r = A.shape[0]."
    )

    def check_value(self, lora_forward: Any) -> Result | None:
        g = torch.Generator().manual_seed(3)
        for rank, alpha in ((4, 8), (2, 2), (8, 32)):
            w, bias = torch.randn(12, 10, generator=g), torch.randn(12, generator=g)
            a, b = torch.randn(rank, 10, generator=g), torch.randn(12, rank, generator=g)
            x = torch.randn(3, 5, 10, generator=g)
            got = lora_forward(x, w, bias, a, b, alpha)
            if not isinstance(got, torch.Tensor):
                return incorrect(f"`lora_forward` should return a torch.Tensor, got {type(got).__name__}.")
            with torch.no_grad():
                expected = _peft_lora_layer(w, bias, a, b, alpha)(x)
            if got.shape != expected.shape:
                return incorrect(f"Output shape {tuple(got.shape)}, expected {tuple(expected.shape)}.")
            if wrong := close(got.detach(), expected, rtol=1e-4, atol=1e-4, name=f"rank {rank}, alpha {alpha}"):
                return incorrect(wrong.message + " Compared with peft's LoRA layer. Is the scale alpha / r?")
        return None


class CountLoraParams(Lab03Exercise):
    name, title, tier, var = "q2", "Trainable parameters of a LoRA adapter", "warm-up", "count_lora_params"
    hint_text = (
        "Each targeted layer gets A (rank × in) and B (out × rank): rank × (in + out) parameters. "
        "Sum over the targets, then multiply by the number of decoder layers."
    )

    def check_value(self, count_lora_params: Any) -> Result | None:
        cases = [(8, ["q_proj", "v_proj"]), (4, ["q_proj", "k_proj", "v_proj", "o_proj"]), (16, ["down_proj"])]
        for rank, targets in cases:
            got = count_lora_params(SMOLLM2_135M_LINEARS, SMOLLM2_135M_LAYERS, rank, targets)
            expected = lora_params(SMOLLM2_135M_LINEARS, SMOLLM2_135M_LAYERS, rank, targets)
            if wrong := is_number(got, name=f"rank {rank}, {targets}") or close(got, expected, name=f"{targets}"):
                return wrong
        return None


class PickTargets(Lab03Exercise):
    name, title, tier, var = "q3", "Pick target modules under a budget", "core", "my_targets"
    hint_text = (
        "At rank 8 over 30 layers: q/o cost 276,480 each, k/v 184,320 each, gate/up/down 506,880 each. "
        "You need one MLP projection and can spend at most 1,000,000."
    )

    def check_value(self, my_targets: Any) -> Result | None:
        if not isinstance(my_targets, list | tuple) or not my_targets:
            return incorrect("`my_targets` should be a non-empty list of module names such as 'q_proj'.")
        unknown = [t for t in my_targets if t not in SMOLLM2_135M_LINEARS]
        if unknown:
            return incorrect(
                f"{unknown} are not linear layers of SmolLM2; use names from {list(SMOLLM2_135M_LINEARS)}."
            )
        if len(set(my_targets)) != len(my_targets):
            return incorrect("A module is listed twice.")
        cost = lora_params(SMOLLM2_135M_LINEARS, SMOLLM2_135M_LAYERS, 8, list(my_targets))
        if cost > TARGET_BUDGET:
            return incorrect(f"These targets add {cost:,} parameters at rank 8, over the {TARGET_BUDGET:,} budget.")
        if not set(my_targets) & set(MLP):
            return incorrect("Within budget, but no MLP projection is adapted; the task asks for at least one.")
        if not set(my_targets) - set(MLP):
            return incorrect("Within budget, but no attention projection is adapted; the task asks for both kinds.")
        return None


class MergeLora(Lab03Exercise):
    name, title, tier, var = "q4", "Merge an adapter into the weight", "stretch", "merge_lora"
    hint_text = "The merged weight must give x @ W'.T = x @ W.T + (alpha/r) · x @ A.T @ B.T for every x."

    def check_value(self, merge_lora: Any) -> Result | None:
        g = torch.Generator().manual_seed(4)
        w, bias = torch.randn(12, 10, generator=g), torch.zeros(12)
        a, b = torch.randn(4, 10, generator=g), torch.randn(12, 4, generator=g)
        got = merge_lora(w, a, b, 16)
        if not isinstance(got, torch.Tensor) or got.shape != w.shape:
            return incorrect(f"`merge_lora` should return a tensor shaped like the weight, {tuple(w.shape)}.")
        layer = _peft_lora_layer(w, bias, a, b, 16)
        layer.merge()
        if wrong := close(got, layer.base_layer.weight.detach(), rtol=1e-4, atol=1e-4, name="merged weight"):
            return incorrect(wrong.message + " Compared with peft's merge.")
        return None


EXERCISES = [LoraForward, CountLoraParams, PickTargets, MergeLora]
