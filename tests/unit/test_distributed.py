"""The multi-process plumbing, in one process: how a global batch is shared out, the checks a
bad launch must fail with before any work, and the training knobs that came with accelerate.
(``test_distributed_two_processes`` runs the real thing on two processes.)"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from slmops_helpers import distributed, training
from slmops_helpers.training import IGNORE, TrainConfig

ROW = {"message": "my hub is offline", "category": "wifi", "error_code": "none", "reply": "reset the hub."}


def _example(answer: int, prompt: int = 3) -> dict[str, list[int]]:
    ids = list(range(5, 5 + prompt + answer))
    return {"input_ids": ids, "labels": [IGNORE] * prompt + ids[prompt:]}


def test_label_tokens_follow_the_one_token_shift():
    assert distributed.label_tokens(_example(4)) == 4
    assert distributed.label_tokens({"input_ids": [1, 2], "labels": [2, 3]}) == 1  # the first label predicts nothing


def test_shards_cover_the_batch_and_their_weights_give_the_token_mean():
    """Four examples of 1, 2, 3 and 10 answer tokens on 2 processes: the weighted shard means,
    averaged as DDP averages gradients, are the batch's token mean; the plain mean is not."""
    batch = [_example(n) for n in (1, 2, 3, 10)]
    shards = [distributed.shard_batch(batch, rank, 2)[0] for rank in range(2)]
    assert sorted(map(id, shards[0][0] + shards[1][0])) == sorted(map(id, batch))
    token_losses = {id(e): torch.arange(distributed.label_tokens(e), dtype=torch.float64) for e in batch}
    shard_mean = [torch.cat([token_losses[id(e)] for e in shard]).mean() for shard, _ in shards]
    exact = torch.cat(list(token_losses.values())).mean()
    weighted = sum(w * m for (_, w), m in zip(shards, shard_mean, strict=True)) / 2
    assert float(weighted) == pytest.approx(float(exact), rel=1e-12)
    assert abs(float(sum(shard_mean) / 2) - float(exact)) > 0.5  # why the weights are needed


def test_one_process_gets_the_whole_batch_with_weight_one():
    batch = [_example(n) for n in (1, 2, 3)]
    assert distributed.shard_batch(batch, 0, 1) == [(batch, 1.0)]
    micro = distributed.shard_batch(batch + [_example(5)], 0, 1, accumulation=2)
    assert [len(m) for m, _ in micro] == [2, 2] and sum(w for _, w in micro) == pytest.approx(1.0)


def test_a_batch_smaller_than_the_shards_names_the_fix():
    with pytest.raises(ValueError, match="fewer processes"):
        distributed.shard_batch([_example(1)], 0, 2)


def test_a_batch_that_does_not_split_names_the_fix():
    with pytest.raises(ValueError, match=r"multiple of 3.*launch \[1, 2, 4, 8\] processes"):
        distributed.check_batch(8, 3)
    with pytest.raises(ValueError, match="gradient_accumulation|accumulation"):
        TrainConfig(batch_size=8, gradient_accumulation_steps=3)
    distributed.check_batch(8, 2, 2)  # 2 processes x 2 micro-batches of 2


def test_more_gpu_processes_than_gpus_is_refused(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"4 processes.*2 GPU.*--num_processes 2"):
        distributed.check_devices(use_gpu=True)


def test_more_cpu_processes_than_cores_warns_but_runs(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 2)
    with pytest.warns(UserWarning, match="4 CPU processes share 2 cores"):
        distributed.check_devices(use_gpu=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    distributed.check_devices(use_gpu=False)  # as many as cores: silent


def test_mixed_precision_is_checked(monkeypatch):
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"needs the model on a CUDA GPU.*Fix: set mixed_precision=None"):
        distributed.check_mixed_precision("bf16", "cpu")
    distributed.check_mixed_precision(None, "cpu")


def test_train_refuses_mixed_precision_on_cpu_before_any_step(tiny_model, tiny_tokenizer):
    ex = [training.encode_example(tiny_tokenizer, ROW, 128)] * 2
    before = [p.clone() for p in tiny_model.parameters()]
    with pytest.raises(ValueError, match="CUDA GPU"):
        training.train(
            tiny_model, ex, ex, TrainConfig(batch_size=2, mixed_precision="bf16"), tiny_tokenizer.pad_token_id
        )
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_model.parameters(), strict=True))


def test_train_refuses_a_global_batch_that_the_processes_cannot_split(monkeypatch, tiny_model, tiny_tokenizer):
    monkeypatch.setenv("WORLD_SIZE", "3")  # as torchrun would set it; nothing is started before the check
    ex = [training.encode_example(tiny_tokenizer, ROW, 128)] * 8
    with pytest.raises(ValueError, match="multiple of 3"):
        training.train(tiny_model, ex, ex, TrainConfig(batch_size=8), tiny_tokenizer.pad_token_id)


def test_gradient_accumulation_gives_the_same_training(tiny_tokenizer, tiny_llama_factory):
    """A batch of 8 learned from in 4 micro-batches of 2: the same losses as in one piece."""
    replies = ["reset the hub.", "help", "the hub is not offline , reset it .", "your app is offline"]
    rows = [ROW | {"message": ROW["message"] + " it" * i, "reply": replies[i % 4]} for i in range(8)]
    ex = [training.encode_example(tiny_tokenizer, r, 128) for r in rows]
    runs = []
    for steps in (1, 4):
        config = TrainConfig(lr=1e-2, max_steps=6, batch_size=8, eval_every=3, gradient_accumulation_steps=steps)
        runs.append(training.train(tiny_llama_factory(tiny_tokenizer), ex, ex[:2], config, tiny_tokenizer.pad_token_id))
    for a, b in zip(runs[0].history, runs[1].history, strict=True):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-5) for k in a)
    assert runs[0].history[-1]["train_loss"] < runs[0].history[0]["train_loss"]  # it did learn


def test_cache_keys_do_not_change_with_the_new_defaults():
    """A model cached before accumulation and mixed precision existed is still found: at their
    defaults they are not part of the key; set, they are."""
    config = TrainConfig(lr=1e-3, max_steps=32, batch_size=8, eval_every=8)
    new = {"gradient_accumulation_steps", "mixed_precision"}
    assert config.as_key() == {k: v for k, v in dataclasses.asdict(config).items() if k not in new}
    assert dataclasses.replace(config, gradient_accumulation_steps=2).as_key()["gradient_accumulation_steps"] == 2


def test_one_process_is_the_main_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.world_size() == 1 and distributed.is_main_process()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.world_size() == 2 and not distributed.is_main_process()


@pytest.mark.parametrize("rank", ["0", "1"])
def test_only_the_main_process_writes_the_tuned_model(monkeypatch, tmp_path, tiny_source, rank):
    """Every process trains the tuned model; only rank 0 writes the cache (others would race it)."""
    from slmops_helpers import finetune
    from slmops_helpers.models import is_prepared

    monkeypatch.setattr(finetune.tuned.data, "load_splits", lambda: {"train": [ROW] * 4, "validation": [ROW] * 2})
    monkeypatch.setenv("SLMOPS_CACHE", str(tmp_path))
    monkeypatch.setenv("RANK", rank)  # as torchrun sets it; one process here, so the barrier returns at once
    config = TrainConfig(lr=1e-3, max_steps=1, batch_size=2, eval_every=1, max_length=128)
    recipe = dataclasses.replace(finetune.TUNED_CONFIG, config=config)
    folder = finetune.prepare_tuned_model(str(tiny_source), recipe, device="cpu")
    assert folder.parent == tmp_path / "tuned" and is_prepared(folder) == (rank == "0")
