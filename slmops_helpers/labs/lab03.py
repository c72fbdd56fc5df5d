"""Checks for lab 03 (fine-tuning): LoRA's trainable parameters, its forward pass checked
against peft, target modules under a budget, early stopping on a real (tiny) training curve,
QLoRA's base memory, a hyperparameter grid, merging, and a paired bootstrap."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from ..uncertainty import bootstrap_interval
from . import Exercise, Result, close, incorrect, is_number, learner_answer
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
N_PARAMS = 134_515_008  # q5: SmolLM2-135M's parameters (the tied embedding counted once)
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
    name, title, tier, var = "q2", "A LoRA forward pass", "core", "lora_forward"
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
    name, title, tier, var = "q1", "Trainable parameters of a LoRA adapter", "warm-up", "count_lora_params"
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
    name, title, tier, var = "q3", "Pick target modules under a budget", "core", None
    hint_text = (
        "Price each module alone first: count_lora_params with a one-name list, at rank 8. Then combine "
        "attention and MLP projections and add up what they cost."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        my_targets = learner_answer(ns, "my_targets")
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
        claimed = learner_answer(ns, "targets_cost")  # the justification: a guessed list alone cannot pass
        if wrong := is_number(claimed, name="targets_cost"):
            return wrong
        if claimed != cost:
            return incorrect(
                "`targets_cost` is not what your targets train at rank 8 over every layer: compute it with "
                "count_lora_params."
            )
        if cost > TARGET_BUDGET:
            return incorrect(f"These targets add {cost:,} parameters at rank 8, over the {TARGET_BUDGET:,} budget.")
        if not set(my_targets) & set(MLP):
            return incorrect("Within budget, but no MLP projection is adapted; the task asks for at least one.")
        if not set(my_targets) - set(MLP):
            return incorrect("Within budget, but no attention projection is adapted; the task asks for both kinds.")
        return None


def reference_early_stop(val_losses: list[float], patience: int) -> tuple[int, int]:
    """(best evaluation, evaluation at which training stops): stop after ``patience`` without a new best."""
    best, waited = 0, 0
    for i in range(1, len(val_losses)):
        if val_losses[i] < val_losses[best]:
            best, waited = i, 0
        else:
            waited += 1
        if waited == patience:
            return best, i
    return best, len(val_losses) - 1


class EarlyStop(Lab03Exercise):
    name, title, tier, var = "q4", "Early stopping on a validation curve", "core", "early_stop"
    hint_text = (
        "Walk the curve once, remembering the best loss so far and how many evaluations have passed without "
        "beating it. What happens to that count when a new best arrives?"
    )
    CURVES = (
        ([2.0, 1.7, 1.6, 1.65, 1.62, 1.7, 1.5], 2),
        ([3.0, 2.5, 2.2, 2.1, 2.05, 2.0], 2),  # never stops early
        ([1.0, 1.1, 0.9, 0.95, 0.97, 0.96, 0.8], 3),
        ([1.0, 1.0, 1.0, 1.0], 1),  # equal is not better
        ([5.0, 4.0, 4.5, 3.0, 3.5, 3.6, 3.7, 2.0], 3),
    )

    def check_value(self, early_stop: Any) -> Result | None:
        for losses, patience in self.CURVES:
            got = early_stop(list(losses), patience)
            name = f"early_stop({losses}, patience={patience})"
            if not (isinstance(got, tuple | list) and len(got) == 2):
                return incorrect(f"`early_stop` should return a pair (best_index, stop_index), got {got!r}.")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in got):
                return incorrect(f"`{name}` should be two ints (evaluation indices), got {got!r}.")
            best, stop = reference_early_stop(list(losses), patience)
            if tuple(got) == (stop, best) != (best, stop):
                return incorrect(f"`{name}`: the pair is in the wrong order; return (best_index, stop_index).")
            if got[0] != best:
                return incorrect(f"`{name}`: best_index {got[0]} is not the evaluation with the lowest loss seen.")
            if got[1] != stop:
                return incorrect(
                    f"`{name}`: stop_index {got[1]} is not where {patience} evaluation(s) without a new best end "
                    "the run (or the last one, when that never happens)."
                )
        return None


class QLoRABaseMemory(Lab03Exercise):
    name, title, tier, var = "q5", "QLoRA's frozen base, in MiB", "core", "qlora_base_mib"
    hint_text = (
        "Split the parameters into the decoder blocks' linear weights and everything else. Only the first kind "
        "is stored in NF4, and each of their blocks carries its own scale too."
    )

    def check_value(self, qlora_base_mib: Any) -> Result | None:
        for n_layers, n_params, block in ((30, N_PARAMS, 64), (30, N_PARAMS, 32), (12, 60_000_000, 64)):
            got = qlora_base_mib(SMOLLM2_135M_LINEARS, n_layers, n_params, block)
            name = f"qlora_base_mib(..., n_layers={n_layers}, n_params={n_params:_}, block={block})"
            if wrong := is_number(got, name=name):
                return wrong
            linear = n_layers * sum(i * o for i, o in SMOLLM2_135M_LINEARS.values())
            want = (linear * (0.5 + 4 / block) + (n_params - linear) * 4) / 2**20
            if close(got, n_params * (0.5 + 4 / block) / 2**20, rtol=1e-4) is None:
                return incorrect(f"`{name}` quantizes every parameter; the embedding and the norms stay in fp32.")
            if close(got, (linear * 0.5 + (n_params - linear) * 4) / 2**20, rtol=1e-4) is None:
                return incorrect(f"`{name}` forgets the fp32 scale (absmax) that every block of NF4 weights stores.")
            if wrong := close(got, want, rtol=1e-4, name=name):
                return incorrect(f"{wrong.message}. Which parameters are linear weights of the blocks?")
        return None


class ExpandGrid(Lab03Exercise):
    name, title, tier, var = "q6", "Expand a hyperparameter grid", "core", "expand_grid"
    hint_text = "Every value of one key meets every value of every other key: itertools has a tool for that."
    GRIDS = (
        {"rank": [4, 8], "lr": [1e-4, 3e-4, 1e-3]},
        {"rank": [8], "alpha": [16], "targets": [["q_proj"], ["q_proj", "v_proj"]]},
        {"lr": [2e-4, 5e-4], "epochs": [1, 2], "rank": [4, 16]},
    )

    def check_value(self, expand_grid: Any) -> Result | None:
        for grid in self.GRIDS:
            got = expand_grid({k: list(v) for k, v in grid.items()})
            name = f"expand_grid({grid})"
            if not isinstance(got, list) or not all(isinstance(run, dict) for run in got):
                return incorrect(f"`{name}` should be a list of dicts, one per run, got {type(got).__name__}.")
            want = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
            if any(set(run) != set(grid) for run in got):
                return incorrect(f"`{name}`: every run should set every key of the grid, {list(grid)}.")
            if len(got) == min(len(v) for v in grid.values()) < len(want):
                return incorrect(f"`{name}` pairs the values up; a grid combines every value with every other.")
            if len(got) != len(want) or any(run not in got for run in want):
                return incorrect(f"`{name}` has {len(got)} runs; the grid has {len(want)} distinct combinations.")
        return None


class MergeLora(Lab03Exercise):
    name, title, tier, var = "q7", "Merge an adapter into the weight", "stretch", "merge_lora"
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


def _paired_case(n: int, seed: int) -> tuple[list[float], list[float]]:
    """Two models' per-ticket scores that move together (as two models on the same tickets do)."""
    g = torch.Generator().manual_seed(seed)
    a = (100 * torch.rand(n, generator=g)).round()
    b = (a - 3 + 6 * torch.randn(n, generator=g)).clamp(0, 100).round()
    return a.tolist(), b.tolist()


class PairedBootstrap(Lab03Exercise):
    name, title, tier, var = "q8", "Is a difference inside the noise? A paired bootstrap", "stretch", "paired_interval"
    hint_text = (
        "Both models answered the same tickets, so resample tickets, not scores: draw ticket indices with "
        "replacement, and take the mean of a − b over each draw. Which quantiles of those means bound 95 %?"
    )
    RESAMPLES = 10_000
    TOLERANCE = 0.05  # of the interval's width: 10,000 resamples move a bound by about 1 % of it

    def check_value(self, paired_interval: Any) -> Result | None:
        for n, seed in ((40, 1), (24, 2), (60, 3)):
            a, b = _paired_case(n, seed)
            got = paired_interval(list(a), list(b), resamples=self.RESAMPLES, seed=0)
            name = f"paired_interval(a, b) on {n} tickets"
            if not (isinstance(got, tuple | list) and len(got) == 3):
                return incorrect(f"`paired_interval` should return (estimate, low, high), got {got!r}.")
            for label, value in zip(("estimate", "low", "high"), got, strict=True):
                if wrong := is_number(value, name=f"{name}'s {label}"):
                    return wrong
            estimate, low, high = (float(v) for v in got)
            want = bootstrap_interval([x - y for x, y in zip(a, b, strict=True)], resamples=self.RESAMPLES)
            if close(estimate, -want.estimate, rtol=1e-6) is None and want.estimate != 0:
                return incorrect(f"`{name}`: the estimate has the wrong sign; the question is a − b.")
            if close(estimate, want.estimate, rtol=1e-6) is not None:
                return incorrect(f"`{name}`: the estimate {estimate:.2f} is not the mean of a − b over the tickets.")
            width = want.high - want.low
            if high - low > 2 * width:
                return incorrect(
                    f"`{name}`: the interval is {high - low:.1f} points wide, more than twice a paired one. Did you "
                    "resample the two models' tickets separately? Pairing draws the same tickets for both."
                )
            if high - low < (1 - 4 * self.TOLERANCE) * width:
                return incorrect(f"`{name}`: the interval is too narrow for 95 %: which quantiles did you take?")
            if abs(low - want.low) > self.TOLERANCE * width or abs(high - want.high) > self.TOLERANCE * width:
                return incorrect(
                    f"`{name}`: ({low:.2f}, {high:.2f}) is off the paired bootstrap's 95 % interval by more than "
                    "its resampling noise. Are you taking the 2.5 % and 97.5 % quantiles of the resampled means?"
                )
        return None


EXERCISES = [
    CountLoraParams,
    LoraForward,
    PickTargets,
    EarlyStop,
    QLoRABaseMemory,
    ExpandGrid,
    MergeLora,
    PairedBootstrap,
]


def _pattern_sequences(n: int, length: int, g: torch.Generator, vocab: int, noise: float) -> torch.Tensor:
    """Sequences that follow next = 3·prev + 1 (mod vocab), with a share ``noise`` of random tokens."""
    rows = []
    for _ in range(n):
        row = [int(torch.randint(0, vocab, (1,), generator=g))]
        for _ in range(length - 1):
            follow = float(torch.rand(1, generator=g)) >= noise
            row.append((row[-1] * 3 + 1) % vocab if follow else int(torch.randint(0, vocab, (1,), generator=g)))
        rows.append(row)
    return torch.tensor(rows)


def tiny_lora_curve(steps: int = 40, lr: float = 0.02, seed: int = 0) -> tuple[list[float], list[float]]:
    """Train LoRA on a tiny random Llama for ``steps`` steps on 4 sequences; return (train, validation) losses.

    Four training sequences, many times over, at a high learning rate: the training loss keeps falling
    while the validation loss (32 other sequences of the same pattern) levels off and turns up, the
    overfitting of section 3.3 in a few seconds on a CPU.
    """
    from peft import LoraConfig, get_peft_model  # heavy imports, only when the lab trains
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    config = LlamaConfig(
        vocab_size=32,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"])
    with warnings.catch_warnings():  # peft's FutureWarning about a transformers rename: not the learner's concern
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(LlamaForCausalLM(config), lora)
    train, val = _pattern_sequences(4, 24, g, 32, 0.3), _pattern_sequences(32, 24, g, 32, 0.3)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    train_losses, val_losses = [], []
    for _ in range(steps):
        model.train()
        loss = model(input_ids=train, labels=train).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            val_losses.append(float(model(input_ids=val, labels=val).loss))
        train_losses.append(loss.item())
    return train_losses, val_losses
