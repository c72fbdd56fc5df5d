"""The speculative race on a tiny exported model: every row identical to the target,
the metrics a notebook records, the cost model beside each row, and a divergence that
is not a near-tie reported as one."""

from __future__ import annotations

import numpy as np
import pytest

from slmops_helpers.decoding.race import (
    Draft,
    best_rows,
    format_rows,
    pass_costs,
    speculative_metrics,
    speculative_study,
    with_expected,
)
from slmops_helpers.decoding.speculative import PromptLookupDraft
from slmops_helpers.deploy.runtime import OnnxCausalLM


@pytest.fixture(scope="module")
def lms(tiny_onnx, tiny_int8):
    return OnnxCausalLM(tiny_onnx, threads=1), OnnxCausalLM(tiny_int8, threads=1)


@pytest.fixture(scope="module")
def race(lms):
    target, int8 = lms
    prompts = [target.encode(target.chat_prompt([{"role": "user", "content": t}])) for t in ("the hub", "wifi help")]
    targets = {"spin": target.decoder, "sleep": OnnxCausalLM(target.folder, threads=1, spin=False).decoder}
    vocab = len(target.vocab())
    drafts = {"int8": Draft(int8.decoder, "sleep"), "lookup": Draft(lambda: PromptLookupDraft(vocab), "spin")}
    rows = speculative_study(targets, drafts, prompts, 16, (1, 3), set(), target.decode)
    costs = pass_costs(targets, drafts, prompts[0], (1, 3))
    return rows, costs, prompts


def test_every_row_is_identical_and_complete(race):
    rows, _, _ = race
    alone = rows[:2]
    assert [r["target"] for r in alone] == ["spin", "sleep"] and all(r["gamma"] == 0 for r in alone)
    assert max(r["speedup"] for r in alone) == 1.0  # the fastest target alone is the yardstick
    assert [(r["draft"], r["gamma"]) for r in rows[2:]] == [("int8", 1), ("int8", 3), ("lookup", 1), ("lookup", 3)]
    for row in rows[2:]:
        assert row["identical"] is True and "divergence_margin" not in row
        assert 0 <= row["acceptance"] <= 1 and row["tokens_per_pass"] >= 1
        assert row["ms_per_token"] > 0 and row["speedup"] > 0 and row["ttft_ms"] > 0
        own = next(r for r in alone if r["target"] == row["target"])
        assert row["speedup_same_threads"] == pytest.approx(own["ms_per_token"] / row["ms_per_token"])


def test_metrics_pick_each_drafts_fastest_gamma_and_carry_the_costs(race):
    rows, costs, _ = race
    assert set(costs["target:spin"]) == set(costs["target:sleep"]) == {1, 2, 4} and set(costs["int8"]) == {1}
    rows = with_expected(rows, costs)
    assert all(r["expected_speedup"] > 0 for r in rows[2:])
    m = speculative_metrics(rows, costs, {"int8": "int8", "lookup": "lookup"})
    best = best_rows(rows)
    for draft in ("int8", "lookup"):
        assert m[f"speculative_{draft}_gamma"] == best[draft]["gamma"]
        assert m[f"speculative_{draft}_speedup"] == max(r["speedup"] for r in rows if r["draft"] == draft)
    assert m["speculative_identical"] is True and "speculative_divergence_margin" not in m
    assert m["speculative_int8_pass_ms"] == costs["int8"][1]
    assert m["speculative_int8_target_verify_ms"] == costs["target:sleep"][m["speculative_int8_gamma"] + 1]
    assert m["speculative_target_ms_per_token"] == min(r["ms_per_token"] for r in rows if not r["gamma"])
    table = format_rows(rows)
    assert "target alone" in table and table.count("\n") == len(rows)


def test_a_divergence_reports_the_targets_margin_where_the_answers_part(lms, race):
    from slmops_helpers.decoding import divergence_margin

    target, _ = lms
    ids = race[2][0]
    ours = [t.id for t in target.stream(ids, 6, stop_at_eos=False)]

    def next_logits(x):
        return target.decoder().feed(x)[-1]

    def gap(prefix):  # the target's own top-two gap after ``prefix``
        top2 = np.sort(next_logits(ids + prefix))[-2:]
        return float(top2[1] - top2[0])

    assert divergence_margin(next_logits, ids, ours, ours) == 0.0  # never parted
    assert divergence_margin(next_logits, ids, ours, ours[:-1]) == pytest.approx(gap(ours[:-1]))  # one stopped
    other = ours[:2] + [(ours[2] + 1) % 27] + ours[3:]
    assert divergence_margin(next_logits, ids, ours, other) == pytest.approx(gap(ours[:2])) and gap(ours[:2]) > 0
    row = {"draft": "x", "target": "t", "gamma": 2, "identical": False, "divergence_margin": 0.5, "speedup": 1.0}
    row |= {"acceptance": 0.5, "ms_per_token": 1.0, "ttft_ms": 1.0, "speedup_same_threads": 1.0}
    alone = {"draft": "none", "target": "t", "gamma": 0, "ms_per_token": 1, "ttft_ms": 1}
    costs = {"target:t": {1: 1.0, 3: 1.5}, "x": {1: 0.5}}
    m = speculative_metrics([alone, row], costs, {"x": "x"})
    assert m["speculative_identical"] is False and m["speculative_divergence_margin"] == 0.5
