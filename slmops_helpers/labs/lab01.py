"""Checks for lab 01 (introduction): footprint, pruning, sparse storage, fleet fit."""

from __future__ import annotations

from typing import Any

import torch

from ..compress import prune_weight
from ..fleet import model_ram_mib
from ..models import MIB, PRESETS, weight_bytes
from . import Exercise, Result, close, incorrect, is_number
from .quiz01 import QUIZ as QUIZ  # the lab's quiz, rendered at its end

PRECISIONS = ("fp32", "fp16", "int8", "int4")


class Lab01Exercise(Exercise):
    """An exercise of lab 01; ``qN.solution()`` shows its answer from this source notebook."""

    notebook = "01_introduction.ipynb"  # in labs/source/


class FootprintMiB(Lab01Exercise):
    name, title, tier, var = "q1", "Footprint from parameters and precision", "warm-up", "footprint_mib"
    hint_text = (
        "Bytes per weight: fp32 4, fp16 2, int8 1, int4 0.5. Multiply by n_params, then divide by 2**20 for MiB."
    )

    def check_value(self, footprint_mib: Any) -> Result | None:
        for n_params in (1_000_000, 134_515_008):
            for precision in PRECISIONS:
                got = footprint_mib(n_params, precision)
                wrong = is_number(got, name=f"footprint_mib({n_params:_}, {precision!r})") or close(
                    got, weight_bytes(n_params, precision) / MIB, name=f"footprint_mib({n_params:_}, {precision!r})"
                )
                if wrong:
                    return wrong
        return None


class MagnitudePrune(Lab01Exercise):
    name, title, tier, var = "q2", "Magnitude pruning of one weight matrix", "core", "magnitude_prune"
    hint_text = (
        "Count how many entries to zero: k = round(sparsity * w.numel()). The k smallest |w| go: "
        "w.abs().flatten().argsort()[:k] gives their positions; zero them in a copy (w.clone())."
    )

    def check_value(self, magnitude_prune: Any) -> Result | None:
        w = torch.randn(16, 24, generator=torch.Generator().manual_seed(1))
        original = w.clone()
        for s in (0.0, 0.5, 0.9):
            got = magnitude_prune(w, s)
            if not isinstance(got, torch.Tensor):
                return incorrect(f"`magnitude_prune` should return a torch.Tensor, got {type(got).__name__}.")
            if not torch.equal(w, original):
                return incorrect("`magnitude_prune` changed its input; prune a copy (w.clone()).")
            if wrong := close(got, prune_weight(w, s), name=f"magnitude_prune(w, {s})"):
                return incorrect(
                    wrong.message + " Are the zeroed entries the smallest |w|, and exactly round(sparsity·n) of them?"
                )
        return None


class CsrBreakEven(Lab01Exercise):
    name, title, tier, var = "q3", "When does sparse storage pay off?", "core", "csr_break_even"
    hint_text = (
        "Dense: n·value_bytes. CSR (ignore the small row-pointer array): (1−s)·n·(value_bytes + index_bytes). "
        "Set them equal and solve for the sparsity s."
    )

    def check_value(self, csr_break_even: Any) -> Result | None:
        for value_bytes, index_bytes in ((4, 4), (2, 4), (1, 2), (0.5, 2)):
            got = csr_break_even(value_bytes, index_bytes)
            name = f"csr_break_even({value_bytes}, {index_bytes})"
            if wrong := is_number(got, name=name) or close(got, index_bytes / (value_bytes + index_bytes), name=name):
                return wrong
        return None


class LargestOnTablet(Lab01Exercise):
    name, title, tier, var = "q4", "Largest preset that fits a tablet at int4", "core", "largest_on_tablet"
    hint_text = (
        "A tablet has 4 GiB (4096 MiB) of RAM and lets the assistant use 25% of it. "
        "fleet.model_ram_mib(n_params, 'int4') gives what a model needs; loop over models.PRESETS "
        "(params_millions × 1e6) and keep the largest that fits."
    )

    def check_value(self, largest_on_tablet: Any) -> Result | None:
        if largest_on_tablet not in PRESETS:
            return incorrect(
                f"`largest_on_tablet` should be a preset name from models.PRESETS, got {largest_on_tablet!r}."
            )
        fits = [p for p in PRESETS.values() if model_ram_mib(int(p.params_millions * 1e6), "int4") <= 1024]
        chosen = PRESETS[largest_on_tablet]
        if chosen not in fits:
            return incorrect(f"{largest_on_tablet} needs more than the tablet's 1024 MiB budget at int4.")
        if chosen.params_millions < max(p.params_millions for p in fits):
            return incorrect(f"{largest_on_tablet} fits, but a larger preset fits too.")
        return None


class Int4BytesPerWeight(Lab01Exercise):
    name, title, tier, var = "q5", "The real cost of int4: scales included", "stretch", "int4_bytes_per_weight"
    hint_text = (
        "Each weight takes 4 bits = 0.5 bytes; each group of group_size weights also stores one scale of scale_bytes."
    )

    def check_value(self, int4_bytes_per_weight: Any) -> Result | None:
        for group_size, scale_bytes in ((32, 2), (128, 2), (64, 4)):
            got = int4_bytes_per_weight(group_size, scale_bytes)
            name = f"int4_bytes_per_weight({group_size}, {scale_bytes})"
            if wrong := is_number(got, name=name) or close(got, 0.5 + scale_bytes / group_size, name=name):
                return wrong
        return None


EXERCISES = [FootprintMiB, MagnitudePrune, CsrBreakEven, LargestOnTablet, Int4BytesPerWeight]
