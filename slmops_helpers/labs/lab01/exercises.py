"""Checks for lab 01 (introduction): footprint, the two speeds, the floor, pruning, sparse
storage, fleet fit, the real bytes of int4, a model's parameters from its config, and, on
the course model itself (in ``real``), a timed greedy loop and a half-precision copy
written to disk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ...compress import prune_weight
from ...decoding import TimedGeneration, speed_summary
from ...distill import count_config_parameters
from ...fleet import model_ram_mib
from ...models import MIB, PRESETS, count_parameters, weight_bytes
from .. import Exercise, Result, close, incorrect, is_number, learner_answer
from ..checks import fresh_rng, fresh_seed
from .quiz import QUIZ as QUIZ  # the lab's quiz, rendered at its end
from .real import HalfPrecisionCopy, TimeGeneration

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

    course_twins = (weight_bytes,)

    def check_value(self, footprint_mib: Any) -> Result | None:
        rng = fresh_rng()  # hidden inputs, new at every attempt
        for n_params in (int(rng.integers(10**5, 10**7)), int(rng.integers(10**8, 10**10))):
            for precision in PRECISIONS:
                got, want = footprint_mib(n_params, precision), weight_bytes(n_params, precision) / MIB
                name = f"footprint_mib({n_params:_}, {precision!r})"
                if wrong := is_number(got, name=name):
                    return wrong
                slips = {
                    "is in bytes; the question asks for MiB (2**20 bytes)": want * MIB,
                    "is in MB (10**6 bytes); a MiB is 2**20 bytes": want * MIB / 10**6,
                    "counts bits, not bytes, per weight": want * 8,
                }
                for says, value in slips.items():
                    if close(got, value, rtol=1e-4) is None:
                        return incorrect(f"`{name}` {says}.")
                if wrong := close(got, want, name=name):
                    return incorrect(f"{wrong.message}: how many bytes does one weight take at {precision}?")
        return None


class SpeedSummary(Lab01Exercise):
    name, title, tier, var = "q2", "The two speeds from raw timings", "core", "summarize_speed"
    hint_text = (
        "The first token's time includes reading the prompt: report it alone, in ms. Every later token is one "
        "forward pass: tokens per second counts those tokens over their total time; the percentiles describe "
        "their spread (numpy's np.percentile)."
    )
    KEYS = ("ttft_ms", "tok_s", "ms_per_token_p50", "ms_per_token_p95")  # the course's metric names

    course_twins = (speed_summary,)

    def check_value(self, summarize_speed: Any) -> Result | None:
        g = torch.Generator().manual_seed(fresh_seed())  # hidden timings, new at every attempt
        for n in sorted(int(n) for n in torch.randint(3, 60, (3,), generator=g)):
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
                    return incorrect(f"{wrong.message}: which timings does {key} describe, and in what unit?")
        return None


class MajorityFloor(Lab01Exercise):
    name, title, tier, var = "q3", "The floor: always answer the most common label", "core", "majority_accuracy"
    hint_text = "A model that always answers one label is right exactly when the true label is that one."

    def check_value(self, majority_accuracy: Any) -> Result | None:
        rng = fresh_rng()  # hidden labels, new at every attempt
        pool = ["login", "billing", "bug", "shipping", "setup", "refund", "privacy"]
        cases = [
            [str(x) for x in rng.choice(pool[:k], size=int(rng.integers(5, 30)), p=_skewed(rng, k))] for k in (2, 4, 7)
        ]
        cases.append([pool[int(rng.integers(len(pool)))]] * int(rng.integers(2, 6)))  # one label only
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
                return incorrect(f"{wrong.message}: how often is the most common label the right answer?")
        return None


class MagnitudePrune(Lab01Exercise):
    name, title, tier, var = "q4", "Magnitude pruning of one weight matrix", "core", "magnitude_prune"
    hint_text = (
        "How many entries does the sparsity ask you to zero? Then find which ones are smallest in absolute value "
        "(sorting their magnitudes gives their positions), and zero them in a copy, not in w."
    )

    course_twins = (prune_weight,)

    def check_value(self, magnitude_prune: Any) -> Result | None:
        g = torch.Generator().manual_seed(fresh_seed())  # a hidden matrix, new at every attempt
        rows, cols = (int(n) for n in torch.randint(4, 40, (2,), generator=g))
        w = torch.randn(rows, cols, generator=g)
        original = w.clone()
        for s in (0.0, *(round(float(x), 2) for x in 0.05 + 0.9 * torch.rand(3, generator=g))):
            got = magnitude_prune(w, s)
            if not isinstance(got, torch.Tensor):
                return incorrect(f"`magnitude_prune` should return a torch.Tensor, got {type(got).__name__}.")
            if not torch.equal(w, original):
                return incorrect("`magnitude_prune` changed its input; prune a copy (w.clone()).")
            if wrong := close(got, prune_weight(w, s), name=f"magnitude_prune(w, {s})"):
                return incorrect(
                    f"{wrong.message}: are the zeroed entries the smallest |w|, and exactly round(sparsity·n) of them?"
                )
        return None


class CsrBreakEven(Lab01Exercise):
    name, title, tier, var = "q5", "When does sparse storage pay off?", "core", "csr_break_even"
    hint_text = (
        "Write the two sizes of a matrix of n entries at sparsity s: dense pays for every entry, CSR only for "
        "the non-zeros, and each of those costs more than a dense entry. Where are the two equal?"
    )

    def check_value(self, csr_break_even: Any) -> Result | None:
        rng = fresh_rng()  # hidden byte widths, new at every attempt
        for _ in range(4):
            value_bytes, index_bytes = round(float(rng.uniform(0.25, 8)), 2), int(rng.choice([1, 2, 4, 8]))
            got = csr_break_even(value_bytes, index_bytes)
            name = f"csr_break_even({value_bytes}, {index_bytes})"
            if wrong := is_number(got, name=name):
                return wrong
            if (
                close(got, 1 - index_bytes / (value_bytes + index_bytes), rtol=1e-6) is None
                and value_bytes != index_bytes
            ):
                return incorrect(
                    f"`{name}` is the density (share of non-zeros) at break-even; the question asks for sparsity."
                )
            if wrong := close(got, index_bytes / (value_bytes + index_bytes), name=name):
                return incorrect(f"{wrong.message}: write both sizes for n entries at sparsity s and set them equal.")
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
            return incorrect(
                f"{name} is not the preset the question asks for: compare every preset's need with the budget."
            )
        return None


class Int4BytesPerWeight(Lab01Exercise):
    name, title, tier, var = "q7", "The real cost of int4: scales included", "stretch", "int4_bytes_per_weight"
    hint_text = "A scale is shared by the weights of its group: what share of its bytes does each weight carry?"

    def check_value(self, int4_bytes_per_weight: Any) -> Result | None:
        rng = fresh_rng()  # hidden group sizes, new at every attempt
        for _ in range(3):
            group_size, scale_bytes = int(rng.integers(4, 513)), int(rng.choice([1, 2, 4]))
            got = int4_bytes_per_weight(group_size, scale_bytes)
            name = f"int4_bytes_per_weight({group_size}, {scale_bytes})"
            if wrong := is_number(got, name=name):
                return wrong
            if close(got, 0.5, rtol=1e-6) is None:
                return incorrect(f"`{name}` leaves out the scale each group stores.")
            if close(got, 4 + 8 * scale_bytes / group_size, rtol=1e-6) is None:
                return incorrect(f"`{name}` counts bits; the question asks for bytes per weight.")
            if wrong := close(got, 0.5 + scale_bytes / group_size, name=name):
                return incorrect(f"{wrong.message}: what share of one scale does each weight of its group carry?")
        return None


def random_shape(rng: Any) -> dict[str, Any]:
    """q8's hidden config, drawn at every attempt: grouped or full key/value heads, tied or not."""
    heads = int(rng.choice([2, 4, 6, 8, 12]))
    kv = int(rng.choice([d for d in range(1, heads + 1) if heads % d == 0]))
    head_dim = int(rng.choice([8, 16, 32]))
    return dict(
        vocab_size=int(rng.integers(100, 5000)), hidden_size=heads * head_dim,
        intermediate_size=int(rng.integers(2, 6)) * heads * head_dim, num_hidden_layers=int(rng.integers(1, 7)),
        num_attention_heads=heads, num_key_value_heads=kv, tie_word_embeddings=bool(rng.integers(2)),
    )  # fmt: skip


class ParametersFromConfig(Lab01Exercise):
    name, title, tier, var = "q8", "A model's parameters from its config", "stretch", "count_parameters"
    hint_text = (
        "Walk one block: the attention's four projections (how wide are keys and values when several query "
        "heads share them?), the MLP's matrices, the norms. Then what sits outside the blocks, and whether "
        "the output layer has weights of its own."
    )

    course_twins = (count_config_parameters, count_parameters)

    def check_value(self, count_parameters: Any) -> Result | None:
        from transformers import LlamaConfig

        rng = fresh_rng()  # hidden shapes, new at every attempt
        shapes = [random_shape(rng) for _ in range(3)]
        # every attempt meets both corners of the architecture: grouped key/value heads, tied and untied heads
        shapes[0]["num_key_value_heads"] = min(shapes[0]["num_key_value_heads"], shapes[0]["num_attention_heads"] // 2)
        shapes[0]["tie_word_embeddings"], shapes[1]["tie_word_embeddings"] = True, False
        for shape in shapes:
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
            return incorrect(f"`{name}` is not PyTorch's count: walk one block again, then what sits outside them.")
        return None


def _skewed(rng: Any, k: int) -> Any:
    """Label frequencies with one clear favourite, so the floor differs from 1 / k."""
    p = rng.random(k) + 0.1
    p[int(rng.integers(k))] += 1.0
    return p / p.sum()


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
    TimeGeneration,
    HalfPrecisionCopy,
]
