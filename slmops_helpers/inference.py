"""Generation: batched answers for scoring, and a timed greedy loop for speed.

``generate_timed`` decodes one token at a time with the KV cache, so it can report
time to first token and the latency of every later token, the numbers an operator
watches. ``generate_answers`` batches prompts through ``model.generate`` for scoring.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class TimedGeneration:
    """One timed generation: what came out and how long each token took."""

    text: str
    n_tokens: int
    ttft_s: float  # prompt processing + first token
    token_s: list[float] = field(default_factory=list)  # each later token, one forward pass

    @property
    def tok_s(self) -> float:
        """Decode throughput: tokens after the first, per second."""
        return len(self.token_s) / sum(self.token_s) if self.token_s else 0.0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100), linear interpolation; values need not be sorted."""
    if not values:
        raise ValueError("percentile of an empty list; generate at least two tokens.")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(max(round(q), 1), 99) - 1]


@torch.inference_mode()
def generate_timed(
    model: Any, tokenizer: Any, prompt: str, max_new_tokens: int, stop_at_eos: bool = False
) -> TimedGeneration:
    """Greedy decoding of ``prompt`` with the KV cache, timing every token.

    ``stop_at_eos=False`` (the default) always produces ``max_new_tokens`` tokens,
    so speed comparisons between models cover the same amount of work.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    device = next(model.parameters()).device
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)  # (1, T)
    past, generated, times = None, [], []
    for _ in range(max_new_tokens):
        start = time.perf_counter()
        out = model(input_ids=input_ids, past_key_values=past, use_cache=True)
        next_id = out.logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        past, input_ids = out.past_key_values, next_id
        generated.append(next_id.item())
        if stop_at_eos and next_id.item() == tokenizer.eos_token_id:
            break
    text = tokenizer.decode(generated, skip_special_tokens=True)
    return TimedGeneration(text, len(generated), times[0], times[1:])


def speed_summary(runs: list[TimedGeneration]) -> dict[str, float]:
    """Pool several timed runs into the headline speed figures."""
    per_token = [t for run in runs for t in run.token_s]
    return {
        "ttft_ms": 1000 * statistics.median(r.ttft_s for r in runs),
        "ms_per_token_p50": 1000 * percentile(per_token, 50),
        "ms_per_token_p95": 1000 * percentile(per_token, 95),
        "tok_s": len(per_token) / sum(per_token),
    }


@torch.inference_mode()
def generate_answers(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """Greedy answers for many prompts, batched with left padding, with a progress bar."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # decoder-only: pad on the left
    answers = []
    try:
        for i in tqdm(range(0, len(prompts), batch_size), desc="generating", unit="batch"):
            batch = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True).to(device)
            out = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
            answers += tokenizer.batch_decode(out[:, batch.input_ids.shape[1] :], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return answers
