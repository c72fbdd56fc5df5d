"""Checks for lab 02 (distillation): temperature, the KD loss, which blocks to keep, the
student's size, and how temperature flattens a distribution."""

from __future__ import annotations

import functools
from typing import Any

import torch

from ..distill import count_config_parameters, kd_loss, max_blocks_within, soften, student_config
from ..models import DEFAULT_MODEL, prepare_model
from . import Exercise, Result, close, incorrect, is_number
from .quiz02 import QUIZ as QUIZ  # the lab's quiz, rendered at its end

PARAM_BUDGET = 0.40  # the student may keep at most this share of the teacher's parameters
TEMPERATURES = [0.5 * i for i in range(1, 21)]  # 0.5, 1.0, …, 10.0: the grid q5 searches


def example_logits() -> torch.Tensor:
    """The teacher's next-token logits (50 tokens) that q1 and q5 use: one clear favourite."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(50, generator=g)
    logits[7] += 12.0
    return logits


@functools.cache
def course_config(model_name: str = DEFAULT_MODEL) -> Any:
    """The course model's config (read from the prepared folder, no weights loaded)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(prepare_model(model_name))


@functools.cache
def student_params(n_blocks: int, model_name: str = DEFAULT_MODEL) -> int:
    """Parameters of the course model cut to ``n_blocks`` decoder blocks."""
    return count_config_parameters(student_config(course_config(model_name), n_blocks))


def max_blocks_in_budget(model_name: str = DEFAULT_MODEL) -> int:
    """The most blocks a student may keep within PARAM_BUDGET of the teacher's parameters."""
    return max_blocks_within(course_config(model_name), PARAM_BUDGET)


def _random_case(seed: int, n: int = 10, vocab: int = 40) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, vocab, generator=g) * 3,
        torch.randn(n, vocab, generator=g) * 3,
        torch.randint(0, vocab, (n,), generator=g),
    )


class Lab02Exercise(Exercise):
    """An exercise of lab 02; ``qN.solution()`` shows its answer from this source notebook."""

    notebook = "02_distillation.ipynb"  # in labs/source/


class Soften(Lab02Exercise):
    name, title, tier, var = "q1", "Soften a distribution with temperature", "warm-up", "soften"
    hint_text = "Divide the logits by T, then take a softmax over the last dimension: torch.softmax(x / T, dim=-1)."

    def check_value(self, soften_fn: Any) -> Result | None:
        cases = [(example_logits(), 1.0), (example_logits(), 4.0), (_random_case(0)[0], 0.5), (_random_case(1)[0], 2.0)]
        for logits, temperature in cases:
            original = logits.clone()
            got = soften_fn(logits, temperature)
            name = f"soften(logits of shape {tuple(logits.shape)}, {temperature})"
            if not isinstance(got, torch.Tensor):
                return incorrect(f"`soften` should return a torch.Tensor, got {type(got).__name__}.")
            if not torch.equal(logits, original):
                return incorrect("`soften` changed its input; compute on logits / T, a new tensor.")
            if wrong := close(got, soften(logits, temperature), name=name):
                return incorrect(wrong.message + " Do the probabilities of each row sum to 1, and did you divide by T?")
        return None


class KDLoss(Lab02Exercise):
    name, title, tier, var = "q2", "The distillation loss", "core", "kd_loss"
    hint_text = (
        "log_p_s = log_softmax(student_logits / T), log_p_t = log_softmax(teacher_logits / T); "
        "KL(teacher‖student) = (p_t * (log_p_t − log_p_s)).sum(-1).mean(). "
        "Loss = alpha · T² · KL + (1 − alpha) · F.cross_entropy(student_logits, labels) (the CE at T = 1)."
    )

    def check_value(self, kd_loss_fn: Any) -> Result | None:
        for seed, (temperature, alpha) in enumerate([(2.0, 0.5), (1.0, 1.0), (4.0, 0.9), (0.5, 0.0), (3.0, 0.3)]):
            s, t, y = _random_case(seed)
            got = kd_loss_fn(s, t, y, temperature, alpha)
            name = f"kd_loss(..., T={temperature}, alpha={alpha})"
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            if wrong := is_number(got, name=name):
                return incorrect(wrong.message + " Return one number: average over the tokens.")
            if close(got, kd_loss(s, t, y, temperature, alpha), rtol=1e-4, name=name) is None:
                continue
            return incorrect(self._diagnose(got, s, t, y, temperature, alpha, name))
        return None

    @staticmethod
    def _diagnose(got: float, s: Any, t: Any, y: Any, temperature: float, alpha: float, name: str) -> str:
        """Name the usual slip without giving the value away."""
        soft = kd_loss(s, t, y, temperature, 1.0) / temperature**2  # the bare KL
        hard = kd_loss(s, t, y, temperature, 0.0)
        slips = {
            "the soft term lacks its T² factor": alpha * soft + (1 - alpha) * hard,
            "that is KL(student‖teacher); the course's forward KL is KL(teacher‖student)": kd_loss(
                s, t, y, temperature, alpha, "reverse"
            ),
            "alpha and 1 − alpha are swapped": (1 - alpha) * temperature**2 * soft + alpha * hard,
        }
        for slip, value in slips.items():
            if abs(got - float(value)) <= 1e-4 * abs(float(value)) + 1e-6:
                return f"`{name}` is not right: {slip}."
        return f"`{name}` does not match the reference on random logits; compare your steps with the formula above."


class KeepBlocks(Lab02Exercise):
    name, title, tier, var = "q3", "Which blocks to keep", "core", "keep"
    hint_text = (
        "Count the parts of the teacher: the token embedding (shared with the output head, so counted once), "
        "one decoder block (they are all the same size) and the final norm. A student with n blocks has "
        "embedding + n × block + norm parameters; keep the largest n within 40% of the teacher's total."
    )

    def check_value(self, keep: Any) -> Result | None:
        n_layers = course_config().num_hidden_layers
        if not isinstance(keep, (list, tuple)) or not all(isinstance(i, int) for i in keep):
            return incorrect(f"`keep` should be a list of block numbers (ints), got {type(keep).__name__}.")
        if len(set(keep)) != len(keep) or not all(0 <= i < n_layers for i in keep):
            return incorrect(f"`keep` should list distinct block numbers between 0 and {n_layers - 1}.")
        share = student_params(len(keep)) / student_params(n_layers)
        if share > PARAM_BUDGET:
            return incorrect(f"a student with {len(keep)} blocks keeps {share:.1%} of the parameters: over budget.")
        if len(keep) < max_blocks_in_budget():
            return incorrect(f"{len(keep)} blocks fit the budget, but so do more: keep as many as fit.")
        return None


class PredictParams(Lab02Exercise):
    name, title, tier, var = "q4", "Predict the student's size before building it", "core", "predict_params"
    hint_text = (
        "Use the same parts as in q3: embedding + n_blocks × (parameters of one block) + final norm. "
        "The output head shares the embedding's weights, so it adds nothing."
    )

    def check_value(self, predict_params: Any) -> Result | None:
        for n_blocks in (1, 6, 7, 30):
            got = predict_params(n_blocks)
            name = f"predict_params({n_blocks})"
            if wrong := is_number(got, name=name):
                return wrong
            expected = student_params(n_blocks)
            if got == expected:
                continue
            head = course_config().vocab_size * course_config().hidden_size
            if got == expected + head:
                return incorrect(f"`{name}` counts the output head, which shares the embedding's weights.")
            return close(got, expected, rtol=0, atol=0.5, name=name)
        return None


class HalfTemperature(Lab02Exercise):
    name, title, tier, var = "q5", "When does the favourite lose its majority?", "stretch", "t_half"
    hint_text = (
        "Loop over TEMPERATURES in order; for each, soften example_logits() and look at the largest "
        "probability (.max()). Stop at the first temperature where it is below 0.5."
    )

    def check_value(self, t_half: Any) -> Result | None:
        if wrong := is_number(t_half, name="t_half"):
            return wrong
        expected = next(T for T in TEMPERATURES if float(soften(example_logits(), T).max()) < 0.5)
        if t_half not in TEMPERATURES:
            return incorrect("`t_half` should be one of the values in TEMPERATURES.")
        if t_half > expected:
            return incorrect("at a lower temperature in TEMPERATURES the top token is already below 50%.")
        return close(t_half, expected, name="t_half")


EXERCISES = [Soften, KDLoss, KeepBlocks, PredictParams, HalfTemperature]
