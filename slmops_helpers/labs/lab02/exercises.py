"""Checks for lab 02 (distillation): temperature, the KD loss, which blocks to keep (measured),
the student's size, validating the teacher's answers, how temperature flattens a distribution,
the module's claims computed from a run's raw measurements, and, on the course model itself
(in ``real``), the teacher's answers kept in a file and a student distilled for a few steps."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ... import training
from ...data import CATEGORIES
from ...distill import (
    KDConfig,
    block_choices,
    build_student,
    count_config_parameters,
    kd_loss,
    max_blocks_within,
    soften,
    student_config,
)
from ...distill.claims import measured_claims
from ...distill.loss import make_loss_fn
from ...distill.teacher import output_problem
from ...models import DEFAULT_MODEL, prepare_model
from .. import Exercise, PlaceholderError, Result, close, contains_blank, incorrect, is_number, learner_answer
from ..checks import fresh_rng
from .quiz import QUIZ as QUIZ  # the lab's quiz, rendered at its end
from .real import DistilledStudent, TeacherAnswersFile
from .real import lab_val_examples as lab_val_examples  # q3 and q9 measure on the same tickets

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


_CE_CACHE: dict[tuple[int, int, int, tuple[int, ...]], float] = {}


def student_ce(teacher: Any, keep: list[int], examples: list, pad_id: int) -> float:
    """Cross-entropy on ``examples`` of a student cut from ``teacher`` with blocks ``keep``, before training.

    The learner's cells and q3's check ask for the same students, so each is built and
    measured once per teacher and example list (cached by their identity).
    """
    key = (id(teacher), id(examples), pad_id, tuple(keep))
    if key not in _CE_CACHE:
        ce_only = make_loss_fn(teacher, config=KDConfig(alpha=0.0))
        _CE_CACHE[key] = training.evaluate_loss(build_student(teacher, list(keep)), examples, pad_id, loss_fn=ce_only)
    return _CE_CACHE[key]


# q5: teacher answers as notebook 02's validation step sees them (made up, in the course's format).
TEACHER_SAMPLES = (
    "category: billing\nerror_code: none\nreply: Your invoice lists the monthly plan; a refund takes five days.",
    "category: connectivity\nerror_code: E-104\nreply: Restart the hub, then rejoin it to your Wi-Fi network.",
    "",
    "   \n",
    "The customer has a billing problem and should contact support.",
    "category: billing\nreply: Check the invoice.",
    "category: shipping\nerror_code: none\nreply: Your parcel will arrive on Monday next week.",
    "category: setup\nerror_code: none\nreply: reset the hub reset the hub reset the hub reset the hub reset the hub",
    "category: firmware_update\nerror_code: E-311\nreply: Keep the hub powered while the update installs.",
    "category: account_access\nerror_code: none\nreply: ok ok ok ok ok ok ok",
    "category: privacy_data\nerror_code: none\nreply: Open Settings, then Privacy, to download or delete your data.",
)


_REPLIES = (
    "Your invoice lists the monthly plan; a refund takes five days.",
    "Restart the hub, then rejoin it to your Wi-Fi network.",
    "Keep the hub powered while the update installs.",
    "Open Settings, then Privacy, to download or delete your data.",
    "Your parcel will arrive on Monday next week.",
    "Sign out everywhere, then reset the password from the login page.",
)
_LOOPS = ("reset the hub " * 5, "ok " * 7, "please wait please wait please wait please wait")
_BAD_CATEGORIES = ("payments", "hardware", "misc", "Billing issue")


def teacher_samples(rng: Any, n: int = 14) -> list[str]:
    """q5's hidden teacher answers, drawn at every attempt: fit ones and every kind of unfit one."""

    def pick(options: Any) -> str:
        return str(options[int(rng.integers(len(options)))])

    def answer(category: str, code: str, reply: str) -> str:
        return f"category: {category}\nerror_code: {code}\nreply: {reply}"

    def code() -> str:
        return "none" if rng.random() < 0.5 else f"E-{int(rng.integers(1000)):03d}"

    makers = (
        lambda: answer(pick(CATEGORIES), code(), pick(_REPLIES)),  # fit
        lambda: answer(pick(CATEGORIES), code(), pick(_REPLIES)),  # fit
        lambda: pick(("", "   \n", "\n\n")),  # empty
        lambda: f"The customer has a {pick(CATEGORIES)} problem and should contact support.",  # no format
        lambda: f"category: {pick(CATEGORIES)}\nreply: {pick(_REPLIES)}",  # a field missing
        lambda: answer(pick(_BAD_CATEGORIES), code(), pick(_REPLIES)),  # unknown category
        lambda: answer(pick(CATEGORIES), code(), pick(_LOOPS)),  # a loop
    )
    samples = [maker() for maker in makers[1:]]  # every kind at least once
    samples += [makers[int(rng.integers(len(makers)))]() for _ in range(n - len(makers))]
    return [makers[0](), *(samples[i] for i in rng.permutation(len(samples)))]


def _random_case(seed: int, n: int = 10, vocab: int = 40) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student logits, teacher logits and labels; the checks pass a fresh seed at every attempt."""
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
    hint_text = "A temperature scales the logits before the softmax; which dimension holds the vocabulary?"

    course_twins = (soften,)

    def check_value(self, soften_fn: Any) -> Result | None:
        rng = fresh_rng()  # hidden logits and temperatures, new at every attempt
        temperatures = [round(float(t), 2) for t in rng.uniform(0.3, 8.0, 4)]
        cases = [(_random_case(int(rng.integers(2**31)))[0], t) for t in temperatures]
        cases[0] = (cases[0][0][0], 1.0)  # one vector of logits, at T = 1
        for logits, temperature in cases:
            original = logits.clone()
            got = soften_fn(logits, temperature)
            name = f"soften(logits of shape {tuple(logits.shape)}, {temperature})"
            if not isinstance(got, torch.Tensor):
                return incorrect(f"`soften` should return a torch.Tensor, got {type(got).__name__}.")
            if not torch.equal(logits, original):
                return incorrect("`soften` changed its input; compute on logits / T, a new tensor.")
            if close(got, soften(logits, 1 / temperature), rtol=1e-4, atol=1e-6) is None and temperature != 1:
                return incorrect(f"`{name}` multiplies the logits by T; a temperature divides them.")
            if wrong := close(got, soften(logits, temperature), name=name):
                return incorrect(
                    f"{wrong.message}: do the probabilities of each row sum to 1, and did you divide by T?"
                )
        return None


class KDLoss(Lab02Exercise):
    name, title, tier, var = "q2", "The distillation loss", "core", "kd_loss"
    hint_text = (
        "Build it in three pieces: both distributions softened by T (log-probabilities are the stable way), the KL "
        "from the teacher's side summed over the vocabulary and averaged over positions, and the plain "
        "cross-entropy. Then weigh them as the formula above says; the T² belongs to the soft term."
    )

    course_twins = (kd_loss, soften, make_loss_fn)

    def check_value(self, kd_loss_fn: Any) -> Result | None:
        rng = fresh_rng()  # hidden logits, temperatures and weights, new at every attempt
        settings = [(round(float(rng.uniform(0.5, 5)), 2), round(float(rng.uniform(0.1, 0.9)), 2)) for _ in range(3)]
        settings += [(1.0, 1.0), (float(rng.uniform(1.5, 5)), 0.0)]  # the soft term alone, the hard term alone
        for temperature, alpha in settings:
            s, t, y = _random_case(int(rng.integers(2**31)))
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
        return f"`{name}` is not right on random logits; compare your steps with the formula above."


class KeepBlocks(Lab02Exercise):
    name, title, tier, var = "q3", "Which blocks to keep: measure the candidates", "core", None
    hint_text = (
        "First the number: the embedding and the norm are paid once, then every block costs the same; how many "
        "blocks fit in 40% of the teacher? Then measure each candidate of distill.block_choices with "
        "student_ce and keep the one that starts closest to the references."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        keep = learner_answer(ns, "keep")
        n_layers = course_config().num_hidden_layers
        if not isinstance(keep, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in keep):
            return incorrect(f"`keep` should be a list of block numbers (ints), got {type(keep).__name__}.")
        if len(set(keep)) != len(keep) or not all(0 <= i < n_layers for i in keep):
            return incorrect(f"`keep` should list distinct block numbers between 0 and {n_layers - 1}.")
        share = student_params(len(keep)) / student_params(n_layers)
        if share > PARAM_BUDGET:
            return incorrect(f"a student with {len(keep)} blocks keeps {share:.1%} of the parameters: over budget.")
        if len(keep) < max_blocks_in_budget():
            return incorrect(f"{len(keep)} blocks fit the budget, but so do more: keep as many as fit.")
        candidates = block_choices(n_layers, len(keep))
        measured = learner_answer(ns, "initial_ce")  # the justification: the choice alone can be guessed
        if isinstance(measured, Mapping) and contains_blank(measured):
            raise PlaceholderError("`initial_ce` still holds ____")
        if not isinstance(measured, Mapping) or set(measured) != set(candidates):
            got = sorted(measured) if isinstance(measured, Mapping) else type(measured).__name__
            return incorrect(
                f"`initial_ce` should be a dict from each candidate's name {sorted(candidates)} to its cross-entropy "
                f"before training, got {got}."
            )
        for name, value in measured.items():
            if wrong := is_number(value, name=f"initial_ce[{name!r}]"):
                return wrong
            if not math.isfinite(value):
                return incorrect(f"`initial_ce[{name!r}]` is {value}: measure it with student_ce.")
        model, examples, tokenizer = ns.get("model"), ns.get("val_examples"), ns.get("tokenizer")
        if model is None or examples is None or tokenizer is None:
            return incorrect("`model`, `tokenizer` or `val_examples` is missing: run the cells above q3 first.")
        pad = tokenizer.pad_token_id
        reference = {name: student_ce(model, blocks, examples, pad) for name, blocks in candidates.items()}
        for name, value in measured.items():
            if close(value, reference[name], rtol=1e-3, atol=1e-4) is not None:
                return incorrect(
                    f"`initial_ce[{name!r}]` is not that candidate's cross-entropy on `val_examples`: measure "
                    f"student_ce(model, {candidates[name]}, val_examples, tokenizer.pad_token_id)."
                )
        best = min(reference, key=reference.get)
        if sorted(keep) != candidates[best]:
            which = next((n for n, b in candidates.items() if b == sorted(keep)), None)
            what = f"the {which!r} candidate" if which else "not one of the measured candidates"
            return incorrect(f"`keep` is {what}; keep the candidate whose initial cross-entropy is lowest.")
        return None


class PredictParams(Lab02Exercise):
    name, title, tier, var = "q4", "Predict the student's size before building it", "core", "predict_params"
    hint_text = (
        "Which parts of the teacher keep their size whatever the depth, and which part repeats once per block? "
        "Does the output head add parameters of its own?"
    )

    course_twins = (count_config_parameters, student_config, build_student, student_params)

    def check_value(self, predict_params: Any) -> Result | None:
        n_layers = course_config().num_hidden_layers
        rng = fresh_rng()  # hidden depths, new at every attempt
        for n_blocks in (*(int(n) for n in rng.choice(range(2, n_layers + 1), 3, replace=False)), 1):
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
            if wrong := close(got, expected, rtol=0, atol=0.5, name=name):
                return incorrect(f"{wrong.message}: which parts are paid once, and which once per block?")
        return None


class FitToTrain(Lab02Exercise):
    name, title, tier, var = "q5", "Reject the teacher answers unfit to train on", "core", "fit_to_train"
    hint_text = (
        "Section 2.2 validates in order: is there any text, does it follow the three-line format "
        "(data.follows_format), is the category one the task knows (data.parse_prediction, data.CATEGORIES), "
        "and is the reply real words rather than a loop?"
    )

    course_twins = (output_problem,)

    def check_value(self, fit_to_train: Any) -> Result | None:
        for text in teacher_samples(fresh_rng()):  # hidden answers, new at every attempt
            got = fit_to_train(text)
            if not isinstance(got, (bool, np.bool_)):
                return incorrect(f"`fit_to_train` should return True or False, got {type(got).__name__}.")
            problem = output_problem(text)
            if got and problem:
                return incorrect(f"`fit_to_train` accepts an answer that is {problem}: {text[:70]!r}.")
            if not got and not problem:
                return incorrect(f"`fit_to_train` rejects a fit answer: {text[:70]!r}. Is a check too strict?")
        return None


class HalfTemperature(Lab02Exercise):
    name, title, tier, var = "q6", "When does the favourite lose its majority?", "stretch", None
    hint_text = (
        "Loop over TEMPERATURES in order and soften example_logits() at each; the favourite's probability is the "
        "largest one. Keep the two probabilities either side of 0.5: they are your evidence."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        t_half = learner_answer(ns, "t_half")
        if wrong := is_number(t_half, name="t_half"):
            return wrong
        if t_half not in TEMPERATURES:
            return incorrect("`t_half` should be one of the values in TEMPERATURES.")
        if t_half == TEMPERATURES[0]:
            return incorrect("at the lowest temperature of the grid the favourite still holds its majority.")
        before = TEMPERATURES[TEMPERATURES.index(t_half) - 1]
        evidence = {"p_top_at": t_half, "p_top_before": before}  # the justification: t_half alone can be guessed
        for name, temperature in evidence.items():
            value = learner_answer(ns, name)
            if wrong := is_number(value, name=name):
                return wrong
            want = float(soften(example_logits(), temperature).max())
            if close(value, want, rtol=1e-3, atol=1e-6) is not None:
                return incorrect(
                    f"`{name}` should be the favourite's probability at T = {temperature} (the temperature "
                    f"{'you chose' if name == 'p_top_at' else 'just before yours in TEMPERATURES'})."
                )
        p_at, p_before = (float(soften(example_logits(), t).max()) for t in (t_half, before))
        if p_at >= 0.5:
            return incorrect(
                "your own `p_top_at` is not below 0.5: `t_half` is where the favourite loses its majority."
            )
        if p_before < 0.5:
            return incorrect("your own `p_top_before` is already below 0.5: `t_half` is the *first* such temperature.")
        return None


def claim_runs(rng: Any) -> list[dict[str, float]]:
    """q7's hidden raw measurements (notebook 02's metric names), drawn at every attempt; the last
    student is slower and scores worse than its undistilled twin, so no sign can be assumed."""
    runs = []
    for slower in (False, False, True):
        teacher_ms, teacher_mib, teacher_score = (float(round(x, 1)) for x in rng.uniform([8, 200, 30], [40, 900, 70]))
        share = rng.uniform(1.05, 1.4) if slower else rng.uniform(0.2, 0.6)
        student_score = float(round(teacher_score * rng.uniform(0.3, 0.95), 1))
        twin_gap = rng.uniform(0.5, 3) if slower else -rng.uniform(0.5, 5)  # the twin beats a slower student
        runs.append(dict(
            teacher_ms_per_token=teacher_ms, student_ms_per_token=float(round(teacher_ms * share, 2)),
            teacher_peak_mib=teacher_mib, student_peak_mib=float(round(teacher_mib * rng.uniform(0.1, 0.9), 1)),
            teacher_score=teacher_score, student_score=student_score,
            undistilled_score=float(round(student_score + twin_gap, 1)),
        ))  # fmt: skip
    return runs


CLAIM_KEYS = ("inference_time_saved_pct", "memory_saved_pct", "retention_pct", "credit_points")


def reference_claims(m: Mapping[str, float]) -> dict[str, float]:
    """Notebook 02's numbers for the claims (``measured_claims``), and distillation's credit over the twin."""
    teacher = m["teacher_score"]
    return measured_claims({**m, "retention": m["student_score"] / teacher}) | {
        "credit_points": 100 * (m["student_score"] - m["undistilled_score"]) / teacher
    }


class ClaimsFromMeasurements(Lab02Exercise):
    name, title, tier, var = "q7", "The module's claims, computed from a run", "stretch", "claims"
    hint_text = (
        "Each claim is a saving or a share against the teacher, in percent. The last key asks what distillation "
        "itself added: against which model of section 2.6 is the student credited?"
    )
    SLIPS = {
        "inference_time_saved_pct": (
            lambda m: 100 * m["student_ms_per_token"] / m["teacher_ms_per_token"],
            "is the student's time as a share of the teacher's; the claim is the time *saved*",
        ),
        "memory_saved_pct": (
            lambda m: 100 * m["student_peak_mib"] / m["teacher_peak_mib"],
            "is the student's memory as a share of the teacher's; the claim is the memory *saved*",
        ),
        "retention_pct": (
            lambda m: m["student_score"] / m["teacher_score"],
            "is a share (0 to 1); the key asks for percent",
        ),
        "credit_points": (
            lambda m: 100 * (m["student_score"] - m["teacher_score"]) / m["teacher_score"],
            "compares the student with its teacher; distillation is credited against the undistilled twin",
        ),
    }

    course_twins = (measured_claims, reference_claims)

    def check_value(self, claims: Any) -> Result | None:
        for i, run in enumerate(claim_runs(fresh_rng()), start=1):  # hidden runs, new at every attempt
            got = claims(dict(run))
            name = f"claims(run {i})"
            if not isinstance(got, Mapping):
                return incorrect(f"`claims` should return a dict with keys {list(CLAIM_KEYS)}, got {got!r}.")
            if missing := [k for k in CLAIM_KEYS if k not in got]:
                return incorrect(f"`{name}` is missing {missing}.")
            want = reference_claims(run)
            for key in CLAIM_KEYS:
                if wrong := is_number(got[key], name=f"{name}[{key!r}]"):
                    return wrong
                slip, says = self.SLIPS[key]
                if close(got[key], slip(run), rtol=1e-6) is None:
                    return incorrect(f"`{name}[{key!r}]` {says}.")
                if wrong := close(got[key], want[key], rtol=1e-6, name=f"{name}[{key!r}]"):
                    return incorrect(f"{wrong.message}: which two measurements does this claim compare?")
        return None


EXERCISES = [
    Soften,
    KDLoss,
    KeepBlocks,
    PredictParams,
    FitToTrain,
    HalfTemperature,
    ClaimsFromMeasurements,
    TeacherAnswersFile,
    DistilledStudent,
]
