"""Which model section 4 deploys: the best one available, by task score on the same tickets.

The candidates are notebook 03's merged LoRA model (when notebook 03 has run), the
course's tuned model (``slmops prepare --tuned``) and the untuned base. Each is scored
with the same greedy decoding on the same *validation* tickets, and the best is deployed;
then the chosen model and the untuned base are scored once on the *test* tickets, and those
are the scores the notebook reports (a score read off the tickets it was chosen on is the
best of several draws, hence optimistic). An explicit folder (the notebook's
``deploy_from``) is deployed as asked, still scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import refuse_test_rows, require_test_rows
from ..evaluate import score_model
from ..models import DEFAULT_MODEL, load_model
from ..uncertainty import TicketScores, difference_metrics, difference_sentence, interval_metrics
from .export import MERGED, TUNED, UNTUNED, Candidate, deploy_candidates

__all__ = ["MERGED", "TUNED", "UNTUNED", "Candidate", "DeployChoice", "choose_deploy_source", "deploy_candidates"]


@dataclass
class DeployChoice:
    chosen: Candidate
    tickets: dict[str, TicketScores]  # label -> per-ticket scores on the validation tickets, all the same
    explicit: bool = False
    untuned_source: Path | None = None  # the untuned base's folder (scored on test beside the chosen model)
    test: dict[str, TicketScores] | None = None  # the chosen model and the untuned base on the test tickets

    @property
    def scores(self) -> dict[str, float]:
        """label -> task score on the validation tickets (what the choice read)."""
        return {label: t.mean for label, t in self.tickets.items()}

    @property
    def n_tickets(self) -> int:
        return self.tickets[UNTUNED].n

    def score_on_test(self, rows: list[dict[str, str]], max_new_tokens: int, device: str | None = None) -> None:
        """Score the chosen model and the untuned base once on the test ``rows``: the report."""
        require_test_rows(rows, "The deployment report")
        wanted = {self.chosen.label: self.chosen.source, UNTUNED: self.untuned_source}
        self.test = {label: _score(source, rows, max_new_tokens, device) for label, source in wanted.items()}

    def metrics(self) -> dict[str, Any]:
        if self.test is None:
            raise ValueError("The choice has no test scores yet. Fix: call score_on_test(test_rows, ...) first.")
        chosen, untuned = self.test[self.chosen.label], self.test[UNTUNED]
        return {
            "deployed_source": self.chosen.label,
            "deployed_validation_score": self.scores[self.chosen.label],
            "deploy_candidates": len(self.scores),
            "deploy_choice_tickets": self.n_tickets,
            "deploy_choice_split": "validation",
            "deployed_score": chosen.mean,  # the test tickets, scored once for the chosen model
            "untuned_score": untuned.mean,
            "deploy_report_tickets": chosen.n,
            **interval_metrics("deployed", chosen),
            **interval_metrics("untuned", untuned),
            **difference_metrics("deployed_vs_untuned", chosen, untuned),
        }

    def reason(self) -> str:
        """Which model is deployed and why (validation), then how it scores on the test tickets."""
        listed = ", ".join(f"{label} **{score:.1f}**" for label, score in self.scores.items())
        why = "the folder you asked for (`deploy_from`)" if self.explicit else "the best task score of the candidates"
        text = f"Deploying **{self.chosen.label}**, {why} on {self.n_tickets} validation tickets: {listed}."
        m = self.metrics()
        assert self.test is not None  # metrics() has checked
        chosen, untuned = self.test[self.chosen.label], self.test[UNTUNED]
        if self.chosen.label != UNTUNED:
            paired = difference_sentence(m, "deployed_vs_untuned", "deployed", "untuned", chosen.n)
            text += f" Scored once on {chosen.n} test tickets, {paired}."
        if chosen.mean < untuned.mean:
            text += " It scores **below the untuned base**: shipping it would make the assistant worse."
        return text


def _score(source: Path, rows: list[dict[str, str]], max_new_tokens: int, device: str | None) -> TicketScores:
    model, tokenizer = load_model(str(source), device=device, dtype=torch.float32)
    try:
        return score_model(model, tokenizer, rows, max_new_tokens).tickets
    finally:
        del model


def choose_deploy_source(
    rows: list[dict[str, str]],
    max_new_tokens: int,
    explicit: str | Path | None = None,
    model_name: str = DEFAULT_MODEL,
    device: str | None = None,
) -> DeployChoice:
    """Score every candidate on the validation ``rows`` and pick the one to deploy (the explicit
    one if given); test rows are refused. ``DeployChoice.score_on_test`` then scores the choice."""
    refuse_test_rows(rows, "Choosing the model to deploy")
    candidates = deploy_candidates(explicit, model_name)
    tickets = {c.label: _score(c.source, rows, max_new_tokens, device) for c in candidates}
    # an explicit folder is deployed as asked; otherwise the best score, a trained model on a tie
    chosen = candidates[0] if explicit else max(candidates, key=lambda c: tickets[c.label].mean)
    untuned = next(c.source for c in candidates if c.label == UNTUNED)
    return DeployChoice(chosen, tickets, explicit=bool(explicit), untuned_source=untuned)
