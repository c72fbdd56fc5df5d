"""Notebook 04's section 4.7, measured: speculative decoding (two drafts for the fp32
export, raced by ``decoding.race``) and constrained decoding (what the format mask
buys and costs, the same tickets answered with and without it, interleaved).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .. import data
from ..decoding import Decoder
from ..decoding.constrained import TicketFormat
from ..decoding.race import Draft, pass_costs, speculative_metrics, speculative_study, with_expected
from ..decoding.speculative import PromptLookupDraft, check_same_tokenizer
from ..uncertainty import TicketScores, difference_metrics, interval_metrics
from .runtime import OnnxCausalLM

DRAFT_KEYS = {"int4 ONNX": "int4", "prompt lookup": "lookup"}  # draft -> metric prefix


def course_race(fp32_dir: Path, int4_dir: Path) -> tuple[OnnxCausalLM, dict[str, Callable[[], Decoder]], dict]:
    """Section 4.7's race for the fp32 export: the export as deployed (its threads spin
    while idle, which is fastest for one session) and again with threads that sleep, which
    two sessions taking turns need (spinning, each steals the cores the other waits for:
    measured, a model draft loses most of its gain). The int4 export drafts against the
    sleeping setting (refused if its tokenizer differs); prompt lookup, which runs no
    session, against the deployed one."""
    fp32, quiet = OnnxCausalLM(fp32_dir), OnnxCausalLM(fp32_dir, spin=False)
    int4 = OnnxCausalLM(int4_dir, spin=False)
    check_same_tokenizer(fp32.vocab(), int4.vocab(), (fp32_dir.name, int4_dir.name))
    vocab = len(fp32.vocab())
    targets = {"spin": fp32.decoder, "sleep": quiet.decoder}
    drafts = {
        "int4 ONNX": Draft(int4.decoder, "sleep"),
        "prompt lookup": Draft(lambda: PromptLookupDraft(vocab), "spin"),
    }
    return fp32, targets, drafts


def run_speculative(
    lm: OnnxCausalLM, targets: dict, drafts: dict[str, Draft], rows: list[dict[str, str]], max_new_tokens: int, gammas
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The pass costs, the race over every (draft, gamma) on the validation ``rows`` (the race picks
    each draft's gamma, a choice: test rows are refused), the cost model beside it, and the metrics."""
    data.refuse_test_rows(rows, "Racing the drafts to pick gamma")
    prompts = [lm.encode(lm.chat_prompt(data.build_messages(r))) for r in rows]
    costs = pass_costs(targets, drafts, prompts[0], gammas)
    study = speculative_study(targets, drafts, prompts, max_new_tokens, gammas, lm.eos_ids, lm.decode)
    rows = with_expected(study, costs)
    return rows, speculative_metrics(rows, costs, DRAFT_KEYS)


def _decode_ms(tokens: list[Any]) -> list[float]:
    return [1000 * t.seconds for t in tokens[1:]]  # the first carries the prompt pass


def constrained_study(lm: Any, fmt: TicketFormat, rows: list[dict[str, str]], max_new_tokens: int) -> dict[str, Any]:
    """The same tickets answered with and without the format mask, interleaved: format,
    category and error-code accuracy, task score (with intervals and the paired
    difference), and ms per token (median over decoded tokens)."""
    answers: dict[str, list[str]] = {"unconstrained": [], "constrained": []}
    times: dict[str, list[float]] = {"unconstrained": [], "constrained": []}
    for row in tqdm(rows, desc="constrained decoding", unit="ticket"):
        ids = lm.encode(lm.chat_prompt(data.build_messages(row)))
        for kind in answers:
            tokens = list(lm.stream(ids, max_new_tokens, constraint=fmt.cursor() if kind == "constrained" else None))
            answers[kind].append("".join(t.text for t in tokens))
            times[kind] += _decode_ms(tokens)
    out: dict[str, Any] = {}
    scores = {}
    for kind, texts in answers.items():
        scored = data.score_predictions(texts, rows)
        out |= {f"{kind}_{k}": v for k, v in scored.items()}
        scores[kind] = TicketScores.from_answers(texts, rows)
        out |= interval_metrics(kind, scores[kind])
        out[f"{kind}_ms_per_token"] = statistics.median(times[kind])
    out |= difference_metrics("constrained_vs_unconstrained", scores["constrained"], scores["unconstrained"])
    out["constrained_mask_overhead_pct"] = 100 * (
        out["constrained_ms_per_token"] / out["unconstrained_ms_per_token"] - 1
    )
    out["constrained_answers_in_format"] = all(_in_format(fmt, a) for a in answers["constrained"])
    return out


def _in_format(fmt: TicketFormat, answer: str) -> bool:
    """A complete answer follows the format; one cut by the token budget is a prefix of it."""
    try:
        fmt.follow(answer)
    except ValueError:
        return False
    return True
