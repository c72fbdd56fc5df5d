"""Section 2's sizes per profile: the only place where notebook 02's profile becomes numbers."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check_sizes, sizes_for


@dataclass(frozen=True)
class DistillConfig:
    """The sizes notebook 02 scales between a class demo (smoke) and the real run (full)."""

    n_teacher_prompts: int  # training prompts the teacher answers (balanced over categories)
    teacher_max_new_tokens: int  # room for a whole answer: longer ones count as truncated
    eval_max_new_tokens: int  # generation budget when scoring on held-out references
    n_val: int  # validation rows: loss curves, and the task score that picks the kept step
    max_steps: int
    eval_every: int
    patience: int  # evaluations without a new best validation score before a run stops
    batch_size: int
    lr: float  # above the module's 1e-5…5e-5: a student cut from 30 to 7 blocks must re-learn a lot
    param_budget: float  # the student keeps as many blocks as fit in this share of the teacher's parameters
    # The students as the teacher's drafts (section 2.6): the guesses per round raced, on how many
    # validation tickets, answering how many tokens.
    draft_gammas: tuple[int, ...]
    draft_tickets: int
    draft_max_new_tokens: int

    def __post_init__(self) -> None:
        check_sizes(self)


_SHARED = {"teacher_max_new_tokens": 80, "eval_max_new_tokens": 64, "batch_size": 8, "param_budget": 0.40}
SIZES: dict[str, DistillConfig] = {
    # smoke: few steps, so a large learning rate; measured on 2 quiet CPU cores, 12 steps at 1e-3 reach a
    # lower validation loss than at 3e-4 or 2e-3. Its drafts only show the mechanism (students trained a
    # dozen steps): one gamma, two short answers
    "smoke": DistillConfig(n_teacher_prompts=40, n_val=8, max_steps=12, eval_every=4, patience=2, lr=1e-3,
                           draft_gammas=(2,), draft_tickets=2, draft_max_new_tokens=32, **_SHARED),
    "full": DistillConfig(n_teacher_prompts=224, n_val=48, max_steps=240, eval_every=20, patience=3, lr=5e-4,
                          draft_gammas=(1, 2, 3, 4, 6), draft_tickets=12, draft_max_new_tokens=64, **_SHARED),
}  # fmt: skip


def get_config(profile: str) -> DistillConfig:
    """The distillation sizes of ``profile`` (raises for an unknown profile, listing the choices)."""
    return sizes_for(SIZES, profile)
