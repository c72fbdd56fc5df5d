"""The shared training loop on a tiny random Llama: masking, batching, learning, early
stopping, and the errors a typo should produce."""

from __future__ import annotations

import math

import pytest
import torch

from slmops_helpers import training
from slmops_helpers.training import IGNORE, TrainConfig


@pytest.fixture
def row():
    return {
        "id": "t1",
        "split": "train",
        "message": "my hub is offline",
        "category": "wifi",
        "error_code": "none",
        "reply": "reset the hub.",
    }


def _examples(tok, row, n=8):
    return [training.encode_example(tok, row, max_length=128) for _ in range(n)]


def test_encode_masks_the_prompt_and_keeps_the_answer(tiny_tokenizer, row):
    e = training.encode_example(tiny_tokenizer, row, max_length=128)
    assert len(e["input_ids"]) == len(e["labels"])
    learned = [t for t, label in zip(e["input_ids"], e["labels"], strict=True) if label != IGNORE]
    assert learned == [label for label in e["labels"] if label != IGNORE]
    assert learned[-1] == tiny_tokenizer.eos_token_id  # the model learns to stop
    assert e["labels"][0] == IGNORE


def test_encode_uses_a_given_target(tiny_tokenizer, row):
    ref = training.encode_example(tiny_tokenizer, row, 128)
    other = training.encode_example(tiny_tokenizer, row, 128, target="category: billing")
    assert sum(x != IGNORE for x in other["labels"]) < sum(x != IGNORE for x in ref["labels"])


def test_encode_refuses_a_prompt_that_fills_max_length(tiny_tokenizer, row):
    with pytest.raises(ValueError, match="raise max_length"):
        training.encode_example(tiny_tokenizer, row, max_length=3)


def test_collate_right_pads_and_ignores_padding(tiny_tokenizer, row):
    short = {"input_ids": [5, 6], "labels": [IGNORE, 6]}
    long = {"input_ids": [5, 6, 7, 8], "labels": [IGNORE, IGNORE, 7, 8]}
    b = training.collate([short, long], pad_id=1)
    assert b["input_ids"].shape == (2, 4)
    assert b["input_ids"][0].tolist() == [5, 6, 1, 1]
    assert b["attention_mask"][0].tolist() == [1, 1, 0, 0]
    assert b["labels"][0].tolist() == [IGNORE, 6, IGNORE, IGNORE]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"max_steps": 0}, "max_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"patience": 0}, "patience"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_training_lowers_the_loss_and_records_history(tiny_model, tiny_tokenizer, row):
    ex = _examples(tiny_tokenizer, row)
    pad = tiny_tokenizer.pad_token_id
    before = training.evaluate_loss(tiny_model, ex, pad)
    result = training.train(tiny_model, ex, ex[:2], TrainConfig(lr=1e-2, max_steps=20, batch_size=4, eval_every=5), pad)
    after = training.evaluate_loss(tiny_model, ex, pad)
    assert after < 0.5 * before
    assert result.steps == 20 and len(result.history) == 20
    assert [h["step"] for h in result.history if "val_loss" in h] == [5, 10, 15, 20]
    assert result.s_per_step > 0 and result.best_val_loss == min(h.get("val_loss", math.inf) for h in result.history)
    assert not tiny_model.training  # handed back ready for inference


def test_early_stopping_restores_the_best_weights(tiny_model, tiny_tokenizer, row):
    """Train on one answer, validate on another: validation loss soon rises, training stops,
    and the weights that scored best on validation come back."""
    pad = tiny_tokenizer.pad_token_id
    train_ex = _examples(tiny_tokenizer, row)
    val_ex = [training.encode_example(tiny_tokenizer, row, 128, target="category: billing , setup .")]
    config = TrainConfig(lr=3e-2, max_steps=200, batch_size=4, eval_every=2, patience=2)
    result = training.train(tiny_model, train_ex, val_ex, config, pad)
    assert result.stopped_early and result.steps < 200
    assert training.evaluate_loss(tiny_model, val_ex, pad) == pytest.approx(result.best_val_loss, rel=1e-4)


def test_a_score_picks_the_best_step_and_drives_early_stopping(tiny_model, tiny_tokenizer, row):
    """Validation loss keeps falling (validation = training data) while a scripted score peaks
    at the second evaluation: the score wins, and those weights come back."""
    pad = tiny_tokenizer.pad_token_id
    ex = _examples(tiny_tokenizer, row, 4)
    scores, modes = iter([1.0, 5.0, 2.0, 3.0, 9.0]), []

    def score_fn(model):
        model.eval()  # as generation does; training must switch back
        return next(scores)

    def loss_fn(model, batch):
        modes.append(model.training)
        return training.default_loss(model, batch)

    config = TrainConfig(lr=1e-2, max_steps=40, batch_size=2, eval_every=5, patience=2)
    result = training.train(tiny_model, ex, ex, config, pad, loss_fn, score_fn=score_fn)
    evals = [h for h in result.history if "val_loss" in h]
    assert [h["val_score"] for h in evals] == [1.0, 5.0, 2.0, 3.0]  # stopped before the 9
    assert result.stopped_early and result.steps == 20 and result.best_step == 10 and result.best_val_score == 5.0
    assert evals[-1]["val_loss"] < evals[1]["val_loss"] == result.best_val_loss  # loss alone would pick step 20
    assert training.evaluate_loss(tiny_model, ex, pad) == pytest.approx(result.best_val_loss, rel=1e-4)
    assert modes.count(True) == 20  # every training step ran in training mode, after each score too
    assert result.eval_s > 0 and result.s_per_step > 0


def test_a_tied_score_is_broken_by_the_loss(tiny_model, tiny_tokenizer, row):
    pad = tiny_tokenizer.pad_token_id
    ex = _examples(tiny_tokenizer, row, 4)
    config = TrainConfig(lr=1e-2, max_steps=15, batch_size=2, eval_every=5, patience=2)
    result = training.train(tiny_model, ex, ex, config, pad, score_fn=lambda model: 0.0)
    evals = [h for h in result.history if "val_loss" in h]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]  # learning, while the score stays flat
    assert result.best_step == 15 and not result.stopped_early and result.best_val_score == 0.0


def test_a_score_that_is_not_a_number_is_refused(tiny_model, tiny_tokenizer, row):
    ex = _examples(tiny_tokenizer, row, 2)
    config = TrainConfig(max_steps=2, batch_size=2, eval_every=1)
    with pytest.raises(ValueError, match="finite number"):
        training.train(tiny_model, ex, ex, config, tiny_tokenizer.pad_token_id, score_fn=lambda model: math.nan)


def test_only_trainable_parameters_change(tiny_model, tiny_tokenizer, row):
    for name, p in tiny_model.named_parameters():
        p.requires_grad = "layers.1." in name
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    ex = _examples(tiny_tokenizer, row, 4)
    training.train(tiny_model, ex, ex, TrainConfig(lr=1e-2, max_steps=3, batch_size=2), tiny_tokenizer.pad_token_id)
    changed = {n for n, p in tiny_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n, p in tiny_model.named_parameters() if p.requires_grad}  # all of them, and only them


def test_gradient_checkpointing_gives_the_same_training(tiny_model, tiny_tokenizer, row):
    """Recomputed activations must give the same gradients: compare the weights after two
    steps and the second step's loss (the first is computed before any backward pass)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = tiny_model.config.to_dict()

    def two_steps(checkpointing: bool) -> tuple[float, dict]:
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**config))
        ex = _examples(tiny_tokenizer, row, 4)
        cfg = TrainConfig(lr=1e-2, max_steps=2, batch_size=2, gradient_checkpointing=checkpointing)
        result = training.train(model, ex, ex, cfg, tiny_tokenizer.pad_token_id)
        return result.history[1]["train_loss"], {n: p.detach() for n, p in model.named_parameters()}

    (loss_ckpt, weights_ckpt), (loss_plain, weights_plain) = two_steps(True), two_steps(False)
    assert loss_ckpt == pytest.approx(loss_plain, rel=1e-5)
    for name, weight in weights_plain.items():
        torch.testing.assert_close(weights_ckpt[name], weight, rtol=1e-5, atol=1e-6, msg=name)


def test_train_refuses_empty_or_frozen_input(tiny_model, tiny_tokenizer, row):
    ex = _examples(tiny_tokenizer, row, 2)
    pad = tiny_tokenizer.pad_token_id
    with pytest.raises(ValueError, match="No training examples"):
        training.train(tiny_model, [], ex, TrainConfig(), pad)
    with pytest.raises(ValueError, match="validation"):
        training.train(tiny_model, ex, [], TrainConfig(), pad)
    tiny_model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        training.train(tiny_model, ex, ex, TrainConfig(), pad)


def test_a_custom_loss_is_used(tiny_tokenizer, tiny_llama_factory, row):
    def halved(model, batch):
        return training.default_loss(model, batch) * 0.5

    ex = _examples(tiny_tokenizer, row, 4)
    config, pad = TrainConfig(max_steps=2, batch_size=2, eval_every=2), tiny_tokenizer.pad_token_id
    plain = training.train(tiny_llama_factory(tiny_tokenizer), ex, ex, config, pad)
    custom = training.train(tiny_llama_factory(tiny_tokenizer), ex, ex, config, pad, halved)
    # the first step runs the same initial weights (the factory seeds them): exactly half the loss
    assert custom.history[0]["train_loss"] == pytest.approx(0.5 * plain.history[0]["train_loss"], rel=1e-6)
    assert custom.best_val_loss < plain.best_val_loss  # the validation pass went through it too


def test_diverging_loss_names_the_fix(tiny_model, tiny_tokenizer, row):
    ex = _examples(tiny_tokenizer, row, 2)

    def nan_loss(model, batch):
        return training.default_loss(model, batch) * math.nan

    with pytest.raises(FloatingPointError, match="lower lr"):
        training.train(
            tiny_model, ex, ex, TrainConfig(max_steps=2, batch_size=2), tiny_tokenizer.pad_token_id, nan_loss
        )


def test_activation_memory_grows_with_batch_and_shrinks_with_checkpointing(tiny_model, tiny_tokenizer, row):
    pad = tiny_tokenizer.pad_token_id
    before = [p.clone() for p in tiny_model.parameters()]
    one = training.activation_mib(tiny_model, _examples(tiny_tokenizer, row, 1), pad)
    four = training.activation_mib(tiny_model, _examples(tiny_tokenizer, row, 4), pad)
    ckpt = training.activation_mib(tiny_model, _examples(tiny_tokenizer, row, 4), pad, gradient_checkpointing=True)
    assert 3 * one < four  # activations scale with the batch
    assert ckpt < 0.7 * four  # checkpointing keeps fewer of them
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_model.parameters(), strict=True))
    assert not tiny_model.training and tiny_model.config.use_cache


def test_activation_count_is_the_same_without_the_backward_pass(tiny_model, tiny_tokenizer, row):
    # the memory breakdown skips the backward pass: the hook only sees the forward, so the count must not move
    pad, examples = tiny_tokenizer.pad_token_id, _examples(tiny_tokenizer, row, 2)
    for ckpt in (False, True):
        both = training.activation_mib(tiny_model, examples, pad, gradient_checkpointing=ckpt)
        forward = training.activation_mib(tiny_model, examples, pad, gradient_checkpointing=ckpt, backward=False)
        assert forward == both > 0
    assert all(p.grad is None for p in tiny_model.parameters())


def test_a_forward_only_count_leaves_no_graph_behind(tiny_model, tiny_tokenizer, row):
    """Without a backward pass the forward graph must die with the call: a pack hook that kept each
    saved tensor itself held a node's own output, a cycle that leaked every activation (notebook 03's
    three seeds of four methods outgrew a 24 GiB machine)."""
    import gc

    examples = _examples(tiny_tokenizer, row, 2)
    gc.collect()
    before = sum(1 for o in gc.get_objects() if torch.is_tensor(o) and o.grad_fn is not None)
    assert training.activation_mib(tiny_model, examples, tiny_tokenizer.pad_token_id, backward=False) > 0
    gc.collect()
    after = sum(1 for o in gc.get_objects() if torch.is_tensor(o) and o.grad_fn is not None)
    assert after == before, f"{after - before} tensors of the forward graph outlived the call"


def test_memory_breakdown_counts_trainable_state_only(tiny_model, tiny_tokenizer, row):
    from slmops_helpers.models import MIB, tensor_bytes

    ex = _examples(tiny_tokenizer, row, 2)
    full = training.memory_breakdown_mib(tiny_model, ex, tiny_tokenizer.pad_token_id)
    assert full["weights"] == pytest.approx(tensor_bytes(tiny_model) / MIB)
    assert full["gradients"] == pytest.approx(sum(p.numel() * 4 for p in tiny_model.parameters()) / MIB)
    assert full["optimizer"] == pytest.approx(2 * full["gradients"]) and full["activations"] > 0
    tiny_model.requires_grad_(False)
    tiny_model.lm_head.weight.requires_grad_(True)  # tied to the embedding: one trainable matrix
    frozen = training.memory_breakdown_mib(tiny_model, ex, tiny_tokenizer.pad_token_id)
    assert frozen["weights"] == full["weights"] and frozen["gradients"] < full["gradients"]
