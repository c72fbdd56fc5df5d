"""Training on several processes: what ``training.train`` needs to run the same loop on one
CPU, one GPU, or N processes started by ``torchrun`` / ``accelerate launch``.

Every process draws the same global batch (same seed), trains on its own shard of it, and
DDP averages the gradients; the loss each shard contributes is weighted by its share of the
batch's label tokens, so N processes learn, and record, what one process would (see
``shard_batch``). Checks here run before any model is loaded: a launch that cannot work
fails in a second, with the fix, instead of after minutes.

>>> shard_batch(batch, process=0, processes=2)   # doctest: +SKIP
[(batch[0::2], 2 * its label tokens / the batch's)]
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from . import models

IGNORE = -100  # the label the cross-entropy skips: prompt tokens and padding (training.IGNORE is this one)
MIXED_PRECISIONS = ("bf16", "fp16")


# --- where this process stands ----------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def world_size() -> int:
    """Processes in this run: ``torchrun`` and ``accelerate launch`` both set WORLD_SIZE (1 when unset)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return _env_int("WORLD_SIZE", 1)


def local_world_size() -> int:
    """Processes on this machine (each needs its own GPU when training on GPUs)."""
    return _env_int("LOCAL_WORLD_SIZE", world_size())


def is_main_process() -> bool:
    """True on the process that writes files and prints (rank 0), and when there is only one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return _env_int("RANK", 0) == 0


# --- checks, before any long work ---------------------------------------------------------


def check_batch(batch_size: int, processes: int, accumulation: int = 1, examples: int | None = None) -> None:
    """The global batch must split evenly into processes x accumulation micro-batches, and
    the training set (``examples``, when given) hold at least one example for each."""
    if examples is not None and examples < processes * accumulation:
        raise ValueError(
            f"{examples} training examples cannot feed {processes} processes x {accumulation} micro-batches. "
            "Fix: add training examples, or use fewer processes / accumulation steps."
        )
    if batch_size % (processes * accumulation):
        good = [n for n in range(1, batch_size + 1) if batch_size % (n * accumulation) == 0]
        raise ValueError(
            f"The global batch of {batch_size} examples does not split into {processes} processes x "
            f"{accumulation} accumulation steps. Fix: make batch_size a multiple of {processes * accumulation}, "
            f"or launch {good} processes."
        )


def check_mixed_precision(mixed_precision: str | None, device_type: str) -> None:
    """bf16/fp16 autocast is for CUDA: a CPU computes fp32 as fast and exactly (``models.pick_dtype``)."""
    if mixed_precision is None:
        return
    if mixed_precision not in MIXED_PRECISIONS:
        raise ValueError(f"mixed_precision={mixed_precision!r}: use one of {list(MIXED_PRECISIONS)} or None.")
    if device_type != "cuda" or not torch.cuda.is_available():
        raise ValueError(
            f"mixed_precision={mixed_precision!r} needs the model on a CUDA GPU (here: {device_type}, "
            f"cuda available: {torch.cuda.is_available()}). Fix: set mixed_precision=None (fp32), or run on a GPU."
        )


def check_devices(use_gpu: bool) -> None:
    """One GPU per process; on CPU, more processes than cores still compute the same, only slower.

    CPU oversubscription is a warning, not an error: gloo runs correctly on any number of
    processes, and the 2-process equivalence test must run on a 1- or 2-core CI machine.
    """
    local = local_world_size()
    if use_gpu:
        gpus = torch.cuda.device_count()
        if local > gpus:
            raise ValueError(
                f"{local} processes on this machine, but it has {gpus} GPU(s): each process needs its own. "
                f"Fix: launch with --num_processes {max(gpus, 1)} (torchrun: --nproc_per_node {max(gpus, 1)})"
                + ("." if gpus else ", or train on CPU processes with torchrun and --device cpu.")
            )
    elif local > (cores := os.cpu_count() or 1):
        warnings.warn(
            f"{local} CPU processes share {cores} cores: the results are the same, each step is slower. "
            f"Fix: --nproc_per_node {cores} or fewer.",
            stacklevel=2,
        )


# fp32 AdamW holds ~16 bytes per trainable parameter (weights, gradient, two moments) plus
# activations: above this many million parameters, tens of GiB and minutes per step on a CPU
CPU_TRAINING_MAX_M = 600


def check_trainable_on(name: str, device: str) -> None:
    """Refuse, before loading anything, to train a preset sized for a GPU anywhere but on CUDA."""
    preset = models.resolve_preset(name)
    if device != "cuda" and preset.params_millions > CPU_TRAINING_MAX_M:
        small = [p.name for p in models.PRESETS.values() if p.params_millions <= CPU_TRAINING_MAX_M]
        raise ValueError(
            f"{preset.name} ({preset.params_millions:.0f} M parameters) is sized for a GPU; training it on {device} "
            f"would take minutes per step and tens of GiB. Fix: run on a machine with CUDA, or pick one of {small}."
        )


# --- one global batch, split ---------------------------------------------------------------


def label_tokens(example: dict[str, list[int]]) -> int:
    """Tokens the loss averages over: labels after the one-token shift (position t predicts t+1)."""
    return sum(label != IGNORE for label in example["labels"][1:])


def shard_batch(batch: list, process: int, processes: int, accumulation: int = 1) -> list[tuple[list, float]]:
    """This process's micro-batches of a global ``batch``, each with the weight for its loss.

    The loss functions return a mean over the label tokens of their batch. Shards hold
    different numbers of label tokens, so the plain mean of shard means is not the batch's
    mean. Weighting a shard's loss by ``processes x its tokens / the batch's tokens`` makes
    the DDP average (sum over processes / processes) exactly the token mean over the whole
    batch: N processes take the step one process would. One process, one micro-batch: the
    weight is exactly 1.0, the loop unchanged.

    Exactly so for a model without dropout. With dropout (LoRA's default 0.05) each process
    draws the masks for its own shard, so the steps agree in distribution, not to the digit.
    """
    parts = processes * accumulation
    check_batch(parts, processes, accumulation, examples=len(batch))  # a training set smaller than the batch
    total = sum(label_tokens(e) for e in batch)
    mine = [batch[k::parts] for k in range(process * accumulation, (process + 1) * accumulation)]
    return [(shard, processes * sum(label_tokens(e) for e in shard) / total) for shard in mine]


class LossModule(torch.nn.Module):
    """The model and its loss as one module, so that DDP wraps the whole loss computation.

    A loss function may call the model in any way (distillation's runs its decoder and head
    apart): DDP only syncs gradients for work done inside its own ``forward``, and
    accelerate's autocast only covers that ``forward`` too.
    """

    def __init__(self, model: Any, loss_fn: Any) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


# --- accelerate ------------------------------------------------------------------------------


def make_accelerator(device_type: str, mixed_precision: str | None) -> Any:
    """An ``Accelerator`` for one training run on ``device_type`` (the model's device)."""
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.state import AcceleratorState, GradientState

    several = world_size() > 1
    if not several:
        # accelerate keeps its set-up in process-wide singletons that refuse a different one
        # later (a CUDA run after a CPU one, bf16 after fp32), and one process trains many
        # models (a notebook does): start each run clean. Never with several processes,
        # where that state holds the process group.
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    return Accelerator(
        cpu=device_type == "cpu",  # CPU processes under torchrun need it to pick gloo
        mixed_precision=mixed_precision or "no",
        device_placement=several,  # one process: the model stays where the caller put it
        # the scheduler must step once per global step: our batches are split, not replicated
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )


def barrier(device_type: str) -> None:
    """Wait until every process gets here (returns at once on one), e.g. while the main one fills a cache."""
    if world_size() > 1:
        from datetime import timedelta

        from accelerate import PartialState

        # the first call sets up the process group training.train then reuses; a cache filled on
        # a CPU can take longer than torch's 30-minute default
        PartialState(cpu=device_type == "cpu", timeout=timedelta(hours=3)).wait_for_everyone()


def global_sum(accelerator: Any, value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over all processes (itself on one)."""
    return accelerator.reduce(value, reduction="sum") if accelerator.num_processes > 1 else value


def from_main(accelerator: Any, obj: Any) -> Any:
    """The main process's ``obj`` on every process, so that every process takes the same decisions."""
    if accelerator.num_processes == 1:
        return obj
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([obj], from_process=0)[0]
