"""The student as its teacher's draft (notebook 02, end of section 2.6).

A student cut from the teacher's blocks shares its tokenizer, so it can draft for it in
speculative decoding (``speculative``): the teacher keeps its exact greedy answer and
only the time changes. Two students of the same size cost the same per pass; what
separates them as drafts is how often the teacher agrees with their guesses. So the
distilled student and its undistilled twin race as drafts, and transformers' own
assisted generation (``generate(assistant_model=...)``) runs beside ours as the
reference implementation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from ..data import format_chat, refuse_test_rows
from ..decoding import Decoder, TorchDecoder
from ..decoding.race import Draft, pass_costs, speculative_metrics, speculative_study, with_expected

DRAFT_KEYS = {"distilled": "distilled", "no distillation": "undistilled"}  # draft -> metric prefix


def _decoder(model: Any, device: Any) -> Callable[[], Decoder]:
    return lambda: TorchDecoder(model, device)


def student_drafts(
    teacher: Any, students: dict[str, Any], tokenizer: Any, rows: list[dict[str, str]], max_new_tokens: int, gammas
) -> tuple[list[dict[str, Any]], dict[str, Any], list[list[int]]]:
    """Race each student as the teacher's draft on the validation ``rows`` (the race picks gamma, a
    choice: test rows are refused): the rows, the metrics, and the prompts used."""
    refuse_test_rows(rows, "Racing the students as drafts to pick gamma")
    device = next(teacher.parameters()).device
    prompts = [tokenizer(format_chat(tokenizer, r), add_special_tokens=False).input_ids for r in rows]
    drafts = {name: Draft(_decoder(model.eval(), device), "torch") for name, model in students.items()}
    eos = {tokenizer.eos_token_id}

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    targets = {"torch": _decoder(teacher.eval(), device)}
    costs = pass_costs(targets, drafts, prompts[0], gammas)
    table = with_expected(speculative_study(targets, drafts, prompts, max_new_tokens, gammas, eos, decode), costs)
    keys = {name: DRAFT_KEYS[name] for name in students}
    return table, speculative_metrics(table, costs, keys), prompts


@torch.inference_mode()
def assisted_generation(
    teacher: Any, student: Any, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int, gamma: int
) -> dict[str, Any]:
    """transformers' assisted generation with ``student`` proposing ``gamma`` tokens a round
    (constant schedule, no confidence cut-off, so it does what ours does), against the
    teacher's plain greedy ``generate``: same tokens, and the time ratio of whole answers."""
    device = next(teacher.parameters()).device
    config = student.generation_config
    saved = (config.num_assistant_tokens, config.num_assistant_tokens_schedule, config.assistant_confidence_threshold)
    config.num_assistant_tokens, config.num_assistant_tokens_schedule = gamma, "constant"
    config.assistant_confidence_threshold = 0.0
    kwargs = dict(do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    plain_s = assisted_s = 0.0
    identical = True
    try:
        for ids in prompts:
            inputs = torch.tensor([ids], device=device)
            start = time.perf_counter()
            plain = teacher.generate(inputs, **kwargs)[0, len(ids) :].tolist()
            plain_s += time.perf_counter() - start
            start = time.perf_counter()
            assisted = teacher.generate(inputs, assistant_model=student, **kwargs)[0, len(ids) :].tolist()
            assisted_s += time.perf_counter() - start
            identical &= plain == assisted
    finally:
        config.num_assistant_tokens, config.num_assistant_tokens_schedule, config.assistant_confidence_threshold = saved
    return {"hf_assisted_identical": identical, "hf_assisted_speedup": plain_s / assisted_s, "hf_assisted_gamma": gamma}
