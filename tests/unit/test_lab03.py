"""Lab 03's checks: right answers pass, typical mistakes are caught with a useful message."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from slmops_helpers.labs import Outcome, Question, ____
from slmops_helpers.labs.lab03 import exercises as lab03
from slmops_helpers.labs.lab03 import real as lab03_real
from slmops_helpers.labs.lab03.exercises import (
    CountLoraParams,
    EarlyStop,
    ExpandGrid,
    LoraForward,
    MergeLora,
    PairedBootstrap,
    PickTargets,
    QLoRABaseMemory,
)
from slmops_helpers.labs.solutions import solution_code


def outcome(exercise, value):
    result = Question(exercise(), {exercise.var: value}).result()
    return result.outcome, result.message


def right_forward(x, weight, bias, A, B, alpha):
    return x @ weight.T + bias + (alpha / A.shape[0]) * (x @ A.T @ B.T)


@pytest.mark.parametrize(
    "forward, ok",
    [
        (right_forward, True),
        (lambda x, w, b, A, B, alpha: x @ w.T + b + alpha * (x @ A.T @ B.T), False),  # forgot / r
        (lambda x, w, b, A, B, alpha: x @ w.T + b, False),  # no adapter path
        (lambda x, w, b, A, B, alpha: (x @ w.T + b).tolist(), False),  # not a tensor
    ],
)
def test_lora_forward_is_checked_against_peft(forward, ok):
    got, message = outcome(LoraForward, forward)
    assert (got is Outcome.CORRECT) == ok, message


def test_count_catches_a_missing_layer_factor():
    assert outcome(CountLoraParams, lambda s, n, r, t: n * sum(r * sum(s[x]) for x in t))[0] is Outcome.CORRECT
    got, _ = outcome(CountLoraParams, lambda s, n, r, t: sum(r * sum(s[x]) for x in t))
    assert got is Outcome.INCORRECT


def cost(targets):
    return lab03.lora_params(lab03.SMOLLM2_135M_LINEARS, lab03.SMOLLM2_135M_LAYERS, 8, list(targets))


def targets_outcome(targets, claimed):
    result = Question(PickTargets(), {"my_targets": targets, "targets_cost": claimed}).result()
    return result.outcome, result.message


@pytest.mark.parametrize(
    "targets, ok, says",
    [
        (["q_proj", "v_proj", "down_proj"], True, ""),
        (["k_proj", "v_proj", "up_proj"], True, ""),
        (["q_proj", "k_proj", "v_proj", "o_proj"], False, "MLP"),
        (["gate_proj", "up_proj"], False, "budget"),
        (["down_proj"], False, "attention"),
        (["q_prj"], False, "not linear layers"),
        (["q_proj", "q_proj", "down_proj"], False, "twice"),
        ("q_proj", False, "list"),
    ],
)
def test_pick_targets_enforces_budget_and_coverage(targets, ok, says):
    claimed = cost(targets) if isinstance(targets, list) and set(targets) <= set(lab03.SMOLLM2_135M_LINEARS) else 0
    got, message = targets_outcome(targets, claimed)
    assert (got is Outcome.CORRECT) == ok, message
    assert says in message


def test_no_target_list_passes_without_its_cost():
    """Every subset of the seven projections, with the cost blank, a guess or of the wrong type: none passes."""
    names = list(lab03.SMOLLM2_135M_LINEARS)
    for k in range(1, len(names) + 1):
        for targets in itertools.combinations(names, k):
            for claimed in (____, None, "1000000", float("nan"), 1_000_000, cost(targets) + 1):
                got, message = targets_outcome(list(targets), claimed)
                assert got is not Outcome.CORRECT, (targets, claimed)
                assert "raised" not in message


def early(losses, patience):
    """Early stopping written out here: the check refuses the course's own as a learner's answer."""
    best, waited = 0, 0
    for i in range(1, len(losses)):
        if losses[i] < losses[best]:
            best, waited = i, 0
        else:
            waited += 1
        if waited == patience:
            return best, i
    return best, len(losses) - 1


@pytest.mark.parametrize(
    "fn, says",
    [
        (lambda v, p: (early(v, p)[0], len(v) - 1), "stop_index"),  # never stops
        (lambda v, p: (min(range(len(v)), key=v.__getitem__), len(v) - 1), "best_index"),  # sees the future
        (lambda v, p: tuple(reversed(early(v, p))), "wrong order"),
        (lambda v, p: (early(v, p)[1], early(v, p)[1]), "best_index"),  # keeps the last weights
        (lambda v, p: [float(x) for x in early(v, p)], "two ints"),
        (lambda v, p: early(v, p)[0], "pair"),
    ],
)
def test_early_stopping_slips_are_named(fn, says):
    got, message = outcome(EarlyStop, fn)
    assert got is Outcome.INCORRECT and says in message, message


def test_early_stopping_on_the_tiny_lora_run_overfits_and_stops():
    train, val = lab03.tiny_lora_curve(steps=30)
    assert len(train) == len(val) == 30 and train[-1] < train[0]
    best, stop = early(val, 5)
    assert best < stop <= 29 and min(val) == val[best]


@pytest.mark.parametrize(
    "fn, says",
    [
        (lambda s, n, p, b=64: p * (0.5 + 4 / b) / 2**20, "every parameter"),
        (
            lambda s, n, p, b=64: (
                (n * sum(i * o for i, o in s.values()) * 0.5 + (p - n * sum(i * o for i, o in s.values())) * 4) / 2**20
            ),
            "scale",
        ),  # noqa: E501
        (lambda s, n, p, b=64: p * 4 / 2**20, "qlora_base_mib("),
        (lambda s, n, p, b=64: "165", "number"),
    ],
)
def test_qlora_memory_slips_are_named(fn, says):
    got, message = outcome(QLoRABaseMemory, fn)
    assert got is Outcome.INCORRECT and says in message, message


@pytest.mark.parametrize(
    "fn, says",
    [
        (lambda g: [dict(zip(g, v, strict=False)) for v in zip(*g.values(), strict=False)], "pairs the values up"),
        (lambda g: [{k: v[0] for k, v in g.items()}], "exactly once"),
        (lambda g: [dict(zip(g, v, strict=True)) for v in itertools.product(*g.values())][:-1], "exactly once"),
        (lambda g: list(g.items()), "list of dicts"),
    ],
)
def test_grid_slips_are_named(fn, says):
    got, message = outcome(ExpandGrid, fn)
    assert got is Outcome.INCORRECT and says in message, message


@pytest.mark.parametrize("exercise", [e for e in lab03.EXERCISES if not e.real_tools], ids=lambda e: e.name)
def test_blank_is_not_attempted_and_the_solution_is_right(exercise):
    namespace = {"torch": torch, **{k: getattr(lab03, k) for k in ("SMOLLM2_135M_LINEARS", "SMOLLM2_135M_LAYERS")}}
    if exercise is PickTargets:
        exec(solution_code(exercise.notebook, "q1"), namespace)  # q3's solution uses q1's function
    exec(solution_code(exercise.notebook, exercise.name), namespace)
    value = namespace if exercise.var is None else namespace[exercise.var]
    result = Question(exercise(), namespace if exercise.var is None else {exercise.var: value}).result()
    assert result.outcome is Outcome.CORRECT, result.message
    blank = {"my_targets": ____, "targets_cost": ____} if exercise.var is None else {exercise.var: ____}
    assert Question(exercise(), blank).result().outcome is Outcome.NOT_ATTEMPTED


def test_the_lab_goes_warm_up_core_stretch():
    tiers = [e.tier for e in lab03.EXERCISES]
    assert len(tiers) >= 6 and tiers.count("core") >= 3 and tiers[0] == "warm-up" and tiers[-1] == "stretch"
    assert tiers == sorted(tiers, key=["warm-up", "core", "stretch"].index)
    assert [e.name for e in lab03.EXERCISES] == [f"q{i}" for i in range(1, len(tiers) + 1)]


def test_merge_is_checked_against_peft():
    assert outcome(MergeLora, lambda w, A, B, alpha: w + alpha / A.shape[0] * (B @ A))[0] is Outcome.CORRECT
    assert outcome(MergeLora, lambda w, A, B, alpha: w + alpha * (B @ A))[0] is Outcome.INCORRECT
    assert outcome(MergeLora, lambda w, A, B, alpha: w + (A.T @ B.T))[0] is Outcome.INCORRECT


def _bootstrap(a, b, resamples=2000, seed=0, *, paired=True, level=0.95, sign=1):
    rng = np.random.default_rng(seed + 7)  # another stream than the course's: the check allows for that noise
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    draws = rng.integers(0, len(a), size=(resamples, len(a)))
    other = draws if paired else rng.integers(0, len(a), size=(resamples, len(a)))
    means = sign * (a[draws].mean(axis=1) - b[other].mean(axis=1))
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(sign * (a - b).mean()), float(low), float(high)


def test_a_paired_bootstrap_on_its_own_random_stream_passes():
    assert outcome(PairedBootstrap, _bootstrap)[0] is Outcome.CORRECT


@pytest.mark.parametrize(
    "fn, says",
    [
        (lambda a, b, resamples, seed: _bootstrap(a, b, resamples, seed, paired=False), "separately"),
        (lambda a, b, resamples, seed: _bootstrap(a, b, resamples, seed, level=0.80), "quantiles"),
        (lambda a, b, resamples, seed: _bootstrap(a, b, resamples, seed, level=0.90), "quantiles"),
        (lambda a, b, resamples, seed: _bootstrap(a, b, resamples, seed, sign=-1), "sign"),
        (lambda a, b, resamples, seed: (float(np.mean(a)), 0.0, 1.0), "mean of a − b"),
        (lambda a, b, resamples, seed: (1.0, 2.0), "(estimate, low, high)"),
        (lambda a, b, resamples, seed: ("1", 0, 2), "number"),
    ],
)
def test_paired_bootstrap_slips_are_named(fn, says):
    got, message = outcome(PairedBootstrap, fn)
    assert got is Outcome.INCORRECT and says in message, message


# --- q9 and q10: on the course model in the lab; here on a tiny random Llama --------------------


@pytest.fixture
def tiny_course(monkeypatch, tiny_tokenizer, tiny_llama_factory):
    """The checks' course model replaced by a tiny Llama (its blocks have the same layer names)."""
    base = tiny_llama_factory(tiny_tokenizer)
    monkeypatch.setattr(lab03_real, "_course_base", lambda model_name=None: (base, tiny_tokenizer))
    return base, tiny_tokenizer


def _adapter(base, tokenizer, folder, steps=20, targets=("q_proj", "down_proj"), lr=0.05):
    import copy

    from peft import LoraConfig, get_peft_model

    from slmops_helpers import training

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(targets), task_type="CAUSAL_LM")
    model = get_peft_model(copy.deepcopy(base), config)
    batch = training.collate(lab03_real.lab_train_examples(tokenizer), tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval().save_pretrained(folder)
    return config, model


def _q(exercise, **namespace):
    result = Question(exercise(), namespace).result()
    return result.outcome, result.message


def test_q9_reads_the_adapter_folder(tiny_course, tmp_path):
    base, tokenizer = tiny_course
    config, _ = _adapter(base, tokenizer, tmp_path / "adapter")
    assert _q(lab03_real.LoraOnCourseModel, lora_config=____, adapter_dir=____)[0] is Outcome.NOT_ATTEMPTED
    got = _q(lab03_real.LoraOnCourseModel, lora_config=config, adapter_dir=tmp_path / "adapter")
    assert got[0] is Outcome.CORRECT, got[1]


@pytest.mark.parametrize(
    "slip, says",
    [
        ({"steps": 0}, "all zeros"),
        ({"lr": 0.0}, "all zeros"),  # AdamW at lr 0 leaves B where peft put it
        ({"other_config": True}, "another config"),
        ({"folder": "missing"}, "not a folder"),
        ({"config": "dict"}, "LoraConfig"),
    ],
)
def test_q9_names_each_slip(tiny_course, tmp_path, slip, says):
    from peft import LoraConfig

    base, tokenizer = tiny_course
    config, _ = _adapter(base, tokenizer, tmp_path / "adapter", steps=slip.get("steps", 20), lr=slip.get("lr", 0.05))
    if slip.get("other_config"):
        config = LoraConfig(r=8, target_modules=["q_proj"], task_type="CAUSAL_LM")
    if slip.get("config"):
        config = {"r": 4}
    folder = tmp_path / slip.get("folder", "adapter")
    got, message = _q(lab03_real.LoraOnCourseModel, lora_config=config, adapter_dir=folder)
    assert got is Outcome.INCORRECT and says in message, message


def test_q9_refuses_an_adapter_that_does_not_lower_the_loss(tiny_course, tmp_path):
    base, tokenizer = tiny_course
    config, model = _adapter(base, tokenizer, tmp_path / "adapter", steps=1)
    with torch.no_grad():  # trained away from zero, but in a direction that makes the loss worse
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 5)
    model.save_pretrained(tmp_path / "adapter")
    got, message = _q(lab03_real.LoraOnCourseModel, lora_config=config, adapter_dir=tmp_path / "adapter")
    assert got is Outcome.INCORRECT and "not lower" in message, message


def test_q10_checks_the_merged_folder_against_the_adapter(tiny_course, tmp_path):
    import copy

    base, tokenizer = tiny_course
    _, model = _adapter(base, tokenizer, tmp_path / "adapter")
    assert (
        _q(lab03_real.MergeOnCourseModel, merged_dir=____, adapter_dir=tmp_path / "adapter")[0] is Outcome.NOT_ATTEMPTED
    )
    copy.deepcopy(model).merge_and_unload().save_pretrained(tmp_path / "merged")
    got = _q(lab03_real.MergeOnCourseModel, merged_dir=tmp_path / "merged", adapter_dir=tmp_path / "adapter")
    assert got[0] is Outcome.CORRECT, got[1]
    base.save_pretrained(tmp_path / "base")  # the base saved instead of the merge
    got, message = _q(lab03_real.MergeOnCourseModel, merged_dir=tmp_path / "base", adapter_dir=tmp_path / "adapter")
    assert got is Outcome.INCORRECT and "not merged" in message
    got, message = _q(lab03_real.MergeOnCourseModel, merged_dir=tmp_path / "adapter", adapter_dir=tmp_path / "adapter")
    assert got is Outcome.INCORRECT and "config.json" in message
    unscaled = copy.deepcopy(model)  # merged without alpha / r: B·A added as is
    with torch.no_grad():
        for module in unscaled.modules():
            if hasattr(module, "scaling") and isinstance(module.scaling, dict):
                module.scaling["default"] = 1.0
    unscaled.merge_and_unload().save_pretrained(tmp_path / "unscaled")
    got, message = _q(lab03_real.MergeOnCourseModel, merged_dir=tmp_path / "unscaled", adapter_dir=tmp_path / "adapter")
    assert got is Outcome.INCORRECT and "rounding" in message, message
    got, message = _q(lab03_real.MergeOnCourseModel, merged_dir=tmp_path / "merged", adapter_dir=tmp_path / "none")
    assert got is Outcome.INCORRECT and "finish q9" in message
