"""Sampling in the shared decode loop (``decoding.Sampler``): each knob does what its name
says on logits whose answer is known, a seed reproduces, greedy stays greedy, and the
format mask is respected."""

from __future__ import annotations

import numpy as np
import pytest

from slmops_helpers.decoding import Sampler, SamplingParams, greedy_stream

LOGITS = np.log(np.array([0.5, 0.3, 0.15, 0.05]))


def _draws(params: SamplingParams, logits=LOGITS, n=4000, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([Sampler(params, rng).pick(logits)[0] for _ in range(n)])


@pytest.mark.parametrize(
    "field, value",
    [
        ("temperature", -0.1),
        ("temperature", 2.5),
        ("top_p", 0.0),
        ("top_p", 1.2),
        ("top_k", -1),
        ("min_p", 1.5),
        ("presence_penalty", 3),
        ("frequency_penalty", -2.5),
        ("top_logprobs", 21),
    ],
)
def test_bad_sampling_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be"):
        SamplingParams(**{field: value})


def test_only_the_defaults_are_plain_greedy():
    assert SamplingParams().greedy
    for changed in ({"temperature": 0.7}, {"top_logprobs": 0}, {"presence_penalty": 0.5}, {"top_k": 5}):
        assert not SamplingParams(**changed).greedy


def test_temperature_one_draws_from_the_models_distribution():
    counts = np.bincount(_draws(SamplingParams(temperature=1.0)), minlength=4) / 4000
    assert np.allclose(counts, [0.5, 0.3, 0.15, 0.05], atol=0.03), counts


def test_low_temperature_sharpens_and_high_temperature_flattens():
    cold = np.bincount(_draws(SamplingParams(temperature=0.3)), minlength=4) / 4000
    hot = np.bincount(_draws(SamplingParams(temperature=2.0)), minlength=4) / 4000
    for counts, t in ((cold, 0.3), (hot, 2.0)):
        assert np.allclose(counts, np.exp(LOGITS / t) / np.exp(LOGITS / t).sum(), atol=0.03), (t, counts)
    assert cold[0] > 0.8 and hot[0] < 0.45


@pytest.mark.parametrize(
    "params, allowed",
    [
        (SamplingParams(temperature=1.0, top_k=1), {0}),
        (SamplingParams(temperature=1.0, top_k=2), {0, 1}),
        (SamplingParams(temperature=1.0, top_p=0.75), {0, 1}),  # 0.5 + 0.3 reaches 0.75
        (SamplingParams(temperature=1.0, top_p=0.45), {0}),
        (SamplingParams(temperature=1.0, min_p=0.25), {0, 1, 2}),  # 0.05 < 0.25 * 0.5
        (SamplingParams(temperature=1.0, min_p=0.5), {0, 1}),
    ],
)
def test_filters_keep_exactly_the_tokens_they_promise(params, allowed):
    assert set(_draws(params, n=2000).tolist()) == allowed


@pytest.mark.parametrize("size, spread", [(5000, 0.01), (20000, 0.01), (20000, 3.0)])
def test_top_p_keeps_the_fewest_most_likely_tokens_however_flat(size, spread):
    # near-equal tokens: the likeliest 1,024 (or 8,192) cannot reach top_p, so more are sorted
    logits = np.random.default_rng(1).normal(0, spread, size)
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    kept = Sampler._nucleus(probs, 0.9)
    by_size = np.sort(probs)[::-1]
    assert len(kept) == np.searchsorted(np.cumsum(by_size), 0.9) + 1 and len(set(kept.tolist())) == len(kept)
    assert probs[kept].min() >= np.delete(probs, kept).max()  # the most likely ones, nothing skipped


def test_the_same_seed_gives_the_same_draws_and_another_seed_others():
    params = SamplingParams(temperature=1.0)
    assert (_draws(params, n=200, seed=7) == _draws(params, n=200, seed=7)).all()
    assert (_draws(params, n=200, seed=7) != _draws(params, n=200, seed=8)).any()


def test_greedy_with_penalties_moves_off_a_repeated_token():
    logits = np.array([1.0, 0.5, -5.0])
    presence = Sampler(SamplingParams(presence_penalty=2.0))
    # 1 - 2 < 0.5; then both were seen: 1 - 2 > 0.5 - 2, and presence does not grow with the count
    assert [presence.pick(logits)[0] for _ in range(4)] == [0, 1, 0, 0]
    frequency = Sampler(SamplingParams(frequency_penalty=0.3))
    # token 0 until its count pushes it below token 1: 1.0 - 0.3 * 2 = 0.4 < 0.5
    assert [frequency.pick(logits)[0] for _ in range(3)] == [0, 0, 1]
    assert [Sampler(SamplingParams()).pick(logits)[0] for _ in range(3)] == [0, 0, 0]


def test_logprobs_are_the_models_own_and_the_top_ones_come_sorted():
    logits = np.array([2.0, 0.0, 1.0, -1.0])
    expected = logits - np.log(np.exp(logits).sum())
    token, extra = Sampler(SamplingParams(temperature=1.5, presence_penalty=1, top_logprobs=2)).pick(logits)
    assert extra["logprob"] == pytest.approx(expected[token])
    assert [i for i, _ in extra["top_logprobs"]] == [0, 2]
    assert [lp for _, lp in extra["top_logprobs"]] == pytest.approx([expected[0], expected[2]])
    assert Sampler(SamplingParams(top_logprobs=0)).pick(logits)[1]["top_logprobs"] == ()
    assert Sampler(SamplingParams(temperature=1.0)).pick(logits)[1] == {}


class Mask:
    """A constraint allowing a fixed set of tokens (a ``decoding.Constraint``)."""

    def __init__(self, allowed):
        self.ids = np.array(sorted(allowed), dtype=np.int64)

    def allowed(self, vocab_size):
        mask = np.zeros(vocab_size, dtype=bool)
        mask[self.ids] = True
        return mask

    def choose(self, logits):
        return int(self.ids[np.argmax(logits[self.ids])])

    def advance(self, token):
        assert token in self.ids


def test_sampling_stays_inside_the_constraints_mask():
    rng = np.random.default_rng(0)
    picks = {Sampler(SamplingParams(temperature=2.0, top_p=0.9), rng).pick(LOGITS, Mask({2, 3}))[0] for _ in range(300)}
    assert picks == {2, 3}
    assert Sampler(SamplingParams(top_logprobs=1)).pick(LOGITS, Mask({1, 3}))[0] == 1
    with pytest.raises(ValueError, match="excludes every token"):
        Sampler(SamplingParams(temperature=1.0)).pick(LOGITS, Mask(set()))


def _scripted(step_logits):
    """A step function cycling through fixed logits rows, as a runtime's step would return them."""
    calls = []

    def step(new):
        calls.append(list(new))
        return step_logits[(len(calls) - 1) % len(step_logits)]

    return step


def test_a_greedy_sampler_gives_the_loops_greedy_tokens_and_reports_logprobs():
    rows = np.random.default_rng(3).normal(0, 2, (6, 12))
    decode = lambda ids: " ".join(map(str, ids))  # noqa: E731
    plain = list(greedy_stream(_scripted(rows), [1, 2], 6, set(), decode))
    scored = list(
        greedy_stream(_scripted(rows), [1, 2], 6, set(), decode, sampler=Sampler(SamplingParams(top_logprobs=3)))
    )
    assert [t.id for t in plain] == [t.id for t in scored] == [int(np.argmax(r)) for r in rows]
    assert all(t.logprob is None for t in plain) and all(len(t.top_logprobs) == 3 for t in scored)
    assert all(t.top_logprobs[0][0] == t.id for t in scored)  # greedy: the chosen token is the most likely


def test_sampled_stream_stops_at_eos_and_is_reproducible():
    rows = np.random.default_rng(4).normal(0, 1, (8, 10))
    decode = lambda ids: ",".join(map(str, ids))  # noqa: E731

    def run(seed):
        sampler = Sampler(SamplingParams(temperature=1.0), np.random.default_rng(seed))
        return [t.id for t in greedy_stream(_scripted(rows), [0], 8, {9}, decode, sampler=sampler)]

    assert run(5) == run(5) and 9 not in run(5)
    assert len({tuple(run(s)) for s in range(10)}) > 1
