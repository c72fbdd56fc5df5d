"""Quantization-aware fine-tuning (QAT) for the 4-bit ONNX export.

Rounding this model's weights to 4 bits after training costs it many points (section 4.3's study).
QAT fine-tunes the deployed model for a few steps with the export's own 4-bit grid in the forward
pass: every weight the int4 export rounds is replaced, in the forward pass, by its rounded value,
and a straight-through estimator hands the gradient to the float weight underneath. Training then
moves the weights to where rounding them costs the task least.

The grid is onnxruntime's symmetric blockwise int4 (MLAS, what the model builder's int4 writes
without zero points): per block of ``block`` weights along the input dimension, the scale is the
block's largest-magnitude weight divided by -8 and the codes are ``clamp(round(w / scale), -8, 7)``.
The int4 export rounds every decoder projection, the head and the tied embedding table, so QAT
rounds the same ones. After training the weights are snapped onto the grid: each block's extreme
is then exactly -8 × its scale, so the exporter finds the same scale and the same codes, and the
file holds the model that was trained.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import training
from .._io import atomic_directory
from ..config import cache_dir
from ..data import refuse_test_rows
from ..models import load_model
from .export import source_fingerprint

BLOCK = 32  # the builder's int4 block size
MARKER = "qat.json"


def int4_grid(weight: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """``weight`` rounded onto onnxruntime's symmetric int4 grid, blockwise along its last dimension."""
    if weight.shape[-1] % block:
        raise ValueError(
            f"Rows of {weight.shape[-1]} weights do not split into blocks of {block}. "
            "Fix: pick a block size that divides the model's hidden sizes (this model: 16, 32 or 64)."
        )
    blocks = weight.reshape(-1, block)
    extreme = blocks.gather(1, blocks.abs().argmax(dim=1, keepdim=True))  # signed: it maps to -8 exactly
    scale = torch.where(extreme == 0, torch.ones_like(extreme), extreme / -8)
    return (torch.clamp(torch.round(blocks / scale), -8, 7) * scale).reshape(weight.shape)


def fake_quant(weight: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """The rounded weight in the forward pass; the identity for the gradient (straight-through)."""
    return weight + (int4_grid(weight, block) - weight).detach()


def rounded_modules(model: Any) -> list[tuple[str, torch.nn.Module]]:
    """What the int4 export rounds: every linear layer of the decoder blocks, the head, the embedding."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if (isinstance(module, torch.nn.Linear) and (".layers." in name or name.endswith("lm_head")))
        or isinstance(module, torch.nn.Embedding)
    ]


@contextmanager
def int4_forward(model: Any, block: int = BLOCK) -> Iterator[Any]:
    """Inside, ``model`` computes with fake-quantized weights (the tied head and embedding share them)."""

    def linear(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, fake_quant(module.weight, block), module.bias)

    def embedding(module: torch.nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, fake_quant(module.weight, block), module.padding_idx)

    patched = rounded_modules(model)
    for _, module in patched:
        kind = linear if isinstance(module, torch.nn.Linear) else embedding
        module.forward = kind.__get__(module)  # an instance attribute shadows the class's forward
    try:
        yield model
    finally:
        for _, module in patched:
            del module.forward


def snap(model: Any, block: int = BLOCK) -> None:
    """Move every rounded weight onto its grid point, in place (a tied weight once)."""
    seen: set[int] = set()
    with torch.no_grad():
        for _, module in rounded_modules(model):
            if id(module.weight) not in seen:
                seen.add(id(module.weight))
                module.weight.copy_(int4_grid(module.weight, block))


@dataclass(frozen=True)
class QatConfig:
    """One QAT run: steps of ``batch`` training tickets at learning rate ``lr``."""

    steps: int
    batch: int
    lr: float
    block: int = BLOCK
    max_length: int = 256
    seed: int = 0
    on_grid: bool = True  # False: the same fine-tuning in float, the control that tells QAT from more training

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "block", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"QatConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ValueError(f"QatConfig.lr must be positive, got {self.lr}.")

    def key(self) -> str:
        fields = asdict(self)
        if fields.pop("on_grid"):  # runs cached before the control existed keep their folder
            return "-".join(f"{k}{v}" for k, v in fields.items())
        return "-".join(f"{k}{v}" for k, v in fields.items()) + "-float"


def qat_dir(source: Path, config: QatConfig) -> Path:
    return cache_dir() / "qat" / source_fingerprint(source) / config.key()


def fine_tune(source: Path, rows: list[dict[str, str]], config: QatConfig, val_share: float = 0.1) -> Path:
    """The model folder ``source`` after QAT on training ``rows`` (cached, written atomically).

    A tenth of the rows is held out for the validation loss the training loop records; the
    validation and test tickets stay unseen (they judge the result). The saved weights lie on the
    int4 grid, ready for the builder's int4 export."""
    if any(row.get("split") != "train" for row in rows):
        refuse_test_rows(rows, "Quantization-aware fine-tuning")
        raise ValueError("QAT trains on training tickets only. Fix: pass rows of the 'train' split.")
    folder = qat_dir(source, config)
    if (folder / MARKER).is_file():
        return folder
    model, tokenizer = load_model(str(source), dtype=torch.float32)
    held = max(1, int(len(rows) * val_share))
    encode = [training.encode_example(tokenizer, r, config.max_length) for r in rows]
    train_config = training.TrainConfig(
        lr=config.lr, max_steps=config.steps, batch_size=config.batch, max_length=config.max_length,
        eval_every=max(1, config.steps // 4), seed=config.seed,
    )  # fmt: skip
    args = (model, encode[held:], encode[:held], train_config, tokenizer.pad_token_id)
    if config.on_grid:
        with int4_forward(model, config.block):
            result = training.train(*args, desc="QAT")
        snap(model, config.block)
    else:
        result = training.train(*args, desc="float fine-tuning")
    with atomic_directory(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = asdict(config) | {"source": str(source), "history": result.history, "s_per_step": result.s_per_step}
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    return folder
