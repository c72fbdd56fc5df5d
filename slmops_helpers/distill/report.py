"""Notebook 02's readings: the sentence or table after each measurement, rendered from the metrics.

Each function takes the metrics dict (and, where the lesson needs it, the full reference
run) and returns markdown. What a reading claims follows the numbers: a gap inside the
noise is called that, and a lesson this run cannot show is read from the reference run.
"""

from __future__ import annotations

from typing import Any

from ..reference import Reference
from ..uncertainty import difference_from_metrics
from .student import PassWeights


def teacher_reading(m: dict[str, Any]) -> str:
    text = (
        f"On {m['n_eval']} held-out tickets the teacher scores **{m['teacher_score']:.1f}** "
        f"(category {m['teacher_category_acc']:.0%}, error code {m['teacher_error_code_acc']:.0%}, "
        f"reply ROUGE-L {m['teacher_reply_rouge_l']:.2f}, well-formed {m['teacher_format_ok']:.0%}); "
        f"the trivial baselines score **{m['majority_score']:.1f}** (majority) and **{m['copy_score']:.1f}** (copy). "
    )
    if m["teacher_margin_over_trivial"] >= 10:
        margin = m["teacher_margin_over_trivial"]
        return text + f"The teacher is **{margin:.1f} points** above the better of them: worth distilling."
    return text + (
        "That margin is too thin to build on: with so few scored tickets (smoke profile) or an under-trained "
        'teacher, a student cannot inherit much. Run `profile = "full"`, or train the teacher longer (section 3).'
    )


def validation_reading(m: dict[str, Any]) -> str:
    dropped = (
        "(the reasons are listed above). "
        if m["n_teacher_rejected"]
        else "this time: the adapted teacher keeps the format. The check still runs on every new batch, "
        "because the next teacher may not. "
    )
    return (
        f"The validator dropped **{m['n_teacher_rejected']}** of {m['n_teacher_prompts']} answers {dropped}"
        f"On the kept ones, the teacher's category agrees with the human label "
        f"**{m['teacher_train_category_agreement']:.0%}** of the time. It was fine-tuned on these very prompts, so "
        "its answers sit close to the references here; in production the teacher labels prompts that have no "
        "reference at all, which is where sequence-level distillation earns its keep."
    )


def size_reading(m: dict[str, Any]) -> str:
    lines = [
        "| | blocks | parameters | size on disk |",
        "|---|---|---|---|",
        f"| teacher | {m['teacher_layers']} | {m['teacher_params']:,} | {m['teacher_size_mib']:.0f} MiB |",
        f"| student | {m['student_layers']} | {m['student_params']:,} | {m['student_size_mib']:.0f} MiB |",
    ]
    return "\n".join(lines) + (
        f"\n\nThe student keeps {m['student_layers']} of {m['teacher_layers']} blocks but "
        f"**{m['student_param_share']:.0%}** of the parameters: the token embedding alone is "
        f"{m['embedding_params']:,} parameters ({m['embedding_params'] / m['teacher_params']:.0%} of the teacher), "
        "and every student keeps all of it."
    )


def training_reading(m: dict[str, Any], run_keys: dict[str, str]) -> str:
    parted = [
        f"{name} (step {m[f'{key}_loss_best_step']} instead of {m[f'{key}_best_step']})"
        for name, key in run_keys.items()
        if m[f"{key}_loss_best_step"] != m[f"{key}_best_step"]
    ]
    ratio = m["distill_s_per_step"] / m["undistilled_s_per_step"]
    return (
        f"The distilled run costs **{ratio:.1f}×** the time per step of plain fine-tuning "
        f"({m['distill_s_per_step']:.1f} s against {m['undistilled_s_per_step']:.1f} s): it also needs the "
        "teacher's logits, computed in the first epoch and then read from memory. "
        + (
            f"Selecting on the loss would have kept other weights for {', '.join(parted)}."
            if parted
            else "In this run the lowest loss and the best score fell on the same step for every student."
        )
    )


COMPARISON_ROWS = (
    ("parameters (M)", "params", lambda v: f"{v / 1e6:.1f}"),
    ("size on disk (MiB)", "size_mib", lambda v: f"{v:.0f}"),
    ("peak memory, generating (MiB)", "peak_mib", lambda v: f"{v:.0f}"),
    ("ms per token, p50", "ms_per_token", lambda v: f"{v:.1f}"),
    ("ms per token, p95", "ms_per_token_p95", lambda v: f"{v:.1f}"),
    ("tokens per second", "tok_s", lambda v: f"{v:.1f}"),
    ("task score (0–100)", "score", lambda v: f"{v:.1f}"),
    ("category accuracy", "category_acc", lambda v: f"{v:.0%}"),
    ("error-code accuracy", "error_code_acc", lambda v: f"{v:.0%}"),
    ("reply ROUGE-L", "reply_rouge_l", lambda v: f"{v:.2f}"),
    ("well-formed answers", "format_ok", lambda v: f"{v:.0%}"),
)


WHO = ("teacher", "student", "undistilled")


def comparison_table(m: dict[str, Any]) -> str:
    lines = ["| | teacher | distilled student | student without distillation |", "|---|---|---|---|"]
    for label, key, fmt in COMPARISON_ROWS:
        lines.append(f"| {label} | " + " | ".join(fmt(m[f"{w}_{key}"]) for w in WHO) + " |")
    lines.append(
        "| score, 95 % interval | "
        + " | ".join(f"{m[f'{w}_score_ci_low']:.1f} to {m[f'{w}_score_ci_high']:.1f}" for w in WHO)
        + " |"
    )
    lines.append(f"| retention (score ÷ teacher's) | 100% | {m['retention']:.0%} | {m['undistilled_retention']:.0%} |")
    return "\n".join(lines)


LESSON_ROWS = (
    ("teacher score", "teacher_score", "{:.1f}".format),
    ("distilled student score", "student_score", "{:.1f}".format),
    ("sequence-level student score", "seq_student_score", "{:.1f}".format),
    ("undistilled student score", "undistilled_score", "{:.1f}".format),
    ("distilled − undistilled, paired (points)", "distilled_vs_undistilled_score_diff", "{:+.1f}".format),
    ("retention (distilled ÷ teacher)", "retention", "{:.2f}".format),
    ("speed-up per token", "speedup", "{:.2f}×".format),
    ("held-out tickets", "n_eval", "{:d}".format),
    ("training steps (distilled)", "distill_steps", "{:d}".format),
)


def _gap_sentence(m: dict[str, Any], where: str) -> str:
    """The distilled student against the undistilled one, decided by their paired interval."""
    if "distilled_vs_undistilled_score_diff" not in m:  # a reference record from before intervals were recorded
        gap = m["student_score"] - m["undistilled_score"]
        return f"{where}, the distilled student scored {gap:+.1f} points against the undistilled one (no interval). "
    ci = difference_from_metrics(m, "distilled_vs_undistilled")
    interval = f"{ci.estimate:+.1f} points, 95 % interval {ci.low:+.1f} to {ci.high:+.1f}, on {ci.n} tickets"
    if ci.verdict() == "better":
        return f"{where}, the distilled student **beat** the undistilled one ({interval}). "
    if ci.verdict() == "worse":
        return f"{where}, the distilled student **fell below** the undistilled one ({interval}). "
    return f"{where}, the distilled and undistilled students are **not distinguishable** ({interval}). "


def verdict(m: dict[str, Any], profile: str, ref: Reference) -> str:
    """The section's lesson: this run's numbers, and the full reference run's where this run is too short."""
    text = (
        f"This run: the distilled student is **{m['speedup']:.1f}×** faster per generated token than the teacher "
        f"and keeps **{m['retention']:.0%}** of its score. " + _gap_sentence(m, "In this run")
    )
    if profile != "full":
        if ref.usable:
            text += f"The smoke profile trains {m['distill_steps']} steps, too few for the lesson; " + _gap_sentence(
                ref.metrics, "in the full reference run"
            )
        else:
            text += (
                f"The smoke profile trains only {m['distill_steps']} steps, too few for the lesson. {ref.describe()} "
            )
    if m["retention"] > 1:
        text += (
            "Retention above 1 says the teacher was not at the task's ceiling (it had a short LoRA run, the "
            "student trains every weight), not that distillation adds knowledge. "
        )
    seq = difference_from_metrics(m, "seq_vs_undistilled")
    seq_vs = seq.verdict(
        "more than the human ones",
        "less than the human ones",
    )
    if seq_vs.startswith("not"):
        seq_vs = f"no more and no less than the human ones: the two students are {seq_vs}"
    return text + (
        f"The sequence-level student, trained on the teacher's answers instead of the references, scored "
        f"{m['seq_student_score']:.1f} ({seq.estimate:+.1f} against the undistilled one, 95 % interval "
        f"{seq.low:+.1f} to {seq.high:+.1f}): the teacher's answers were worth {seq_vs}."
    )


DISTILBERT = {  # Sanh et al. 2019, DistilBERT (arXiv:1910.01108), abstract and table 1
    "inference time saved": "60% faster (≈ 38% less time)",
    "memory saved": "40% fewer parameters",
    "accuracy retained": "97% (GLUE)",
}


def claims_table(claims: list[dict[str, Any]], m: dict[str, Any]) -> str:
    lines = ["| | module claims | DistilBERT reported | measured here |", "|---|---|---|---|"]
    for row in claims:
        lines.append(
            f"| {row['claim']} | {row['seed_pct']:.0f}% | {DISTILBERT[row['claim']]} | {row['measured_pct']:.0f}% |"
        )
    lines.append(f"| parameters saved | — | 40% | {100 * (1 - m['student_param_share']):.0f}% |")
    return "\n".join(lines)


def targets_reading(m: dict[str, Any], profile: str) -> str:
    checks = "\n".join(f"- {'✅' if check(m) else '❌'} {name}" for name, check in TARGETS)
    return (
        f"Memory here is this run's peak while generating, weights included: the student needs "
        f"**{m['student_peak_mib']:.0f} MiB** against the teacher's **{m['teacher_peak_mib']:.0f} MiB**. A 95% cut "
        f"needs a student about twenty times smaller than its teacher; our {m['teacher_params'] / 1e6:.0f} M → "
        f"{m['student_params'] / 1e6:.0f} M cannot give it, since no student goes below its embedding.\n\n"
        f"The course's targets for the full profile, checked on this `{profile}` run:\n\n{checks}"
        + ("" if profile == "full" else "\n\nA smoke run trains too few steps for the quality targets.")
    )


def drafting_reading(m: dict[str, Any], n_tickets: int, weights: PassWeights | None = None) -> str:
    """The two students as the teacher's drafts: agreement, not speed, tells them apart; with
    ``weights`` (from the model's config), why even a shallow student costs a large share of a pass."""
    same = (
        "every answer was the teacher's own, token for token"
        if m["speculative_identical"]
        else ("**some answers differed from the teacher's own**, which speculative decoding must never do")
    )
    ratio = m["speculative_distilled_pass_ms"] / m["speculative_distilled_target_pass_ms"]
    return (
        f"On {n_tickets} tickets {same}. The teacher kept **{m['speculative_distilled_acceptance']:.0%}** of the "
        f"distilled student's guesses (gamma {m['speculative_distilled_gamma']}) and "
        f"**{m['speculative_undistilled_acceptance']:.0%}** of its undistilled twin's "
        f"(gamma {m['speculative_undistilled_gamma']}); decoding ran ×{m['speculative_distilled_speedup']:.2f} and "
        f"×{m['speculative_undistilled_speedup']:.2f} against the teacher alone. Both students cost the same per "
        f"pass ({ratio:.0%} of a teacher pass here), so whatever separates them as drafts is how often the teacher "
        "agrees with them. To pay at all, a draft must also cost far less than its teacher (notebook 04 works the "
        "cost model through). "
        + ("" if weights is None else _head_sentence(weights))
        + "transformers' assisted generation with the distilled student gave "
        + ("the same" if m["hf_assisted_identical"] else "**different**")
        + f" tokens as plain greedy generation and ran ×{m['hf_assisted_speedup']:.2f} on whole answers."
    )


def _head_sentence(w: PassWeights) -> str:
    return (
        f"A cut student cannot be much cheaper here: the output head ({w.head / 1e6:.1f} M weights) is multiplied in "
        f"full at every token by student and teacher alike, and it is {w.head_share:.0%} of the student's "
        f"{w.student / 1e6:.1f} M weights per token. By weights multiplied, this student's pass costs "
        f"{w.floor:.0%} of the teacher's ({w.teacher / 1e6:.1f} M), and no student, however few blocks it keeps, "
        f"goes below {w.head / w.teacher:.0%}. "
    )


def tradeoff_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The three models of the trade-off plot: parameters, ms per token and score."""
    who = {"teacher": "teacher", "distilled student": "student", "no distillation": "undistilled"}
    return [
        {
            "name": name,
            "params": metrics[f"{k}_params"],
            "ms_per_token": metrics[f"{k}_ms_per_token"],
            "score": metrics[f"{k}_score"],
            "score_ci_low": metrics[f"{k}_score_ci_low"],
            "score_ci_high": metrics[f"{k}_score_ci_high"],
        }
        for name, k in who.items()
    ]


TARGETS = (
    ("student ≤ 40% of the teacher's parameters", lambda m: m["student_param_share"] <= 0.40),
    ("≥ 2× faster per generated token", lambda m: m["speedup"] >= 2.0),
    ("retention ≥ 0.90", lambda m: m["retention"] >= 0.90),
    ("distilled student beats the student without distillation", lambda m: m["student_score"] > m["undistilled_score"]),
)


def targets_met(metrics: dict[str, Any]) -> dict[str, Any]:
    met = [check(metrics) for _, check in TARGETS]
    return {**{f"target_{i}_met": ok for i, ok in enumerate(met, start=1)}, "targets_met": sum(met)}


SCORE_KEYS = {
    "teacher": "teacher_score",
    "distilled": "student_score",
    "sequence-level": "seq_student_score",
    "undistilled": "undistilled_score",
}


def score_bars(metrics: dict[str, Any], ref: Any) -> tuple[dict[str, tuple], dict[str, tuple[float, float]]]:
    """Each model's score in this run beside the full reference run's (``plots.plot_run_vs_reference``),
    and this run's 95 % intervals."""
    bars = {name: (metrics[k], ref.get(k)) for name, k in SCORE_KEYS.items()}
    intervals = {name: (metrics[f"{k}_ci_low"], metrics[f"{k}_ci_high"]) for name, k in SCORE_KEYS.items()}
    return bars, intervals
