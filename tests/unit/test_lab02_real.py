"""Lab 02's real-tool exercises (q8: the teacher's fit answers in a file; q9: a student distilled
for a few steps and its KL), checked here with a tiny random Llama as the teacher: the right
artifacts pass, and each slip is named (a made-up or unfit answer kept, a malformed file, an
untrained student, the reverse KL, a sum for a mean, another student's depth)."""

from __future__ import annotations

import json

import pytest
import torch

from slmops_helpers import distill, training
from slmops_helpers.labs import Outcome, Question, ____
from slmops_helpers.labs.lab02 import real as lab02_real


@pytest.fixture
def teacher(monkeypatch, tiny_tokenizer, tiny_llama_factory):
    model = tiny_llama_factory(tiny_tokenizer, initializer_range=0.5)
    monkeypatch.setattr(lab02_real, "_teacher", lambda model_name=None: (model, tiny_tokenizer))
    monkeypatch.setattr(lab02_real, "_tuned_teacher", lambda model_name=None: (model, tiny_tokenizer))
    return model, tiny_tokenizer


def verdict(exercise, namespace):
    result = Question(exercise(), namespace).result()
    return result.outcome, result.message


def write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


FIT = "category: billing\nerror_code: none\nreply: Your invoice lists the monthly plan and its price."


def test_q8_an_empty_file_is_right_when_every_answer_of_the_teacher_is_unfit(teacher, tmp_path):
    """The tiny random teacher writes no three-line answer: keeping none of them is right."""
    assert verdict(lab02_real.TeacherAnswersFile, {"teacher_file": ____})[0] is Outcome.NOT_ATTEMPTED
    got = verdict(lab02_real.TeacherAnswersFile, {"teacher_file": write(tmp_path / "a.jsonl", [])})
    assert got[0] is Outcome.CORRECT, got[1]


@pytest.mark.parametrize(
    "records, says",
    [
        (["not json"], "not JSON"),
        ([{"id": "nope", "answer": FIT}], "names no ticket"),
        ([{"answer": 3}], "'answer' (a str)"),
        ([{"id": "{first}", "answer": "category: billing\nreply: short"}], "keeps an answer that is"),
        ([{"id": "{first}", "answer": FIT}], "not the teacher's whole greedy answer"),
        ([{"id": "{first}", "answer": FIT}, {"id": "{first}", "answer": FIT}], "or one twice"),
    ],
)
def test_q8_names_each_slip(teacher, tmp_path, records, says):
    first = lab02_real.lab_teacher_rows()[0]["id"]
    records = [r if isinstance(r, str) else {k: v.replace("{first}", first) if k == "id" else v for k, v in r.items()}
               for r in records]  # fmt: skip
    got, message = verdict(lab02_real.TeacherAnswersFile, {"teacher_file": write(tmp_path / "a.jsonl", records)})
    assert got is Outcome.INCORRECT and says in message, message


def test_q8_refuses_a_file_that_leaves_out_a_fit_answer(teacher, tmp_path, monkeypatch):
    monkeypatch.setattr(lab02_real.TeacherAnswersFile, "_teacher_answer_is_fit", staticmethod(lambda *a: True))
    got, message = verdict(lab02_real.TeacherAnswersFile, {"teacher_file": write(tmp_path / "a.jsonl", [])})
    assert got is Outcome.INCORRECT and "leaves out a fit answer" in message, message


def distil(teacher_model, tokenizer, keep, steps, folder):
    torch.manual_seed(0)
    student = distill.build_student(teacher_model, keep)
    batch = training.collate(lab02_real.lab_train_examples(tokenizer), tokenizer.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    answer = batch["labels"][:, 1:] != -100
    with torch.no_grad():
        target = torch.softmax(teacher_model(**inputs).logits[:, :-1][answer], -1)
    optimizer = torch.optim.AdamW(student.parameters(), lr=0.01)
    for _ in range(steps):
        log_s = torch.log_softmax(student(**inputs).logits[:, :-1][answer], -1)
        (target * (target.log() - log_s)).sum(-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    student.eval().save_pretrained(folder)
    examples = lab02_real.lab_val_examples(tokenizer)
    t = lab02_real.answer_logits(teacher_model, examples, tokenizer.pad_token_id)
    s = lab02_real.answer_logits(student, examples, tokenizer.pad_token_id)
    return t, s


def q9(folder, kl, keep=(0,)):
    return verdict(lab02_real.DistilledStudent, {"student_dir": folder, "student_kl": kl, "keep": list(keep)})


def test_q9_reads_the_saved_student_and_its_measured_kl(teacher, tmp_path):
    t, s = distil(*teacher, [0], 20, tmp_path / "student")
    assert q9(tmp_path / "student", ____)[0] is Outcome.NOT_ATTEMPTED
    got = q9(tmp_path / "student", lab02_real.forward_kl(t, s))
    assert got[0] is Outcome.CORRECT, got[1]
    got, message = q9(tmp_path / "student", lab02_real.forward_kl(s, t))
    assert got is Outcome.INCORRECT and "KL(student ‖ teacher)" in message, message
    got, message = q9(tmp_path / "student", lab02_real.forward_kl(t, s) * len(t))
    assert got is Outcome.INCORRECT and "sums over the positions" in message, message
    got, message = q9(tmp_path / "student", 0.5 * lab02_real.forward_kl(t, s))
    assert got is Outcome.INCORRECT and "not the KL of your saved student" in message, message
    got, message = q9(tmp_path / "student", lab02_real.forward_kl(t, s), keep=(0, 1))
    assert got is Outcome.INCORRECT and "number of blocks" in message, message


def test_q9_refuses_a_student_saved_before_training(teacher, tmp_path):
    t, s = distil(*teacher, [0], 0, tmp_path / "student")
    got, message = q9(tmp_path / "student", lab02_real.forward_kl(t, s))
    assert got is Outcome.INCORRECT and "no closer to the teacher" in message, message
