"""Bootstrap intervals, the paired comparison, and how many tickets a gate needs."""

import math

import numpy as np
import pytest

from slmops_helpers import data
from slmops_helpers.uncertainty import (
    Interval,
    TicketScores,
    bootstrap_interval,
    certifiable_margin,
    difference_metrics,
    interval_metrics,
    one_sided_bound,
    paired_difference,
    tickets_needed,
)


def _scores(values, prefix="t"):
    return TicketScores(tuple(f"{prefix}{i}" for i in range(len(values))), tuple(float(v) for v in values))


def test_ticket_scores_average_to_the_score():
    rows = list(data.load_splits()["test"])[:6]
    answers = [data.format_target(r) for r in rows[:3]] + ["category: setup", "nothing", rows[5]["message"]]
    per_ticket = data.ticket_scores(answers, rows)
    assert per_ticket[:3] == [100.0, 100.0, 100.0]
    assert math.isclose(np.mean(per_ticket), data.score_predictions(answers, rows)["score"])


def test_interval_is_seeded_contains_the_mean_and_narrows_with_more_tickets():
    rng = np.random.default_rng(1)
    small, large = _scores(rng.uniform(0, 100, 12)), _scores(rng.uniform(0, 100, 480))
    ci = bootstrap_interval(small)
    assert ci == bootstrap_interval(small)  # the same numbers on every run
    assert ci.low < ci.estimate < ci.high and ci.n == 12
    wide, narrow = ci.high - ci.low, bootstrap_interval(large).high - bootstrap_interval(large).low
    assert narrow < wide / 3  # sqrt(40) ≈ 6.3 times narrower in theory


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng, hits = np.random.default_rng(7), 0
    for trial in range(200):
        ci = bootstrap_interval(rng.normal(50, 20, 48), seed=trial)
        hits += ci.low <= 50 <= ci.high
    assert 0.88 <= hits / 200 <= 0.99  # 95 % nominal; percentile intervals run a little short on 48 tickets


def test_paired_difference_cancels_shared_ticket_difficulty():
    rng = np.random.default_rng(3)
    difficulty = rng.uniform(0, 100, 48)
    a, b = _scores(difficulty), _scores(np.clip(difficulty - 3 + rng.normal(0, 1, 48), 0, 100))
    paired = paired_difference(a, b)
    assert paired.low > 0  # a 3-point gap shared by every ticket is clear when paired ...
    separate_a, separate_b = bootstrap_interval(a), bootstrap_interval(b)
    assert separate_a.low < separate_b.high  # ... though the separate intervals overlap
    assert paired.verdict() == "better" and paired_difference(b, a).verdict() == "worse"


def test_paired_difference_follows_ticket_ids_not_order():
    a = TicketScores(("x", "y", "z"), (90.0, 10.0, 50.0))
    b = TicketScores(("z", "x", "y"), (50.0, 90.0, 10.0))
    assert paired_difference(a, b) == Interval(0.0, 0.0, 0.0, 3)


def test_not_distinguishable_names_the_ticket_count():
    rng = np.random.default_rng(5)
    a, b = _scores(rng.uniform(0, 100, 8)), _scores(rng.uniform(0, 100, 8))
    ci = paired_difference(a, b)
    if ci.low <= 0 <= ci.high:
        assert ci.verdict() == "not distinguishable on 8 tickets"


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="same tickets: 1 only in the first"):
        paired_difference(_scores([1, 2, 3]), TicketScores(("t0", "t1", "u9"), (1.0, 2.0, 3.0)))
    with pytest.raises(ValueError, match="at least 2 tickets"):
        bootstrap_interval([50.0])
    with pytest.raises(ValueError, match=r"lies in \(0, 1\)"):
        bootstrap_interval([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="significance lies in"):
        one_sided_bound(np.array([1.0, 2.0]), 0)
    with pytest.raises(ValueError, match="one score per ticket"):
        TicketScores(("a",), (1.0, 2.0))
    with pytest.raises(ValueError, match="finite"):
        TicketScores(("a", "b"), (1.0, float("nan")))
    with pytest.raises(ValueError, match="'ids' and 'values'"):
        TicketScores.from_json([1, 2], "entry v1")


def test_json_round_trip_and_metric_keys():
    a, b = _scores([10, 20, 30, 40]), _scores([0, 20, 30, 20])
    assert TicketScores.from_json(a.to_json()) == a
    assert set(interval_metrics("lora", a)) == {"lora_score_ci_low", "lora_score_ci_high"}
    diff = difference_metrics("lora_vs_base", a, b)
    assert diff["lora_vs_base_score_diff"] == pytest.approx(7.5)
    assert diff["lora_vs_base_score_diff_ci_low"] <= 7.5 <= diff["lora_vs_base_score_diff_ci_high"]


def test_tickets_needed_follows_the_normal_approximation():
    # (1.645 + 0.842)^2 * (10 / 2)^2 = 154.6 → 155
    assert tickets_needed(10, 2) == 155
    assert tickets_needed(10, 4) < tickets_needed(10, 2) < tickets_needed(10, 2, power=0.9)
    # a candidate that truly loses 1 of the 2 allowed points leaves half the margin: four times the tickets
    assert tickets_needed(10, 2, true_drop=1) == tickets_needed(10, 1) == 619
    with pytest.raises(ValueError, match="margin above the true drop"):
        tickets_needed(10, 0)
    with pytest.raises(ValueError, match="margin above the true drop"):
        tickets_needed(10, 2, true_drop=2)
    with pytest.raises(ValueError, match="power lies in"):
        tickets_needed(10, 2, power=1.0)


def test_certifiable_margin_is_tickets_needed_solved_for_the_margin():
    margin = certifiable_margin(11.6, 48)
    assert margin == pytest.approx((1.6449 + 0.8416) * 11.6 / 48**0.5, rel=1e-3)
    assert tickets_needed(11.6, margin * 1.0001) <= 48 < tickets_needed(11.6, margin * 0.95)
    assert certifiable_margin(11.6, 24) > margin  # fewer tickets certify only a wider margin
    with pytest.raises(ValueError, match="at least 2 tickets"):
        certifiable_margin(11.6, 1)


def test_simulated_power_matches_tickets_needed():
    """At the n it recommends, a candidate as good as the reference passes the non-inferiority
    bootstrap test (upper bound of the drop within the margin) about `power` of the time."""
    sd, margin = 20.0, 8.0
    n, rng, passed = tickets_needed(sd, margin), np.random.default_rng(11), 0
    for trial in range(200):
        gain = rng.normal(0.0, sd, n)  # truly equal: per-ticket differences around 0
        passed += -one_sided_bound(gain, 0.05, seed=trial) <= margin
    assert 0.65 <= passed / 200 <= 0.95  # 0.8 nominal


def test_seed_metrics_average_tickets_over_seeds_and_keep_each_seeds_spread():
    from slmops_helpers.uncertainty import mean_over_seeds, seed_difference_metrics, seed_score_metrics

    ids = tuple(f"t{i}" for i in range(6))
    a = [TicketScores(ids, (60, 70, 80, 60, 70, 80)), TicketScores(ids[::-1], (50, 60, 70, 50, 60, 70)[::-1])]
    assert mean_over_seeds(a).values == (55, 65, 75, 55, 65, 75)  # matched by ticket id, not by position
    m = seed_score_metrics("lora", a)
    assert m["lora_score"] == pytest.approx(65) and (m["lora_seed_min_score"], m["lora_seed_max_score"]) == (60, 70)
    assert m["lora_score_ci_low"] <= 65 <= m["lora_score_ci_high"]
    base = [TicketScores(ids, (40,) * 6)]  # one untrained run stands against every seed
    d = seed_difference_metrics("lora_vs_base", a, base)
    assert d["lora_vs_base_score_diff"] == pytest.approx(25)
    assert (d["lora_vs_base_seed_min_score_diff"], d["lora_vs_base_seed_max_score_diff"]) == (20, 30)
    with pytest.raises(ValueError, match="same tickets"):
        mean_over_seeds([a[0], TicketScores(("x", *ids[1:]), a[0].values)])
    with pytest.raises(ValueError, match="one run per seed"):
        seed_difference_metrics("x", a, [*a, a[0]])


def test_seed_sentence_claims_only_what_every_seed_agrees_on():
    from slmops_helpers.uncertainty import seed_sentence

    def m(diff, low, high, seed_low, seed_high):
        return {"n_eval": 48, "k_score_diff": diff, "k_score_diff_ci_low": low, "k_score_diff_ci_high": high,
                "k_seed_min_score_diff": seed_low, "k_seed_max_score_diff": seed_high}  # fmt: skip

    assert "better on every seed, beyond the ticket noise" in seed_sentence(m(5, 2, 8, 3, 7), "k", "A", "B", 3)
    assert "worse on every seed" in seed_sentence(m(-5, -8, -2, -7, -3), "k", "A", "B", 3)
    # one seed the other way: no claim, even with a ticket interval off zero
    assert "disagree" in seed_sentence(m(5, 2, 8, -1, 9), "k", "A", "B", 3)
    assert "within the ticket noise on 48 tickets" in seed_sentence(m(2, -1, 5, 1, 3), "k", "A", "B", 3)
    assert "one seed" in seed_sentence(m(5, 2, 8, 5, 5), "k", "A", "B", 1)
