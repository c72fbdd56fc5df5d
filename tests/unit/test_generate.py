import pytest

from slmops_helpers import decoding
from slmops_helpers.decoding import generate


def test_generate_timed_counts_and_times(tiny_model, tiny_tokenizer):
    run = generate.generate_timed(tiny_model, tiny_tokenizer, "the hub is offline", max_new_tokens=6)
    assert run.n_tokens == 6 and len(run.token_s) == 5
    assert run.ttft_s > 0 and run.tok_s > 0
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        generate.generate_timed(tiny_model, tiny_tokenizer, "x", 0)


def test_generate_timed_greedy_matches_generate(tiny_model, tiny_tokenizer):
    ids = tiny_tokenizer("the hub is offline", return_tensors="pt").input_ids
    ref = tiny_model.generate(ids, max_new_tokens=5, do_sample=False, min_new_tokens=5)[0, ids.shape[1] :]
    run = generate.generate_timed(tiny_model, tiny_tokenizer, "the hub is offline", max_new_tokens=5)
    assert run.text == tiny_tokenizer.decode(ref, skip_special_tokens=True)


def test_percentile_and_summary():
    assert decoding.percentile([1, 2, 3, 4, 5], 50) == 3
    assert decoding.percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError, match="empty"):
        decoding.percentile([], 50)
    runs = [decoding.TimedGeneration("", 3, 0.2, [0.01, 0.03]), decoding.TimedGeneration("", 3, 0.4, [0.02, 0.02])]
    summary = decoding.speed_summary(runs)
    assert summary["ttft_ms"] == pytest.approx(300)
    assert summary["tok_s"] == pytest.approx(4 / 0.08)
    assert summary["ms_per_token_p50"] == pytest.approx(20)


def test_generate_answers_batches_and_restores_padding(tiny_model, tiny_tokenizer):
    tiny_tokenizer.padding_side = "right"
    answers = generate.generate_answers(
        tiny_model, tiny_tokenizer, ["the hub", "my app is not offline"] * 3, 4, batch_size=4
    )
    assert len(answers) == 6 and answers[0] == answers[2]
    assert tiny_tokenizer.padding_side == "right"
