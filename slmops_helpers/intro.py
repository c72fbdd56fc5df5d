"""Notebook 01's steps and readings: the model's anatomy, its footprint, the task's floor,
pruning on one layer, and the fleet's arithmetic. Each step returns metric keys; each
reading is the sentence the notebook shows after it, rendered from those keys.
"""

from __future__ import annotations

from typing import Any

import torch

from . import compress, data, models
from .fleet import plan_fleet

SPARSITIES = (0.0, 0.25, 0.5, 0.75, 0.9)
FLEET_MODEL = "smollm2-1.7b-instruct"  # the preset whose fit across the fleet section 1.8 reads


def model_facts(model: Any) -> dict[str, Any]:
    config = model.config
    n_params = models.count_parameters(model)
    n_embedding = model.get_input_embeddings().weight.numel()
    return {
        "n_params": n_params,
        "embedding_params": n_embedding,
        "embedding_share": n_embedding / n_params,
        "n_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
    }


def describe_model(name: str, m: dict[str, Any]) -> str:
    return (
        f"{name}: {m['n_params']:,} parameters, {m['n_layers']} layers, hidden size {m['hidden_size']}, vocabulary "
        f"{m['vocab_size']:,}; loaded in {m['load_s']:.1f} s. Token embedding (shared with the output head): "
        f"{m['embedding_params']:,} parameters = {m['embedding_share']:.0%} of the model."
    )


def footprint(model: Any) -> tuple[list[dict[str, Any]], dict[str, float], dict[str, Any]]:
    """Textbook sizes (parameters × bytes per weight) beside the sizes of the real tensors, per precision."""
    computed = models.footprint_table(models.count_parameters(model))
    measured = {
        "fp32": models.tensor_bytes(model) / models.MIB,
        "fp16": sum(p.numel() * 2 for p in model.parameters()) / models.MIB,  # same tensors, 2 bytes each
        "int8": compress.quantized_model_bytes(model, bits=8)["total"] / models.MIB,
        "int4": compress.quantized_model_bytes(model, bits=4)["total"] / models.MIB,
    }
    keep = compress.quantized_model_bytes(model, bits=4, quantize_embeddings=False)["total"] / models.MIB
    out: dict[str, Any] = {}
    for row in computed:
        row["measured_mib"] = measured[row["precision"]]
        out |= {
            f"computed_{row['precision']}_mib": row["size_mib"],
            f"measured_{row['precision']}_mib": row["measured_mib"],
        }
    out |= {
        "measured_int4_keep_embedding_mib": keep,
        "int4_reduction_pct": 100 * (1 - measured["int4"] / measured["fp32"]),
        "int4_keep_embedding_reduction_pct": 100 * (1 - keep / measured["fp32"]),
    }
    return computed, measured, out


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


def pruning_study(model: Any, tokenizer: Any, row: dict[str, str]) -> tuple[Any, list[dict[str, float]], dict]:
    """Prune the middle block's MLP down-projection at each sparsity, by magnitude and at random."""
    layer = model.model.layers[model.config.num_hidden_layers // 2].mlp.down_proj
    device = next(model.parameters()).device
    ids = tokenizer(data.format_chat(tokenizer, row, with_target=True), return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        rows = [
            r
            for m in compress.PRUNE_METHODS
            for r in compress.pruning_effect(model, ids, layer.weight, list(SPARSITIES), m)
        ]
    by = {(r["method"], r["sparsity"]): r for r in rows}
    out = {}
    for method in compress.PRUNE_METHODS:
        out |= {
            f"prune50_{method}_kl": by[(method, 0.5)]["kl"],
            f"prune90_{method}_top1": by[(method, 0.9)]["top1_agreement"],
        }
    return layer, rows, out


def format_pruning(rows: list[dict[str, float]]) -> str:
    return "\n".join(
        f"{r['method']:>9} {r['sparsity']:.0%}: KL {r['kl']:.4f}  top-1 agreement {r['top1_agreement']:.1%}  "
        f"loss {r['loss']:.3f}"
        for r in rows
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


def csr_study(weight: torch.Tensor) -> tuple[list[str], dict[str, float]]:
    """Bytes of one weight matrix stored dense against CSR (values + column indices + row pointers)."""
    w = weight.detach().float().cpu()
    dense = w.numel() * 4
    csr = {s: compress.csr_bytes(compress.prune_weight(w, s)) for s in SPARSITIES}
    lines = [
        f"sparsity {s:.0%}: dense {dense / 1024:.0f} KiB, CSR {b / 1024:.0f} KiB ({b / dense:.2f}× dense)"
        for s, b in csr.items()
    ]
    return lines, {"csr_over_dense_at_50": csr[0.5] / dense, "csr_over_dense_at_90": csr[0.9] / dense}


def csr_reading(m: dict[str, Any]) -> str:
    return (
        "Zeros save memory only if you store the matrix sparsely, and a sparse format pays an index per kept weight: "
        f"at 50% sparsity CSR takes **{m['csr_over_dense_at_50']:.2f}×** the dense bytes, at 90% "
        f"**{m['csr_over_dense_at_90']:.2f}×**. Speed gains need kernels that skip zeros (or structured patterns such "
        "as 2:4). That is why unstructured pruning rarely pays on its own; structured pruning (whole blocks, heads or "
        "channels) makes the matrices themselves smaller, and section 2's student is built that way."
    )


def fleet_metrics(n_params: int) -> dict[str, Any]:
    """How much of the default fleet a 1.7B model reaches at fp32 and int4, and what serving this model costs."""
    big = int(models.PRESETS[FLEET_MODEL].params_millions * 1e6)
    out: dict[str, Any] = {f"fleet_1_7b_{p}_share_fitting": plan_fleet(big, p).share_fitting for p in ("fp32", "int4")}
    plan = plan_fleet(n_params, "fp32")
    out |= {
        "fleet_edge_usd_per_month": plan.edge_update_usd_per_month,
        "fleet_cloud_usd_per_month": plan.cloud_usd_per_month,
        "fleet_devices": plan.devices_total,
    }
    return out


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
