"""Section 2, the loss: ``α·T²·KL + (1−α)·CE`` between student and teacher, and its parts.

``make_loss_fn`` plugs it into ``training.train``; with ``alpha=0`` it is plain
cross-entropy (sequence-level distillation on teacher answers, or the undistilled student
on the human references). ``temperature_view`` shows what T does to one distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..training import IGNORE
from .student import check_same_vocabulary

KL_KINDS = ("forward", "reverse")


@dataclass(frozen=True)
class KDConfig:
    """The distillation loss ``alpha·T²·KL + (1−alpha)·CE``.

    ``kind="forward"`` is KL(teacher‖student): the student spreads mass over everything
    the teacher finds plausible. ``"reverse"`` is KL(student‖teacher): the student may
    concentrate on the teacher's main modes. ``hidden_weight > 0`` adds
    ``hidden_weight · hidden_state_loss``: the student's blocks also imitate the teacher's
    intermediate states, on every token of the prompt and the answer.
    """

    temperature: float = 2.0  # T > 0; T > 1 flattens both distributions before comparing
    alpha: float = 0.5  # weight of the soft-target (KL) term, in [0, 1]; 0 = plain cross-entropy
    kind: str = "forward"
    hidden_weight: float = 0.0  # weight of the hidden-state term (see hidden_state_loss); 0 = off

    def __post_init__(self) -> None:
        if not (
            isinstance(self.temperature, (int, float)) and self.temperature > 0 and math.isfinite(self.temperature)
        ):
            raise ValueError(
                f"KDConfig.temperature must be a positive number, got {self.temperature}. Fix: use e.g. 2.0."
            )
        if not (isinstance(self.alpha, (int, float)) and 0 <= self.alpha <= 1):
            raise ValueError(
                f"KDConfig.alpha must lie in [0, 1], got {self.alpha}. "
                "Fix: 0 = only the hard labels, 1 = only the teacher's soft targets."
            )
        if self.kind not in KL_KINDS:
            raise ValueError(f"KDConfig.kind must be one of {KL_KINDS}, got {self.kind!r}.")
        if not (isinstance(self.hidden_weight, (int, float)) and 0 <= self.hidden_weight < math.inf):
            raise ValueError(
                f"KDConfig.hidden_weight must be a number >= 0, got {self.hidden_weight}. Fix: 0 turns the term off."
            )


# --- the loss -------------------------------------------------------------------------------


def soften(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the last dimension: T > 1 flattens, T < 1 sharpens."""
    KDConfig(temperature=temperature)
    return torch.softmax(logits / temperature, dim=-1)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
    kind: str = "forward",
) -> torch.Tensor:
    """``alpha·T²·KL + (1−alpha)·CE``, averaged over N tokens.

    Args:
        student_logits, teacher_logits: (N, V) logits for the same N positions.
        targets: (N,) the token ids that follow (hard labels for the cross-entropy).
        temperature, alpha, kind: see KDConfig. The T² keeps the soft term's gradients
            on the same scale as the cross-entropy's when T changes (Hinton et al., 2015).
    """
    KDConfig(temperature, alpha, kind)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ: "
            "the models must share a vocabulary. Fix: see check_same_vocabulary."
        )
    ce = F.cross_entropy(student_logits, targets)
    if alpha == 0:
        return ce
    return alpha * temperature**2 * kl_divergence(student_logits, teacher_logits, temperature, kind) + (1 - alpha) * ce


def kl_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, kind: str = "forward"
) -> torch.Tensor:
    """Mean KL between the softened (N, V) distributions; the teacher gets no gradient."""
    log_s = F.log_softmax(student_logits / temperature, dim=-1)  # (N, V)
    log_t = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    if kind == "forward":  # KL(teacher ‖ student) = Σ p_t (log p_t − log p_s)
        return (log_t.exp() * (log_t - log_s)).sum(-1).mean()
    return (log_s.exp() * (log_s - log_t)).sum(-1).mean()  # KL(student ‖ teacher)


def _decode(model: Any, batch: dict[str, torch.Tensor], hidden_states: bool = False) -> Any:
    return model.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=hidden_states
    )


def answer_logits(model: Any, batch: dict[str, torch.Tensor], decoded: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, V) logits at the positions that predict an answer token, and those N tokens.

    Runs the output head only where the loss looks (answer tokens are about a third of
    a sequence here), which saves most of the head's time and memory. ``decoded``: the
    decoder's output for ``batch``, when the caller already has it.
    """
    hidden = (decoded if decoded is not None else _decode(model, batch)).last_hidden_state
    labels = batch["labels"][:, 1:]  # position t predicts token t+1
    mask = labels != IGNORE  # (B, T-1)
    return model.get_output_embeddings()(hidden[:, :-1][mask]), labels[mask]


class TeacherLogitCache:
    """A frozen teacher's answer logits (``answer_logits``), computed once per example.

    The teacher never changes during distillation, so its logits for a training example
    are the same at every epoch: only batches holding an example not seen yet run the
    teacher. Examples are told apart by their real tokens and labels, so a batch may be
    padded differently from the one that first held them (padding is masked out).
    """

    def __init__(self, teacher: Any) -> None:
        self.teacher = teacher
        self.rows: dict[bytes, torch.Tensor] = {}

    @staticmethod
    def _keys(batch: dict[str, torch.Tensor]) -> list[bytes]:
        real = batch["attention_mask"].bool()
        return [
            torch.cat([ids[m], labels[m]]).cpu().numpy().tobytes()
            for ids, labels, m in zip(batch["input_ids"], batch["labels"], real, strict=True)
        ]

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        keys = self._keys(batch)
        if any(key not in self.rows for key in keys):
            with torch.no_grad():
                logits = answer_logits(self.teacher, batch)[0]
            per_row = (batch["labels"][:, 1:] != IGNORE).sum(dim=1).tolist()
            for key, rows in zip(keys, logits.split(per_row), strict=True):
                self.rows.setdefault(key, rows)
        return torch.cat([self.rows[key] for key in keys])


def hidden_state_loss(
    student_states: tuple[torch.Tensor, ...],
    teacher_states: tuple[torch.Tensor, ...],
    keep: list[int],
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """Mean (1 − cosine similarity) between student and teacher hidden states, over real tokens.

    ``*_states`` are a decoder's ``hidden_states``: the embeddings, then one (B, T, H) state
    per block, the last one after the final norm. Student block j is paired with teacher
    block ``keep[j]``, the block it was copied from, and the final (normed) states, the ones
    the output head reads, with each other. Cosine ignores scale, so the teacher's few huge
    activations do not drown the rest (DistilBERT used a cosine loss on hidden states too).
    """
    if len(student_states) != len(keep) + 1 or max(keep) + 2 > len(teacher_states):
        raise ValueError(
            f"Cannot pair {len(student_states) - 1} student blocks with teacher blocks {keep} "
            f"(the teacher has {len(teacher_states) - 1}). Fix: pass the keep list the student was built with."
        )
    pairs = [(student_states[j + 1], teacher_states[k + 1]) for j, k in enumerate(keep[:-1])]
    pairs.append((student_states[-1], teacher_states[-1]))
    real = attention_mask.bool()  # (B, T): padding does not count
    losses = [1 - F.cosine_similarity(s[real], t[real].detach(), dim=-1).mean() for s, t in pairs]
    return torch.stack(losses).mean()


def make_loss_fn(
    student: Any,
    teacher: Any = None,
    config: KDConfig = KDConfig(),
    teacher_tokenizer: Any = None,
    student_tokenizer: Any = None,
    keep: list[int] | None = None,
    cache_teacher: bool = False,
) -> Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]:
    """A ``loss_fn(model, batch)`` for ``training.train``; vocabularies are checked now,
    before any training step. ``alpha=0`` needs no teacher (plain cross-entropy).
    ``config.hidden_weight > 0`` needs ``keep``, the teacher blocks the student was built from.

    ``cache_teacher=True`` keeps the teacher's answer logits of every training example
    after its first forward pass (see ``TeacherLogitCache``): from the second epoch on, a
    KD step costs about what a cross-entropy step does. It holds answer tokens × vocabulary
    float32 values in memory (notebook 02's full set: 11,656 × 49,152, about 2.2 GiB), so
    it suits small training sets like the course's.

    In eval mode (``training.evaluate_loss``) it returns the plain cross-entropy on the
    batch's labels: validate on the human references and every run's validation curve
    measures the same thing, so curves compare and early stopping keeps the student
    that best predicts the references, not the one best at imitating. That is still a
    loss, not the task score: see docs/history.md (section 2) for how far they can part.
    """
    needs_teacher = config.alpha > 0 or config.hidden_weight > 0
    if needs_teacher:
        if teacher is None:
            raise ValueError(
                f"alpha={config.alpha}, hidden_weight={config.hidden_weight} mix in the teacher's outputs: "
                "pass a teacher, or set both to 0."
            )
        check_same_vocabulary(teacher, student, teacher_tokenizer, student_tokenizer)
        teacher.eval()
    if cache_teacher and (config.alpha == 0 or config.hidden_weight > 0):
        raise ValueError(
            "cache_teacher keeps the teacher's logits, which only the KL term reads: it needs alpha > 0 and "
            f"hidden_weight == 0 (got alpha={config.alpha}, hidden_weight={config.hidden_weight})."
        )
    teacher_logits_of = TeacherLogitCache(teacher) if cache_teacher else None
    hidden = config.hidden_weight > 0
    if hidden and (
        keep is None
        or len(keep) != student.config.num_hidden_layers
        or not all(0 <= k < teacher.config.num_hidden_layers for k in keep)
    ):
        raise ValueError(
            f"hidden_weight > 0 pairs each student block with a teacher block, got keep={keep} for a student of "
            f"{student.config.num_hidden_layers} blocks. Fix: pass keep=, the list build_student got."
        )

    def loss_fn(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        decoded = _decode(model, batch, hidden_states=hidden and model.training)
        student_logits, targets = answer_logits(model, batch, decoded)
        if not needs_teacher or not model.training:
            return F.cross_entropy(student_logits, targets)
        with torch.no_grad():
            if teacher_logits_of is not None:
                teacher_decoded, teacher_logits = None, teacher_logits_of(batch)
            else:
                teacher_decoded = _decode(teacher, batch, hidden_states=hidden)
                teacher_logits = answer_logits(teacher, batch, teacher_decoded)[0] if config.alpha > 0 else None
        if teacher_logits is None:  # hidden-state term only: the teacher's head is not needed
            loss = F.cross_entropy(student_logits, targets)
        else:
            loss = kd_loss(student_logits, teacher_logits, targets, config.temperature, config.alpha, config.kind)
        if hidden:
            states = (decoded.hidden_states, teacher_decoded.hidden_states)
            loss = loss + config.hidden_weight * hidden_state_loss(*states, keep, batch["attention_mask"])
        return loss

    return loss_fn


# --- what temperature does, for the widget ----------------------------------------------


def temperature_view(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    temperature: float,
    top_k: int = 8,
    kind: str = "forward",
) -> dict[str, Any]:
    """What temperature T does to one next-token distribution, for the widget.

    Returns the teacher's top-k token ids (ranked at T=1, so bars keep their order), both
    models' probabilities for them at T, the teacher's top-1 probability and entropy
    (nats) at T, the KL at T and the distillation term T²·KL.
    """
    KDConfig(temperature=temperature, kind=kind)
    t, s = teacher_logits.detach().float().flatten(), student_logits.detach().float().flatten()
    if t.shape != s.shape:
        raise ValueError(f"Teacher and student logits differ in size ({t.numel()} vs {s.numel()}).")
    p_t, p_s = soften(t, temperature), soften(s, temperature)
    ids = torch.topk(t, min(top_k, t.numel())).indices
    kl = float(kl_divergence(s[None], t[None], temperature, kind))
    return {
        "ids": ids.tolist(),
        "teacher_probs": p_t[ids].tolist(),
        "student_probs": p_s[ids].tolist(),
        "teacher_top1": float(p_t.max()),
        "teacher_entropy": float(-(p_t * torch.log(p_t.clamp_min(1e-30))).sum()),
        "kl": kl,
        "kd_term": temperature**2 * kl,
    }
