"""Speculative decoding, measured: pass costs, a race of drafts over several gammas
against the target alone, the cost model beside each measurement, and flat metrics.

Every configuration answers the same prompts in the same loop, one after another per
prompt, so a slow moment of the machine lands on all of them alike. Speed is measured on
decoding after the first token (where speculation acts); the first token's time, which
also pays the draft's prompt pass, is reported apart.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from . import Decoder, decoder_stream, divergence_margin
from .speculative import SpeculativeStats, expected_speedup, speculative_stream


def pass_ms(make: Callable[[], Decoder], ids: list[int], new: int, repeats: int = 7) -> float:
    """Median ms of one pass over ``new`` tokens after the prompt ``ids``, on a decoder
    from ``make`` (the KV cache cut back after each try; one untimed pass first, since a
    runtime's first pass at a new shape also pays for setting it up)."""
    decoder = make()
    decoder.feed(ids)
    tokens = (ids * new)[-new:]
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        decoder.feed(tokens)
        if i:
            times.append(time.perf_counter() - start)
        decoder.crop(len(ids))
    return 1000 * statistics.median(times)


@dataclass(frozen=True)
class Draft:
    """A draft in the race: how to make a fresh one, and which target setting it runs
    against (a key of the study's ``targets``: e.g. a runtime's threads set to sleep when
    they idle, so that two sessions taking turns do not fight over the cores)."""

    make: Callable[[], Decoder]
    target: str


def pass_costs(
    targets: dict[str, Callable[[], Decoder]], drafts: dict[str, Draft], ids: list[int], gammas: tuple[int, ...]
) -> dict[str, dict[int, float]]:
    """What the cost model needs, after the same prompt: each target setting's pass over 1
    to max(gamma)+1 tokens (key ``target:<setting>``), and one pass of each draft."""
    widths = sorted({1, *(g + 1 for g in gammas)})
    costs = {f"target:{key}": {n: pass_ms(make, ids, n) for n in widths} for key, make in targets.items()}
    return costs | {name: {1: pass_ms(draft.make, ids, 1)} for name, draft in drafts.items()}


def _timed(tokens: Any, run: dict[str, Any]) -> list[int]:
    """Drain a token stream into ``run``'s clocks: the first token's time (both prompt
    passes) apart from the decoding after it, where speculative decoding acts."""
    tokens = list(tokens)
    run["ttft_s"].append(tokens[0].seconds if tokens else 0.0)
    run["decode_s"] += sum(t.seconds for t in tokens[1:])
    run["decoded"] += max(len(tokens) - 1, 0)
    return [t.id for t in tokens]


def _clock() -> dict[str, Any]:
    return {"ttft_s": [], "decode_s": 0.0, "decoded": 0, "stats": SpeculativeStats(), "identical": True}


def _ms(run: dict[str, Any]) -> float:
    return 1000 * run["decode_s"] / max(run["decoded"], 1)


def speculative_study(
    targets: dict[str, Callable[[], Decoder]],
    drafts: dict[str, Draft],
    prompts: list[list[int]],
    max_new_tokens: int,
    gammas: tuple[int, ...],
    eos_ids: set[int],
    decode: Callable[[list[int]], str],
) -> list[dict[str, Any]]:
    """The target alone in each setting, then one row per (draft, gamma): acceptance,
    tokens per target pass, decode ms per token (after the first token), the speedup over
    its own target setting alone and over the fastest target alone, the median time to
    the first token (the draft's prompt pass lands there), and whether every answer was
    the target's own, token for token. Every factory makes fresh decoders."""
    alone = {key: _clock() for key in targets}
    runs = {(name, g): _clock() for name in drafts for g in gammas}
    for ids in tqdm(prompts, desc="speculative decoding", unit="ticket"):
        reference = {}
        for key, make in targets.items():
            stream = decoder_stream(make(), ids, max_new_tokens, eos_ids, decode)
            reference[key] = _timed(stream, alone[key])
        for (name, gamma), run in runs.items():
            target = targets[drafts[name].target]
            tokens = speculative_stream(
                target(), drafts[name].make(), ids, max_new_tokens, gamma, eos_ids, decode, run["stats"]
            )
            out = _timed(tokens, run)
            if out != reference[drafts[name].target]:  # a bug, or a near-tie the wider verification pass tipped
                run["identical"] = False
                fresh = target()  # an empty KV cache: the margin's pass starts at the prompt
                margin = divergence_margin(lambda x, d=fresh: d.feed(x)[-1], ids, out, reference[drafts[name].target])
                run["margin"] = min(run.get("margin", math.inf), margin)
    best = min(_ms(run) for run in alone.values())
    rows = [
        {
            "draft": f"none ({key})",
            "target": key,
            "gamma": 0,
            "ms_per_token": _ms(run),
            "speedup": best / _ms(run),
            "ttft_ms": 1000 * statistics.median(run["ttft_s"]),
        }
        for key, run in alone.items()
    ]
    for (name, gamma), run in runs.items():
        stats, ms, key = run["stats"], _ms(run), drafts[name].target
        rows.append(
            {
                "draft": name,
                "target": key,
                "gamma": gamma,
                "acceptance": stats.acceptance,
                "tokens_per_pass": run["decoded"] / max(stats.rounds, 1),
                "ms_per_token": ms,
                "speedup": best / ms,
                "speedup_same_threads": _ms(alone[key]) / ms,
                "ttft_ms": 1000 * statistics.median(run["ttft_s"]),
                "identical": run["identical"],
                **({"divergence_margin": run["margin"]} if "margin" in run else {}),
            }
        )
    return rows


def with_expected(rows: list[dict[str, Any]], costs: dict[str, dict[int, float]]) -> list[dict[str, Any]]:
    """Add the speedup the cost model predicts (``speculative.expected_speedup``) over the
    row's own target setting, from its measured acceptance and the measured pass costs."""
    out = []
    for row in rows:
        if row["gamma"]:
            target = costs[f"target:{row['target']}"]
            predicted = expected_speedup(
                row["acceptance"], row["gamma"], costs[row["draft"]][1], target[1], target[row["gamma"] + 1]
            )
            row = row | {"expected_speedup": predicted}
        out.append(row)
    return out


def best_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each draft's fastest gamma (the choice the measurement makes)."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["gamma"] and (row["draft"] not in best or row["speedup"] > best[row["draft"]]["speedup"]):
            best[row["draft"]] = row
    return best


def speculative_metrics(
    rows: list[dict[str, Any]], costs: dict[str, dict[int, float]], keys: dict[str, str]
) -> dict[str, Any]:
    """Flat metrics: the fastest target alone; for each draft (``keys``: draft name ->
    metric prefix) its chosen gamma, what it measured there, and the pass costs of it and
    its target setting; ``speculative_identical`` over every row."""
    margins = [r["divergence_margin"] for r in rows if "divergence_margin" in r]
    fastest = min((r for r in rows if not r["gamma"]), key=lambda r: r["ms_per_token"])
    out: dict[str, Any] = {
        "speculative_identical": not margins,
        **({"speculative_divergence_margin": min(margins)} if margins else {}),
        "speculative_target_ms_per_token": fastest["ms_per_token"],
        "speculative_target_ttft_ms": fastest["ttft_ms"],
    }
    for name, row in best_rows(rows).items():
        prefix, target = f"speculative_{keys[name]}", costs[f"target:{row['target']}"]
        out |= {
            f"{prefix}_gamma": row["gamma"],
            f"{prefix}_acceptance": row["acceptance"],
            f"{prefix}_speedup": row["speedup"],
            f"{prefix}_speedup_same_threads": row["speedup_same_threads"],
            f"{prefix}_ms_per_token": row["ms_per_token"],
            f"{prefix}_ttft_ms": row["ttft_ms"],
            f"{prefix}_pass_ms": costs[name][1],
            f"{prefix}_target_pass_ms": target[1],
            f"{prefix}_target_verify_ms": target[row["gamma"] + 1],
        }
        if "expected_speedup" in row:
            out[f"{prefix}_expected_speedup"] = row["expected_speedup"]
    return out


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The race as a table: ``vs fastest`` against the fastest target alone, ``vs own``
    against the draft's own target setting alone, ``model`` the cost model's ``vs own``."""
    head = ("draft", "threads", "gamma", "accepted", "tok/pass", "ms/token", "vs fastest", "vs own", "model", "TTFT ms")
    widths = (16, 9, 6, 9, 9, 9, 11, 7, 7, 8)

    def line(cells: list[Any]) -> str:  # the first two columns are names, left-aligned
        return "".join(
            f"{c:<{w}}" if i < 2 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    lines = [line(list(head))]
    for r in rows:
        cells = [r["draft"] if r["gamma"] else "target alone", r["target"], r["gamma"] or ""]
        cells += [f"{r['acceptance']:.0%}", f"{r['tokens_per_pass']:.2f}"] if r["gamma"] else ["", "1.00"]
        cells += [f"{r['ms_per_token']:.1f}", f"×{r['speedup']:.2f}"]
        cells += [f"×{r['speedup_same_threads']:.2f}", f"×{r['expected_speedup']:.2f}"] if r["gamma"] else ["", ""]
        cells.append(f"{r['ttft_ms']:.0f}")
        lines.append(line(cells))
    return "\n".join(lines)
