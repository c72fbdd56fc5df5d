"""Notebook 03's readings: the sentence after each measurement, rendered from the metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..uncertainty import seed_sentence
from .config import FinetuneConfig

if TYPE_CHECKING:  # annotations only: the readings need no torch
    from .methods import MethodRun
    from .steps import Comparison

PAIRED = (("lora_vs_base", "LoRA", "base"), ("full_vs_base", "full", "base"), ("lora_vs_full", "LoRA", "full"),
          ("qlora_vs_lora", "QLoRA", "LoRA"), ("qlora_vs_qlora_base", "QLoRA", "its 4-bit base"))  # fmt: skip


def methods_reading(m: dict[str, Any], sizes: FinetuneConfig, profile: str) -> str:
    qlora_time = (
        ": 4-bit weights are unpacked for every matrix product, so here QLoRA bought memory with time. "
        if m["qlora_s_per_step"] > 1.05 * m["lora_s_per_step"]
        else ": no slower within 5 %, so on this machine the unpacking cost no measurable time. "
    )
    text = (
        f"**Read the table.** LoRA trains **{m['lora_trainable_pct']:.2f}%** of the parameters "
        f"({m['lora_trainable']:,}) "
        f"and its adapter is **{m['lora_artifact_mib']:.1f} MiB** on disk, against "
        f"**{m['full_artifact_mib']:.0f} MiB** "
        f"for the fully fine-tuned model. IA3 trains {m['ia3_trainable_pct']:.3f}% and ships "
        f"{m['ia3_artifact_mib']:.2f} "
        f"MiB. Held-out scores after {sizes.steps} steps of {sizes.batch} tickets, each the mean of "
        f"{m['train_seeds']} training seeds: full {m['full_score']:.1f}, "
        f"LoRA {m['lora_score']:.1f}, QLoRA {m['qlora_score']:.1f}, IA3 {m['ia3_score']:.1f}, base "
        f"{m['base_score']:.1f}. "
        f"Training memory: full fine-tuning holds {m['full_peak_mib']:.0f} MiB, of which "
        f"{m['full_gradients_mib'] + m['full_optimizer_mib']:.0f} MiB are gradients and AdamW state for every weight; "
        f"LoRA holds {m['lora_peak_mib']:.0f} MiB. QLoRA ran on **{m['qlora_backend']}**: its weights take "
        f"{m['qlora_weights_mib']:.0f} MiB instead of {m['lora_weights_mib']:.0f}, at "
        f"{m['qlora_s_per_step']:.1f} s per "
        f"step against {m['lora_s_per_step']:.1f} s for LoRA{qlora_time}At this model size activations are the largest "
        "part for the adapters; on a 7B model the weights are, which is why QLoRA matters there."
    )
    text += (
        f"\n\n**Against the noise**: each seed's own difference, and the paired bootstrap over the same "
        f"{m['n_eval']} tickets of the seed-averaged scores:\n"
    )
    text += "\n".join(f"- {seed_sentence(m, key, a, b, m['train_seeds'])}" for key, a, b in PAIRED)
    text += "\n\n" + qlora_base_reading(m)
    if profile == "smoke":
        text += (
            "\n\n*A smoke run's handful of steps shows the mechanics and the costs; where its readings say "
            '"within the ticket noise" or "the seeds disagree", the lesson on quality is in the full reference '
            "run's column in 3.8.*"
        )
    return text


def qlora_base_reading(m: dict[str, Any]) -> str:
    """QLoRA − LoRA split in two: what the 4-bit base lost before training, and what training then
    bought on it compared with LoRA's training on the fp32 base (the two parts add up to the gap)."""
    cost = m["qlora_base_vs_base_score_diff"]
    low, high = m["qlora_base_vs_base_score_diff_ci_low"], m["qlora_base_vs_base_score_diff_ci_high"]
    noise = "within the ticket noise" if low <= 0 <= high else "beyond the ticket noise"
    learned = m["qlora_vs_qlora_base_score_diff"] - m["lora_vs_base_score_diff"]
    return (
        f"**Where QLoRA's gap comes from.** Its 4-bit base ({m['qlora_backend']}) scores "
        f"{m['qlora_base_score']:.1f} before any training, against {m['base_score']:.1f} for the fp32 base: "
        f"quantizing cost {cost:+.1f} points (95 % interval {low:+.1f} to {high:+.1f}, {noise}). Training then "
        f"moved QLoRA by {m['qlora_vs_qlora_base_score_diff']:+.1f} and LoRA by {m['lora_vs_base_score_diff']:+.1f}. "
        f"So QLoRA − LoRA ({m['qlora_vs_lora_score_diff']:+.1f}) is {cost:+.1f} from the base's rounding and "
        f"{learned:+.1f} from what the same steps taught on the rounded weights."
    )


def overfit_reading(m: dict[str, Any], n_rows: int) -> str:
    stop = (
        f"ended the run at step {m['overfit_stopped_step']} and restored the best weights."
        if m["overfit_stopped_early"]
        else f"did not trigger within {m['overfit_stopped_step']} steps."
    )
    return (
        f"On {n_rows} tickets the training loss fell by {m['overfit_train_drop']:.2f} nats while the validation "
        "loss was "
        f"best at step {m['overfit_best_step']} and then rose by {m['overfit_val_rise']:.2f}; early stopping {stop}"
    )


def memory_reading(m: dict[str, Any]) -> str:
    return (
        f"Four tickets instead of one multiplied the activations from {m['batch1_activation_mib']:.0f} to "
        f"{m['batch4_activation_mib']:.0f} MiB; capping the examples at 160 tokens brought batch 4 to "
        f"{m['batch4_short_activation_mib']:.0f} MiB; gradient checkpointing to "
        f"{m['batch4_ckpt_activation_mib']:.0f} MiB, "
        f"at {m['batch4_ckpt_s']:.2f} s per pass instead of {m['batch4_s']:.2f} s. (Here the system prompt is most of "
        "every example: a shorter prompt is the cheapest memory saving there is.)"
    )


def grid_reading(m: dict[str, Any]) -> str:
    spread = m["grid_worst_val_loss"] - m["grid_best_val_loss"]
    return (
        f"{m['grid_runs']} runs; the lowest validation loss, {m['grid_best_val_loss']:.3f}, came from rank "
        f"{m['grid_best_rank']} at lr {m['grid_best_lr']}, {spread:.3f} nats below the worst. The learning rate "
        "usually decides more than the rank at this budget; score the winner on tickets before you ship it."
    )


def merge_reading(m: dict[str, Any]) -> str:
    return (
        f"Merged weights: worst error {m['merge_weight_error']:.2f} of its rounding bound; logits: max |difference| "
        f"{m['merge_max_abs_diff']:.1e}, where float32 alone moves them by {m['merge_noise']:.1e} (bound "
        f"{m['merge_bound']:.1e}): **{'exact' if m['merge_exact'] else 'NOT exact'}**. The merged model "
        f"({m['merged_mib']:.0f} MiB) is a plain transformers folder: section 4 scores it beside the tuned model."
    )


LESSON_ROWS = (
    ("untuned base", "base_score", "{:.1f}".format),
    ("full fine-tuning", "full_score", "{:.1f}".format),
    ("LoRA", "lora_score", "{:.1f}".format),
    ("QLoRA", "qlora_score", "{:.1f}".format),
    ("IA3", "ia3_score", "{:.1f}".format),
    ("LoRA − base, paired (points)", "lora_vs_base_score_diff", "{:+.1f}".format),
    ("LoRA − full, paired (points)", "lora_vs_full_score_diff", "{:+.1f}".format),
    ("QLoRA's 4-bit base, before training", "qlora_base_score", "{:.1f}".format),
    ("QLoRA − LoRA, paired (points)", "qlora_vs_lora_score_diff", "{:+.1f}".format),
    ("training steps per method", "train_steps", "{:d}".format),
    ("training seeds per method", "train_seeds", "{:d}".format),
    ("tickets per step", "train_batch", "{:d}".format),
    ("held-out tickets", "n_eval", "{:d}".format),
    ("LoRA trainable %", "lora_trainable_pct", "{:.2f}".format),
    ("full fine-tuning training memory (MiB)", "full_peak_mib", "{:.0f}".format),
    ("LoRA training memory (MiB)", "lora_peak_mib", "{:.0f}".format),
)


def method_rows(m: dict[str, Any], comparison: Comparison) -> list[dict[str, Any]]:
    """One row per method for the table and the plot: the first seed's costs, the score as the mean
    over seeds with its ticket interval, and each seed's score (``seed_scores``)."""
    rows = []
    for name, run in comparison.first.items():
        seeded = {k: m[f"{name}_{k}"] for k in ("score", "score_ci_low", "score_ci_high")}
        seed_scores = [runs[name].scores["score"] for runs in comparison.runs.values()]
        rows.append(run.row() | seeded | {"seed_scores": seed_scores})
    return rows


def seed_table(m: dict[str, Any], seeds: dict[int, dict[str, MethodRun]]) -> str:
    """Each method's test score on each seed, its mean and its ticket interval."""
    header = (
        f"{'method':>6} " + " ".join(f"{'seed ' + str(s):>7}" for s in seeds) + f" {'mean':>6}  95 % ticket interval"
    )
    lines = [header]
    for name in next(iter(seeds.values())):
        per_seed = " ".join(f"{runs[name].scores['score']:7.1f}" for runs in seeds.values())
        low, high = m[f"{name}_score_ci_low"], m[f"{name}_score_ci_high"]
        lines.append(f"{name:>6} {per_seed} {m[name + '_score']:6.1f}  {low:.1f} to {high:.1f}")
    return "\n".join(lines)


def format_methods(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'method':>6} {'score':>6} {'trainable':>12} {'%':>7} {'peak MiB':>8} {'s/step':>7} {'artifact MiB':>12}"
    ]
    lines += [
        f"{r['method']:>6} {r['score']:6.1f} {r['trainable']:12,} {r['trainable_pct']:7.3f} "
        f"{r['peak_mib']:8.0f} {r['s_per_step']:7.2f} {r['artifact_mib']:12.2f}"
        for r in rows
    ]
    return "\n".join(lines)
