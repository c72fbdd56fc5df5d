"""Notebook 01's steps: the model's anatomy, its footprint, pruning on one layer, sparse storage and
the fleet's arithmetic. Each step returns what it measured as metric keys (``report`` reads them)."""

from __future__ import annotations

import functools
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import compress, data, models
from ..decoding import TorchDecoder, decoder_stream
from ..decoding.constrained import TicketFormat
from ..fleet import plan_fleet
from ..uncertainty import TicketScores, difference_metrics, interval_metrics

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


def masked_floor(
    model: Any, tokenizer: Any, rows: list[dict[str, str]], base_answers: list[str], max_new_tokens: int
) -> dict[str, Any]:
    """The untuned model again, its answers held to the ticket format by a token mask (section 4.7's
    technique, on the model that needs it most): ``base_masked_*`` scores, and the paired difference
    from its free greedy answers (``base_answers``, the batched ones section 1.6 scored first)."""
    fmt = TicketFormat.for_tokenizer(tokenizer)
    decode = functools.partial(tokenizer.decode, skip_special_tokens=True)
    device = next(model.parameters()).device
    answers = []
    for row in tqdm(rows, desc="masked answers", unit="ticket"):
        ids = tokenizer(data.format_chat(tokenizer, row), add_special_tokens=False).input_ids
        stream = decoder_stream(TorchDecoder(model, device), ids, max_new_tokens, fmt.eos_ids, decode, fmt.cursor())
        answers.append("".join(token.text for token in stream))
    masked, free = TicketScores.from_answers(answers, rows), TicketScores.from_answers(base_answers, rows)
    out = {f"base_masked_{k}": v for k, v in data.score_predictions(answers, rows).items()}
    return out | interval_metrics("base_masked", masked) | difference_metrics("base_masked_vs_base", masked, free)
