"""Measuring a model the same way in every section: task score, speed, memory, size on disk.

Sections 2 to 5 compare models (teacher and students, fine-tuning methods, packages) on
the same held-out tickets, so they share one way to score (``score_model``, which
returns ``Scored``), one way to time decoding side by side (``measure_inference``) and
one way to size what is stored (``size_on_disk_mib``, over ``models.files_mib``). Sizes are MiB (2^20 bytes) everywhere.
"""

from __future__ import annotations

import tempfile
from typing import Any, NamedTuple

from .data import format_chat, format_target, score_predictions
from .decoding import speed_summary
from .decoding.generate import generate_answers, generate_timed
from .models import MIB, PeakMemory, files_mib, tensor_bytes
from .uncertainty import TicketScores


class Scored(NamedTuple):
    """A model's greedy answers for some tickets, their scores (``data.score_predictions``) and
    each ticket's own score (``tickets``, for intervals and paired comparisons: ``uncertainty``)."""

    scores: dict[str, float]
    answers: list[str]
    tickets: TicketScores | None = None


def score_model(
    model: Any, tokenizer: Any, rows: list[dict[str, str]], max_new_tokens: int, batch_size: int = 16
) -> Scored:
    """Greedy answers for ``rows`` and their scores against the human-written references."""
    prompts = [format_chat(tokenizer, row) for row in rows]
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size=batch_size)
    return Scored(score_predictions(answers, rows), answers, TicketScores.from_answers(answers, rows))


def show_answers(rows: list[dict[str, str]], answers: list[str], n: int = 2, who: str = "model") -> str:
    """The first ``n`` tickets with their reference and the model's answer, for reading."""
    return "\n".join(
        f"--- {r['message']}\n    reference: {format_target(r)!r}\n    {who + ':':<10} {a!r}"
        for r, a in list(zip(rows, answers, strict=True))[:n]
    )


def size_on_disk_mib(model: Any) -> float:
    """MiB that ``save_pretrained`` writes (safetensors, shared weights stored once)."""
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return files_mib(folder)


def measure_inference(
    models: dict[str, Any], tokenizer: Any, prompt: str, n_tokens: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Speed and peak memory of greedy decoding, per model, with runs interleaved.

    Interleaving (teacher, student, … then again) spreads background load evenly over the
    models. ``peak_mib`` = the weights plus the most extra memory one generation needed.
    """
    runs: dict[str, list] = {name: [] for name in models}
    extra: dict[str, float] = dict.fromkeys(models, 0.0)
    for _ in range(repeats):
        for name, model in models.items():
            with PeakMemory(next(model.parameters()).device.type) as memory:
                runs[name].append(generate_timed(model, tokenizer, prompt, n_tokens))
            extra[name] = max(extra[name], memory.peak_mib)
    return {
        name: {**speed_summary(runs[name]), "peak_mib": tensor_bytes(model) / MIB + extra[name]}
        for name, model in models.items()
    }
