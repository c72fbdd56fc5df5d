"""Section 2, the student: keep some of the teacher's decoder blocks (DistilBERT's initialisation).

``max_blocks_within`` says how many blocks fit a parameter budget, ``block_choices``
offers which ones, ``build_student`` copies them out of the teacher.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import torch

# --- the student: keep some of the teacher's blocks ---------------------------------------------


def keep_every(n_layers: int, k: int, keep_last: bool = True) -> list[int]:
    """One decoder block out of every ``k``, in depth order.

    ``keep_last=True`` counts from the top (blocks k−1, 2k−1, …, n−1), so the block that
    feeds the output head survives; ``False`` counts from the bottom (0, k, 2k, …), as
    DistilBERT did with k=2.
    """
    if not (isinstance(k, int) and 1 <= k <= n_layers):
        raise ValueError(f"k must be an integer between 1 and n_layers={n_layers}, got {k}.")
    return sorted(range(n_layers - 1, -1, -k)) if keep_last else list(range(0, n_layers, k))


def block_choices(n_layers: int, n: int) -> dict[str, list[int]]:
    """Three ways to keep ``n`` of ``n_layers`` blocks spread over the depth, by what they anchor.

    ``"from the top"`` keeps the last block (it feeds the output head), ``"from block 0"``
    the first (it reads the embeddings, as DistilBERT kept), ``"both ends"`` both, with
    the rest spread evenly between them.
    """
    if not (isinstance(n, int) and 2 <= n <= n_layers):
        raise ValueError(f"n must be an integer between 2 and n_layers={n_layers}, got {n}.")
    stride = n_layers // n
    return {
        "from the top": keep_every(n_layers, stride)[-n:],
        "from block 0": keep_every(n_layers, stride, keep_last=False)[:n],
        "both ends": [round(i * (n_layers - 1) / (n - 1)) for i in range(n)],
    }


def max_blocks_within(teacher_config: Any, budget: float) -> int:
    """The most decoder blocks a student cut from ``teacher_config`` may keep with at most
    ``budget`` (a share, e.g. 0.4) of the teacher's parameters."""
    if not 0 < budget <= 1:
        raise ValueError(f"budget is a share of the teacher's parameters, in (0, 1]; got {budget}.")
    limit = budget * count_config_parameters(teacher_config)
    n = 0  # every block adds parameters, so count up and stop at the first that does not fit
    while (
        n < teacher_config.num_hidden_layers and count_config_parameters(student_config(teacher_config, n + 1)) <= limit
    ):
        n += 1
    if n == 0:
        raise ValueError(
            f"Not even one block fits in {budget:.0%} of the teacher's parameters (the embedding alone is most "
            "of it). Fix: raise the budget."
        )
    return n


def student_config(teacher_config: Any, n_layers: int) -> Any:
    """The teacher's config with ``n_layers`` decoder blocks (per-layer lists cut to match)."""
    config = copy.deepcopy(teacher_config)
    config.num_hidden_layers = n_layers
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:n_layers]
    return config


def count_config_parameters(config: Any) -> int:
    """Parameters of a causal LM built from ``config``, counted without allocating weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class PassWeights:
    """Weights a causal LM multiplies for each generated token (its matrices and its output
    head; an embedding lookup reads one row, so a separate input embedding does not count)."""

    head: int  # the output layer, hidden × vocabulary
    student: int
    teacher: int

    @property
    def head_share(self) -> float:
        """The head's share of the student's per-token weights."""
        return self.head / self.student

    @property
    def floor(self) -> float:
        """A student pass against a teacher pass, by weights multiplied: what a draft costs at best."""
        return self.student / self.teacher


def _weights_per_token(config: Any) -> int:
    embedding = config.vocab_size * config.hidden_size
    untied = not getattr(config, "tie_word_embeddings", False)
    return count_config_parameters(config) - (embedding if untied else 0)


def pass_weights(teacher_config: Any, n_layers: int) -> PassWeights:
    """Per-token weights of a student with ``n_layers`` of the teacher's blocks, beside the
    teacher's. The head is multiplied in full at every token by both, which is why a shallow
    student still costs a large share of a teacher pass when the vocabulary is large."""
    if not 0 < n_layers <= teacher_config.num_hidden_layers:
        raise ValueError(f"n_layers must be in [1, {teacher_config.num_hidden_layers}], got {n_layers}.")
    return PassWeights(
        head=teacher_config.vocab_size * teacher_config.hidden_size,
        student=_weights_per_token(student_config(teacher_config, n_layers)),
        teacher=_weights_per_token(teacher_config),
    )


def build_student(teacher: Any, keep: list[int]) -> Any:
    """A smaller model initialised from the teacher: its embeddings, final norm and head,
    and the decoder blocks listed in ``keep`` (in that order)."""
    from transformers import AutoModelForCausalLM

    n = teacher.config.num_hidden_layers
    if not keep or len(set(keep)) != len(keep) or not all(isinstance(i, int) and 0 <= i < n for i in keep):
        raise ValueError(f"keep must list distinct block indices in [0, {n}), got {keep}.")
    keep = sorted(keep)
    new_index = {old: new for new, old in enumerate(keep)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        match = re.match(r"(.*\.layers\.)(\d+)(\..*)", name)
        if match is None:
            state[name] = tensor.clone()
        elif int(match.group(2)) in new_index:
            state[f"{match.group(1)}{new_index[int(match.group(2))]}{match.group(3)}"] = tensor.clone()
    device, dtype = next(teacher.parameters()).device, next(teacher.parameters()).dtype
    student = AutoModelForCausalLM.from_config(student_config(teacher.config, len(keep))).to(dtype)
    student.load_state_dict(state, strict=True)
    student.tie_weights()
    student.generation_config = copy.deepcopy(teacher.generation_config)
    return student.to(device).eval()


def check_same_vocabulary(
    teacher: Any, student: Any, teacher_tokenizer: Any = None, student_tokenizer: Any = None
) -> None:
    """Logit distillation compares distributions token by token: both need one vocabulary."""
    sizes = [m.get_output_embeddings().weight.shape[0] for m in (teacher, student)]
    same_tokens = (
        teacher_tokenizer is None
        or student_tokenizer is None
        or teacher_tokenizer.get_vocab() == student_tokenizer.get_vocab()
    )
    if sizes[0] != sizes[1] or not same_tokens:
        raise ValueError(
            f"Teacher and student use different vocabularies (output sizes {sizes[0]} vs {sizes[1]}"
            f"{'' if same_tokens else ', tokenizers differ'}): their logits cannot be compared token by token. "
            "Fix: build the student from the teacher (build_student) or from the same model family, "
            "or distil at sequence level only (alpha=0, no teacher logits)."
        )
