"""Two CPU processes (gloo, started by ``torchrun``) train exactly as one process does.

The test runs this file as the worker script: ``torchrun --nproc_per_node 2 <this file>
OUT``. Both runs use the same tiny random Llama and examples whose answers differ in
length, so that the two shards of a batch hold different numbers of label tokens: the case
where averaging the shards' mean losses would not give the batch's mean.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from slmops_helpers import models, training

STEPS, GLOBAL_BATCH, TOLERANCE = 10, 8, 1e-4


def tiny_setup() -> tuple[torch.nn.Module, list, list, training.TrainConfig]:
    """A seeded tiny Llama, 24 training and 4 validation examples of varied lengths, and the config."""
    model = models.random_llama(64, max_position_embeddings=64, pad_token_id=0, tie_word_embeddings=False)
    gen = torch.Generator().manual_seed(1)

    def example(i: int) -> dict[str, list[int]]:
        prompt, answer = 3 + i % 5, 1 + (7 * i) % 13  # answers of 1 to 13 tokens
        ids = torch.randint(1, 64, (prompt + answer,), generator=gen).tolist()
        return {"input_ids": ids, "labels": [training.IGNORE] * prompt + ids[prompt:]}

    examples = [example(i) for i in range(28)]
    config = training.TrainConfig(lr=1e-2, max_steps=STEPS, batch_size=GLOBAL_BATCH, eval_every=5, warmup_steps=2)
    return model, examples[:24], examples[24:], config


def run(out: Path) -> None:
    """Train twice; the main process writes the histories and the final weights to ``out``.

    The second run stops early on a scripted validation score: only the main process
    evaluates, so every other process must learn the decision from it, or hang.
    """
    model, train, val, config = tiny_setup()
    result = training.train(model, train, val, config, pad_id=0)
    scores = iter([1.0, 5.0, 2.0, 3.0, 9.0])
    stopping = dataclasses.replace(config, eval_every=2, patience=2)
    early = training.train(tiny_setup()[0], train, val, stopping, pad_id=0, score_fn=lambda model: next(scores))
    record = {"history": result.history, "best_step": result.best_step}
    record["early"] = {"steps": early.steps, "best_step": early.best_step, "stopped": early.stopped_early}
    record["rank"] = int(os.environ.get("RANK", 0))
    if record["rank"] == 0:
        torch.save({n: p.detach() for n, p in model.named_parameters()}, out.with_suffix(".pt"))
        out.write_text(json.dumps(record))
    else:  # what the other process decided, for the test to compare
        out.with_suffix(".rank1.json").write_text(json.dumps(record["early"]))


def test_two_processes_give_the_losses_of_one(tmp_path):
    one_out, two_out = tmp_path / "one.json", tmp_path / "two.json"
    run(one_out)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    # --standalone: a rendezvous on a free local port, so parallel test runs never collide
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", __file__, str(two_out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one, two = json.loads(one_out.read_text()), json.loads(two_out.read_text())
    assert [h["step"] for h in two["history"]] == list(range(1, STEPS + 1))
    for a, b in zip(one["history"], two["history"], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert abs(a[key] - b[key]) < TOLERANCE, (a["step"], key, a[key], b[key])
    assert one["best_step"] == two["best_step"]
    # scores 1, 5, 2, 3: the best at step 4, two evaluations without a better one, stop at step 8
    assert one["early"] == two["early"] == {"steps": 8, "best_step": 4, "stopped": True}
    assert json.loads(two_out.with_suffix(".rank1.json").read_text()) == two["early"]
    weights_one, weights_two = torch.load(one_out.with_suffix(".pt")), torch.load(two_out.with_suffix(".pt"))
    for name, weight in weights_one.items():
        torch.testing.assert_close(weights_two[name], weight, rtol=0, atol=TOLERANCE, msg=name)
    print(f"2 processes: {time.perf_counter() - start:.1f} s; max loss difference ", end="")
    print(max(abs(a["train_loss"] - b["train_loss"]) for a, b in zip(one["history"], two["history"], strict=True)))


if __name__ == "__main__":  # the worker, one per process under torchrun
    torch.set_num_threads(1)
    run(Path(sys.argv[1]))
