"""Checks for lab 01 (introduction): footprint, the two speeds, the floor, pruning, sparse
storage, fleet fit, the real bytes of int4, and a model's parameters from its config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..compress import prune_weight
from ..decoding import TimedGeneration, speed_summary
from ..distill import count_config_parameters
from ..fleet import model_ram_mib
from ..models import MIB, PRESETS, weight_bytes
from . import Exercise, Result, close, incorrect, is_number, learner_answer
from .quiz01 import QUIZ as QUIZ  # the lab's quiz, rendered at its end

PRECISIONS = ("fp32", "fp16", "int8", "int4")
TABLET_BUDGET_MIB = 4096 * 0.25  # q6: the course fleet's tablet (4 GiB) and the assistant's share of it


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


class SpeedSummary(Lab01Exercise):
    name, title, tier, var = "q2", "The two speeds from raw timings", "core", "summarize_speed"
    hint_text = (
        "The first token's time includes reading the prompt: report it alone, in ms. Every later token is one "
        "forward pass: tokens per second counts those tokens over their total time; the percentiles describe "
        "their spread (numpy's np.percentile)."
    )
    KEYS = ("ttft_ms", "tok_s", "ms_per_token_p50", "ms_per_token_p95")  # the course's metric names

    def check_value(self, summarize_speed: Any) -> Result | None:
        g = torch.Generator().manual_seed(11)
        for n in (5, 12, 40):
            ttft = 0.2 + float(torch.rand(1, generator=g))
            token_s = (0.02 + 0.05 * torch.rand(n, generator=g) ** 4).tolist()
            got = summarize_speed(ttft, token_s)
            if not isinstance(got, Mapping):
                return incorrect(
                    f"`summarize_speed` should return a dict with keys {list(self.KEYS)}, got {type(got).__name__}."
                )
            if missing := [k for k in self.KEYS if k not in got]:
                return incorrect(f"`summarize_speed`'s dict is missing {missing}.")
            want = speed_summary([TimedGeneration("", n + 1, ttft, token_s)])
            for key, value in want.items():
                name = f"summarize_speed(...)[{key!r}] ({n} tokens)"
                if wrong := is_number(got[key], name=name):
                    return wrong
                if key == "tok_s" and close(got[key], (len(token_s) + 1) / (ttft + sum(token_s)), rtol=1e-3) is None:
                    return incorrect(f"`{name}` counts the first token: its time includes the prompt (that is TTFT).")
                if "ms" in key and close(got[key], value / 1000, rtol=1e-3) is None:
                    return incorrect(f"`{name}` is in seconds; the key says milliseconds.")
                if wrong := close(got[key], value, rtol=1e-3, name=name):
                    return incorrect(f"{wrong.message}. Which timings does {key} describe, and in what unit?")
        return None


class MajorityFloor(Lab01Exercise):
    name, title, tier, var = "q3", "The floor: always answer the most common label", "core", "majority_accuracy"
    hint_text = "A model that always answers one label is right exactly when the true label is that one."

    def check_value(self, majority_accuracy: Any) -> Result | None:
        cases = [["login", "billing", "bug", "billing", "billing"], ["c"] + ["a", "b"] * 3, ["x"] * 4]
        for labels in cases:
            got = majority_accuracy(list(labels))
            name = f"majority_accuracy({len(labels)} labels)"
            want = max(labels.count(x) for x in set(labels)) / len(labels)
            if wrong := is_number(got, name=name):
                return wrong
            if close(got, want * len(labels), rtol=1e-6) is None and len(labels) > 1:
                return incorrect(f"`{name}` is a count; the floor is a share of the labels (0 to 1).")
            if close(got, 1 / len(set(labels)), rtol=1e-6) is None and want != 1 / len(set(labels)):
                return incorrect(f"`{name}` is what random guessing gets; the floor answers the most common label.")
            if wrong := close(got, want, rtol=1e-6, name=name):
                return incorrect(f"{wrong.message}. How often is the most common label the right answer?")
        return None


class MagnitudePrune(Lab01Exercise):
    name, title, tier, var = "q4", "Magnitude pruning of one weight matrix", "core", "magnitude_prune"
    hint_text = (
        "How many entries does the sparsity ask you to zero? Then find which ones are smallest in absolute value "
        "(sorting their magnitudes gives their positions), and zero them in a copy, not in w."
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
    name, title, tier, var = "q5", "When does sparse storage pay off?", "core", "csr_break_even"
    hint_text = (
        "Write the two sizes of a matrix of n entries at sparsity s: dense pays for every entry, CSR only for "
        "the non-zeros, and each of those costs more than a dense entry. Where are the two equal?"
    )

    def check_value(self, csr_break_even: Any) -> Result | None:
        for value_bytes, index_bytes in ((4, 4), (2, 4), (1, 2), (0.5, 2)):
            got = csr_break_even(value_bytes, index_bytes)
            name = f"csr_break_even({value_bytes}, {index_bytes})"
            if wrong := is_number(got, name=name) or close(got, index_bytes / (value_bytes + index_bytes), name=name):
                return wrong
        return None


class LargestOnTablet(Lab01Exercise):
    name, title, tier, var = "q6", "Largest preset that fits a tablet at int4", "core", None
    hint_text = (
        "Work out the tablet's budget for the assistant first. Then ask fleet.model_ram_mib what each preset "
        "needs at int4 (its parameters are params_millions × 1e6), and keep the largest that fits."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        name = learner_answer(ns, "largest_on_tablet")
        if not isinstance(name, str) or name not in PRESETS:
            return incorrect(f"`largest_on_tablet` should be a preset name (a str) from models.PRESETS, got {name!r}.")
        need = learner_answer(ns, "largest_need_mib")  # the justification: without it, guessing names cannot pass
        if wrong := is_number(need, name="largest_need_mib"):
            return wrong
        chosen = PRESETS[name]
        if wrong := close(
            need, model_ram_mib(int(chosen.params_millions * 1e6), "int4"), rtol=1e-3, name="largest_need_mib"
        ):
            return incorrect(
                f"{wrong.message}: `largest_need_mib` should be what {name} needs at int4, from fleet.model_ram_mib."
            )
        fits = [p for p in PRESETS.values() if model_ram_mib(int(p.params_millions * 1e6), "int4") <= TABLET_BUDGET_MIB]
        if chosen not in fits:
            return incorrect(
                f"{name} needs {need:.0f} MiB: compare that with the assistant's share of the tablet's RAM."
            )
        if chosen.params_millions < max(p.params_millions for p in fits):
            return incorrect(f"{name} fits, but a larger preset fits too: check every preset's need.")
        return None


class Int4BytesPerWeight(Lab01Exercise):
    name, title, tier, var = "q7", "The real cost of int4: scales included", "stretch", "int4_bytes_per_weight"
    hint_text = "A scale is shared by the weights of its group: what share of its bytes does each weight carry?"

    def check_value(self, int4_bytes_per_weight: Any) -> Result | None:
        for group_size, scale_bytes in ((32, 2), (128, 2), (64, 4)):
            got = int4_bytes_per_weight(group_size, scale_bytes)
            name = f"int4_bytes_per_weight({group_size}, {scale_bytes})"
            if wrong := is_number(got, name=name) or close(got, 0.5 + scale_bytes / group_size, name=name):
                return wrong
        return None


# q8: shapes to count, each a different corner of the Llama architecture (tied or not, grouped or full
# key/value heads); the truth is PyTorch's own count (distill.count_config_parameters, on the meta device)
CONFIG_SHAPES = (
    dict(vocab_size=1000, hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=8,
         num_key_value_heads=2, tie_word_embeddings=True),
    dict(vocab_size=500, hidden_size=48, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=4, tie_word_embeddings=False),
    dict(vocab_size=320, hidden_size=96, intermediate_size=256, num_hidden_layers=4, num_attention_heads=6,
         num_key_value_heads=3, tie_word_embeddings=False),
)  # fmt: skip


class ParametersFromConfig(Lab01Exercise):
    name, title, tier, var = "q8", "A model's parameters from its config", "stretch", "count_parameters"
    hint_text = (
        "Walk one block: the attention's four projections (how wide are keys and values when several query "
        "heads share them?), the MLP's matrices, the norms. Then what sits outside the blocks, and whether "
        "the output layer has weights of its own."
    )

    def check_value(self, count_parameters: Any) -> Result | None:
        from transformers import LlamaConfig

        for shape in CONFIG_SHAPES:
            config = LlamaConfig(**shape)
            got, want = count_parameters(config), count_config_parameters(config)
            name = f"count_parameters({_describe(shape)})"
            if wrong := is_number(got, name=name):
                return wrong
            if got == want:
                continue
            h, layers, vocab = shape["hidden_size"], shape["num_hidden_layers"], shape["vocab_size"]
            kv_width = shape["num_key_value_heads"] * config.head_dim
            if shape["tie_word_embeddings"]:
                head = (want + vocab * h, "counts the output layer twice: tied, it is the embedding")
            else:
                head = (want - vocab * h, "has no output layer: untied, it is a matrix of its own")
            slips = {
                want - layers * h * shape["intermediate_size"]: "gives the MLP two matrices; Llama's has three "
                "(gate, up, down)",
                want - (2 * layers + 1) * h: "leaves out the RMSNorm weights: two per block and one at the end",
                head[0]: head[1],
            }
            if kv_width < h:
                slips[want + 2 * layers * h * (h - kv_width)] = (
                    "gives keys and values one head per query head: read num_key_value_heads (grouped-query "
                    "attention shares them)"
                )
            if got in slips:
                return incorrect(f"`{name}` {slips[got]}.")
            return incorrect(f"`{name}` returned {got:,}; PyTorch counts {want:,}. Which part did you miss?")
        return None


def _describe(shape: dict) -> str:
    tied = "tied" if shape["tie_word_embeddings"] else "untied"
    return f"{shape['num_hidden_layers']} blocks, {shape['num_key_value_heads']} kv heads, {tied}"


EXERCISES = [
    FootprintMiB,
    SpeedSummary,
    MajorityFloor,
    MagnitudePrune,
    CsrBreakEven,
    LargestOnTablet,
    Int4BytesPerWeight,
    ParametersFromConfig,
]
