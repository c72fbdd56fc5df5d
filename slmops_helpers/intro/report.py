"""Notebook 01's readings: the sentence after each step, rendered from its metric keys (so that it
reads the same from a run or from the committed reference record)."""

from __future__ import annotations

from typing import Any

from ..uncertainty import difference_sentence


def describe_model(name: str, m: dict[str, Any]) -> str:
    return (
        f"{name}: {m['n_params']:,} parameters, {m['n_layers']} layers, hidden size {m['hidden_size']}, vocabulary "
        f"{m['vocab_size']:,}; loaded in {m['load_s']:.1f} s. Token embedding (shared with the output head): "
        f"{m['embedding_params']:,} parameters = {m['embedding_share']:.0%} of the model."
    )


def footprint_reading(m: dict[str, Any]) -> str:
    return (
        f"Measured, int4 shrinks the model by **{m['int4_reduction_pct']:.1f}%** rather than the textbook 87.5%: every "
        "group of 32 weights also stores a 2-byte scale (0.0625 bytes per weight on top of 0.5). Keep the token "
        "embedding in fp32, as many int4 recipes do because it is a lookup table, and the saving falls to "
        f"**{m['int4_keep_embedding_reduction_pct']:.1f}%**: in this model the embedding is {m['embedding_share']:.0%} "
        "of all parameters. Section 4 meets the same gap in real ONNX files."
    )


def floor_reading(m: dict[str, Any]) -> str:
    below = m["base_score"] < max(m["majority_score"], m["copy_score"])
    return (
        f"On {m['n_eval']} held-out messages the untuned model scores **{m['base_score']:.1f}** (category "
        f"{m['base_category_acc']:.0%}, error code {m['base_error_code_acc']:.0%}, reply ROUGE-L "
        f"{m['base_reply_rouge_l']:.2f}, well-formed answers {m['base_format_ok']:.0%}). Always answering the most "
        f"common category and code scores **{m['majority_score']:.1f}**, echoing the customer's message as the reply "
        f"**{m['copy_score']:.1f}**. "
        + (
            "The untuned model does not even beat these trivial baselines: it was never taught this format. "
            if below
            else ""
        )
        + "Every later section reports its models against this floor and must lift the score clearly above it."
    )


def masked_floor_reading(m: dict[str, Any]) -> str:
    """What the format mask does for the untuned model: form, fields, score, and what stays for training."""
    floor = max(m["majority_score"], m["copy_score"])
    text = (
        f"Held to the format, the untuned model writes **{m['base_masked_format_ok']:.0%}** well-formed answers "
        f"(free: {m['base_format_ok']:.0%}); category right {m['base_masked_category_acc']:.0%} "
        f"(free: {m['base_category_acc']:.0%}), error code {m['base_masked_error_code_acc']:.0%} "
        f"(free: {m['base_error_code_acc']:.0%}), score **{m['base_masked_score']:.1f}**. "
        + difference_sentence(m, "base_masked_vs_base", "masked", "free", m["n_eval"])
        + ". "
    )
    if m["base_masked_score"] > floor:
        text += f"That lifts it above the trivial baselines ({floor:.1f}): part of the floor was the format. "
    else:
        text += (
            f"It stays below the trivial baselines ({floor:.1f}): with the form guaranteed, what holds it down "
            "is content. "
        )
    return text + (
        "The mask fixes the form only: among the allowed tokens the model still picks by its own scores, so a "
        "category it does not know stays wrong. What remains between this and "
        "the references is what training has to add (sections 2 and 3)."
    )


def pruning_reading(m: dict[str, Any]) -> str:
    ratio = m["prune50_random_kl"] / max(m["prune50_magnitude_kl"], 1e-12)
    return (
        f"At 50% sparsity, removing the smallest weights moves the next-token distribution by KL "
        f"{m['prune50_magnitude_kl']:.4f}; removing random ones by {m['prune50_random_kl']:.4f}, {ratio:.0f}× more. "
        f"At 90%, magnitude pruning still agrees with the dense model's top token {m['prune90_magnitude_top1']:.0%} "
        f"of the time, random pruning {m['prune90_random_top1']:.0%}. Which weights you drop matters more than "
        "how many."
    )


def csr_reading(m: dict[str, Any]) -> str:
    return (
        "Zeros save memory only if you store the matrix sparsely, and a sparse format pays an index per kept weight: "
        f"at 50% sparsity CSR takes **{m['csr_over_dense_at_50']:.2f}×** the dense bytes, at 90% "
        f"**{m['csr_over_dense_at_90']:.2f}×**. Speed gains need kernels that skip zeros (or structured patterns such "
        "as 2:4). That is why unstructured pruning rarely pays on its own; structured pruning (whole blocks, heads or "
        "channels) makes the matrices themselves smaller, and section 2's student is built that way."
    )


def fleet_reading(m: dict[str, Any]) -> str:
    return (
        f"With the calculator's default assumptions (editable above), SmolLM2-1.7B fits "
        f"**{m['fleet_1_7b_fp32_share_fitting']:.0%}** of the {m['fleet_devices']:,} devices at fp32 and "
        f"**{m['fleet_1_7b_int4_share_fitting']:.0%}** at int4: precision decides the reach before anything else does. "
        f"For this course's model at fp32, shipping one update a month to every device that fits costs "
        f"**${m['fleet_edge_usd_per_month']:,.2f}** in downloads, against **${m['fleet_cloud_usd_per_month']:,.2f}** "
        "a month to answer the same traffic from a hosted model: assumptions, not prices, so change them to yours."
    )


LESSON_ROWS = (
    ("parameters", "n_params", "{:,}".format),
    ("int4 reduction, measured (%)", "int4_reduction_pct", "{:.1f}".format),
    ("tokens per second", "gen_tok_s", "{:.1f}".format),
    ("time to first token (ms)", "gen_ttft_ms", "{:.0f}".format),
    ("untuned task score", "base_score", "{:.1f}".format),
    ("held-out tickets", "n_eval", "{:d}".format),
)
