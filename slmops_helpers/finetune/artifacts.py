"""Section 3, what fine-tuning produces: adapters saved, checked, switched, and merged with a parity check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_directory
from ..models import files_mib, noise_bound

# --- artifacts: save, size, load, switch, merge -------------------------------------------


def save_artifact(model: Any, folder: str | Path) -> float:
    """Save what the method produced (an adapter, or the whole model) atomically; its size in MiB."""
    with atomic_directory(folder) as tmp:
        model.save_pretrained(tmp)
    return files_mib(folder)


def _adapter_base_shapes(adapter_dir: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator


def check_adapter_fits(base: Any, adapter_dir: str | Path) -> None:
    """Raise a clear error when ``adapter_dir`` was trained for a different base model."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"No adapter_config.json in {adapter_dir}. Fix: pass a folder made by save_artifact.")
    modules = dict(base.named_modules())
    for key, shape in _adapter_base_shapes(adapter_dir).items():
        # e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight -> the q_proj Linear
        path = key.removeprefix("base_model.model.").split(".lora_")[0].split(".ia3_")[0]
        layer = modules.get(path)
        if layer is None or not hasattr(layer, "in_features"):
            raise ValueError(
                f"Adapter {adapter_dir.name} expects layer {path!r}, absent from this base model. "
                "Fix: load it onto the base model it was trained from."
            )
        if ".lora_A." in key and shape[1] != layer.in_features or ".lora_B." in key and shape[0] != layer.out_features:
            raise ValueError(
                f"Adapter {adapter_dir.name} was trained on a different base model: {key} has shape {shape}, "
                f"but this model's {path} is {layer.in_features}→{layer.out_features}. "
                "Fix: load it onto the base model it was trained from."
            )


def load_adapters(base: Any, adapters: dict[str, str | Path]) -> Any:
    """One base model, several named adapters loaded side by side; switch with ``set_adapter(name)``."""
    from peft import PeftModel

    if not adapters:
        raise ValueError("No adapters given: pass {name: folder}.")
    model = None
    for name, folder in adapters.items():
        check_adapter_fits(base if model is None else model.get_base_model(), folder)
        if model is None:
            model = PeftModel.from_pretrained(base, str(folder), adapter_name=name)
        else:
            model.load_adapter(str(folder), adapter_name=name)
    return model.eval()


@dataclass(frozen=True)
class MergeParity:
    """How exactly a merged model reproduces its adapter model; bounds hold on any CPU.

    Two parts. **The weights**: every merged weight must equal W + scaling·B·A, computed in
    float64 from the adapter's own tensors, to within the rounding error float arithmetic
    allows for that sum (``weight_error`` is the worst element's error over its bound, so
    <= 1 means exact up to rounding, whatever the CPU's kernels). A merge that loses the
    scaling or one layer's update is off by about its whole update: orders of magnitude.
    **The logits** over real tokens: the merged model in its own precision stays within
    ``models.NOISE_FACTOR`` x what that precision alone moves the adapter model's logits away from
    a float64 twin (``noise``). A fixed 1e-4 bound on the logits failed on some CPUs.
    """

    max_abs_diff: float  # logits, adapter vs merged, in the model's precision: what ships
    noise: float  # logits, the adapter model in its precision against its float64 twin
    weight_error: float  # worst merged weight's |error| / its rounding bound (<= 1: exact)
    logit_scale: float  # max |logit| of the adapter model, the scale of the others

    @property
    def bound(self) -> float:
        """The logits bound: ``models.noise_bound`` of the measured noise."""
        return noise_bound(self.noise, self.logit_scale)

    @property
    def exact(self) -> bool:
        return self.weight_error <= 1.0 and self.max_abs_diff <= self.bound

    def metrics(self, prefix: str = "merge") -> dict[str, float | bool]:
        """The record a notebook keeps: ``merge_max_abs_diff`` and what reads it."""
        return {
            f"{prefix}_max_abs_diff": self.max_abs_diff,
            f"{prefix}_noise": self.noise,
            f"{prefix}_bound": self.bound,
            f"{prefix}_weight_error": self.weight_error,
            f"{prefix}_exact": self.exact,
        }


def _exact_merge(layer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A float64 LoRA layer's merged weight W' = W + scaling·B·A, and (rank + 2)·scaling·|B|·|A|.
    In the shipped precision, with epsilon eps, rounding may move W' by eps·|W'| for the final
    sum plus eps times that second tensor for the matrix product (the standard bound for a
    dot product of ``rank`` terms, any summation order, FMA or not)."""
    weight = layer.base_layer.weight
    exact, spread = weight.clone(), torch.zeros_like(weight)
    for name in layer.active_adapters:
        if name in layer.lora_A:
            exact += layer.get_delta_weight(name)
            a, b = layer.lora_A[name].weight.abs(), layer.lora_B[name].weight.abs()
            product = abs(layer.scaling[name]) * (b @ a) * (a.shape[0] + 2)
            spread += product.T if getattr(layer, "fan_in_fan_out", False) else product
    return exact, spread


@torch.no_grad()
def merge_with_parity(
    peft_model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> tuple[Any, MergeParity]:
    """Fold the active adapter into the base weights; return (plain model, ``MergeParity``).

    The parity is the proof that the merged model, which ships without peft, computes what
    the adapter model computed. It uses a float64 twin of the adapter model for a moment
    (8 bytes a parameter: 1.1 GB for the course model). Only real tokens count (pass the
    batch's ``attention_mask``): logits at padding are never used. The base must be in
    floating point: a 4-bit (QLoRA) base cannot be merged exactly.
    """
    import copy

    if any(not p.is_floating_point() for p in peft_model.parameters()):
        raise ValueError(
            "merge_with_parity needs floating-point base weights; this model has quantized ones "
            "(a QLoRA base). Fix: load the base in float32, attach the trained adapter, then merge."
        )
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    real = mask.bool()

    def logits(model: Any) -> torch.Tensor:
        return model(input_ids=input_ids, attention_mask=mask).logits.double()[real]

    twin = copy.deepcopy(peft_model).double()
    before, before64 = logits(peft_model), logits(twin)
    merged = peft_model.merge_and_unload()
    after = logits(merged)
    weight_error = 0.0
    for name, layer in twin.named_modules():
        if hasattr(layer, "lora_A") and hasattr(layer, "get_delta_weight"):
            exact, spread = _exact_merge(layer)
            shipped = merged.get_submodule(name.removeprefix("base_model.model.")).weight
            eps = torch.finfo(shipped.dtype).eps
            worst = ((shipped.double() - exact).abs() / (eps * exact.abs() + eps * spread + 1e-300)).max()
            weight_error = max(weight_error, float(worst))
    del twin
    parity = MergeParity(
        max_abs_diff=float((before - after).abs().max()),
        noise=float((before - before64).abs().max()),
        weight_error=weight_error,
        logit_scale=float(before64.abs().max()),
    )
    return merged.eval(), parity
