"""Section 4's decision, handed from its first notebook to its second.

Notebook 04 measures and chooses: which model to deploy, which ONNX precision and which GGUF file
pass the quality gate on the validation tickets. Notebook 04b packages and serves what was chosen,
checks it and scores it once on the test tickets. The choice travels as ``decision.json`` in the
section's artifacts folder, written atomically; reading it refuses a record from another profile,
from other tickets or from a model folder that has changed since, each naming the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_json
from ..uncertainty import TicketScores
from . import bench, export
from .choose import DeployChoice
from .steps import QualityGate, chosen_gguf, chosen_variant, variant_figures

FILE = "decision.json"
RERUN = "Fix: run notebooks/04_deployment.ipynb with the same profile first (`slmops run --only 04` runs both parts)."


@dataclass(frozen=True)
class Decision:
    """What notebook 04 chose, and the measurements notebook 04b builds on."""

    profile: str
    model_name: str
    source: Path  # the model folder that was exported
    source_label: str  # which candidate it is (``choose.MERGED`` ...)
    source_fingerprint: str  # ``export.source_fingerprint(source)`` when it was chosen
    bench_ids: tuple[str, ...]  # the validation tickets of the benchmark, in order
    table: list[dict[str, Any]]  # the benchmark's rows, per-ticket scores included
    answers: dict[str, list[str]]  # variant -> its answers to the benchmark's tickets
    gate: QualityGate
    deployed_test: TicketScores  # the deployed PyTorch model on the test tickets, scored once
    onnx_variant: str  # the smallest ONNX variant that passed the gate
    gguf_variant: str | None  # the smallest GGUF file that passed it, None when none ran or passed

    def figures(self, variant: str) -> dict[str, Any]:
        """One variant's benchmark figures and the gate's verdict: what its package records."""
        return variant_figures(self.table, self.gate, variant)

    def score(self, variant: str) -> float:
        """A variant's task score on the benchmark's validation tickets."""
        return next(float(r["score"]) for r in self.table if r["variant"] == variant)

    def metrics(self) -> dict[str, Any]:
        """The decision under the metric names notebook 04 recorded (the benchmark's ``<variant>_<key>``,
        the gate's verdicts, the choices), for the readings of notebook 04b that compare."""
        return (
            bench.flat_metrics(self.table)
            | self.gate.metrics()
            | {
                "deployed_source": self.source_label,
                "chosen_onnx_variant": self.onnx_variant,
                "chosen_gguf_variant": self.gguf_variant,
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "model_name": self.model_name,
            "source": str(self.source),
            "source_label": self.source_label,
            "source_fingerprint": self.source_fingerprint,
            "bench_ids": list(self.bench_ids),
            "table": [
                {k: v for k, v in r.items() if k != "tickets"} | {"tickets": r["tickets"].to_json()} for r in self.table
            ],
            "answers": self.answers,
            "gate": {
                "margin": self.gate.margin,
                "drop_bounds": self.gate.drop_bounds,
                "differences": self.gate.differences,
            },
            "deployed_test": self.deployed_test.to_json(),
            "onnx_variant": self.onnx_variant,
            "gguf_variant": self.gguf_variant,
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Decision:
        table = [r | {"tickets": TicketScores.from_json(r["tickets"], f"{r['variant']}'s tickets")}
                 for r in record["table"]]  # fmt: skip
        gate = record["gate"]
        return cls(
            profile=record["profile"],
            model_name=record["model_name"],
            source=Path(record["source"]),
            source_label=record["source_label"],
            source_fingerprint=record["source_fingerprint"],
            bench_ids=tuple(record["bench_ids"]),
            table=table,
            answers=record["answers"],
            gate=QualityGate(gate["margin"], gate["drop_bounds"], gate["differences"]),
            deployed_test=TicketScores.from_json(record["deployed_test"], "the deployed model's test tickets"),
            onnx_variant=record["onnx_variant"],
            gguf_variant=record["gguf_variant"],
        )


def decide(
    choice: DeployChoice,
    profile: str,
    model_name: str,
    rows: list[dict[str, str]],
    table: list[dict[str, Any]],
    answers: dict[str, list[str]],
    gate: QualityGate,
) -> Decision:
    """Notebook 04's decision: the chosen model (scored on test, ``choice.score_on_test``), the
    benchmark over the validation ``rows`` and the smallest ONNX and GGUF variants that passed ``gate``."""
    if choice.test is None:
        raise ValueError("The choice has no test scores yet. Fix: call choice.score_on_test(test_rows, ...) first.")
    source, label = choice.chosen.source, choice.chosen.label
    return Decision(
        profile, model_name, source, label, export.source_fingerprint(source), _ticket_ids(rows), table, answers,
        gate, choice.test[label], chosen_variant(gate), chosen_gguf(gate),
    )  # fmt: skip


def _ticket_ids(rows: list[dict[str, str]]) -> tuple[str, ...]:
    return tuple(str(r.get("id")) for r in rows)


def write_decision(folder: Path, decision: Decision) -> Path:
    """Keep ``decision`` as ``folder/decision.json`` (atomically: a reader sees the old one or this one)."""
    return atomic_write_json(Path(folder) / FILE, decision.to_json())


def read_decision(folder: Path, profile: str, rows: list[dict[str, str]]) -> Decision:
    """The decision notebook 04 kept in ``folder``, checked against what notebook 04b is about to do:
    the same ``profile``, the same benchmark ``rows`` (validation tickets) and an unchanged model folder."""
    path = Path(folder) / FILE
    if not path.is_file():
        raise FileNotFoundError(f"No decision at {path}: notebook 04 has not run here. {RERUN}")
    try:
        decision = Decision.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a decision notebook 04 wrote ({err}). {RERUN}") from err
    if decision.profile != profile:
        raise ValueError(f"{path} was written by a {decision.profile!r} run, and this one is {profile!r}. {RERUN}")
    if _ticket_ids(rows) != decision.bench_ids:
        raise ValueError(f"{path} chose on other validation tickets than these {len(rows)}. {RERUN}")
    if export.source_fingerprint(decision.source) != decision.source_fingerprint:
        raise ValueError(f"The model at {decision.source} changed after notebook 04 chose it. {RERUN}")
    return decision
