"""Notebook 05's release round, step by step: train a candidate, package it, measure, register, gate.

``stages`` holds the release's building blocks (find production, merge with parity,
measure packages, feedback); this module chains them the way the capstone does, each
step a call that returns its result and the metric keys notebook 05 records. Lineage is
written once, from each package's manifest, so a registry entry says what its package says.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from .. import data, distill, models, training, uncertainty
from ..deploy import export, package
from ..deploy.steps import lineage
from ..distill import steps as distill_steps
from ..finetune import ATTENTION, MLP, MethodConfig, load_tuned_model
from . import gate, registry, stages
from .config import ReleaseConfig

VERSIONS = {"production": "1.0.0", "candidate": "1.1.0", "over_quantized": "1.1.0"}
OVER_QUANTIZED = export.Recipe(
    "int4",
    builder_options={"algo_config": "rtn", "block_size": "256", "op_types_to_quantize": "MatMul/Gather"},
    note="RTN 4-bit, blocks of 256, embedding included",
)
SPEC = MethodConfig("lora", rank=8, alpha=16, targets=ATTENTION + MLP)


def production_package(prod: stages.Production, out: Path, model_name: str) -> tuple[Path, str]:
    """Production's package in this run's folder: section 4's, copied, or built from its model."""
    dest = out / "packages" / "production"
    if prod.package is not None:
        return stages.copy_package(prod.package, dest), "section 4's, copied here"
    recipe = export.RECIPES["onnx_int4"]
    origin = lineage(model_name, prod.source, prod.label, "onnx_int4", recipe.note, data.dataset_hash())
    onnx_dir = export.build_variant(prod.source, "onnx_int4")
    built = package.write_package(
        onnx_dir, dest, stages.PACKAGE_NAME, VERSIONS["production"], origin, data.SYSTEM_PROMPT
    )
    return built, "built here: notebook 04b left no verified package"


@dataclass
class Candidate:
    """The trained candidate: where its merged weights are, what it trained on, what it measured."""

    folder: Path
    training_data: dict[str, Any]  # what decided the weights: reference ids and the teacher targets used
    config: training.TrainConfig
    metrics: dict[str, Any]

    def reading(self) -> str:
        m = self.metrics
        return (
            f"{m['train_steps']} LoRA steps of {self.config.batch_size} examples ({m['train_s_per_step']:.1f} s per "
            f"step) on {m['train_examples']} examples ({m['teacher_rows_used']} of them the teacher's answers): "
            f"validation loss **{m['val_loss_before']:.3f} → {m['val_loss_after']:.3f}**. Merged with max |Δlogit| "
            f"{m['merge_max_abs_diff']:.1e} ({'exact' if m['merge_exact'] else 'NOT exact'}: see section 3)."
        )


def teacher_targets(model_name: str, source: Path, train_rows: list, profile: str, device: str) -> tuple[list, list]:
    """Section 2's cached, validated teacher answers for its balanced prompts; empty when nothing is cached."""
    tokenizer = AutoTokenizer.from_pretrained(source)  # production's: the prompts it will be trained on
    teacher, _ = load_tuned_model(model_name, device=device)
    sizes = distill.get_config(profile)
    rows, prompts = distill_steps.teacher_prompts(tokenizer, train_rows, sizes)
    cached = stages.cached_teacher_outputs(teacher, prompts, sizes.teacher_max_new_tokens)
    if cached is None:
        return [], []
    report = distill.validate_outputs(rows, cached)
    return report.rows, report.targets


def train_candidate(
    prod: stages.Production,
    splits: dict[str, list],
    kd: tuple[list, list],
    sizes: ReleaseConfig,
    out: Path,
    seed: int = 0,
) -> Candidate:
    """LoRA on production's weights, on the references and the teacher's answers; merged with parity; saved."""
    student, tokenizer = models.load_model(str(prod.source), dtype=torch.float32)
    kd_rows, kd_targets = kd
    encode = distill.encode_distillation_set
    train = encode(tokenizer, splits["train"], None, max_length=256) + (
        encode(tokenizer, kd_rows, kd_targets, max_length=256) if kd_rows else []
    )
    val = encode(tokenizer, splits["validation"][: sizes.val_rows], None, 256)
    config = training.TrainConfig(
        lr=1e-3, max_steps=sizes.steps, batch_size=sizes.batch, eval_every=sizes.steps, seed=seed
    )
    val_before = training.evaluate_loss(student, val, tokenizer.pad_token_id)
    merged, run, parity = stages.fine_tune_and_merge(student, tokenizer, SPEC, config, train, val, splits["test"][:2])
    folder = stages.save_model(merged, tokenizer, out / "candidate_model")
    used = {
        "references": [r["id"] for r in splits["train"]],
        "teacher": [{"id": r["id"], "target": t} for r, t in zip(kd_rows, kd_targets, strict=True)],
    }
    metrics = {
        "train_steps": run.steps,
        "train_s_per_step": run.s_per_step,
        "train_examples": len(train),
        "teacher_rows_used": len(kd_rows),
        "val_loss_before": val_before,
        "val_loss_after": run.best_val_loss,
        **parity.metrics(),
    }
    return Candidate(folder, used, config, metrics)


def adapter_text(spec: MethodConfig = SPEC) -> str:
    return f"LoRA r={spec.rank} on {', '.join(spec.targets)}, merged"


def candidate_packages(
    candidate: Candidate, prod: stages.Production, variant: str, out: Path, model_name: str
) -> dict[str, Path]:
    """The candidate packaged as production is (``variant``: the gate then compares two training
    rounds, not two precisions), and the same weights over-quantized."""
    builds = {
        "candidate": (variant, export.RECIPES[variant]),
        "over_quantized": ("over-quantized int4", OVER_QUANTIZED),
    }
    made = {}
    for name, (variant, recipe) in builds.items():
        origin = lineage(
            model_name, candidate.folder, f"the candidate trained from {prod.label}", variant, recipe.note,
            registry.sha256_data(candidate.training_data), adapter=adapter_text(), parent=prod.label,
        )  # fmt: skip
        onnx_dir = export.build_recipe(candidate.folder, recipe)
        made[name] = package.write_package(
            onnx_dir, out / "packages" / name, stages.PACKAGE_NAME, VERSIONS[name], origin, data.SYSTEM_PROMPT
        )
    return made


def measured_metrics(table: list[dict[str, Any]], n_eval: int) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Each package's gate metrics (with its per-ticket scores under ``per_ticket``, for the
    registry and a noise-aware gate), and the keys notebook 05 records from them: scores
    with intervals, and the candidate's and the over-quantized build's paired difference
    from production."""
    rows = {row["variant"]: row for row in table}
    measured: dict[str, dict[str, Any]] = {name: stages.gate_metrics(row) for name, row in rows.items()}
    out = {
        f"{name}_{k}": v[k]
        for name, v in measured.items()
        for k in ("score", "size_mib", "ms_per_token_p50", "peak_mib")
    }
    out |= {"bad_candidate_score": measured["over_quantized"]["score"], "n_eval": n_eval}
    for name, row in rows.items():
        measured[name]["per_ticket"] = {"score": row["tickets"].to_json()}
        out |= uncertainty.interval_metrics(name, row["tickets"])
    production = rows["production"]["tickets"]
    for name in ("candidate", "over_quantized"):
        out |= uncertainty.difference_metrics(f"{name}_vs_production", rows[name]["tickets"], production)
    return measured, out


def tickets_needed_metrics(
    measured: dict[str, dict[str, Any]], n_eval: int, margins: tuple[float, ...] = (2.0, 5.0)
) -> dict[str, Any]:
    """How many held-out tickets a non-inferiority gate needs so that a candidate as good as
    production passes a margin of each of ``margins`` points 8 times in 10 (one-sided, 5 %
    significance), and the margin this round's ``n_eval`` tickets certify, from the spread of
    this round's per-ticket differences between the candidate and production."""
    candidate, production = (
        uncertainty.TicketScores.from_json(measured[name]["per_ticket"]["score"])
        for name in ("candidate", "production")
    )
    sd = max(float(uncertainty.paired_values(candidate, production).std(ddof=1)), 1e-9)
    out: dict[str, Any] = {"paired_diff_sd_points": sd}
    for margin in margins:
        out[f"tickets_needed_margin{margin:g}"] = uncertainty.tickets_needed(sd, margin)
    out["certifiable_margin_points"] = uncertainty.certifiable_margin(sd, n_eval)
    return out


def register_package(
    reg: registry.Registry, folder: Path, metrics: dict[str, Any], *, stage: str = "candidate",
    parent: str | None = None, notes: str = "", hyperparameters: dict[str, Any] | None = None,
) -> registry.Entry:  # fmt: skip
    """Register a package under the lineage its own manifest records (base model, adapter, data hash)."""
    origin = package.verify_package(folder)["lineage"]
    hyper = {"variant": origin.get("variant"), "recipe": origin.get("recipe"), **(hyperparameters or {})}
    tickets = {k: uncertainty.TicketScores.from_json(v) for k, v in metrics.get("per_ticket", {}).items()}
    return reg.register(
        stages.PACKAGE_NAME,
        base_model=origin["base_model"],
        files=[folder],
        metrics={k: v for k, v in metrics.items() if k != "per_ticket"},
        per_ticket=tickets,
        adapter=origin.get("adapter") or origin.get("deployed_from"),
        data_hash=origin.get("data_hash"),
        hyperparameters=hyper,
        parent=parent,
        stage=stage,
        notes=notes,
    )


NOTES = {
    "candidate": "pseudo-labelled + fine-tuned from production, int4",
    "over_quantized": "same weights as the candidate, quantized harder",
}


def register_round(
    reg: registry.Registry, packages: dict[str, Path], measured: dict[str, dict], prod_label: str, hyper: dict
) -> dict[str, registry.Entry]:
    """Production as it stands, then the two builds of this round as its children (stage ``candidate``)."""
    notes = f"in production before this run: {prod_label}"
    prod = register_package(reg, packages["production"], measured["production"], stage="production", notes=notes)
    entries = {"production": prod}
    for name, note in NOTES.items():
        entries[name] = register_package(
            reg, packages[name], measured[name], parent=prod.id, notes=note, hyperparameters=hyper
        )
    return entries


def training_hyperparameters(candidate: Candidate) -> dict[str, Any]:
    return {
        "spec": dataclasses.asdict(SPEC),
        "config": dataclasses.asdict(candidate.config),
        "teacher_rows": len(candidate.training_data["teacher"]),
        "train_examples": candidate.metrics["train_examples"],
    }


def gate_cli(candidate_id: str, reference_id: str, policy: Path, registry_root: Path) -> tuple[int, str]:
    """Run ``slmops gate`` as a CI job would; its exit code and the command, for the reader."""
    args = ["gate", "--candidate", candidate_id, "--reference", reference_id, "--policy", str(policy)]
    args += ["--registry", str(registry_root)]
    code = subprocess.run(
        [sys.executable, "-m", "slmops_helpers.cli", *args], capture_output=True, text=True
    ).returncode
    shown = f"$ slmops gate --candidate {candidate_id} --reference {reference_id} --policy {policy.name} "
    return code, shown + f"--registry {registry_root.name}  → exit code {code}"


def shippable_builds(verdict: Any, refusal: Any) -> dict[str, bool]:
    """Which builds the fleet may receive: the release is the candidate when it passed the gate,
    else production as it stands; the over-quantized build (the candidate's weights, quantized
    harder) ships only with the candidate and only when it passed the gate too."""
    if not verdict.passed:
        return {"production": True}
    return {"candidate": True, "over_quantized": refusal.passed}


def gate_metrics(verdict: Any, refusal: Any, exit_code: int, plain: Any) -> dict[str, Any]:
    """The gate's verdicts as metrics; ``plain`` is the candidate's verdict under the same
    policy deciding on point values alone (``gate.without_significance``), for comparison."""
    out = {
        "gate_margin_points": float(gate.score_rule([r.rule for r in verdict.results]).limit),
        "gate_passed": verdict.passed,
        "gate_plain_passed": plain.passed,
        "gate_checks": len(verdict.results),
        "gate_failed_checks": len(verdict.failures),
        "bad_candidate_gate_passed": refusal.passed,
        "bad_candidate_failed_checks": len(refusal.failures),
        "bad_candidate_failed_metrics": ",".join(r.rule.metric for r in refusal.failures),
        "gate_cli_exit_code_bad": exit_code,
    }
    worst = max(refusal.failures, key=lambda r: r.excess, default=None)
    if worst is not None:
        out |= {"bad_candidate_worst_metric": worst.rule.metric, "bad_candidate_worst_excess": worst.excess}
    return out


def rollout_metrics(result: Any, variants: list, shippable: dict[str, bool], devices: int, seconds: float) -> dict:
    return {
        "rollout_seconds": seconds,
        "rollout_devices": devices,
        "rollout_variants": ",".join(v.name for v in variants),
        "rollout_refused_builds": ",".join(name for name, ok in shippable.items() if not ok),
        "rollout_halted": result.halted,
        "rollout_on_new": result.stages[-1].on_new,
        "rollout_unserved": sum(s.unserved for s in result.stages),
        "rollout_unserved_pct": 100 * sum(s.unserved for s in result.stages) / devices,
        "rollout_hours": float(result.hours[-1]),
    }


def bad_rollout_metrics(bad: Any) -> dict[str, Any]:
    last = bad.stages[-1]
    return {
        "bad_rollout_halted": bad.halted,
        "bad_rollout_halted_at": bad.halted_at or "",
        "bad_rollout_rolled_back": last.on_new,
        "bad_rollout_error_rate": last.error_rate,
    }


def feedback_metrics(result: Any) -> dict[str, Any]:
    counts = result.feedback_counts
    return {
        "feedback_records": len(result.feedback),
        "feedback_flagged": sum(counts.values()),
        "feedback_failed": counts.get("failed", 0),
        "feedback_low_confidence": counts.get("low_confidence", 0),
    }


def registry_metrics(reg: registry.Registry, shipped: registry.Entry, entries: dict[str, registry.Entry]) -> dict:
    """The registry after the round: every entry re-hashed, each one's stage, and the lineage depth."""
    verified = [reg.verify(entry) for entry in reg.entries()]
    return {
        "registry_entries": len(reg.entries()),
        "registry_verified": len(verified) == len(reg.entries()),
        "production_entry": shipped.id,
        "candidate_stage": reg.get(entries["candidate"].id).stage,
        "previous_production_stage": reg.get(entries["production"].id).stage,
        "bad_candidate_stage": reg.get(entries["over_quantized"].id).stage,
        "lineage_depth": len(reg.lineage(shipped.id)),
    }
