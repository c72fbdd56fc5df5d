"""Notebook 02's steps, each a call that returns what it measured as metrics.

The notebook reads as prose with short calls; the logic lives here, tested. Each
function returns a flat dict of metric keys (the keys notebook 02 records) or a small
result object whose ``metrics()`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .. import data, evaluate, models, training
from ..uncertainty import difference_metrics, interval_metrics
from .config import DistillConfig
from .loss import KDConfig, make_loss_fn, temperature_view
from .student import block_choices, build_student, max_blocks_within
from .teacher import TeacherOutputs, ValidationReport, balanced_subset, encode_distillation_set

TEMPERATURES = (0.5, 1.0, 2.0, 4.0, 8.0)
# name in the notebook -> prefix of its metric keys
RUN_KEYS = {"distilled": "distill", "sequence-level only": "seq", "no distillation": "undistilled"}
# model name -> prefix of its metric keys in the side-by-side comparison
COMPARED = {
    "teacher": "teacher",
    "distilled": "student",
    "sequence-level only": "seq_student",
    "no distillation": "undistilled",
}


@dataclass
class Splits:
    """The course's rows for this notebook: all of train, the first ``n_val`` / ``n_eval`` of the others."""

    train: list[dict[str, str]]
    val: list[dict[str, str]]
    test: list[dict[str, str]]


def course_splits(n_val: int, n_eval: int) -> Splits:
    rows = data.read_rows()
    train, val, test = ([r for r in rows if r["split"] == s] for s in data.SPLITS)
    return Splits(train, val[:n_val], test[:n_eval])


def teacher_metrics(scored: evaluate.Scored, splits: Splits) -> dict[str, Any]:
    """The teacher's held-out scores, the trivial baselines on the same tickets, and the margin."""
    trivial = data.trivial_baselines(splits.train, splits.test)
    margin = scored.scores["score"] - max(trivial["majority_score"], trivial["copy_score"])
    teacher = {f"teacher_{k}": v for k, v in scored.scores.items()}
    return {**teacher, **trivial, "teacher_margin_over_trivial": margin, "n_eval": len(splits.test)}


def teacher_data_metrics(outputs: TeacherOutputs, seconds: float) -> dict[str, Any]:
    return {
        "teacher_data_s": seconds,
        "n_teacher_prompts": len(outputs.texts),
        "teacher_cache_hits": outputs.n_cached,
        "teacher_generated": outputs.n_generated,
        "teacher_cache_corrupt": outputs.n_corrupt,
    }


def validation_metrics(report: ValidationReport) -> dict[str, Any]:
    """How many teacher answers survived, why the others did not, and how often the kept
    answers' category agrees with the human label."""
    agree = [
        data.parse_prediction(t)["category"] == r["category"] for r, t in zip(report.rows, report.targets, strict=True)
    ]
    return {
        "n_teacher_kept": len(report.rows),
        "n_teacher_rejected": len(report.rejected),
        **{f"rejected_{reason.replace(' ', '_')}": n for reason, n in report.counts.items()},
        "teacher_train_category_agreement": sum(agree) / max(len(agree), 1),
    }


@dataclass
class BlockChoice:
    """Which of the teacher's blocks the student keeps, chosen by validation cross-entropy before training."""

    n_layers: int
    n_blocks: int
    param_budget: float
    candidates: dict[str, list[int]]
    initial_ce: dict[str, float]
    teacher_ce: float
    chosen: str = field(init=False)

    def __post_init__(self) -> None:
        self.chosen = min(self.initial_ce, key=self.initial_ce.get)

    @property
    def keep(self) -> list[int]:
        return self.candidates[self.chosen]

    def metrics(self) -> dict[str, Any]:
        named = {
            "from the top": "init_ce_from_top",
            "from block 0": "init_ce_from_block0",
            "both ends": "init_ce_both_ends",
        }
        return {
            **{key: self.initial_ce[name] for name, key in named.items() if name in self.initial_ce},
            "student_init_val_ce": self.initial_ce[self.chosen],
            "teacher_val_ce": self.teacher_ce,
            "param_budget": self.param_budget,
            "keep_layers": ",".join(map(str, self.keep)),
            "student_layers": len(self.keep),
            "teacher_layers": self.n_layers,
        }

    def format(self) -> str:
        lines = [
            f"{self.n_blocks} of {self.n_layers} blocks fit in {self.param_budget:.0%} of the teacher's parameters"
        ]
        for name, ce in self.initial_ce.items():
            lines.append(f"keep {self.candidates[name]} ({name}): validation cross-entropy before training {ce:.2f}")
        lines.append(f"the teacher itself: {self.teacher_ce:.2f};  chosen: {self.chosen} -> {self.keep}")
        return "\n".join(lines)


def choose_blocks(teacher: Any, val_examples: list, pad_id: int, param_budget: float) -> BlockChoice:
    """Cut a student for each way of choosing blocks and keep the one that starts closest to the answers."""
    ce_only = make_loss_fn(teacher, config=KDConfig(alpha=0.0))
    n_layers = teacher.config.num_hidden_layers
    n_blocks = max_blocks_within(teacher.config, param_budget)
    candidates = block_choices(n_layers, n_blocks)
    initial = {
        name: training.evaluate_loss(build_student(teacher, keep), val_examples, pad_id, loss_fn=ce_only)
        for name, keep in candidates.items()
    }
    teacher_ce = training.evaluate_loss(teacher, val_examples, pad_id, loss_fn=ce_only)
    return BlockChoice(n_layers, n_blocks, param_budget, candidates, initial, teacher_ce)


def size_metrics(teacher: Any, student: Any) -> dict[str, Any]:
    """Parameters and size on disk of teacher and student (the undistilled twin has the student's)."""
    out = {
        "teacher_params": models.count_parameters(teacher),
        "student_params": models.count_parameters(student),
        "teacher_size_mib": evaluate.size_on_disk_mib(teacher),
        "student_size_mib": evaluate.size_on_disk_mib(student),
    }
    out["student_param_share"] = out["student_params"] / out["teacher_params"]
    out["embedding_params"] = teacher.get_input_embeddings().weight.numel()
    # the undistilled twin keeps the same blocks: the same parameters and bytes
    out |= {"undistilled_params": out["student_params"], "undistilled_size_mib": out["student_size_mib"]}
    return out


@torch.no_grad()
def next_token_logits(model: Any, tokenizer: Any, text: str) -> torch.Tensor:
    device = next(model.parameters()).device
    return model(**tokenizer(text, return_tensors="pt").to(device)).logits[0, -1]


def temperature_rows(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> list[dict[str, float]]:
    """``distill.temperature_view`` at each of ``TEMPERATURES``, with T added."""
    return [{"T": t, **temperature_view(teacher_logits, student_logits, t)} for t in TEMPERATURES]


def train_config(sizes: DistillConfig, seed: int = 0) -> training.TrainConfig:
    """How every student of section 2 trains: the profile's steps, batch and rate, a short warm-up."""
    return training.TrainConfig(
        lr=sizes.lr,
        max_steps=sizes.max_steps,
        batch_size=sizes.batch_size,
        eval_every=sizes.eval_every,
        patience=sizes.patience,
        warmup_steps=2,
        seed=seed,
    )


@dataclass
class StudentSetup:
    """What every student of the comparison shares: the teacher, the kept blocks, the
    validation tickets that pick the kept step, and one training configuration."""

    teacher: Any
    tokenizer: Any
    keep: list[int]
    val_rows: list[dict[str, str]]
    val_examples: list
    sizes: DistillConfig
    seed: int = 0

    def train_config(self) -> training.TrainConfig:
        return train_config(self.sizes, self.seed)

    def validation_score(self, model: Any) -> float:
        """The task score of the model's greedy answers on the validation tickets: what picks the kept step."""
        return evaluate.score_model(model, self.tokenizer, self.val_rows, self.sizes.eval_max_new_tokens).scores[
            "score"
        ]


# The distilled student's loss (section 2.5 shows it as a KDConfig; `slmops train student` trains the same).
DISTILLED = KDConfig(temperature=2.0, alpha=0.5, kind="forward", hidden_weight=0.0)


def teacher_prompts(tokenizer: Any, train_rows: list, sizes: DistillConfig) -> tuple[list, list[str]]:
    """Section 2's teacher prompts: a category-balanced subset of the training tickets (``sizes``
    says how many), and each as the chat prompt the teacher answers."""
    rows = balanced_subset(train_rows, sizes.n_teacher_prompts)
    return rows, [data.format_chat(tokenizer, r) for r in rows]


def train_student(
    setup: StudentSetup, name: str, examples: list, config: KDConfig, train_config: training.TrainConfig | None = None
) -> tuple[Any, training.TrainResult]:
    """Cut a fresh student from the teacher and train it on ``examples`` with the loss ``config``
    (for ``train_config`` steps, the setup's own by default)."""
    model = build_student(setup.teacher, setup.keep)
    # the teacher is frozen: keep its logits per example instead of rerunning it every epoch
    # (only the KL term reads them, so not with alpha=0 or the hidden-state term)
    cache = config.alpha > 0 and config.hidden_weight == 0
    tok = setup.tokenizer
    loss_fn = make_loss_fn(model, setup.teacher, config, tok, tok, keep=setup.keep, cache_teacher=cache)
    result = training.train(
        model,
        examples,
        setup.val_examples,
        train_config or setup.train_config(),
        tok.pad_token_id,
        loss_fn=loss_fn,
        desc=name,
        score_fn=setup.validation_score,
    )
    return model, result


def training_sets(tokenizer: Any, teacher_rows: list, report: ValidationReport) -> dict[str, list]:
    """The two training sets: the teacher's kept answers, and the human references of the same prompts."""
    return {
        "teacher": encode_distillation_set(tokenizer, report.rows, report.targets, max_length=256),
        "references": encode_distillation_set(tokenizer, teacher_rows, None, max_length=256),
    }


def kd_metrics(config: KDConfig, sets: dict[str, list], sizes: DistillConfig) -> dict[str, Any]:
    return {
        "kd_temperature": config.temperature,
        "kd_alpha": config.alpha,
        "kd_kind": config.kind,
        "kd_hidden_weight": config.hidden_weight,
        "n_teacher_train": len(sets["teacher"]),
        "n_ref_train": len(sets["references"]),
        "lr": sizes.lr,
        "batch_size": sizes.batch_size,
    }


def run_metrics(results: dict[str, training.TrainResult]) -> dict[str, Any]:
    """Per run: steps, the kept step and its validation score and CE, where the lowest CE fell, cost."""
    out: dict[str, Any] = {}
    for name, result in results.items():
        key = RUN_KEYS[name]
        lowest = min((h for h in result.history if "val_loss" in h), key=lambda h: h["val_loss"])
        out |= {
            f"{key}_steps": result.steps,
            f"{key}_best_step": result.best_step,
            f"{key}_best_val_score": result.best_val_score,
            f"{key}_best_val_ce": result.best_val_loss,  # at the kept step
            f"{key}_loss_best_step": lowest["step"],  # the step selecting on the loss would have kept
            f"{key}_min_val_ce": lowest["val_loss"],
            f"{key}_s_per_step": result.s_per_step,
            f"{key}_eval_s": result.eval_s,
            f"{key}_train_peak_mib": result.peak_mib,
            f"{key}_stopped_early": result.stopped_early,
        }
    return out


def format_runs(metrics: dict[str, Any]) -> str:
    lines = []
    for name, key in RUN_KEYS.items():
        m = {k.removeprefix(f"{key}_"): v for k, v in metrics.items() if k.startswith(f"{key}_")}
        lines.append(
            f"{name:<20} {m['steps']} steps ({m['s_per_step']:.1f} s/step, evaluations {m['eval_s']:.0f} s), "
            f"kept step {m['best_step']}: validation score {m['best_val_score']:.1f}, CE {m['best_val_ce']:.3f} "
            f"(lowest CE {m['min_val_ce']:.3f} at step {m['loss_best_step']}); early stop: {m['stopped_early']}; "
            f"peak extra memory {m['train_peak_mib']:.0f} MiB"
        )
    return "\n".join(lines)


# The section's comparisons, each paired on the same tickets: (metric name, this model, against that)
PAIRED = (
    ("distilled_vs_undistilled", "distilled", "no distillation"),
    ("seq_vs_undistilled", "sequence-level only", "no distillation"),
    ("distilled_vs_teacher", "distilled", "teacher"),
)


def comparison_metrics(scored: dict[str, evaluate.Scored], speed: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Scores (with intervals) and speed of every compared model under its metric prefix, the
    paired differences of ``PAIRED``, and the ratios the lesson rests on.
    """
    out: dict[str, Any] = {}
    for name, s in scored.items():
        out |= {f"{COMPARED[name]}_{k}": v for k, v in s.scores.items()} | interval_metrics(COMPARED[name], s.tickets)
    for key, a, b in PAIRED:
        out |= difference_metrics(key, scored[a].tickets, scored[b].tickets)
    for name, s in speed.items():
        key = COMPARED[name]
        out |= {
            f"{key}_ms_per_token": s["ms_per_token_p50"],
            f"{key}_ms_per_token_p95": s["ms_per_token_p95"],
            f"{key}_tok_s": s["tok_s"],
            f"{key}_ttft_ms": s["ttft_ms"],
            f"{key}_peak_mib": s["peak_mib"],
        }
    teacher = out["teacher_score"]
    out |= {
        "retention": out["student_score"] / teacher,
        "undistilled_retention": out["undistilled_score"] / teacher,
        "seq_retention": out["seq_student_score"] / teacher,
        "speedup": out["teacher_ms_per_token"] / out["student_ms_per_token"],
    }
    out["inference_time_saved_pct"] = 100 * (1 - 1 / out["speedup"])
    out["memory_saved_pct"] = 100 * (1 - out["student_peak_mib"] / out["teacher_peak_mib"])
    return out
