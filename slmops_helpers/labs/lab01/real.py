"""Lab 01's exercises on the course model itself: time it with your own greedy loop, checked
against the model (the tokens) and the clock (the times), and write a half-precision copy to
disk, checked on its files. The rest of lab 01 is in ``exercises``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...data import format_chat, read_rows
from ...decoding import greedy_stream, torch_step
from ...decoding.generate import generate_answers, generate_timed
from ...models import MIB, files_mib, weight_bytes
from .. import Exercise, Result, close, incorrect, is_number, learner_answer
from ..artifacts import folder_of, greedy_mismatch, safetensors_tensors
from ..checks import fresh_rng

__all__ = ["long_prompt", "TimeGeneration", "HalfPrecisionCopy"]


class Lab01RealExercise(Exercise):
    notebook = "01_introduction.ipynb"  # in labs/source/
    real_tools = True


def long_prompt(tokenizer: Any, rng: Any, n_tickets: int = 4) -> str:
    """q9's hidden prompt: a few test tickets pasted into one message (a long prompt makes the
    first token cost far more than the next ones, when the KV cache is used)."""
    rows = [r for r in read_rows() if r["split"] == "test"]
    picked = [rows[int(i)] for i in rng.choice(len(rows), n_tickets, replace=False)]
    message = "\n\n".join(r["message"] for r in picked)
    return format_chat(tokenizer, {**picked[0], "message": message})


class TimeGeneration(Lab01RealExercise):
    name, title, tier, var = "q9", "Time the course model yourself", "stretch", None
    hint_text = (
        "Feed the whole prompt once (that pass gives the first token, and its time is TTFT), then one token per "
        "step, handing the model back the past_key_values it returned. Take the argmax of the last position's "
        "logits, and read time.perf_counter() just before and after each forward pass."
    )
    KEYS = ("tokens", "ttft_s", "token_s")
    CACHE_RATIO = 0.6  # with the cache, a later token costs well under this share of the long prompt's pass

    course_twins = (generate_timed, greedy_stream, torch_step, generate_answers)

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        time_generation = learner_answer(ns, "time_generation")
        model, tokenizer = ns.get("model"), ns.get("tokenizer")
        if model is None or tokenizer is None:
            return incorrect("`model` or `tokenizer` is missing: run the cell that loads the course model first.")
        rng = fresh_rng()  # a hidden prompt and length, new at every attempt
        prompt, n_tokens = long_prompt(tokenizer, rng), int(rng.integers(5, 9))
        start = time.perf_counter()
        got = time_generation(model, tokenizer, prompt, n_tokens)
        wall_s = time.perf_counter() - start
        name = f"time_generation(model, tokenizer, <a hidden prompt>, {n_tokens})"
        if not isinstance(got, Mapping) or any(k not in got for k in self.KEYS):
            return incorrect(f"`{name}` should return a dict with keys {list(self.KEYS)}.")
        tokens, ttft_s, token_s = got["tokens"], got["ttft_s"], got["token_s"]
        if not isinstance(tokens, list | tuple) or not all(isinstance(t, int) for t in tokens):
            return incorrect(f"`{name}['tokens']` should be a list of token ids (ints): use int(logits.argmax()).")
        if len(tokens) != n_tokens:
            return incorrect(f"`{name}` made {len(tokens)} tokens; it should make exactly n_tokens, EOS or not.")
        if wrong := is_number(ttft_s, name=f"{name}['ttft_s']"):
            return wrong
        if not isinstance(token_s, list | tuple) or len(token_s) != n_tokens - 1:
            return incorrect(
                f"`{name}['token_s']` should list the time of every token after the first: n_tokens − 1 numbers."
            )
        for value in token_s:
            if wrong := is_number(value, name=f"{name}['token_s'][...]"):
                return wrong
        if min([ttft_s, *token_s]) <= 0:
            return incorrect(f"`{name}` reports a time of zero or less: read the clock before and after each pass.")
        at = greedy_mismatch(model, tokenizer(prompt).input_ids, list(tokens))
        if at == 0:
            return incorrect(f"`{name}`'s first token is not the model's greedy choice: is the whole prompt fed?")
        if at is not None:
            return incorrect(
                f"`{name}`'s token {at} is not the model's greedy choice after the ones before it: does each step "
                "feed the last token with the cache the previous step returned?"
            )
        timed = ttft_s + sum(token_s)
        if timed > 1.05 * wall_s + 0.01:
            if timed / 1000 <= 1.05 * wall_s + 0.01:
                return incorrect(f"`{name}`'s times look like milliseconds; the keys say seconds.")
            return incorrect(f"`{name}`'s times add up to more than the call took: time each pass once.")
        if timed < 0.5 * wall_s:
            return incorrect(
                f"`{name}`'s times cover less than half of the call: time the forward passes themselves (and "
                "no warm-up inside the function)."
            )
        if float(np.median(token_s)) > self.CACHE_RATIO * ttft_s:
            return incorrect(
                f"`{name}`: each later token costs about as much as reading the whole prompt. Is the KV cache "
                "(past_key_values) handed back at every step, with only the new token?"
            )
        return None


class HalfPrecisionCopy(Lab01RealExercise):
    name, title, tier, var = "q10", "A half-precision copy on disk, measured", "stretch", None
    hint_text = (
        "Convert a copy (copy.deepcopy) rather than `model` itself, save it with save_pretrained, then add up the "
        "sizes of the files the folder holds (Path.stat().st_size) and convert to MiB."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        size = learner_answer(ns, "fp16_mib")  # first: while it is ____, the question is not attempted
        folder = folder_of(learner_answer(ns, "fp16_dir"), "fp16_dir", ("config.json", "*.safetensors"))
        if isinstance(folder, Result):
            return folder
        model = ns.get("model")
        if model is None:
            return incorrect("`model` is missing: run the cell that loads the course model first.")
        if next(model.parameters()).dtype != torch.float32:
            return incorrect(
                "The notebook's `model` is no longer float32: .half() converts in place. Reload it, and convert a copy."
            )
        saved = safetensors_tensors(folder)
        if not_half := sorted(k for k, t in saved.items() if t.dtype != torch.float16):
            return incorrect(f"`fp16_dir` holds tensors that are not float16, e.g. {not_half[0]!r}.")
        params = dict(model.named_parameters())  # the tied embedding once, as save_pretrained writes it
        if missing := sorted(set(params) - set(saved)):
            return incorrect(f"`fp16_dir` lacks weights of the model, e.g. {missing[0]!r}: save the whole model.")
        for key, param in params.items():
            if not torch.equal(saved[key], param.detach().to(torch.float16)):
                return incorrect(f"`fp16_dir`'s {key!r} is not the course model's weight in float16.")
        if wrong := is_number(size, name="fp16_mib"):
            return wrong
        on_disk = files_mib(folder)
        if close(size, on_disk, rtol=1e-9, atol=0) is None:
            return None
        n_params = sum(p.numel() for p in params.values())
        if close(size, weight_bytes(n_params, "fp16") / MIB, rtol=1e-9, atol=0) is None:
            return incorrect("`fp16_mib` is the formula's number; measure the files the folder holds.")
        if close(size, on_disk * MIB / 10**6, rtol=1e-9, atol=0) is None:
            return incorrect("`fp16_mib` is in MB (10**6 bytes); a MiB is 2**20 bytes.")
        return incorrect("`fp16_mib` is not the size of the files in `fp16_dir`: add up every file's bytes.")
