"""Which model section 4 deploys: the best one available, by task score on the same tickets.

The candidates are notebook 03's merged LoRA model (when notebook 03 has run), the
course's tuned model (``slmops prepare --tuned``) and the untuned base. Each is scored
with the same greedy decoding on the same held-out tickets, and the best is deployed; the
untuned base is always scored too, so the notebook can show that what it ships beats it.
An explicit folder (the notebook's ``deploy_from``) is deployed as asked, still scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..evaluate import score_model
from ..models import DEFAULT_MODEL, load_model
from ..uncertainty import TicketScores, difference_metrics, difference_sentence, interval_metrics
from .export import MERGED, TUNED, UNTUNED, Candidate, deploy_candidates

__all__ = ["MERGED", "TUNED", "UNTUNED", "Candidate", "DeployChoice", "choose_deploy_source", "deploy_candidates"]


@dataclass
class DeployChoice:
    chosen: Candidate
    tickets: dict[str, TicketScores]  # label -> per-ticket scores, all on the same tickets
    explicit: bool = False

    @property
    def scores(self) -> dict[str, float]:
        """label -> task score."""
        return {label: t.mean for label, t in self.tickets.items()}

    @property
    def n_tickets(self) -> int:
        return self.tickets[UNTUNED].n

    @property
    def untuned_score(self) -> float:
        return self.scores[UNTUNED]

    def metrics(self) -> dict[str, Any]:
        return {
            "deployed_source": self.chosen.label,
            "deployed_score": self.scores[self.chosen.label],
            "untuned_score": self.untuned_score,
            "deploy_candidates": len(self.scores),
            "deploy_choice_tickets": self.n_tickets,
            **interval_metrics("deployed", self.tickets[self.chosen.label]),
            **interval_metrics("untuned", self.tickets[UNTUNED]),
            **difference_metrics("deployed_vs_untuned", self.tickets[self.chosen.label], self.tickets[UNTUNED]),
        }

    def reason(self) -> str:
        """Which model is deployed and why, with every candidate's score."""
        listed = ", ".join(f"{label} **{score:.1f}**" for label, score in self.scores.items())
        why = "the folder you asked for (`deploy_from`)" if self.explicit else "the best task score of the candidates"
        text = f"Deploying **{self.chosen.label}**, {why}. On {self.n_tickets} held-out tickets: {listed}."
        if self.chosen.label != UNTUNED:
            paired = difference_sentence(self.metrics(), "deployed_vs_untuned", "deployed", "untuned", self.n_tickets)
            text += f" Paired on those tickets, {paired}."
        if self.scores[self.chosen.label] < self.untuned_score:
            text += " It scores **below the untuned base**: shipping it would make the assistant worse."
        return text


def choose_deploy_source(
    rows: list[dict[str, str]],
    max_new_tokens: int,
    explicit: str | Path | None = None,
    model_name: str = DEFAULT_MODEL,
    device: str | None = None,
) -> DeployChoice:
    """Score every candidate on ``rows`` and pick the one to deploy (the explicit one if given)."""
    tickets = {}
    candidates = deploy_candidates(explicit, model_name)
    for candidate in candidates:
        model, tokenizer = load_model(str(candidate.source), device=device, dtype=torch.float32)
        tickets[candidate.label] = score_model(model, tokenizer, rows, max_new_tokens).tickets
        del model
    # an explicit folder is deployed as asked; otherwise the best score, a trained model on a tie
    chosen = candidates[0] if explicit else max(candidates, key=lambda c: tickets[c.label].mean)
    return DeployChoice(chosen, tickets, explicit=bool(explicit))
