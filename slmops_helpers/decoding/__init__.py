"""The decoding loop every runtime of the course shares, one token at a time: greedy by
default, sampled when a ``Sampler`` is given.

A runtime supplies a ``step``: run the model on the new token ids (the whole prompt
first, then one token per call, the KV cache kept inside the step) and return the last
position's logits. ``greedy_stream`` turns steps into streamed tokens and times each
one, so time to first token and per-token latency come out of the same loop whether the
model is PyTorch (``torch_step``), plain onnxruntime (``deploy.runtime.OnnxCausalLM``)
or a test's scripted function.

A ``Decoder`` exposes the KV cache itself (feed several tokens, cut the cache back): what
speculative decoding needs (``speculative``). A ``constraint`` (``constrained``, or a JSON
grammar: ``deploy.grammar``) may pick each token among those that keep the answer inside a
format.

A ``Sampler`` replaces the argmax with the knobs every OpenAI-style server has
(``SamplingParams``: temperature, top-p, top-k, min-p, presence and frequency penalties),
drawing from its own seeded generator, so the same seed and request give the same answer;
it can also report each token's log-probability. Without one the loop is exactly the
greedy loop the benchmarks measure.

The folder holds what builds on the loop: ``generate`` (batched answers for scoring and a timed
loop with PyTorch), ``speculative`` (draft, then verify), ``constrained`` (the ticket format as a
token mask) and ``race`` (drafts raced against their target, with the cost model).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class StreamedToken:
    """One generated token: its id, the text it added, and the forward pass time; with a
    ``Sampler`` asked for log-probabilities, also the token's log-probability and the most
    likely tokens at its position, ``((id, logprob), ...)``."""

    id: int
    text: str
    seconds: float
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] = ()


class Decoder(Protocol):
    """A model whose KV cache the caller controls: ``feed`` runs new tokens after the cache
    and returns their logits ``(len(ids), vocab)``; ``crop`` cuts the cache back to its
    first ``length`` tokens; ``length`` is how many tokens the cache holds."""

    length: int

    def feed(self, ids: list[int]) -> np.ndarray: ...

    def crop(self, length: int) -> None: ...


class Constraint(Protocol):
    """Chooses each token among those a format allows (see ``constrained.TicketFormat``).

    ``choose(logits)`` returns the best allowed token, ``advance(token)`` moves past it;
    ``allowed(vocab_size)`` is the boolean mask of the tokens allowed now (``None``: every
    token), what a ``Sampler`` draws among."""

    def choose(self, logits: np.ndarray) -> int: ...

    def advance(self, token: int) -> None: ...

    def allowed(self, vocab_size: int) -> np.ndarray | None: ...


# --- sampling: what an OpenAI-style server offers besides greedy ---------------------------

MAX_TOP_LOGPROBS = 20  # OpenAI's own bound
_NUCLEUS_HEADS = (1024, 8192)  # top-p looks among this many most likely tokens before sorting them all


@dataclass(frozen=True)
class SamplingParams:
    """How each token is picked from the logits, with OpenAI's names (``top_k`` and ``min_p``
    are vLLM's and llama.cpp's). The defaults are greedy decoding.

    Applied in this order: penalties on the raw logits, the format's mask, then (when
    ``temperature`` > 0) temperature, top-k, min-p, top-p, and a draw; at temperature 0 the
    most likely token is taken. ``top_logprobs`` asks for log-probabilities: ``None`` none,
    ``k`` the chosen token's and the ``k`` most likely. They are the model's own
    log-probabilities (raw logits, before penalties, mask and filters), as vLLM reports by
    default."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    min_p: float = 0.0  # 0: off
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.temperature <= 2, "temperature", "between 0 and 2 (0 decodes greedily)"),
            (0 < self.top_p <= 1, "top_p", "in (0, 1] (1 keeps every token)"),
            (isinstance(self.top_k, int) and self.top_k >= 0, "top_k", "an integer >= 0 (0 keeps every token)"),
            (0 <= self.min_p <= 1, "min_p", "in [0, 1] (0 keeps every token)"),
            (-2 <= self.presence_penalty <= 2, "presence_penalty", "between -2 and 2"),
            (-2 <= self.frequency_penalty <= 2, "frequency_penalty", "between -2 and 2"),
            (
                self.top_logprobs is None or 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS,
                "top_logprobs",
                f"None or an integer in [0, {MAX_TOP_LOGPROBS}]",
            ),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ValueError(f"{name} must be {rule}; got {getattr(self, name)!r}.")

    @property
    def greedy(self) -> bool:
        """True when these parameters are plain greedy decoding (no ``Sampler`` needed)."""
        return self == SamplingParams()


class Sampler:
    """Picks each token of one answer under ``SamplingParams``, drawing from ``rng``.

    One sampler per answer (the penalties count that answer's tokens); the answers of one
    request share one generator, so a seeded request gives the same answers every time.
    """

    def __init__(self, params: SamplingParams, rng: np.random.Generator | None = None) -> None:
        self.params = params
        self.rng = rng if rng is not None else np.random.default_rng()
        self.counts: dict[int, int] = {}  # generated token -> times

    def pick(self, logits: np.ndarray, constraint: Constraint | None = None) -> tuple[int, dict[str, Any]]:
        """The next token, and the ``StreamedToken`` fields it adds (log-probabilities)."""
        p = self.params
        scores = np.asarray(logits, dtype=np.float64).copy()
        if self.counts and (p.presence_penalty or p.frequency_penalty):
            seen = np.fromiter(self.counts, dtype=np.int64, count=len(self.counts))
            times = np.fromiter(self.counts.values(), dtype=np.float64, count=len(self.counts))
            scores[seen] -= p.presence_penalty + p.frequency_penalty * times
        if constraint is not None and (mask := constraint.allowed(len(scores))) is not None:
            scores[~mask] = -np.inf
        if not np.isfinite(scores.max()):
            raise ValueError("No token is allowed at this position: the format's mask excludes every token.")
        token = int(np.argmax(scores)) if p.temperature == 0 else self._draw(scores / p.temperature)
        self.counts[token] = self.counts.get(token, 0) + 1
        return token, self._logprobs(logits, token)

    def _draw(self, scores: np.ndarray) -> int:
        p = self.params
        if p.top_k and p.top_k < len(scores):
            kth = np.partition(scores, -p.top_k)[-p.top_k]
            scores[scores < kth] = -np.inf
        probs = np.exp(scores - scores.max())
        if p.min_p:
            probs[probs < p.min_p] = 0.0  # relative to the most likely token, whose weight is exp(0) = 1
        probs /= probs.sum()
        order = self._nucleus(probs, p.top_p) if p.top_p < 1 else None
        weights = np.cumsum(probs if order is None else probs[order])
        i = min(int(np.searchsorted(weights, self.rng.random() * weights[-1], side="right")), len(weights) - 1)
        return i if order is None else int(order[i])

    @staticmethod
    def _nucleus(probs: np.ndarray, top_p: float) -> np.ndarray:
        """The smallest set of most likely tokens whose probability reaches ``top_p``, most likely first."""
        candidates = np.arange(len(probs))
        for head in _NUCLEUS_HEADS:  # the likeliest few usually hold top_p: partial sorts, not a full one
            if head < len(probs):
                likeliest = np.argpartition(-probs, head - 1)[:head]
                if probs[likeliest].sum() >= top_p:
                    candidates = likeliest
                    break
        order = candidates[np.argsort(-probs[candidates], kind="stable")]
        keep = int(np.searchsorted(np.cumsum(probs[order]), top_p)) + 1
        return order[:keep]

    def _logprobs(self, logits: np.ndarray, token: int) -> dict[str, Any]:
        k = self.params.top_logprobs
        if k is None:
            return {}
        raw = np.asarray(logits, dtype=np.float64)
        shifted = raw - raw.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        top = np.argpartition(-logprobs, k)[:k] if 0 < k < len(logprobs) else np.arange(len(logprobs))[:k]
        top = top[np.argsort(-logprobs[top], kind="stable")]
        return {"logprob": float(logprobs[token]), "top_logprobs": tuple((int(i), float(logprobs[i])) for i in top)}


def greedy_stream(
    step: Callable[[list[int]], np.ndarray],
    ids: list[int],
    max_new_tokens: int,
    eos_ids: set[int],
    decode: Callable[[list[int]], str],
    constraint: Constraint | None = None,
    sampler: Sampler | None = None,
) -> Iterator[StreamedToken]:
    """The decoding loop every runtime shares: ``step(new_ids)`` runs the model on the new
    tokens (the prompt first, then one token at a time) and returns the last logits.

    The first token's time includes processing the whole prompt (time to first token);
    each later one is one cached forward pass (and the constraint's choice, when there is
    one). Stops early at a token in ``eos_ids``. Greedy unless a ``sampler`` picks the
    tokens (then under ``constraint``'s mask); without one, the loop the benchmarks time.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    new, generated, text = list(ids), [], ""
    extra: dict[str, Any] = {}
    for _ in range(max_new_tokens):
        start = time.perf_counter()
        logits = step(new)
        if sampler is not None:
            token, extra = sampler.pick(logits, constraint)
        else:
            token = int(np.argmax(logits)) if constraint is None else constraint.choose(logits)
        seconds = time.perf_counter() - start
        if token in eos_ids:
            return
        if constraint is not None:
            constraint.advance(token)
        generated.append(token)
        full = decode(generated)  # decode the whole answer, so multi-byte tokens join correctly
        yield StreamedToken(token, full[len(text) :], seconds, **extra)
        text, new = full, [token]


# --- timing: what an operator watches ------------------------------------------------------


@dataclass
class TimedGeneration:
    """One timed generation: what came out and how long each token took."""

    text: str
    n_tokens: int
    ttft_s: float  # prompt processing + first token
    token_s: list[float] = field(default_factory=list)  # each later token, one forward pass

    @property
    def tok_s(self) -> float:
        """Decode throughput: tokens after the first, per second."""
        return len(self.token_s) / sum(self.token_s) if self.token_s else 0.0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100), linear interpolation; values need not be sorted."""
    if not values:
        raise ValueError("percentile of an empty list; generate at least two tokens.")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(max(round(q), 1), 99) - 1]


def speed_summary(runs: list[TimedGeneration]) -> dict[str, float]:
    """Pool several timed runs into the headline speed figures."""
    per_token = [t for run in runs for t in run.token_s]
    return {
        "ttft_ms": 1000 * statistics.median(r.ttft_s for r in runs),
        "ms_per_token_p50": 1000 * percentile(per_token, 50),
        "ms_per_token_p95": 1000 * percentile(per_token, 95),
        "tok_s": len(per_token) / sum(per_token),
    }


class TorchDecoder:
    """A ``Decoder`` over a PyTorch causal LM (transformers' ``DynamicCache``)."""

    def __init__(self, model: Any, device: Any) -> None:
        self.model, self.device = model, device
        self.past: Any = None
        self.length = 0

    def feed(self, ids: list[int]) -> np.ndarray:
        import torch  # heavy, and a deployed ONNX process must not need it

        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([ids], device=self.device), past_key_values=self.past, use_cache=True
            )
        self.past, self.length = out.past_key_values, self.length + len(ids)
        return out.logits[0].float().cpu().numpy()  # .cpu() waits for the GPU, so the timing is whole

    def crop(self, length: int) -> None:
        if not 0 <= length <= self.length:
            raise ValueError(f"Cannot crop a cache of {self.length} tokens to {length}.")
        if length < self.length:
            self.past.crop(length - self.length)  # transformers 5: a negative count removes that many
            self.length = length


def decoder_stream(
    decoder: Decoder,
    ids: list[int],
    max_new_tokens: int,
    eos_ids: set[int],
    decode: Callable[[list[int]], str],
    constraint: Constraint | None = None,
    sampler: Sampler | None = None,
) -> Iterator[StreamedToken]:
    """``greedy_stream`` on a fresh ``decoder``: each step feeds the new tokens and keeps the last logits."""
    return greedy_stream(lambda new: decoder.feed(new)[-1], ids, max_new_tokens, eos_ids, decode, constraint, sampler)


def torch_step(model: Any, device: Any) -> Callable[[list[int]], np.ndarray]:
    """A ``greedy_stream`` step over a PyTorch causal LM that keeps its KV cache between calls."""
    decoder = TorchDecoder(model, device)
    return lambda new: decoder.feed(new)[-1]


def divergence_margin(
    next_logits: Callable[[list[int]], np.ndarray], ids: list[int], ours: list[int], theirs: list[int]
) -> float:
    """Where two greedy answers to prompt ``ids`` first part, how close the top two of
    ``next_logits(ids + agreed prefix)`` were: 0.0 when they never part.

    Two correct decoders of one model can part only at a near-tie that float rounding broke
    differently; a wide margin means a bug. Streams drop the end-of-sequence token, so an
    answer that stops while the other goes on parted from it right there (one chose EOS, the
    other a token): that step is measured like any other, neither "never parted" (a length
    bug would pass unseen) nor an automatic bug (EOS can be one side of a near-tie too).
    """
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
    if first is None:
        if len(ours) == len(theirs):
            return 0.0
        first = min(len(ours), len(theirs))
    top2 = np.sort(np.asarray(next_logits(ids + ours[:first])))[-2:]
    return float(top2[1] - top2[0])
