"""How far a task score measured on a few dozen tickets can be trusted.

A score is the mean of per-ticket scores (``data.ticket_scores``), so resampling the
tickets with replacement shows how much it would move on another draw of tickets of the
same kind: the **bootstrap**. Two models scored on the *same* tickets are compared with
a **paired** bootstrap: each resample draws tickets, and both models are scored on the
same draw, so the ticket-to-ticket difficulty that both share cancels out. That makes a
paired interval much narrower than the two separate intervals suggest.

Every interval here is a percentile bootstrap: seeded (the same numbers on every run),
vectorized (48 tickets × 2,000 resamples take a few milliseconds), and honest about its
limits: with 8 tickets it can only say "not distinguishable" about all but large gaps.

>>> a = TicketScores(("t1", "t2", "t3"), (80.0, 40.0, 60.0))
>>> bootstrap_interval(a).estimate
60.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from .data import ticket_scores

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0


@dataclass(frozen=True)
class TicketScores:
    """One model's score on each ticket, by ticket id (0-100, as ``data.ticket_scores``)."""

    ids: tuple[str, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.values):
            raise ValueError(f"{len(self.ids)} ticket ids for {len(self.values)} scores: pass one score per ticket.")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("Ticket ids repeat; each ticket must be scored once.")
        bad = [v for v in self.values if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)]
        if bad:
            raise ValueError(f"Per-ticket scores must be finite numbers, got {bad[0]!r}.")

    @classmethod
    def from_answers(cls, answers: list[str], rows: list[dict[str, str]]) -> TicketScores:
        """Score each answer against its row's references; a row without an ``id`` (hand-made
        rows) is named by its position, so pair such scores only over the same rows in order."""
        ids = tuple(str(r.get("id", f"#{i}")) for i, r in enumerate(rows))
        return cls(ids, tuple(ticket_scores(answers, rows)))

    @classmethod
    def from_json(cls, record: Any, where: str = "per-ticket results") -> TicketScores:
        """Read ``{"ids": [...], "values": [...]}`` (what ``to_json`` writes), naming ``where`` on bad input."""
        if not isinstance(record, dict) or not {"ids", "values"} <= set(record):
            raise ValueError(f"{where} must be a mapping with 'ids' and 'values'; got {type(record).__name__}.")
        return cls(tuple(map(str, record["ids"])), tuple(float(v) for v in record["values"]))

    def to_json(self) -> dict[str, list]:
        return {"ids": list(self.ids), "values": list(self.values)}

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    def matches(self, recorded: Any) -> bool:
        """Whether ``recorded`` is these tickets' mean (to rounding): the check that a metric and
        its per-ticket results come from the same measurement."""
        number = isinstance(recorded, int | float) and not isinstance(recorded, bool)
        return number and abs(self.mean - recorded) <= 1e-6 * max(1.0, abs(recorded))


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval at ``level`` over ``n`` tickets."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = LEVEL

    def __str__(self) -> str:
        return f"{self.estimate:.1f} [{self.low:.1f}, {self.high:.1f}]"

    def verdict(self, better: str = "better", worse: str = "worse") -> str:
        """For a difference: ``better`` when the whole interval is above 0, ``worse`` below,
        otherwise "not distinguishable on N tickets"."""
        if self.low > 0:
            return better
        if self.high < 0:
            return worse
        return f"not distinguishable on {self.n} tickets"


def _values(scores: TicketScores | Sequence[float]) -> np.ndarray:
    values = np.asarray(scores.values if isinstance(scores, TicketScores) else scores, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"A bootstrap needs at least 2 tickets, got {values.size}. Fix: score more tickets.")
    if not np.isfinite(values).all():
        raise ValueError("Per-ticket scores must be finite numbers.")
    return values


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"A confidence level lies in (0, 1), got {level!r}; 0.95 is the usual choice.")


def resampled_means(values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The mean of ``values`` over ``resamples`` draws of its tickets with replacement."""
    if resamples < 100:
        raise ValueError(f"{resamples} resamples are too few for an interval; use 1,000 or more.")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.size, size=(resamples, values.size))
    return values[draws].mean(axis=1)


def bootstrap_interval(
    scores: TicketScores | Sequence[float], *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED
) -> Interval:
    """The mean score and its percentile-bootstrap interval."""
    _check_level(level)
    values = _values(scores)
    means = resampled_means(values, resamples, seed)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    estimate = float(values.mean())
    # min/max: when every ticket is equal, summation order alone could put the estimate an ulp outside
    return Interval(estimate, min(float(low), estimate), max(float(high), estimate), values.size, level)


def paired_values(a: TicketScores, b: TicketScores) -> np.ndarray:
    """Per-ticket ``a - b``, in ``a``'s ticket order; refuses scores of different tickets."""
    if set(a.ids) != set(b.ids):
        only_a, only_b = sorted(set(a.ids) - set(b.ids)), sorted(set(b.ids) - set(a.ids))
        raise ValueError(
            f"A paired comparison needs both models scored on the same tickets: {len(only_a)} only in the first "
            f"({only_a[:3]}), {len(only_b)} only in the second ({only_b[:3]}). Fix: score both on the same rows."
        )
    by_id = dict(zip(b.ids, b.values, strict=True))
    return np.asarray(a.values, dtype=np.float64) - np.asarray([by_id[i] for i in a.ids], dtype=np.float64)


def paired_difference(
    a: TicketScores, b: TicketScores, *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED
) -> Interval:
    """``a``'s score minus ``b``'s, with a paired-bootstrap interval."""
    return bootstrap_interval(paired_values(a, b), level=level, resamples=resamples, seed=seed)


def one_sided_bound(differences: np.ndarray, significance: float, seed: int = SEED) -> float:
    """The lower bound a mean difference exceeds with confidence 1 - ``significance``."""
    if not 0 < significance < 1:
        raise ValueError(f"A significance lies in (0, 1), got {significance!r}; 0.05 is the usual choice.")
    return float(np.quantile(resampled_means(_values(differences), seed=seed), significance))


def drop_upper_bound(candidate: TicketScores, reference: TicketScores, significance: float) -> float:
    """The one-sided upper bound, at confidence 1 - ``significance``, of the reference's score minus the
    candidate's over the tickets both were scored on: how much worse the candidate may really be."""
    return -one_sided_bound(paired_values(candidate, reference), significance)


def _z_sum(power: float, significance: float) -> float:
    for name, p in (("power", power), ("significance", significance)):
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p < 1:
            raise ValueError(f"{name} lies in (0, 1), got {p!r}.")
    z = NormalDist().inv_cdf
    return z(1 - significance) + z(power)


def tickets_needed(
    sd: float, margin: float, *, true_drop: float = 0.0, power: float = 0.8, significance: float = 0.05
) -> int:
    """How many tickets a non-inferiority gate (``gate``: ``max_drop: margin`` with a
    significance) needs so that a candidate whose true drop is ``true_drop`` points (0: as
    good as the reference) passes with probability ``power``, when per-ticket differences
    spread by ``sd`` points.

    Normal approximation of the paired one-sided test:
    n = ((z[1-significance] + z[power]) * sd / (margin - true_drop))^2.
    """
    if sd < 0 or margin <= true_drop:
        raise ValueError(
            f"Need sd >= 0 and a margin above the true drop, got sd={sd!r}, margin={margin!r}, "
            f"true_drop={true_drop!r}: a candidate that truly loses the whole margin passes only by chance."
        )
    return max(2, math.ceil((_z_sum(power, significance) * sd / (margin - true_drop)) ** 2))


def certifiable_margin(sd: float, n: int, *, power: float = 0.8, significance: float = 0.05) -> float:
    """The smallest non-inferiority margin, in points, that ``n`` tickets certify for a candidate
    as good as the reference with probability ``power`` (``tickets_needed`` solved for the margin)."""
    if sd < 0 or n < 2:
        raise ValueError(f"Need sd >= 0 and at least 2 tickets, got sd={sd!r}, n={n!r}.")
    return _z_sum(power, significance) * sd / math.sqrt(n)


def interval_metrics(name: str, scores: TicketScores) -> dict[str, float]:
    """``<name>_score_ci_low`` / ``_ci_high`` for the metrics contract (``score_ci_*`` for name "")."""
    ci, key = bootstrap_interval(scores), f"{name}_score" if name else "score"
    return {f"{key}_ci_low": ci.low, f"{key}_ci_high": ci.high}


def difference_metrics(name: str, a: TicketScores, b: TicketScores) -> dict[str, float]:
    """``<name>_score_diff`` and its paired interval (``_ci_low`` / ``_ci_high``) for the metrics contract."""
    ci = paired_difference(a, b)
    return {
        f"{name}_score_diff": ci.estimate,
        f"{name}_score_diff_ci_low": ci.low,
        f"{name}_score_diff_ci_high": ci.high,
    }


def difference_from_metrics(m: dict[str, Any], name: str, n: int | None = None) -> Interval:
    """The recorded difference ``name`` (see ``difference_metrics``) as an Interval over ``n``
    tickets (default: the metrics' ``n_eval``)."""
    key = f"{name}_score_diff"
    return Interval(m[key], m[f"{key}_ci_low"], m[f"{key}_ci_high"], int(m["n_eval"] if n is None else n))


def score_text(m: dict[str, Any], name: str) -> str:
    """``<name>_score`` with its recorded interval, e.g. "score 21.4 (95 % interval 12.0 to 31.3)"."""
    key = f"{name}_score"
    return f"score {m[key]:.1f} (95 % interval {m[key + '_ci_low']:.1f} to {m[key + '_ci_high']:.1f})"


def difference_sentence(m: dict[str, Any], name: str, a: str, b: str, n: int | None = None) -> str:
    """``a`` against ``b`` in words, decided by the paired interval, e.g. "LoRA − base: +3.2
    points (95 % interval -4.1 to +10.5): not distinguishable on 8 tickets"."""
    ci = difference_from_metrics(m, name, n)
    word = ci.verdict(f"{a} is better", f"{a} is worse")
    return f"{a} − {b}: **{ci.estimate:+.1f}** points (95 % interval {ci.low:+.1f} to {ci.high:+.1f}): {word}"


# --- training claims over seeds -----------------------------------------------------------
# One training run is one draw of the seed (initialization, batch order, dropout): the same
# recipe on another seed, or another CPU, trains a different model. A comparison of two
# recipes is a claim only when it holds on every seed; the ticket interval is then taken on
# each ticket's score averaged over the seeds (the tickets are the same for every run).


def mean_over_seeds(runs: Sequence[TicketScores]) -> TicketScores:
    """Each ticket's score averaged over ``runs`` (one per seed, all on the same tickets)."""
    if not runs:
        raise ValueError("No runs to average: pass one TicketScores per training seed.")
    for run in runs[1:]:
        paired_values(runs[0], run)  # refuses runs scored on different tickets, naming the fix
    values = np.mean([[dict(zip(r.ids, r.values, strict=True))[i] for i in runs[0].ids] for r in runs], axis=0)
    return TicketScores(runs[0].ids, tuple(float(v) for v in values))


def seed_score_metrics(name: str, runs: Sequence[TicketScores]) -> dict[str, float]:
    """``<name>_score``: the mean over seeds, with the ticket interval of the seed-averaged tickets,
    and ``<name>_seed_min_score`` / ``_seed_max_score``: the spread the seeds alone make."""
    scores = [float(np.mean(r.values)) for r in runs]
    averaged = mean_over_seeds(runs)
    out = {f"{name}_score": float(np.mean(averaged.values)), **interval_metrics(name, averaged)}
    return out | {f"{name}_seed_min_score": min(scores), f"{name}_seed_max_score": max(scores)}


def seed_difference_metrics(name: str, a: Sequence[TicketScores], b: Sequence[TicketScores]) -> dict[str, float]:
    """``a`` − ``b`` over seeds: the mean difference with the paired interval of the seed-averaged
    tickets (``difference_metrics``), and each seed's own difference as ``_seed_min`` / ``_seed_max``.
    ``a`` and ``b`` hold one run per seed, in the same seed order; one run (an untrained base)
    stands against every seed of the other."""
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise ValueError(f"{len(a)} runs against {len(b)}: pair one run per seed (or one untrained run with all).")
    n = max(len(a), len(b))
    pairs = [(a[i if len(a) > 1 else 0], b[i if len(b) > 1 else 0]) for i in range(n)]
    per_seed = [float(paired_values(x, y).mean()) for x, y in pairs]
    out = difference_metrics(name, mean_over_seeds(a), mean_over_seeds(b))
    return out | {f"{name}_seed_min_score_diff": min(per_seed), f"{name}_seed_max_score_diff": max(per_seed)}


def seed_sentence(m: dict[str, Any], name: str, a: str, b: str, seeds: int) -> str:
    """``a`` against ``b`` over ``seeds`` training seeds, in words: a claim only when every seed
    agrees on the sign *and* the seed-averaged ticket interval excludes 0."""
    ci = difference_from_metrics(m, name)
    low, high = m[f"{name}_seed_min_score_diff"], m[f"{name}_seed_max_score_diff"]
    spread = f"each seed {low:+.1f} to {high:+.1f}"
    text = f"{a} − {b}: **{ci.estimate:+.1f}** points over {seeds} seeds ({spread}; 95 % ticket interval "
    text += f"{ci.low:+.1f} to {ci.high:+.1f}): "
    if seeds < 2:
        return text + "one seed, so no claim about the recipe, only about this run"
    if not (low > 0 or high < 0):  # a seed with the other sign, or none at all
        return text + "the seeds disagree on the sign, so no claim either way"
    if ci.low > 0 or ci.high < 0:
        return text + f"{a} is {'better' if ci.low > 0 else 'worse'} on every seed, beyond the ticket noise"
    return text + f"the same sign on every seed, but within the ticket noise on {ci.n} tickets"
