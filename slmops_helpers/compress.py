"""Compression of weight tensors: quantization and pruning, measured on real tensors.

Everything here works on a single ``torch.Tensor`` (one layer's weight), so a
learner can see what happens to the numbers; ``quantized_model_bytes`` applies the
same code to every matrix of a model to measure its real quantized size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED_BITS = (8, 4)
PRUNE_METHODS = ("magnitude", "random")


@dataclass
class QuantizedTensor:
    """Symmetric integer weights with one fp16 scale per group of ``group_size`` values."""

    q: torch.Tensor  # int8 values; for 4 bits two values packed per uint8 byte
    scales: torch.Tensor  # (n_groups,) fp16
    bits: int
    shape: torch.Size
    group_size: int

    @property
    def nbytes(self) -> int:
        """Bytes actually stored: the integers plus their scales."""
        return self.q.numel() * self.q.element_size() + self.scales.numel() * self.scales.element_size()

    def dequantize(self) -> torch.Tensor:
        q = _unpack_int4(self.q) if self.bits == 4 else self.q
        groups = q.float().view(-1, self.group_size) * self.scales.float()[:, None]
        return groups.view(self.shape)


def _pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Two signed 4-bit values [-8, 7] per byte: (even, odd) → low, high nibble."""
    u = (q + 8).to(torch.uint8).view(-1, 2)
    return u[:, 0] | (u[:, 1] << 4)


def _unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=1).view(-1).to(torch.int8) - 8


def quantize_weight(weight: torch.Tensor, bits: int = 8, group_size: int = 32) -> QuantizedTensor:
    """Quantize ``weight`` symmetrically to ``bits`` with per-group absmax scales.

    Smaller groups follow the weights more closely but store more scales: with fp16
    scales, group 32 adds 2/32 = 0.0625 bytes per weight on top of 0.5 (int4).
    """
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits}.")
    if group_size < 2 or group_size % 2 or weight.numel() % group_size:
        raise ValueError(
            f"group_size must be even and divide the weight's {weight.numel()} values; got {group_size}. "
            "Try 32, 64 or 128."
        )
    qmax = 2 ** (bits - 1) - 1  # 127 or 7
    groups = weight.detach().float().reshape(-1, group_size)  # (n_groups, group_size)
    scales = (groups.abs().amax(dim=1) / qmax).clamp(min=1e-12).half()
    q = torch.round(groups / scales.float()[:, None]).clamp(-qmax - 1, qmax).to(torch.int8)
    packed = _pack_int4(q.view(-1)) if bits == 4 else q.view(-1)
    return QuantizedTensor(packed, scales, bits, weight.shape, group_size)


def relative_error(original: torch.Tensor, approx: torch.Tensor) -> float:
    """‖original − approx‖ / ‖original‖ (Frobenius): 0 is perfect."""
    return float(torch.linalg.norm(original.float() - approx.float()) / torch.linalg.norm(original.float()))


def quantized_model_bytes(
    model: Any, bits: int, group_size: int = 32, quantize_embeddings: bool = True
) -> dict[str, int]:
    """Measured bytes of ``model`` with its matrices quantized to ``bits``.

    Every 2-D weight of a Linear layer (and the token embedding when
    ``quantize_embeddings``) is really quantized and its stored bytes counted; the
    rest (norms, and the embedding otherwise) stays in its current dtype. A tied
    embedding / LM head is counted once.
    """
    embedding = model.get_input_embeddings().weight
    seen: set[int] = set()
    sizes = {"quantized": 0, "kept": 0}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if param.data_ptr() in seen:
                continue
            seen.add(param.data_ptr())
            is_matrix = isinstance(module, torch.nn.Linear) and param.dim() == 2
            if is_matrix or (param is embedding and quantize_embeddings):
                sizes["quantized"] += quantize_weight(param, bits, group_size).nbytes
            else:
                sizes["kept"] += param.numel() * param.element_size()
    sizes["total"] = sizes["quantized"] + sizes["kept"]
    return sizes


# --- pruning ------------------------------------------------------------------------------


def prune_weight(weight: torch.Tensor, sparsity: float, method: str = "magnitude", seed: int = 0) -> torch.Tensor:
    """A copy of ``weight`` with a ``sparsity`` fraction of its entries set to zero.

    ``magnitude`` zeroes the smallest |w| (the usual unstructured pruning);
    ``random`` zeroes a random subset, the control that shows magnitude matters.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}.")
    if method not in PRUNE_METHODS:
        raise ValueError(f"method must be one of {PRUNE_METHODS}, got {method!r}.")
    n_zero = int(round(sparsity * weight.numel()))
    if n_zero == 0:
        return weight.detach().clone()
    if method == "magnitude":
        order = weight.detach().abs().flatten().argsort()
    else:
        order = torch.randperm(weight.numel(), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    mask[order[:n_zero].cpu()] = False
    return weight.detach() * mask.view(weight.shape).to(weight.device)


def sparsity(tensor: torch.Tensor) -> float:
    """Fraction of exactly-zero entries."""
    return float((tensor == 0).sum()) / tensor.numel()


def csr_bytes(matrix: torch.Tensor, value_bytes: int = 4, index_bytes: int = 4) -> int:
    """Bytes to store a 2-D matrix in CSR form: values + column indices + row pointers.

    Zeros only save memory when stored sparsely, and CSR pays ``index_bytes`` per
    kept value: below roughly 50% sparsity (fp32 values, int32 indices) it is larger
    than the dense matrix.
    """
    if matrix.dim() != 2:
        raise ValueError(f"csr_bytes needs a 2-D matrix, got shape {tuple(matrix.shape)}.")
    nnz = int((matrix != 0).sum())
    return nnz * (value_bytes + index_bytes) + (matrix.shape[0] + 1) * index_bytes


@torch.inference_mode()
def pruning_effect(
    model: Any, input_ids: torch.Tensor, weight: torch.nn.Parameter, sparsities: list[float], method: str = "magnitude"
) -> list[dict[str, float]]:
    """Prune one weight at each sparsity and measure what the model's outputs do.

    For each sparsity: KL(original ‖ pruned) of the next-token distributions averaged
    over positions, top-1 agreement with the unpruned model, and the language-model
    loss on ``input_ids`` (1, T). The weight is restored afterwards.
    """
    original = weight.detach().clone()
    reference = model(input_ids=input_ids, labels=input_ids)
    ref_logp = F.log_softmax(reference.logits.float(), dim=-1)  # (1, T, V)
    rows = []
    try:
        for s in sparsities:
            weight.data.copy_(prune_weight(original, s, method))
            out = model(input_ids=input_ids, labels=input_ids)
            logp = F.log_softmax(out.logits.float(), dim=-1)
            kl = F.kl_div(logp, ref_logp, log_target=True, reduction="none").sum(-1).mean()
            agree = (logp.argmax(-1) == ref_logp.argmax(-1)).float().mean()
            rows.append(
                {
                    "sparsity": s,
                    "method": method,
                    "kl": float(kl),
                    "top1_agreement": float(agree),
                    "loss": float(out.loss),
                }
            )
    finally:
        weight.data.copy_(original)
    return rows
