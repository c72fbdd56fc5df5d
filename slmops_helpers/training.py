"""A short, readable training loop shared by fine-tuning (section 3) and distillation
(section 2): chat-formatted examples with the prompt masked out of the loss, AdamW,
validation loss (and optionally a task score), early stopping, progress bar, time per
step and peak memory.

The loss is pluggable: fine-tuning uses the model's own cross-entropy, distillation
passes a function that mixes in the teacher's soft targets.

The loop runs through Hugging Face ``accelerate``: the same code trains on one CPU, one
GPU (optionally with bf16/fp16 autocast), or N processes started by ``torchrun`` /
``accelerate launch``, where N processes reproduce one process's losses (``distributed``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import distributed
from .data import format_chat, format_target
from .models import MIB, PeakMemory, tensor_bytes

IGNORE = distributed.IGNORE  # label value the cross-entropy skips: prompt tokens and padding


@dataclass
class TrainConfig:
    """Knobs of one training run; validated so that a typo fails before step one."""

    lr: float = 2e-4
    max_steps: int = 30
    batch_size: int = 8
    max_length: int = 256  # tokens; longer examples are cut from the right
    eval_every: int = 10  # steps between validation losses
    patience: int | None = None  # evaluations without improvement before stopping; None: never
    warmup_steps: int = 0
    weight_decay: float = 0.0
    gradient_checkpointing: bool = False
    seed: int = 0
    # batch_size is the global batch one step learns from; it is cut into this many
    # micro-batches (per process), which saves memory and changes nothing else
    gradient_accumulation_steps: int = 1
    mixed_precision: str | None = None  # "bf16" / "fp16": autocast on CUDA; None: the weights' own dtype

    def __post_init__(self) -> None:
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainConfig.lr must be a positive number, got {self.lr}.")
        for name in ("max_steps", "batch_size", "max_length", "eval_every", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"TrainConfig.patience must be >= 1 or None, got {self.patience}.")
        distributed.check_batch(self.batch_size, 1, self.gradient_accumulation_steps)
        if self.mixed_precision not in (None, *distributed.MIXED_PRECISIONS):
            raise ValueError(
                f"TrainConfig.mixed_precision must be one of {list(distributed.MIXED_PRECISIONS)} or None, "
                f"got {self.mixed_precision!r}."
            )

    def as_key(self) -> dict[str, Any]:
        """The fields for a cache key: how a run executes (accumulation, mixed precision) is
        left out at its default, so a model cached before those fields existed stays found."""
        key = asdict(self)
        for name in ("gradient_accumulation_steps", "mixed_precision"):
            if key[name] == type(self).__dataclass_fields__[name].default:
                del key[name]
        return key


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # step, train_loss[, val_loss[, val_score]]
    steps: int = 0
    s_per_step: float = 0.0  # training time per step; the evaluations are counted apart, in eval_s
    eval_s: float = 0.0
    peak_mib: float = 0.0  # extra memory training needed, see models.PeakMemory
    best_val_loss: float = math.inf  # the validation loss at best_step
    best_val_score: float | None = None  # the validation score at best_step, when a score_fn picked it
    best_step: int = 0
    stopped_early: bool = False


def encode_example(
    tokenizer: Any, row: dict[str, str], max_length: int, target: str | None = None
) -> dict[str, list[int]]:
    """Token ids of prompt + answer, with labels only on the answer (and its end token).

    ``target`` defaults to the human-written reference; distillation passes the
    teacher's answer instead.
    """
    prompt = format_chat(tokenizer, row)
    answer = (target if target is not None else format_target(row)) + tokenizer.eos_token
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    answer_ids = tokenizer(answer, add_special_tokens=False).input_ids
    input_ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + answer_ids)[:max_length]
    if all(label == IGNORE for label in labels):
        raise ValueError(
            f"Row {row.get('id', '?')}: the prompt alone fills max_length={max_length} tokens, nothing left to learn. "
            "Fix: raise max_length."
        )
    return {"input_ids": input_ids, "labels": labels}


def collate(examples: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: (B, T) input_ids, attention_mask and labels (padding ignored)."""
    width = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), IGNORE)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        input_ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _batches(examples: list, batch_size: int, rng: random.Random):
    """Endless shuffled batches: a new permutation every epoch."""
    while True:
        order = list(range(len(examples)))
        rng.shuffle(order)
        for i in range(0, len(order) - batch_size + 1 if len(order) >= batch_size else 1, batch_size):
            yield [examples[j] for j in order[i : i + batch_size]]


def _set_checkpointing(model: Any, on: bool) -> None:
    """Recompute activations in the backward pass instead of storing them (less memory, more time).

    transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_*; peft
    wrappers forward either name to the base model.
    """
    prefix = "activation" if hasattr(model, "activation_checkpointing_enable") else "gradient"
    getattr(model, f"{prefix}_checkpointing_{'enable' if on else 'disable'}")()
    model.config.use_cache = not on


def activation_mib(
    model: Any, examples: list, pad_id: int, gradient_checkpointing: bool = False, backward: bool = True
) -> float:
    """MiB of tensors autograd keeps from the forward pass for the backward pass, for one batch.

    Counted by a ``saved_tensors_hooks`` hook (each storage once). This is the memory that
    batch size, sequence length and gradient checkpointing change, measured exactly even on
    a CPU, where process memory is too coarse to show it. Runs one forward and, with
    ``backward``, the backward pass a training step would (so the call can be timed as a
    step; the count is the same without it: the hook only sees the forward pass). Leaves the
    weights unchanged.
    """
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in collate(examples, pad_id).items()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        # detached: a node that saves its own output would otherwise hold that output, which holds the
        # node, a cycle Python cannot collect, and a forward pass without backward leaked its activations
        return tensor.detach()

    was_training = model.training
    model.train()
    if gradient_checkpointing:
        _set_checkpointing(model, True)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = default_loss(model, batch)
        if backward:
            loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
        if gradient_checkpointing:
            _set_checkpointing(model, False)
        model.train(was_training)
    frozen = {p.untyped_storage().data_ptr() for p in model.parameters()}  # weights are not activations
    return sum(n for ptr, n in storages.items() if ptr not in frozen) / 2**20


def memory_breakdown_mib(model: Any, examples: list, pad_id: int) -> dict[str, float]:
    """What one AdamW training step holds, in MiB, each part measured from real tensors.

    weights: every parameter and buffer as stored (4-bit ones at their packed size);
    gradients: one per trainable parameter; optimizer: AdamW's two moments per trainable
    parameter; activations: what the forward pass keeps for the backward pass on
    ``examples`` (see ``activation_mib``).
    """

    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return {
        "weights": tensor_bytes(model) / MIB,
        "gradients": trainable / MIB,
        "optimizer": 2 * trainable / MIB,
        "activations": activation_mib(model, examples, pad_id, backward=False),
    }


def default_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).loss


@torch.no_grad()
def evaluate_loss(
    model: Any, examples: list, pad_id: int, batch_size: int = 16, loss_fn: Callable = default_loss
) -> float:
    """Mean loss over ``examples`` (batch means weighted by batch size)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
        total += float(loss_fn(model, batch)) * len(chunk)
    model.train(was_training)
    return total / len(examples)


def _evaluate(
    model: Any, examples: list, pad_id: int, loss_fn: Callable, score_fn: Callable[[Any], float] | None
) -> dict[str, float]:
    record = {"val_loss": evaluate_loss(model, examples, pad_id, loss_fn=loss_fn)}
    if score_fn is not None:
        with torch.no_grad():
            record["val_score"] = float(score_fn(model))
        model.train()  # generation inside score_fn may have switched to eval mode
        if not math.isfinite(record["val_score"]):
            raise ValueError(f"score_fn returned {record['val_score']}; it must return a finite number.")
    return record


def _is_better(record: dict[str, float], result: TrainResult) -> bool:
    if "val_score" in record and record["val_score"] != result.best_val_score:
        # a score on a few tickets ties often (0 for every untrained model): the loss breaks ties
        return result.best_val_score is None or record["val_score"] > result.best_val_score
    return record["val_loss"] < result.best_val_loss


def train(
    model: Any,
    train_examples: list,
    val_examples: list,
    config: TrainConfig,
    pad_id: int,
    loss_fn: Callable[[Any, dict[str, torch.Tensor]], torch.Tensor] = default_loss,
    desc: str = "training",
    score_fn: Callable[[Any], float] | None = None,
) -> TrainResult:
    """Train the parameters of ``model`` that require grad; keep the best evaluation.

    The best evaluation is the lowest validation loss, or, with ``score_fn`` (model ->
    validation task score, higher is better), the highest score; the loss is still
    recorded. The two can disagree: the loss rewards predicting the reference tokens,
    the score what the task rewards (notebook 02 measured them parting).
    With ``patience`` set, stops after that many evaluations without a new best, and
    restores the best trainable weights before returning.

    Under ``torchrun`` / ``accelerate launch`` every process calls this with the same
    arguments: each trains on its shard of every batch, the main process evaluates, and
    every process returns the same result (``distributed``).
    """
    from tqdm.auto import tqdm

    if not train_examples:
        raise ValueError("No training examples: pass at least one encoded row.")
    if not val_examples:
        raise ValueError("No validation examples: early stopping and curves need a validation set.")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters; unfreeze some (or add an adapter) first.")
    processes, accumulation = distributed.world_size(), config.gradient_accumulation_steps
    distributed.check_batch(config.batch_size, processes, accumulation, examples=len(train_examples))
    distributed.check_mixed_precision(config.mixed_precision, next(model.parameters()).device.type)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)  # the same on every process: all draw the same global batches
    if config.gradient_checkpointing:
        _set_checkpointing(model, True)
    accelerator = distributed.make_accelerator(next(model.parameters()).device.type, config.mixed_precision)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(config.warmup_steps, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (config.max_steps - s) / max(config.max_steps - warmup, 1)))
    )
    # DDP-wrapped on several processes, autocast under mixed precision; the model itself is untouched
    loss_module, optimizer, schedule = accelerator.prepare(distributed.LossModule(model, loss_fn), optimizer, schedule)
    device = next(model.parameters()).device  # this process's device, once placed
    result, best_state, bad_evals = TrainResult(), None, 0
    model.train()
    batches = _batches(train_examples, config.batch_size, rng)
    start = time.perf_counter()
    bar = tqdm(range(1, config.max_steps + 1), desc=desc, unit="step", disable=not accelerator.is_main_process)
    with PeakMemory(device.type) as memory:
        for step in bar:
            micro_batches = distributed.shard_batch(next(batches), accelerator.process_index, processes, accumulation)
            weighted = torch.zeros((), device=device)
            for i, (examples, weight) in enumerate(micro_batches):
                batch = {k: v.to(device) for k, v in collate(examples, pad_id).items()}
                # gradients are exchanged once per step, after the last micro-batch
                with accelerator.no_sync(loss_module) if i < len(micro_batches) - 1 else nullcontext():
                    # a shard's mean loss, weighted by its share of the batch's label tokens: the mean of
                    # shard means is not the batch's token mean when shards differ (see shard_batch)
                    loss = loss_module(batch) * weight
                    accelerator.backward(loss)
                weighted += loss.detach()
            train_loss = float(distributed.global_sum(accelerator, weighted)) / processes  # the batch's token mean
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"Loss became {train_loss} at step {step}. Fix: lower lr (now {config.lr}).")
            accelerator.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            record = {"step": step, "train_loss": train_loss}
            if step % config.eval_every == 0 or step == config.max_steps:
                eval_start = time.perf_counter()
                scores = (
                    _evaluate(model, val_examples, pad_id, loss_fn, score_fn) if accelerator.is_main_process else None
                )
                record.update(distributed.from_main(accelerator, scores))  # one decision, taken by every process
                result.eval_s += time.perf_counter() - eval_start
                if _is_better(record, result):
                    result.best_val_loss, result.best_val_score = record["val_loss"], record.get("val_score")
                    result.best_step, bad_evals = step, 0
                    best_state = [p.detach().clone() for p in params] if config.patience else None
                else:
                    bad_evals += 1
                bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k.startswith("val_")})
            result.history.append(record)
            result.steps = step
            if config.patience and bad_evals >= config.patience:
                result.stopped_early = True
                break
    result.s_per_step = (time.perf_counter() - start - result.eval_s) / result.steps
    result.peak_mib = memory.peak_mib
    if best_state is not None:
        with torch.no_grad():
            for p, best in zip(params, best_state, strict=True):
                p.copy_(best)
    if config.gradient_checkpointing:
        _set_checkpointing(model, False)
    model.eval()
    return result
