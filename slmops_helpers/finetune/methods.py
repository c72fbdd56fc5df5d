"""Section 3, the methods side by side: full fine-tuning, LoRA, QLoRA and IA3 on one task.

``make_trainable`` adapts a model for a ``MethodConfig``; ``run_method`` trains it, saves
its artifact and scores it, and returns the measured ``MethodRun`` (one row of the
comparison table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import training
from ..compress import quantize_weight
from ..evaluate import score_model
from ..models import DEFAULT_MODEL, load_model, pick_device, prepare_model
from ..uncertainty import TicketScores, interval_metrics
from .artifacts import save_artifact

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
METHODS = ("full", "lora", "qlora", "ia3")


# --- which modules can be adapted -------------------------------------------------------


def linear_module_names(model: Any) -> list[str]:
    """Short names (``q_proj``...) of the linear layers an adapter can wrap, LM head excluded."""
    names = set()
    for name, module in model.named_modules():
        is_linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Linear4bit"
        if is_linear and not name.endswith("lm_head"):
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def check_targets(model: Any, targets: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Return ``targets`` if each names a linear layer of ``model``, else raise naming the choices."""
    if not targets:
        raise ValueError("No target modules given. Fix: pick some of " + ", ".join(linear_module_names(model)))
    available = linear_module_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise ValueError(
            f"Target module(s) {missing} do not exist in this model. Fix: choose from {available} "
            f"(attention: {list(ATTENTION)}, MLP: {list(MLP)})."
        )
    return tuple(targets)


# --- the methods --------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodConfig:
    """One way to adapt the model; ``rank``/``alpha``/``targets`` apply to LoRA and QLoRA."""

    method: str
    rank: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = ATTENTION
    dropout: float = 0.05

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}. Fix: use one of {list(METHODS)}.")
        if self.rank <= 0:
            raise ValueError(f"LoRA rank must be a positive integer, got {self.rank}. Fix: try 4, 8 or 16.")
        if self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be positive, got {self.alpha}. Fix: alpha = 2 × rank is common.")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")


def add_lora(model: Any, spec: MethodConfig) -> Any:
    """Wrap ``model`` with fresh LoRA adapters (named "default"); the base is frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(check_targets(model, spec.targets)),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def add_ia3(model: Any, targets: tuple[str, ...] = ("k_proj", "v_proj", "down_proj")) -> Any:
    """IA3: learned per-channel scales on the keys, the values and the input of the MLP down-projection
    (peft scales a feed-forward target's input, the others' output); no low-rank matrices."""
    from peft import IA3Config, get_peft_model

    targets = check_targets(model, targets)
    feedforward = [t for t in targets if t in MLP]
    return get_peft_model(
        model, IA3Config(target_modules=list(targets), feedforward_modules=feedforward, task_type="CAUSAL_LM")
    )


def qlora_unavailable_reason() -> str | None:
    """None when bitsandbytes can build 4-bit layers here; otherwise why not, and the fix."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return "bitsandbytes is not installed. Fix: `pip install bitsandbytes` (CUDA, or its CPU backend)."
    try:  # a real 4-bit round trip: import alone does not prove a working backend
        device = pick_device()
        layer = bnb.nn.Linear4bit(64, 64, bias=False, quant_type="nf4", compute_dtype=torch.float32).to(device)
        layer(torch.zeros(1, 64, device=device))  # moving the layer is what quantizes it
    except Exception as err:  # noqa: BLE001 - any backend failure means "not here"
        return f"bitsandbytes cannot run 4-bit layers on this machine ({type(err).__name__}: {err})."
    return None


def load_4bit(name: str = DEFAULT_MODEL, device: str | None = None) -> tuple[Any, Any]:
    """The base model with every linear layer stored as 4-bit NF4 (bitsandbytes), for QLoRA."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    if reason := qlora_unavailable_reason():
        raise RuntimeError(f"QLoRA needs bitsandbytes 4-bit layers: {reason}")
    device = pick_device(device)
    compute = torch.bfloat16 if device == "cuda" else torch.float32
    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )
    source = prepare_model(name)
    model = AutoModelForCausalLM.from_pretrained(source, quantization_config=quant, device_map=device)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False), tokenizer


def fake_quantize_base(model: Any, bits: int = 4) -> Any:
    """Round every linear weight to ``bits`` (groups of 32) and back, in place.

    The nearest honest QLoRA substitute where bitsandbytes cannot run: the adapter then
    learns on top of 4-bit-rounded weights (QLoRA's quality effect), but the weights
    still sit in memory as fp32, so none of QLoRA's memory saving is shown.
    """
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
                module.weight.copy_(quantize_weight(module.weight, bits=bits).dequantize())
    return model


def load_qlora_base(name: str = DEFAULT_MODEL, device: str | None = None) -> tuple[Any, Any, str]:
    """(model, tokenizer, backend): a real 4-bit base via bitsandbytes, else the fake-quant substitute."""
    if qlora_unavailable_reason() is None:
        return *load_4bit(name, device), "bitsandbytes nf4"
    model, tokenizer = load_model(name, device=device, dtype=torch.float32)
    return fake_quantize_base(model), tokenizer, "int4 fake-quant (bitsandbytes unavailable)"


def make_trainable(model: Any, spec: MethodConfig) -> Any:
    """Apply ``spec`` to ``model`` (already 4-bit for QLoRA): the model to hand to ``training.train``."""
    if spec.method == "full":
        model.requires_grad_(True)
        return model
    if spec.method == "ia3":
        return add_ia3(model)
    return add_lora(model, spec)


def trainable_share(model: Any) -> tuple[int, float]:
    """(trainable parameters, % of all parameters)."""

    def weights(p: torch.Tensor) -> int:  # bitsandbytes packs two 4-bit weights per stored byte
        return p.numel() * 2 if type(p).__name__ == "Params4bit" else p.numel()

    trainable = sum(weights(p) for p in model.parameters() if p.requires_grad)
    total = sum(weights(p) for p in model.parameters())
    return trainable, 100.0 * trainable / total


def lora_parameter_count(model: Any, rank: int, targets: tuple[str, ...]) -> int:
    """Parameters LoRA adds: rank × (in + out) for every targeted linear layer."""
    check_targets(model, targets)
    if rank <= 0:
        raise ValueError(f"rank must be positive, got {rank}.")
    return sum(
        rank * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
    )


# --- one method, end to end ---------------------------------------------------------------


@dataclass
class MethodRun:
    """What one method cost and bought, measured: the row of the comparison table."""

    name: str
    trainable: int
    trainable_pct: float
    memory_mib: dict[str, float]  # weights / gradients / optimizer / activations, see training.memory_breakdown_mib
    s_per_step: float
    artifact_mib: float  # what must be shipped: an adapter, or the whole model
    scores: dict[str, float]
    answers: list[str]
    training: training.TrainResult
    tickets: TicketScores  # each test ticket's score, for intervals (``uncertainty``)

    def row(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "trainable": self.trainable,
            "trainable_pct": self.trainable_pct,
            "peak_mib": sum(self.memory_mib.values()),
            **{f"{part}_mib": mb for part, mb in self.memory_mib.items()},
            "s_per_step": self.s_per_step,
            "artifact_mib": self.artifact_mib,
            "score": self.scores["score"],
            **interval_metrics("", self.tickets),
        }


def run_method(
    name: str,
    model: Any,
    tokenizer: Any,
    spec: MethodConfig,
    config: training.TrainConfig,
    splits: dict[str, list],
    max_new_tokens: int,
    out_dir: str | Path,
) -> tuple[Any, MethodRun]:
    """Adapt ``model`` with ``spec``, train, save the artifact to ``out_dir/name``, score on ``splits["test"]``.

    ``splits`` holds encoded ``train``/``validation`` examples and raw ``test`` rows.
    Returns the trained model (peft-wrapped unless full) and its measured row.
    """
    trainable_model = make_trainable(model, spec)
    count, pct = trainable_share(trainable_model)
    memory = training.memory_breakdown_mib(
        trainable_model, splits["train"][: config.batch_size], tokenizer.pad_token_id
    )
    result = training.train(
        trainable_model, splits["train"], splits["validation"], config, tokenizer.pad_token_id, desc=f"{name}"
    )
    artifact = save_artifact(trainable_model, Path(out_dir) / name)
    scores, answers, tickets = score_model(trainable_model, tokenizer, splits["test"], max_new_tokens)
    run = MethodRun(name, count, pct, memory, result.s_per_step, artifact, scores, answers, result, tickets)
    return trainable_model, run
