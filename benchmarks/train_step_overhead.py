"""What running ``training.train`` through accelerate costs per step on one CPU process (target: < 5 %).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_step_overhead.py [--rounds 7] [--steps 20]

A: ``training.train`` (Accelerator, the LossModule wrapper, shard weights, the accelerate
optimizer/scheduler wrappers). B: the plain loop it replaced, kept below step for step
(collate, loss, backward, clip, AdamW, schedule, progress bar, memory sampler). Both train
the same seeded model (Llama, hidden 256, 4 blocks, vocabulary 4,096: 4.0 M parameters)
on batches of 8 x 48-78 tokens; rounds
alternate A, B and B, A so that a machine getting busier or idler moves both. Prints the
median seconds per step of each, their ratio, and the one-off set-up of an Accelerator;
exits 1 if the median ratio exceeds 1.05. A benchmark, not a unit test: run it on an idle
machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import torch
from tqdm.auto import tqdm

from slmops_helpers import training
from slmops_helpers.models import PeakMemory, random_llama
from slmops_helpers.training import IGNORE, TrainConfig, collate

TARGET_RATIO = 1.05


def setup(steps: int) -> tuple[torch.nn.Module, list, TrainConfig]:
    model = random_llama(
        4096, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
        pad_token_id=0,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(1)
    examples = []
    for i in range(64):
        prompt, answer = 32 + i % 17, 16 + (5 * i) % 15
        ids = torch.randint(1, 4096, (prompt + answer,), generator=gen).tolist()
        examples.append({"input_ids": ids, "labels": [IGNORE] * prompt + ids[prompt:]})
    config = TrainConfig(lr=1e-3, max_steps=steps, batch_size=8, eval_every=steps)
    return model, examples, config


def plain_loop(model: torch.nn.Module, examples: list, config: TrainConfig) -> float:
    """The loop before accelerate, minus evaluation: seconds per step."""
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(config.warmup_steps, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (config.max_steps - s) / max(config.max_steps - warmup, 1)))
    )
    model.train()
    batches = training._batches(examples, config.batch_size, rng)
    start = time.perf_counter()
    with PeakMemory("cpu"):  # as the old loop did: its sampling thread runs during the steps
        for step in tqdm(range(1, config.max_steps + 1), desc="plain", unit="step"):
            batch = collate(next(batches), 0)
            loss = training.default_loss(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss {float(loss)} at step {step}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            float(loss.detach())
    return (time.perf_counter() - start) / config.max_steps


def accelerate_loop(model: torch.nn.Module, examples: list, config: TrainConfig) -> float:
    return training.train(model, examples, examples[:2], config, pad_id=0, desc="accelerate").s_per_step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    runs = {"accelerate": accelerate_loop, "plain": plain_loop}
    times: dict[str, list[float]] = {name: [] for name in runs}
    setup(args.steps)  # warm-up: imports, allocator, first kernels
    accelerate_loop(*setup(3))
    for r in range(args.rounds):
        for name in ("accelerate", "plain") if r % 2 == 0 else ("plain", "accelerate"):
            times[name].append(runs[name](*setup(args.steps)))
    start = time.perf_counter()
    from slmops_helpers import distributed

    for _ in range(5):
        distributed.make_accelerator("cpu", None)
    setup_ms = (time.perf_counter() - start) / 5 * 1000
    ratios = [a / b for a, b in zip(times["accelerate"], times["plain"], strict=True)]
    for name, values in times.items():
        each = ", ".join(f"{v * 1000:.1f}" for v in values)
        print(f"{name:<11} median {statistics.median(values) * 1000:7.1f} ms/step  ({each})")
    ratio = statistics.median(ratios)
    print(f"ratio accelerate / plain: median {ratio:.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
    print(f"one Accelerator set-up per train call: {setup_ms:.1f} ms; torch threads {torch.get_num_threads()}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
