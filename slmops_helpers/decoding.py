"""The greedy decoding loop every runtime of the course shares, one token at a time.

A runtime supplies a ``step``: run the model on the new token ids (the whole prompt
first, then one token per call, the KV cache kept inside the step) and return the last
position's logits. ``greedy_stream`` turns steps into streamed tokens and times each
one, so time to first token and per-token latency come out of the same loop whether the
model is PyTorch (``torch_step``), plain onnxruntime (``deploy.runtime.OnnxCausalLM``)
or a test's scripted function.

A ``Decoder`` exposes the KV cache itself (feed several tokens, cut the cache back): what
speculative decoding needs (``speculative``). A ``constraint`` (``constrained``) may pick
each token among those that keep the answer inside a format.
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
    """One generated token: its id, the text it added, and the forward pass time."""

    id: int
    text: str
    seconds: float


class Decoder(Protocol):
    """A model whose KV cache the caller controls: ``feed`` runs new tokens after the cache
    and returns their logits ``(len(ids), vocab)``; ``crop`` cuts the cache back to its
    first ``length`` tokens; ``length`` is how many tokens the cache holds."""

    length: int

    def feed(self, ids: list[int]) -> np.ndarray: ...

    def crop(self, length: int) -> None: ...


class Constraint(Protocol):
    """Chooses each token among those a format allows (see ``constrained.TicketFormat``).

    ``choose(logits)`` returns the best allowed token, ``advance(token)`` moves past it."""

    def choose(self, logits: np.ndarray) -> int: ...

    def advance(self, token: int) -> None: ...


def greedy_stream(
    step: Callable[[list[int]], np.ndarray],
    ids: list[int],
    max_new_tokens: int,
    eos_ids: set[int],
    decode: Callable[[list[int]], str],
    constraint: Constraint | None = None,
) -> Iterator[StreamedToken]:
    """The decoding loop every runtime shares: ``step(new_ids)`` runs the model on the new
    tokens (the prompt first, then one token at a time) and returns the last logits.

    The first token's time includes processing the whole prompt (time to first token);
    each later one is one cached forward pass (and the constraint's choice, when there is
    one). Stops early at a token in ``eos_ids``.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    new, generated, text = list(ids), [], ""
    for _ in range(max_new_tokens):
        start = time.perf_counter()
        logits = step(new)
        token = int(np.argmax(logits)) if constraint is None else constraint.choose(logits)
        seconds = time.perf_counter() - start
        if token in eos_ids:
            return
        if constraint is not None:
            constraint.advance(token)
        generated.append(token)
        full = decode(generated)  # decode the whole answer, so multi-byte tokens join correctly
        yield StreamedToken(token, full[len(text) :], seconds)
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
) -> Iterator[StreamedToken]:
    """``greedy_stream`` on a fresh ``decoder``: each step feeds the new tokens and keeps the last logits."""
    return greedy_stream(lambda new: decoder.feed(new)[-1], ids, max_new_tokens, eos_ids, decode, constraint)


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
