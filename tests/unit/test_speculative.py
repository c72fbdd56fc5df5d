"""Speculative decoding gives exactly the target's greedy tokens, whatever the draft:
a perfect draft (the target itself), a quantized copy, a random model, a prompt lookup;
and its bookkeeping (caches cut back, end token, token budget) holds on scripted models."""

from __future__ import annotations

import numpy as np
import pytest

from slmops_helpers.decoding import TorchDecoder
from slmops_helpers.decoding.speculative import (
    PromptLookupDraft,
    SpeculativeStats,
    check_same_tokenizer,
    expected_speedup,
    expected_tokens_per_round,
    speculative_stream,
)
from slmops_helpers.deploy.runtime import OnnxCausalLM

PROMPTS = ["the hub is offline", "my wifi app is not setup , help", "error code : billing"]


@pytest.fixture(scope="module")
def int8_lm(tiny_int8):
    return OnnxCausalLM(tiny_int8, threads=1)


def _ids(lm, text):
    return lm.encode(lm.chat_prompt([{"role": "user", "content": text}]))


def _spec(target, draft, ids, n, gamma, stats=None):
    return [t.id for t in speculative_stream(target, draft, ids, n, gamma, {2}, lambda x: " ".join(map(str, x)), stats)]


@pytest.mark.parametrize("gamma", [1, 2, 4, 7])
def test_identical_to_the_target_with_a_quantized_draft(onnx_lm, int8_lm, gamma):
    for text in PROMPTS:
        ids = _ids(onnx_lm, text)
        alone = [t.id for t in onnx_lm.stream(ids, 24, stop_at_eos=False)]
        stats = SpeculativeStats()
        fast = [
            t.id for t in speculative_stream(onnx_lm.decoder(), int8_lm.decoder(), ids, 24, gamma, set(), str, stats)
        ]
        assert fast == alone
        assert stats.proposed > 0 and 0 <= stats.acceptance <= 1


def test_a_perfect_draft_is_always_accepted(onnx_lm):
    ids = _ids(onnx_lm, PROMPTS[0])
    stats = SpeculativeStats()
    out = _spec(onnx_lm.decoder(), onnx_lm.decoder(), ids, 20, 4, stats)
    assert out == [t.id for t in onnx_lm.stream(ids, 20, stop_at_eos=True)]
    assert stats.acceptance == 1.0
    assert stats.rounds < len(out)  # several tokens per target pass: the point of it


def test_torch_target_with_an_onnx_draft_and_a_random_draft(torch_lm, onnx_lm, tiny_tokenizer, tiny_llama_factory):
    random_model = tiny_llama_factory(tiny_tokenizer, num_hidden_layers=1).eval()  # another model, same tokenizer
    for text in PROMPTS:
        ids = _ids(torch_lm, text)
        alone = [t.id for t in torch_lm.stream(ids, 24)]
        assert _spec(torch_lm.decoder(), onnx_lm.decoder(), ids, 24, 3) == alone
        assert _spec(torch_lm.decoder(), TorchDecoder(random_model, "cpu"), ids, 24, 3) == alone


def test_prompt_lookup_draft_keeps_the_answer_and_guesses_repeats(onnx_lm):
    ids = _ids(onnx_lm, PROMPTS[1])
    vocab = len(onnx_lm.vocab())
    alone = [t.id for t in onnx_lm.stream(ids, 24, stop_at_eos=False)]
    assert [
        t.id for t in speculative_stream(onnx_lm.decoder(), PromptLookupDraft(vocab), ids, 24, 3, set(), str)
    ] == alone
    draft = PromptLookupDraft(10, ngram=2)
    logits = draft.feed([1, 2, 3, 1, 2])
    assert int(np.argmax(logits[-1])) == 3  # "1 2" was followed by 3
    assert np.isneginf(PromptLookupDraft(10).feed([4, 5])[-1]).all()  # nothing to repeat: no guess
    draft.crop(2)
    assert draft.history == [1, 2] and draft.length == 2


class Scripted:
    """A decoder that always predicts ``table[last token]``; counts what it was fed."""

    def __init__(self, table: dict[int, int], vocab: int = 10) -> None:
        self.table, self.vocab, self.history, self.length = table, vocab, [], 0

    def feed(self, ids):
        rows = []
        for token in ids:
            self.history.append(token)
            row = np.zeros(self.vocab, dtype=np.float32)
            row[self.table.get(token, 0)] = 1.0
            rows.append(row)
        self.length = len(self.history)
        return np.stack(rows)

    def crop(self, length):
        assert 0 <= length <= self.length
        del self.history[length:]
        self.length = length


def test_bookkeeping_on_scripted_models():
    target = {1: 3, 3: 4, 4: 5, 5: 6, 6: 2}  # prompt 1 -> 3 4 5 6 <end>
    draft = {1: 3, 3: 4, 4: 9, 9: 6, 5: 6, 6: 2}  # guesses wrong after 4
    t, d = Scripted(target), Scripted(draft)
    stats = SpeculativeStats()
    assert _spec(t, d, [1], 10, 3, stats) == [3, 4, 5, 6]
    assert t.history == [1, 3, 4, 5, 6, 2][: t.length]  # the caches hold only kept tokens (the end token too)
    assert d.history == [1, 3, 4, 5, 6, 2][: d.length]
    assert stats.accepted < stats.proposed
    # the token budget cuts a round short
    assert _spec(Scripted(target), Scripted(target), [1], 2, 4) == [3, 4]
    assert _spec(Scripted(target), Scripted(target), [1], 1, 4) == [3]


def test_bad_input_is_refused(onnx_lm, int8_lm):
    ids = _ids(onnx_lm, PROMPTS[0])
    for gamma in (0, -1, 1.5):
        with pytest.raises(ValueError, match="gamma"):
            _spec(onnx_lm.decoder(), int8_lm.decoder(), ids, 8, gamma)
    used = onnx_lm.decoder()
    used.feed(ids)
    with pytest.raises(ValueError, match="fresh decoders"):
        _spec(used, int8_lm.decoder(), ids, 8, 2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        _spec(onnx_lm.decoder(), int8_lm.decoder(), ids, 0, 2)
    with pytest.raises(ValueError, match=r"'int4'.*'fp32'.*do not share a tokenizer"):
        check_same_tokenizer({"a": 0, "b": 1}, {"a": 0, "c": 1}, ("fp32", "int4"))
    check_same_tokenizer(onnx_lm.vocab(), int8_lm.vocab(), ("fp32", "int8"))  # same tokenizer: no error


def test_expected_speedup_formula():
    assert expected_tokens_per_round(0.0, 4) == 1.0
    assert expected_tokens_per_round(1.0, 4) == 5.0
    assert expected_tokens_per_round(0.5, 2) == pytest.approx(1.75)
    # a free draft and a free verification of extra tokens: the speedup is the tokens per round
    assert expected_speedup(0.5, 2, draft_ms=1e-9, target_ms=10, verify_ms=10) == pytest.approx(1.75)
    # a draft a third of the target's cost, half its guesses kept: a loss on a CPU where verifying costs 1.2x
    assert expected_speedup(0.5, 4, draft_ms=8.7, target_ms=25, verify_ms=30) < 1.0
    with pytest.raises(ValueError):
        expected_tokens_per_round(1.5, 2)
    with pytest.raises(ValueError):
        expected_speedup(0.5, 2, 0, 10, 10)
