"""Checks for lab 03 (fine-tuning): LoRA's trainable parameters, its forward pass checked
against peft, target modules under a budget, early stopping on a real (tiny) training curve,
QLoRA's base memory, a hyperparameter grid, merging, a paired bootstrap, and, on the course
model itself (in ``real``), a LoRA adapter trained for a few steps and its merge,
checked for parity."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...finetune.artifacts import merge_with_parity
from ...finetune.grid import expand_grid as course_expand_grid
from ...finetune.methods import MLP, lora_parameter_count
from ...uncertainty import bootstrap_interval, paired_difference, resampled_means
from .. import Exercise, Result, close, incorrect, is_number, learner_answer
from ..checks import fresh_rng, fresh_seed
from .quiz import QUIZ as QUIZ  # the lab's quiz, rendered at its end
from .quiz import early_stop as reference_early_stop  # one walk of a curve, for q4 and quiz 4
from .real import TARGET_BUDGET, LoraOnCourseModel, MergeOnCourseModel  # q3's budget: q9 keeps to it

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
    course_twins = (_peft_lora_layer,)
    hint_text = (
        "A Linear computes x @ W.T + bias. LoRA adds the low-rank path x @ A.T @ B.T, scaled by alpha / r, "
        "where r = A.shape[0]."
    )

    def check_value(self, lora_forward: Any) -> Result | None:
        g = torch.Generator().manual_seed(fresh_seed())  # hidden weights and shapes, new at every attempt
        for rank, alpha in (
            (int(r), float(a)) for r, a in zip(torch.randint(1, 9, (3,), generator=g), (8, 2, 32), strict=True)
        ):
            out_f, in_f = (int(n) for n in torch.randint(6, 20, (2,), generator=g))
            w, bias = torch.randn(out_f, in_f, generator=g), torch.randn(out_f, generator=g)
            a, b = torch.randn(rank, in_f, generator=g), torch.randn(out_f, rank, generator=g)
            x = torch.randn(3, 5, in_f, generator=g)
            got = lora_forward(x, w, bias, a, b, alpha)
            if not isinstance(got, torch.Tensor):
                return incorrect(f"`lora_forward` should return a torch.Tensor, got {type(got).__name__}.")
            with torch.no_grad():
                expected = _peft_lora_layer(w, bias, a, b, alpha)(x)
            if got.shape != expected.shape:
                return incorrect(
                    f"Output shape {tuple(got.shape)}: it should be the input's, with the layer's outputs last."
                )
            if close(got.detach(), x @ w.T + bias, rtol=1e-4, atol=1e-4) is None:
                return incorrect("`lora_forward` gives the base layer's output alone: the low-rank path is missing.")
            if close(got.detach(), x @ w.T + bias + x @ a.T @ b.T, rtol=1e-4, atol=1e-4) is None and alpha != rank:
                return incorrect("`lora_forward` adds the low-rank path unscaled: LoRA scales it by alpha / r.")
            if wrong := close(got.detach(), expected, rtol=1e-4, atol=1e-4, name=f"rank {rank}, alpha {alpha}"):
                return incorrect(f"{wrong.message}, compared with peft's LoRA layer: is the scale alpha / r?")
        return None


class CountLoraParams(Lab03Exercise):
    name, title, tier, var = "q1", "Trainable parameters of a LoRA adapter", "warm-up", "count_lora_params"
    hint_text = (
        "Each targeted layer gets A (rank × in) and B (out × rank): rank × (in + out) parameters. "
        "Sum over the targets, then multiply by the number of decoder layers."
    )

    course_twins = (lora_parameter_count, lora_params)

    def check_value(self, count_lora_params: Any) -> Result | None:
        rng = fresh_rng()  # hidden ranks, depths and targets, new at every attempt
        names = list(SMOLLM2_135M_LINEARS)
        for _ in range(3):
            rank, layers = int(rng.choice([1, 2, 4, 8, 16, 32])), int(rng.integers(1, 40))
            targets = [str(t) for t in rng.choice(names, int(rng.integers(1, len(names) + 1)), replace=False)]
            got = count_lora_params(SMOLLM2_135M_LINEARS, layers, rank, targets)
            expected = lora_params(SMOLLM2_135M_LINEARS, layers, rank, targets)
            name = f"count_lora_params(..., {layers}, {rank}, {targets})"
            if wrong := is_number(got, name=name):
                return wrong
            if close(got, expected / layers, rtol=1e-9) is None and layers > 1:
                return incorrect(f"`{name}` counts one layer; every decoder layer gets its own adapter.")
            if wrong := close(got, expected, name=name):
                return incorrect(f"{wrong.message}: what shapes do A and B have for one targeted layer?")
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


class EarlyStop(Lab03Exercise):
    name, title, tier, var = "q4", "Early stopping on a validation curve", "core", "early_stop"
    course_twins = (reference_early_stop,)
    hint_text = (
        "Walk the curve once, remembering the best loss so far and how many evaluations have passed without "
        "beating it. What happens to that count when a new best arrives?"
    )

    @staticmethod
    def curves(rng: Any) -> list[tuple[list[float], int]]:
        """Hidden validation curves, drawn at every attempt: noisy descents that level off, one that
        never stops early, one flat (equal is not better)."""
        cases = []
        for _ in range(4):
            n = int(rng.integers(6, 14))
            trend = 3.0 * np.exp(-np.arange(n) / rng.uniform(1.5, 4)) + rng.uniform(0.5, 1.5)
            losses = np.round(trend + rng.normal(0, 0.08, n) + np.linspace(0, rng.uniform(0, 0.6), n), 2)
            cases.append(([float(v) for v in losses], int(rng.integers(1, 4))))
        patience = int(rng.integers(1, 4))  # a late dip after the stop: patience is a bet, and the run never sees it
        plateau = round(float(rng.uniform(1.0, 2.0)), 2)
        dip = [3.0, 2.4, plateau, *(round(plateau + 0.01 * (i + 1), 2) for i in range(patience + 1)), plateau - 0.5]
        cases.append(([round(3.0 - 0.1 * i, 2) for i in range(int(rng.integers(4, 8)))], 2))  # never stops early
        cases.append(([1.0] * int(rng.integers(3, 6)), 1))  # equal is not better
        return [(dip, patience), *(cases[i] for i in rng.permutation(len(cases)))]  # the dip first: it tells most

    def check_value(self, early_stop: Any) -> Result | None:
        for losses, patience in self.curves(fresh_rng()):
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
        rng = fresh_rng()  # hidden depths, sizes and blocks, new at every attempt
        cases = []
        for _ in range(2):
            n_layers = int(rng.integers(4, 40))
            linear = n_layers * sum(i * o for i, o in SMOLLM2_135M_LINEARS.values())
            cases.append((n_layers, linear + int(rng.integers(10**6, 10**8)), int(rng.choice([16, 32, 64, 128]))))
        for n_layers, n_params, block in (*cases, (30, N_PARAMS, 64)):
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
            if close(got, want * 2**20 / 10**6, rtol=1e-4) is None:
                return incorrect(f"`{name}` is in MB (10**6 bytes); a MiB is 2**20 bytes.")
            if wrong := close(got, want, rtol=1e-4, name=name):
                return incorrect(f"{wrong.message}: which parameters are linear weights of the blocks?")
        return None


class ExpandGrid(Lab03Exercise):
    name, title, tier, var = "q6", "Expand a hyperparameter grid", "core", "expand_grid"
    hint_text = "Every value of one key meets every value of every other key: itertools has a tool for that."
    course_twins = (course_expand_grid,)
    VALUES = {
        "rank": [2, 4, 8, 16, 32],
        "lr": [1e-4, 2e-4, 3e-4, 5e-4, 1e-3],
        "alpha": [8, 16, 32],
        "epochs": [1, 2, 3],
        "targets": [["q_proj"], ["q_proj", "v_proj"], ["down_proj"]],
    }

    def grids(self, rng: Any) -> list[dict[str, list[Any]]]:
        """Hidden grids, drawn at every attempt: two to four keys, one to three values each."""
        grids = []
        for n_keys in (2, int(rng.integers(2, 5)), int(rng.integers(3, 5))):
            keys = [str(k) for k in rng.choice(list(self.VALUES), n_keys, replace=False)]
            picks = {k: rng.choice(len(self.VALUES[k]), int(rng.integers(1, 4)), replace=False) for k in keys}
            grids.append({k: [self.VALUES[k][i] for i in sorted(picks[k])] for k in keys})
        for key in grids[0]:  # two keys of two or three values each: pairing them up shows
            picked = rng.choice(len(self.VALUES[key]), int(rng.integers(2, 4)), replace=False)
            grids[0][key] = [self.VALUES[key][i] for i in sorted(picked)]
        return grids

    def check_value(self, expand_grid: Any) -> Result | None:
        for grid in self.grids(fresh_rng()):
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
                return incorrect(f"`{name}` does not hold each combination of the grid's values exactly once.")
        return None


class MergeLora(Lab03Exercise):
    name, title, tier, var = "q7", "Merge an adapter into the weight", "stretch", "merge_lora"
    hint_text = "The merged weight must give x @ W'.T = x @ W.T + (alpha/r) · x @ A.T @ B.T for every x."

    course_twins = (merge_with_parity,)

    def check_value(self, merge_lora: Any) -> Result | None:
        g = torch.Generator().manual_seed(fresh_seed())  # hidden weights and shapes, new at every attempt
        out_f, in_f, rank = (int(n) for n in torch.randint(3, 16, (3,), generator=g))
        w, bias = torch.randn(out_f, in_f, generator=g), torch.zeros(out_f)
        a, b = torch.randn(rank, in_f, generator=g), torch.randn(out_f, rank, generator=g)
        alpha = float(torch.randint(1, 33, (1,), generator=g))
        got = merge_lora(w, a, b, alpha)
        if not isinstance(got, torch.Tensor) or got.shape != w.shape:
            return incorrect(f"`merge_lora` should return a tensor shaped like the weight, {tuple(w.shape)}.")
        layer = _peft_lora_layer(w, bias, a, b, alpha)
        layer.merge()
        if close(got, w + b @ a, rtol=1e-4, atol=1e-4) is None and alpha != rank:
            return incorrect("the merged weight adds B·A unscaled: the adapter's path is scaled by alpha / r.")
        if wrong := close(got, layer.base_layer.weight.detach(), rtol=1e-4, atol=1e-4, name="merged weight"):
            return incorrect(f"{wrong.message}, compared with peft's merge.")
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

    course_twins = (bootstrap_interval, paired_difference, resampled_means)

    def check_value(self, paired_interval: Any) -> Result | None:
        rng = fresh_rng()  # hidden scores, new at every attempt
        for n in (int(n) for n in rng.integers(20, 70, 3)):
            a, b = _paired_case(n, int(rng.integers(2**31)))
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
                return incorrect(f"`{name}`: the estimate is not the mean of a − b over the tickets.")
            width = want.high - want.low
            if high - low > 2 * width:
                return incorrect(
                    f"`{name}` is what resampling the two models' tickets separately gives. Pairing draws the "
                    "same tickets for both."
                )
            if abs(low - want.low) > self.TOLERANCE * width or abs(high - want.high) > self.TOLERANCE * width:
                return incorrect(
                    f"`{name}` is not the paired bootstrap's 95 % interval, within its resampling noise: which "
                    "quantiles of the resampled means bound 95 %?"
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
    LoraOnCourseModel,
    MergeOnCourseModel,
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
