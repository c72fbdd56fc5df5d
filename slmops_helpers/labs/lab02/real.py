"""Lab 02's exercises on the course model itself: the teacher writes answers for a few training
tickets and the learner keeps the fit ones in a JSONL file (q8, section 2.2), then a student cut
from the teacher is distilled for a few steps, saved, and its KL to the teacher measured (q9,
sections 2.3-2.5). Each is checked on the file or folder the learner wrote; the rest of lab 02
is in ``exercises``."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ... import training
from ...data import format_chat, read_rows
from ...distill import build_student, encode_distillation_set, get_config
from ...distill.teacher import output_problem
from ...finetune import load_tuned_model
from ...models import DEFAULT_MODEL, load_model
from .. import Exercise, PlaceholderError, Result, close, contains_blank, incorrect, is_number, learner_answer
from ..artifacts import folder_of, greedy_mismatch

__all__ = [
    "ANSWER_TOKENS",
    "lab_teacher_rows",
    "lab_train_examples",
    "lab_val_examples",
    "forward_kl",
    "TeacherAnswersFile",
    "DistilledStudent",
]

ANSWER_TOKENS = get_config("smoke").teacher_max_new_tokens  # q8: notebook 02's budget for a teacher answer
TEACHER_TICKETS = 3  # q8: training tickets the teacher answers
TRAIN_TICKETS = 3  # q9: training tickets the student is distilled on (seconds per step on a laptop CPU)


def lab_teacher_rows(n: int = TEACHER_TICKETS) -> list[dict[str, str]]:
    """q8's tickets: the first ``n`` training tickets."""
    return [r for r in read_rows() if r["split"] == "train"][:n]


def lab_train_examples(tokenizer: Any, n: int = TRAIN_TICKETS, max_length: int = 192) -> list[dict[str, list[int]]]:
    """q9's training set: the first ``n`` training tickets with their references, encoded."""
    rows = [r for r in read_rows() if r["split"] == "train"][:n]
    return encode_distillation_set(tokenizer, rows, None, max_length=max_length)


def lab_val_examples(tokenizer: Any, n: int = 4, max_length: int = 256) -> list[dict[str, list[int]]]:
    """The first ``n`` validation tickets with their references, encoded: q3's and q9's ``val_examples``."""
    rows = [r for r in read_rows() if r["split"] == "validation"][:n]
    return encode_distillation_set(tokenizer, rows, None, max_length=max_length)


@functools.cache
def _teacher(model_name: str = DEFAULT_MODEL) -> tuple[Any, Any]:
    """The course model as loaded from its prepared folder, q3's and q9's `model`: read, never changed."""
    return load_model(model_name, device="cpu")


@functools.cache
def _tuned_teacher(model_name: str = DEFAULT_MODEL) -> tuple[Any, Any]:
    """Notebook 02's teacher, the course's tuned model (section 2.1): q8's `teacher`."""
    return load_tuned_model(model_name, device="cpu")


@torch.no_grad()
def answer_logits(model: Any, examples: list[dict[str, list[int]]], pad_id: int) -> torch.Tensor:
    """The logits that predict each answer token of ``examples`` (positions whose label is set), (N, V)."""
    batch = training.collate(examples, pad_id)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    return logits[batch["labels"][:, 1:] != training.IGNORE].float()


def forward_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> float:
    """KL(teacher ‖ student) at T = 1, summed over the vocabulary, averaged over the positions."""
    log_t, log_s = F.log_softmax(teacher_logits, -1), F.log_softmax(student_logits, -1)
    return float((log_t.exp() * (log_t - log_s)).sum(-1).mean())


class Lab02RealExercise(Exercise):
    notebook = "02_distillation.ipynb"  # in labs/source/
    real_tools = True


class TeacherAnswersFile(Lab02RealExercise):
    name, title, tier, var = "q8", "The teacher's answers, validated, in a file", "stretch", None
    hint_text = (
        "For each row of teacher_rows: the teacher's greedy answer (teacher.generate with do_sample=False and "
        "max_new_tokens=ANSWER_TOKENS, on data.format_chat(teacher_tokenizer, row)), decoded without the prompt and "
        "without special tokens. An answer cut at the budget did not finish. Write one JSON object per line."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        path = learner_answer(ns, "teacher_file")
        if not isinstance(path, str | Path) or not Path(path).is_file():
            return incorrect("`teacher_file` should be the path of the JSONL file you wrote.")
        rows = {str(r["id"]): r for r in lab_teacher_rows()}
        kept: dict[str, str] = {}
        for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
            try:
                record = json.loads(line)
            except ValueError:
                return incorrect(f"Line {n} of `teacher_file` is not JSON: write one json.dumps(...) per line.")
            if not isinstance(record, dict) or not isinstance(record.get("answer"), str):
                return incorrect(f"Line {n} of `teacher_file` should be an object with 'id' and 'answer' (a str).")
            if str(record.get("id")) not in rows or str(record["id"]) in kept:
                return incorrect(f"Line {n} of `teacher_file` names no ticket of `teacher_rows`, or one twice.")
            kept[str(record["id"])] = record["answer"]
        model, tokenizer = _tuned_teacher()
        for ticket, row in rows.items():
            prompt_ids = tokenizer(format_chat(tokenizer, row)).input_ids
            if ticket in kept:
                if problem := output_problem(kept[ticket]):
                    return incorrect(f"`teacher_file` keeps an answer that is {problem}: validate before keeping.")
                if not self._is_teachers(model, tokenizer, prompt_ids, kept[ticket]):
                    return incorrect(
                        "`teacher_file` holds an answer that is not the teacher's whole greedy answer to its ticket."
                    )
            elif self._teacher_answer_is_fit(model, tokenizer, prompt_ids):
                return incorrect("`teacher_file` leaves out a fit answer of the teacher: is a check too strict?")
        return None

    @staticmethod
    def _is_teachers(model: Any, tokenizer: Any, prompt_ids: list[int], answer: str) -> bool:
        """The answer's tokens are the teacher's greedy ones, and it ends where the teacher ends."""
        ids = tokenizer(answer, add_special_tokens=False).input_ids
        if not ids or len(ids) >= ANSWER_TOKENS:
            return False
        ends = sorted(_eos_ids(model, tokenizer))[:1]  # the answer and the end token the teacher stopped with
        return greedy_mismatch(model, prompt_ids, ids + ends) is None

    @staticmethod
    def _teacher_answer_is_fit(model: Any, tokenizer: Any, prompt_ids: list[int]) -> bool:
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([prompt_ids]),
                max_new_tokens=ANSWER_TOKENS,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )[0, len(prompt_ids) :]
        finished = bool(set(out.tolist()) & _eos_ids(model, tokenizer))
        return output_problem(tokenizer.decode(out, skip_special_tokens=True), finished) is None


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    return {i for i in ids if i is not None}


class DistilledStudent(Lab02RealExercise):
    name, title, tier, var = "q9", "Distil a student for a few steps, and measure its KL", "stretch", None
    hint_text = (
        "Both models see the same batch; the teacher's logits need no gradient. Compare the two only where a "
        "label is set, one position before it (the logits at t predict token t + 1), with your kd_loss. For the "
        "KL, softmax over the vocabulary at T = 1, KL(teacher ‖ student) summed over it, averaged over positions."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        from transformers import AutoModelForCausalLM

        measured = learner_answer(ns, "student_kl")  # first: while it is ____, the question is not attempted
        keep = learner_answer(ns, "keep")
        if contains_blank(keep):
            raise PlaceholderError("`keep` (q3) is still ____")
        folder = folder_of(learner_answer(ns, "student_dir"), "student_dir", ("config.json", "*.safetensors"))
        if isinstance(folder, Result):
            return folder
        if wrong := is_number(measured, name="student_kl"):
            return wrong
        if not isinstance(keep, list | tuple) or not keep:
            return incorrect("`keep` (q3) should list the blocks the student keeps: finish q3 first.")
        student = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        if student.config.num_hidden_layers != len(keep):
            return incorrect("`student_dir` holds a model with another number of blocks than q3's `keep`.")
        teacher, tokenizer = _teacher()
        examples = lab_val_examples(tokenizer)
        pad = tokenizer.pad_token_id
        t_logits = answer_logits(teacher, examples, pad)
        trained = answer_logits(student, examples, pad)
        untrained = answer_logits(build_student(teacher, list(keep)), examples, pad)
        kl = forward_kl(t_logits, trained)
        if not kl < 0.97 * forward_kl(t_logits, untrained):
            return incorrect(
                "Your saved student is no closer to the teacher than the student cut from it before training: "
                "train it on the teacher's soft targets, and save it after training."
            )
        if close(measured, kl, rtol=1e-3, atol=1e-6) is None:
            return None
        if close(measured, forward_kl(trained, t_logits), rtol=1e-3, atol=1e-6) is None:
            return incorrect("`student_kl` is KL(student ‖ teacher); distillation's KL is KL(teacher ‖ student).")
        if close(measured, kl * len(t_logits), rtol=1e-3, atol=1e-6) is None:
            return incorrect("`student_kl` sums over the positions; average over them.")
        return incorrect(
            "`student_kl` is not the KL of your saved student on `val_examples`: measure it on the answer "
            "positions, at T = 1."
        )
