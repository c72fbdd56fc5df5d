"""Generation: batched answers for scoring, and a timed greedy loop for speed.

``generate_timed`` decodes one token at a time with the KV cache, so it can report
time to first token and the latency of every later token, the numbers an operator
watches. ``generate_answers`` batches prompts through ``model.generate`` for scoring.
"""

from __future__ import annotations

from typing import Any

import torch

from . import TimedGeneration, greedy_stream, torch_step


def generate_timed(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> TimedGeneration:
    """Greedy decoding of ``prompt`` with the KV cache, timing every token.

    Always produces ``max_new_tokens`` tokens (no stop at end-of-sequence), so speed
    comparisons between models cover the same amount of work. The loop is the one every
    runtime of the course shares (``decoding.greedy_stream``).
    """
    device = next(model.parameters()).device
    ids = tokenizer(prompt).input_ids
    decode = lambda token_ids: tokenizer.decode(token_ids, skip_special_tokens=True)  # noqa: E731
    tokens = list(greedy_stream(torch_step(model, device), ids, max_new_tokens, set(), decode))
    return TimedGeneration(
        decode([t.id for t in tokens]), len(tokens), tokens[0].seconds, [t.seconds for t in tokens[1:]]
    )


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
