"""Notebook 03's steps, each a call that returns what it measured as metric keys.

Every method gets the same steps and batch size and its own learning rate (``config``: one
``FinetuneConfig`` per profile, passed in as ``sizes``).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import data, models, training
from ..evaluate import Scored, score_model
from ..uncertainty import TicketScores, interval_metrics, seed_difference_metrics, seed_score_metrics
from .artifacts import load_adapters, merge_with_parity, save_artifact
from .config import FinetuneConfig
from .grid import read_grid
from .methods import (
    ATTENTION,
    MethodConfig,
    MethodRun,
    load_qlora_base,
    lora_parameter_count,
    make_trainable,
    run_method,
)

METHOD_SPECS = {
    "full": MethodConfig("full"),
    "lora": MethodConfig("lora", rank=8, alpha=16, targets=ATTENTION),
    "qlora": MethodConfig("qlora", rank=8, alpha=16, targets=ATTENTION),
    "ia3": MethodConfig("ia3"),
}


def train_config(sizes: FinetuneConfig, method: str, seed: int = 0) -> training.TrainConfig:
    """How ``method`` trains in section 3: the profile's steps and batch, the method's own rate."""
    return training.TrainConfig(
        lr=sizes.lr[method], max_steps=sizes.steps, batch_size=sizes.batch, eval_every=sizes.eval_every, seed=seed
    )


def fresh_base(model_name: str, device: str) -> Any:
    """A new fp32 copy of the base: every method and experiment starts from its own."""
    model, _ = models.load_model(model_name, device=device, dtype=torch.float32)
    return model


def encode_rows(tokenizer: Any, rows: list[dict[str, str]], target: Any = None, max_length: int = 320) -> list:
    """Training examples of ``rows``; ``target(row)`` replaces the three-line answer when given."""
    return [training.encode_example(tokenizer, r, max_length=max_length, target=target and target(r)) for r in rows]


@dataclass
class Comparison:
    """Every method trained on the same budget, once per seed, and QLoRA's 4-bit base scored before training."""

    trained: dict[str, Any]  # the first seed's trained models, by method (the notebook merges and ships these)
    runs: dict[int, dict[str, MethodRun]]  # seed → method → its measured run
    backend: str  # how QLoRA's base was quantized
    qlora_base: Scored  # that 4-bit base, untrained, on the test tickets

    @property
    def first(self) -> dict[str, MethodRun]:
        return self.runs[next(iter(self.runs))]

    def tickets(self, method: str) -> list[TicketScores]:
        return [by_method[method].tickets for by_method in self.runs.values()]


def compare_methods(
    model_name: str, tokenizer: Any, split: dict[str, list], sizes: FinetuneConfig, max_new_tokens: int, out: Path,
    device: str, seed: int = 0,
) -> Comparison:  # fmt: skip
    """Train every method of ``METHOD_SPECS`` on the same budget, for ``sizes.seeds`` seeds from
    ``seed`` on. The first seed's artifacts go to ``out``; the other seeds' are measured and dropped."""
    trained: dict[str, Any] = {}
    runs: dict[int, dict[str, MethodRun]] = {}
    backend, qlora_base = "n/a", None
    for s in range(seed, seed + sizes.seeds):
        runs[s] = {}
        with tempfile.TemporaryDirectory(prefix=f"seed{s}-") as scratch:
            for name, spec in METHOD_SPECS.items():
                if name == "qlora":
                    base, _, backend = load_qlora_base(model_name, device=device)
                    if qlora_base is None:  # quantizing is deterministic: its cost is measured once
                        qlora_base = score_model(base, tokenizer, split["test"], max_new_tokens)
                else:
                    base = fresh_base(model_name, device)
                config = train_config(sizes, name, seed=s)
                model, runs[s][name] = run_method(
                    name, base, tokenizer, spec, config, split, max_new_tokens, out if s == seed else Path(scratch)
                )
                if s == seed:
                    trained[name] = model
                del model, base
                models.release_memory()  # the next method loads a fresh base
    assert qlora_base is not None  # METHOD_SPECS holds qlora
    return Comparison(trained, runs, backend, qlora_base)


# The comparisons section 3 draws: (this, against that), each a paired difference on the same tickets.
COMPARISONS = {
    "full_vs_base": ("full", "base"),
    "lora_vs_base": ("lora", "base"),
    "qlora_vs_base": ("qlora", "base"),
    "ia3_vs_base": ("ia3", "base"),
    "lora_vs_full": ("lora", "full"),
    "qlora_vs_lora": ("qlora", "lora"),
    "qlora_base_vs_base": ("qlora_base", "base"),  # what quantizing the base costs, before any training
    "qlora_vs_qlora_base": ("qlora", "qlora_base"),  # what QLoRA's training bought on its 4-bit base
}


def base_metrics(base: Scored) -> dict[str, Any]:
    """The untuned base's score on the test tickets, with its interval."""
    return {"base_score": base.scores["score"], "n_eval": base.tickets.n, **interval_metrics("base", base.tickets)}


def method_metrics(comparison: Comparison, base_model: Any, base: Scored, sizes: FinetuneConfig) -> dict[str, Any]:
    """Every method's row under ``<method>_<column>`` (costs from the first seed; the score as the
    mean over seeds with its ticket interval and the seeds' spread), the paired differences of
    ``COMPARISONS`` over seeds, and the budget every method trained on (``sizes``)."""
    out = {f"{name}_{k}": v for name, run in comparison.first.items() for k, v in run.row().items() if k != "method"}
    out |= {"train_steps": sizes.steps, "train_batch": sizes.batch, "train_seeds": len(comparison.runs)}
    tickets = {"base": [base.tickets], "qlora_base": [comparison.qlora_base.tickets]}
    tickets |= {name: comparison.tickets(name) for name in METHOD_SPECS}
    for name in METHOD_SPECS:
        out |= seed_score_metrics(name, tickets[name])
    out |= {
        "qlora_base_score": comparison.qlora_base.scores["score"],
        **interval_metrics("qlora_base", tickets["qlora_base"][0]),
    }
    for key, (a, b) in COMPARISONS.items():
        out |= seed_difference_metrics(key, tickets[a], tickets[b])
    # LoRA's count by hand: rank × (in + out) per targeted layer; peft's count must agree (lab 03 asks the same)
    out["lora_trainable_formula"] = lora_parameter_count(base_model, METHOD_SPECS["lora"].rank, ATTENTION)
    return {**out, "qlora_backend": comparison.backend}


def overfit_demo(
    model_name: str, train: list, val: list, sizes: FinetuneConfig, pad_id: int, device: str, seed: int = 0
):
    """LoRA with a high learning rate on a few tickets, many times over: overfitting on purpose."""
    model = make_trainable(
        fresh_base(model_name, device), MethodConfig("lora", rank=16, alpha=32, targets=ATTENTION, dropout=0.0)
    )
    config = training.TrainConfig(
        lr=3e-3,
        max_steps=sizes.overfit_steps,
        batch_size=sizes.overfit_batch,
        eval_every=2,
        patience=sizes.patience,
        seed=seed,
    )
    train, val = train[: sizes.overfit_rows], val[: sizes.overfit_val_rows]
    return training.train(model, train, val, config, pad_id, desc="overfitting on purpose")


def overfit_metrics(result: training.TrainResult) -> dict[str, Any]:
    val = [h for h in result.history if "val_loss" in h]
    return {
        "overfit_best_step": result.best_step,
        "overfit_stopped_step": result.steps,
        "overfit_stopped_early": result.stopped_early,
        "overfit_val_rise": val[-1]["val_loss"] - result.best_val_loss,
        "overfit_train_drop": result.history[0]["train_loss"] - result.history[-1]["train_loss"],
    }


MEMORY_KEYS = {
    "batch 1": "batch1",
    "batch 4": "batch4",
    "batch 4, ≤160 tokens": "batch4_short",
    "batch 4 + checkpointing": "batch4_ckpt",
}


def memory_probe(model_name: str, tokenizer: Any, train: list, short: list, device: str) -> list[dict[str, Any]]:
    """Activations kept for the backward pass, and one forward + backward's time, per setting."""
    probe = make_trainable(fresh_base(model_name, device), MethodConfig("lora", targets=ATTENTION))
    settings = {"batch 1": (train[:1], False), "batch 4": (train[:4], False)}
    settings |= {"batch 4, ≤160 tokens": (short, False), "batch 4 + checkpointing": (train[:4], True)}
    rows = []
    for label, (examples, checkpointing) in settings.items():
        start = time.perf_counter()
        mib = training.activation_mib(probe, examples, tokenizer.pad_token_id, gradient_checkpointing=checkpointing)
        rows.append({"label": label, "activation_mib": mib, "s_per_step": time.perf_counter() - start})
    return rows


def memory_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for row in rows:
        key = MEMORY_KEYS[row["label"]]
        out |= {f"{key}_activation_mib": row["activation_mib"], f"{key}_s": row["s_per_step"]}
    return out


def run_grid(
    grid_path: Path,
    model_name: str,
    train: list,
    val: list,
    sizes: FinetuneConfig,
    pad_id: int,
    device: str,
    seed: int = 0,
):
    """Train each combination of the YAML grid briefly; one row per run with its best validation loss."""
    rows = []
    for run in read_grid(grid_path):
        spec = MethodConfig(
            "lora", rank=run["rank"], alpha=run.get("alpha", 2 * run["rank"]), targets=tuple(run["targets"])
        )
        steps = run["steps"] * sizes.grid_factor
        config = training.TrainConfig(
            lr=run["lr"], max_steps=steps, batch_size=sizes.grid_batch, eval_every=steps, seed=seed
        )
        model = make_trainable(fresh_base(model_name, device), spec)
        val_rows = val[: sizes.grid_val_rows]
        result = training.train(model, train, val_rows, config, pad_id, desc=f"rank {run['rank']}, lr {run['lr']}")
        rows.append({"rank": run["rank"], "lr": run["lr"], "steps": steps, "val_loss": result.best_val_loss})
    return rows


def grid_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    best = min(rows, key=lambda r: r["val_loss"])
    return {
        "grid_runs": len(rows),
        "grid_best_rank": best["rank"],
        "grid_best_lr": best["lr"],
        "grid_best_val_loss": best["val_loss"],
        "grid_worst_val_loss": max(r["val_loss"] for r in rows),
    }


def format_grid(rows: list[dict[str, Any]]) -> str:
    best = min(rows, key=lambda r: r["val_loss"])
    return "\n".join(
        f"rank {r['rank']:>3}  lr {r['lr']:<7} steps {r['steps']:>3}  validation loss {r['val_loss']:.3f}"
        + ("   <- best" if r is best else "")
        for r in rows
    )


def train_triage_adapter(
    model_name: str, tokenizer: Any, splits: dict, sizes: FinetuneConfig, folder: Path, device: str, seed: int = 0
):
    """A second customer's adapter: trained to answer with the category line only; saved to ``folder``."""
    target = lambda r: f"category: {r['category']}"  # noqa: E731
    model = make_trainable(fresh_base(model_name, device), MethodConfig("lora", targets=ATTENTION))
    config = training.TrainConfig(lr=2e-3, max_steps=sizes.triage_steps, batch_size=sizes.batch, seed=seed)
    train, val = (
        encode_rows(tokenizer, splits["train"], target),
        encode_rows(tokenizer, splits["validation"][:4], target),
    )
    training.train(model, train, val, config, tokenizer.pad_token_id, desc="triage adapter")
    return save_artifact(model, folder)


@torch.no_grad()
def switch_adapters(base: Any, tokenizer: Any, adapters: dict[str, Path], row: dict, max_new_tokens: int):
    """Load ``adapters`` onto one base and answer ``row`` with each; (replies, slowest switch in ms)."""
    served = load_adapters(base, adapters)
    prompt = tokenizer(data.format_chat(tokenizer, row), return_tensors="pt").to(next(base.parameters()).device)
    replies, switch_s = {}, []
    for name in adapters:
        start = time.perf_counter()
        served.set_adapter(name)
        switch_s.append(time.perf_counter() - start)
        answer = served.generate(
            **prompt, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        replies[name] = tokenizer.decode(answer[0, prompt.input_ids.shape[1] :], skip_special_tokens=True)
    return replies, 1000 * max(switch_s)


def merge_and_save(model: Any, tokenizer: Any, rows: list[dict[str, str]], folder: Path):
    """Merge the LoRA adapter with the parity check on ``rows``; save the plain model; (parity, MiB)."""
    ids = tokenizer([data.format_chat(tokenizer, r) for r in rows], return_tensors="pt", padding=True)
    device = next(model.parameters()).device
    merged, parity = merge_with_parity(model, ids.input_ids.to(device), ids.attention_mask.to(device))
    mib = save_artifact(merged, folder)
    tokenizer.save_pretrained(folder)
    return parity, mib
