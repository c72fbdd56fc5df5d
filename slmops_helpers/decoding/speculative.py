"""Speculative decoding, greedy: a small draft proposes, the target verifies in one pass.

Decoding one token at a time leaves a CPU waiting on memory: a forward pass over 5 new
tokens costs little more than over 1, because the weights are read once either way. So a
cheap draft model guesses ``gamma`` tokens, the target scores all of them in one pass,
and every guess the target would have made itself is kept, plus the target's own next
token. With greedy decoding the answer is exactly the target's; only the time changes.

One round, with the target's next token ``t`` already known::

    draft:   t -> d1 -> d2 -> ... -> d_gamma          (gamma cheap passes)
    target:  [t, d1, ..., d_gamma]  ->  p0 ... p_gamma (one pass; p_i follows d_i)
    keep d1..dn while d_(i+1) == p_i, then p_n; cut both KV caches back to what was kept.

Both models must share a tokenizer: a draft token id means nothing to a target with
another vocabulary (``check_same_tokenizer``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from . import Decoder, StreamedToken


@dataclass
class SpeculativeStats:
    """What one or more speculative generations did: rounds, proposals, acceptances."""

    rounds: int = 0
    proposed: int = 0  # draft tokens offered to the target
    accepted: int = 0  # of those, the ones the target would have chosen itself

    @property
    def acceptance(self) -> float:
        """Share of draft tokens the target kept (0–1)."""
        return self.accepted / self.proposed if self.proposed else 0.0


def check_same_tokenizer(target_vocab: dict[str, int], draft_vocab: dict[str, int], names: tuple[str, str]) -> None:
    """Refuse a draft whose token ids mean something else to the target."""
    if target_vocab != draft_vocab:
        only = len(set(target_vocab.items()) ^ set(draft_vocab.items()))
        raise ValueError(
            f"The draft {names[1]!r} and the target {names[0]!r} do not share a tokenizer "
            f"({len(draft_vocab)} vs {len(target_vocab)} tokens, {only} entries differ). "
            "Fix: draft with a model of the same family and tokenizer (a quantized or distilled copy)."
        )


def _propose(draft: Decoder, todo: list[int], gamma: int, eos_ids: set[int]) -> list[int]:
    """Up to ``gamma`` greedy guesses of the draft after feeding it ``todo`` (the tokens it
    has not seen). A draft with no guess returns logits that are all -inf: proposing stops."""
    proposals: list[int] = []
    for _ in range(gamma):
        logits = draft.feed(todo)[-1]
        token = int(np.argmax(logits))
        if not np.isfinite(logits[token]):
            break
        proposals.append(token)
        if token in eos_ids:
            break
        todo = [token]
    return proposals


def speculative_stream(
    target: Decoder,
    draft: Decoder,
    ids: list[int],
    max_new_tokens: int,
    gamma: int,
    eos_ids: set[int],
    decode: Callable[[list[int]], str],
    stats: SpeculativeStats | None = None,
) -> Iterator[StreamedToken]:
    """Greedy decoding of ``ids`` by ``target``, sped up by ``draft`` (both fresh decoders).

    Yields the same tokens as greedy decoding with the target alone. The first token's
    time covers both prompt passes (time to first token); later tokens come a round at a
    time, the round's time shared evenly among them. ``stats`` (when given) accumulates
    proposals and acceptances.
    """
    if not isinstance(gamma, int) or gamma < 1:
        raise ValueError(f"gamma (draft tokens per round) must be an integer >= 1, got {gamma!r}.")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    if target.length or draft.length:
        raise ValueError("speculative_stream needs fresh decoders (empty KV caches); make new ones per answer.")
    stats = stats if stats is not None else SpeculativeStats()
    generated: list[int] = []
    text, done = "", False

    def emit(tokens: list[int], seconds: float) -> Iterator[StreamedToken]:
        nonlocal text, done
        for token in tokens:
            done = token in eos_ids or len(generated) == max_new_tokens
            if done:
                return
            generated.append(token)
            full = decode(generated)  # the whole answer, so multi-byte tokens join correctly
            yield StreamedToken(token, full[len(text) :], seconds / len(tokens))
            text = full

    start = time.perf_counter()
    pending = int(np.argmax(target.feed(ids)[-1]))  # the target's next token: always right
    draft.feed(ids)  # both prompt passes count in the time to the first token
    yield from emit([pending], time.perf_counter() - start)
    draft_todo: list[int] = []  # accepted tokens the draft has not been fed yet
    while not done and len(generated) < max_new_tokens:
        start = time.perf_counter()
        room = max_new_tokens - len(generated)  # tokens this round may still add
        proposals = _propose(draft, draft_todo + [pending], min(gamma, room - 1), eos_ids)
        base, first = target.length, target.length - len(draft_todo)  # first: where draft_todo starts
        predicted = np.argmax(target.feed([pending, *proposals]), axis=-1)  # one pass verifies all
        n = 0
        while n < len(proposals) and proposals[n] == predicted[n]:
            n += 1
        target.crop(base + 1 + n)  # pending and the accepted guesses; the correction is fed next round
        seen = min(draft.length, base + 1 + n)  # the draft never feeds its last guess
        draft.crop(seen)
        kept = [pending, *proposals[:n], int(predicted[n])]
        draft_todo = (draft_todo + kept[:-1])[seen - first :]
        if proposals:
            stats.rounds += 1
            stats.proposed, stats.accepted = stats.proposed + len(proposals), stats.accepted + n
        pending = kept[-1]
        yield from emit(kept[1:], time.perf_counter() - start)


class PromptLookupDraft:
    """A draft without a model: it guesses that the text goes on as it did after the last
    earlier occurrence of its final ``ngram`` tokens (prompt lookup decoding, Saxena 2023;
    transformers' ``prompt_lookup_num_tokens``). Support answers repeat their prompt's
    words, error codes and the format's field names, so the guesses often hold, and they
    cost no forward pass. A ``decoding.Decoder``: its logits are 0 on the guess, -inf
    elsewhere (all -inf: no guess)."""

    def __init__(self, vocab_size: int, ngram: int = 3) -> None:
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}.")
        self.vocab_size, self.ngram = vocab_size, ngram
        self.history: list[int] = []
        self.length = 0

    def guess(self) -> int | None:
        """The token that followed the latest earlier match of the longest suffix (ngram down to 1)."""
        h = self.history
        for n in range(min(self.ngram, len(h) - 1), 0, -1):
            tail = h[-n:]
            for i in range(len(h) - n - 1, -1, -1):
                if h[i : i + n] == tail:
                    return h[i + n]
        return None

    def feed(self, ids: list[int]) -> np.ndarray:
        self.history.extend(ids)
        self.length = len(self.history)
        logits = np.full((len(ids), self.vocab_size), -np.inf, dtype=np.float32)
        if (token := self.guess()) is not None:
            logits[-1, token] = 0.0
        return logits

    def crop(self, length: int) -> None:
        if not 0 <= length <= self.length:
            raise ValueError(f"Cannot crop a history of {self.length} tokens to {length}.")
        del self.history[length:]
        self.length = length


def expected_tokens_per_round(acceptance: float, gamma: int) -> float:
    """Tokens one round yields if each guess is accepted independently with probability
    ``acceptance``: 1 + a + a² + … + a^gamma (Leviathan et al., 2023)."""
    if not 0 <= acceptance <= 1:
        raise ValueError(f"acceptance must lie in [0, 1], got {acceptance}.")
    return float(sum(acceptance**i for i in range(gamma + 1)))


def expected_speedup(acceptance: float, gamma: int, draft_ms: float, target_ms: float, verify_ms: float) -> float:
    """Speedup over the target alone: tokens per round × target ms per token, over the
    round's cost (``gamma`` draft passes + one verification pass of gamma+1 tokens)."""
    if min(draft_ms, target_ms, verify_ms) <= 0:
        raise ValueError("draft_ms, target_ms and verify_ms must be positive times.")
    return expected_tokens_per_round(acceptance, gamma) * target_ms / (gamma * draft_ms + verify_ms)
