"""The noise-aware gate: a significance rule decides on a paired bootstrap over the tickets, and
the candidate carries the burden of proof (``max_drop`` is a non-inferiority test)."""

import numpy as np
import pytest

from slmops_helpers import cli
from slmops_helpers.pipeline.gate import Rule, evaluate_gate, load_policy
from slmops_helpers.pipeline.registry import Registry, RegistryError
from slmops_helpers.uncertainty import TicketScores

N = 48
IDS = tuple(f"ticket-{i}" for i in range(N))
PLAIN = {"score": {"max_drop": 2}}
NOISY = {"score": {"max_drop": 2, "significance": 0.05}}


def _measured(values, n=N):
    tickets = TicketScores(IDS[:n] if n <= N else tuple(f"ticket-{i}" for i in range(n)), tuple(map(float, values)))
    return {"score": tickets.mean, "per_ticket": {"score": tickets.to_json()}}, tickets


def _pair(drop, spread, seed=0, n=N):
    """Reference and candidate per-ticket scores whose mean differs by exactly ``drop``."""
    rng = np.random.default_rng(seed)
    reference = rng.uniform(20, 80, n)
    change = rng.normal(0, spread, n)
    change += -drop - change.mean()
    return _measured(reference + change, n)[0], _measured(reference, n)[0]


def test_a_real_drop_outside_the_noise_fails():
    candidate, reference = _pair(drop=8, spread=3)  # every ticket lost about 8 points
    report = evaluate_gate(candidate, reference, NOISY)
    (result,) = report.results
    assert not report.passed and result.value == pytest.approx(8)
    assert result.bound > 8 and result.n_tickets == N  # the upper bound of the drop lies above its estimate
    assert "with 95% confidence" in report.format() and "on 48 tickets" in report.format()


def test_a_small_drop_passes_only_when_the_tickets_show_it_is_small():
    """Non-inferiority: the same 1-point mean drop, with the same per-ticket spread, passes on many
    tickets and fails on few; the plain point rule passes both, whatever the evidence."""
    many, few = _pair(drop=1, spread=4, n=400), _pair(drop=1, spread=4, n=12)
    on_many, on_few = evaluate_gate(*many, NOISY), evaluate_gate(*few, NOISY)
    assert on_many.results[0].value == pytest.approx(1) == on_few.results[0].value
    assert on_many.passed and on_many.results[0].bound <= 2
    assert not on_few.passed and on_few.results[0].bound > 2 and "over by" in on_few.format()
    assert evaluate_gate(*many, PLAIN).passed and evaluate_gate(*few, PLAIN).passed


@pytest.mark.parametrize("seed", range(5))
def test_fewer_tickets_never_make_passing_easier(seed):
    """Drop tickets from one sample: the bound on the drop only widens (on average over draws it
    must; here for the same per-ticket differences, repeated, so only the count changes)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(-0.5, 6, 12)  # candidate − reference per ticket
    bounds = []
    for copies in (1, 2, 4, 8):
        gain = np.tile(base, copies)
        reference = np.full(gain.size, 50.0)
        bounds.append(
            evaluate_gate(_measured(reference + gain, gain.size)[0], _measured(reference, gain.size)[0], NOISY)
            .results[0]
            .bound
        )
    assert bounds == sorted(bounds, reverse=True) and bounds[0] > bounds[-1]


def test_a_point_drop_inside_the_margin_on_noisy_tickets_fails_only_under_significance():
    candidate, reference = _pair(drop=1, spread=30)  # a 1-point mean drop, tickets swinging ±30
    plain, noisy = evaluate_gate(candidate, reference, PLAIN), evaluate_gate(candidate, reference, NOISY)
    assert plain.results[0].value == pytest.approx(1) == noisy.results[0].value
    assert plain.passed  # 1 <= 2 on the point estimate ...
    assert not noisy.passed and noisy.results[0].bound > 2  # ... but the tickets cannot rule out more than 2
    assert noisy.rows()[0]["significance"] == 0.05 and noisy.rows()[0]["bound"] > 2


def test_min_gain_counts_an_improvement_only_when_it_is_significant():
    policy = {"score": {"min_gain": 0, "significance": 0.05}}
    clear_gain = evaluate_gate(*_pair(drop=-6, spread=3), policy)
    noisy_gain = evaluate_gate(*_pair(drop=-3, spread=40), policy)
    assert clear_gain.passed and not noisy_gain.passed
    assert "short by" in noisy_gain.format()


@pytest.mark.parametrize(
    "policy, message",
    [
        ({"score": {"max_drop": 2, "significance": 0}}, r"significance must lie in \(0, 1\)"),
        ({"score": {"max_drop": 2, "significance": 1.5}}, r"significance must lie in \(0, 1\)"),
        ({"score": {"max_drop": 2, "significance": "0.05"}}, r"significance must lie in \(0, 1\)"),
        ({"score": {"max": 90, "significance": 0.05}}, "no max_drop or min_gain check"),
        ({"score": {"significance": 0.05}}, "no max_drop or min_gain check"),
        ({"score": {"max_drop": 0, "significance": 0.05}}, "non-inferiority margin must be > 0"),
    ],
)
def test_bad_significance_values_are_refused(policy, message):
    with pytest.raises(ValueError, match=message):
        load_policy(policy)


def test_significance_on_a_check_it_cannot_apply_to_is_refused():
    with pytest.raises(ValueError, match="applies to max_drop or min_gain only"):
        Rule("size_mib", "max_increase_pct", 10, significance=0.05)


def test_missing_or_inconsistent_per_ticket_results_name_the_fix():
    candidate, reference = _pair(drop=1, spread=5)
    with pytest.raises(ValueError, match=r"candidate \(metrics dict\) has no per-ticket results for 'score'"):
        evaluate_gate({"score": candidate["score"]}, reference, NOISY)
    shifted = {**candidate, "score": candidate["score"] + 1}
    with pytest.raises(ValueError, match="they come from different runs"):
        evaluate_gate(shifted, reference, NOISY)
    other = {"score": 50.0, "per_ticket": {"score": {"ids": ["a", "b"], "values": [50.0, 50.0]}}}
    with pytest.raises(ValueError, match="same tickets"):
        evaluate_gate(other, reference, NOISY)


def test_the_cli_decides_from_two_registry_ids_and_prints_the_interval(tmp_path, capsys):
    reg = Registry(tmp_path / "reg")
    cand_metrics, ref_metrics = _pair(drop=0.5, spread=2)
    per = {k: TicketScores.from_json(v["per_ticket"]["score"]) for k, v in (("c", cand_metrics), ("r", ref_metrics))}
    ref = reg.register(
        "assistant", base_model="m", metrics={"score": ref_metrics["score"]}, per_ticket={"score": per["r"]}
    )
    cand = reg.register(
        "assistant", base_model="m", metrics={"score": cand_metrics["score"]}, per_ticket={"score": per["c"]}
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text("score: {max_drop: 2, significance: 0.05}\n")
    args = ["gate", "--candidate", cand.id, "--reference", ref.id, "--policy", str(policy), "--registry", str(reg.root)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "dropped 0.5" in out and "the drop is at most" in out and "with 95% confidence" in out

    bare = reg.register("assistant", base_model="m", metrics={"score": 50.0})
    args[2] = bare.id
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert bare.id in err and "no per-ticket results" in err and "register it with per_ticket" in err


def test_the_registry_refuses_per_ticket_results_that_do_not_match_the_metric(tmp_path):
    reg = Registry(tmp_path / "reg")
    tickets = TicketScores(("a", "b"), (40.0, 60.0))
    with pytest.raises(RegistryError, match="averages 50, but metrics record score = 55"):
        reg.register("assistant", base_model="m", metrics={"score": 55.0}, per_ticket={"score": tickets})
    with pytest.raises(RegistryError, match="must be uncertainty.TicketScores"):
        reg.register("assistant", base_model="m", metrics={"score": 50.0}, per_ticket={"score": [40, 60]})
    entry = reg.register("assistant", base_model="m", metrics={"score": 50.0}, per_ticket={"score": tickets})
    assert TicketScores.from_json(reg.get(entry.id).per_ticket["score"]) == tickets
