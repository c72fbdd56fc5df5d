"""Benchmark every variant side by side: size, load time, time to first token, ms per
token (p50/p95), tokens/s, peak RSS and quality, in one run.

Each variant runs in a fresh Python process (``python -m slmops_helpers.deploy.bench``),
so its peak RSS is its own and not the notebook's: what a device would need to run it.
The ONNX and llama.cpp processes never import torch; the torch-eager one does, as a
deployment would.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..config import get_profile
from ..data import format_chat, load_splits, score_predictions
from ..decoding import TimedGeneration, speed_summary
from ..models import files_mib, noise_bound, peak_rss_mib
from ..uncertainty import TicketScores, interval_metrics
from . import llamacpp
from .export import onnx_files_mib
from .runtime import GenaiLM, OnnxCausalLM, TorchCausalLM

TORCH_VARIANT = "torch_fp32"
TABLE_KEYS = (
    "size_mib",
    "load_s",
    "ttft_ms",
    "ms_per_token_p50",
    "ms_per_token_p95",
    "tok_s",
    "peak_mib",
    "agreement",
    "score",
)


@dataclass(frozen=True)
class BenchConfig:
    """What every variant is asked to do."""

    prompts: list[str]  # chat-formatted prompts to answer (quality)
    max_new_tokens: int  # per answer
    timing_prompt: str  # the prompt of the speed runs
    timing_tokens: int  # tokens per speed run (no early stop: same work for every variant)
    repeats: int  # speed runs, pooled for p50/p95

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "timing_tokens", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"BenchConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.timing_tokens < 2:
            raise ValueError("BenchConfig.timing_tokens must be >= 2: the first token only measures the prompt.")


# torch eager, our onnxruntime loop, onnxruntime-genai's generator, llama.cpp
RUNTIMES = {"torch": TorchCausalLM, "onnx": OnnxCausalLM, "genai": GenaiLM, "gguf": llamacpp.LlamaCppLM}


def load_runtime(kind: str, folder: str | Path) -> Any:
    if kind not in RUNTIMES:
        raise ValueError(f"Unknown runtime {kind!r}; use one of {list(RUNTIMES)}.")
    return RUNTIMES[kind](folder)


def variant_mib(kind: str, folder: str | Path) -> float:
    """What a variant weighs on disk: the files its runtime loads."""
    if kind in ("onnx", "genai"):
        return onnx_files_mib(Path(folder))
    if kind == "gguf":
        return llamacpp.gguf_mib(Path(folder))
    return files_mib(Path(folder), "*.safetensors")


def measure(kind: str, folder: str | Path, settings: BenchConfig) -> dict[str, Any]:
    """Load one variant and run the settings' work in this process; raw timings and answers."""
    start = time.perf_counter()
    lm = load_runtime(kind, folder)
    load_s = time.perf_counter() - start
    timing_ids = lm.encode(settings.timing_prompt)
    runs = []
    for _ in range(settings.repeats):
        runs.append([t.seconds for t in lm.stream(timing_ids, settings.timing_tokens, stop_at_eos=False)])
    answers = []
    for prompt in settings.prompts:
        answers.append([t.id for t in lm.stream(lm.encode(prompt), settings.max_new_tokens)])
    return {
        "load_s": load_s,
        "runs_s": runs,
        "token_ids": answers,
        "answers": [lm.decode(ids) for ids in answers],
        "peak_mib": peak_rss_mib(),
    }


def measure_isolated(kind: str, folder: str | Path, settings: BenchConfig, timeout_s: int = 1800) -> dict[str, Any]:
    """``measure`` in a fresh process, so peak memory is the variant's own."""
    command = [sys.executable, "-m", "slmops_helpers.deploy.bench", "--measure", kind, str(folder)]
    done = subprocess.run(
        command, input=json.dumps(asdict(settings)), capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        raise RuntimeError(f"Benchmark of {folder} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def prefix_agreement(candidate: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> float:
    """Share of the reference's greedy tokens a candidate reproduces before it first
    diverges, averaged over prompts (1.0 = identical answers)."""
    if len(candidate) != len(reference) or not reference:
        raise ValueError(f"Need one answer per reference answer; got {len(candidate)} for {len(reference)}.")
    shares = []
    for cand, ref in zip(candidate, reference, strict=True):
        same = next((i for i, (a, b) in enumerate(zip(cand, ref, strict=False)) if a != b), min(len(cand), len(ref)))
        shares.append(same / len(ref) if ref else float(not cand))
    return sum(shares) / len(shares)


@dataclass(frozen=True)
class LogitParity:
    """Does an exported model compute what the PyTorch model computes? Bounds that hold on
    any CPU: a fixed absolute bound on float32 logits depends on the machine's kernels."""

    max_abs_diff: float  # candidate vs reference logits, every position of prompt + answer
    noise: float  # the reference in float32 against its float64 twin, same positions
    flips: int  # positions whose argmax differs though the reference's top two are 2 x bound apart
    positions: int
    logit_scale: float
    reference_answers: tuple[tuple[int, ...], ...]  # the reference's greedy tokens, one answer per prompt

    @property
    def bound(self) -> float:
        return noise_bound(self.noise, self.logit_scale)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.bound and self.flips == 0


def logit_parity(reference: Any, candidate: Any, prompts: list[str], new_tokens: int) -> LogitParity:
    """Compare ``candidate`` (any runtime with ``encode``/``logits``) with ``reference`` (a
    ``TorchCausalLM``) on each prompt followed by the reference's own greedy answer (kept in
    ``reference_answers``, e.g. for ``prefix_agreement``).

    A next-token choice may differ only where the reference's top two logits lie within
    twice the bound of each other: a tie that rounding can break either way.
    """
    import copy

    import numpy as np
    import torch

    twin = copy.deepcopy(reference.model).double()
    diff = noise = scale = 0.0
    margins, differs, answers = [], [], []
    for prompt in prompts:
        ids = reference.encode(prompt)
        if ids != candidate.encode(prompt):
            raise ValueError(f"The two runtimes tokenize {prompt[:40]!r}... differently: compare their tokenizers.")
        answers.append(tuple(t.id for t in reference.stream(ids, new_tokens)))
        ids += answers[-1]
        ref, cand = reference.logits(ids), candidate.logits(ids)
        with torch.inference_mode():
            exact = twin(torch.tensor([ids], device=reference.device)).logits[0].cpu().numpy()
        top2 = np.sort(ref, axis=1)[:, -2:]
        margins.append(top2[:, 1] - top2[:, 0])
        differs.append(ref.argmax(axis=1) != cand.argmax(axis=1))
        diff, noise = max(diff, float(np.abs(ref - cand).max())), max(noise, float(np.abs(ref - exact).max()))
        scale = max(scale, float(np.abs(exact).max()))
    parity = LogitParity(diff, noise, 0, sum(len(m) for m in margins), scale, tuple(answers))
    untied = np.concatenate(margins) > 2 * parity.bound
    return replace(parity, flips=int((untied & np.concatenate(differs)).sum()))


def summarize(raw: dict[str, Any]) -> dict[str, float]:
    """Speed figures from raw per-token timings (first token of each run = TTFT)."""

    runs = [TimedGeneration("", len(run), run[0], run[1:]) for run in raw["runs_s"]]
    return {"load_s": raw["load_s"], **speed_summary(runs), "peak_mib": raw["peak_mib"]}


def bench_variants(
    variants: dict[str, tuple[str, Path]], settings: BenchConfig, rows: list[dict[str, str]]
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Benchmark ``{name: (runtime kind, folder)}``; return table rows and each variant's answers.

    The first variant is the reference for ``agreement`` (torch fp32 in the course).
    ``rows`` are the dataset rows behind ``settings.prompts``, for the task score; each row
    also keeps its per-ticket scores (``tickets``) and their interval (``score_ci_*``).
    """
    from tqdm.auto import tqdm

    table, answers, reference = [], {}, None
    for name, (kind, folder) in (bar := tqdm(variants.items(), desc="benchmark", unit="variant")):
        bar.set_postfix_str(name)
        raw = measure_isolated(kind, folder, settings)
        reference = reference or raw["token_ids"]
        tickets = TicketScores.from_answers(raw["answers"], rows)
        table.append(
            {
                "variant": name,
                "size_mib": variant_mib(kind, folder),
                **summarize(raw),
                "agreement": prefix_agreement(raw["token_ids"], reference),
                "score": score_predictions(raw["answers"], rows)["score"],
                **interval_metrics("", tickets),
                "tickets": tickets,
            }
        )
        answers[name] = raw["answers"]
    return table, answers


INTERVAL_KEYS = ("score_ci_low", "score_ci_high")


def flat_metrics(table: list[dict[str, Any]]) -> dict[str, float]:
    """``<variant>_<key>`` for the metrics contract (with the score's interval where measured)."""
    keys = TABLE_KEYS + INTERVAL_KEYS
    return {f"{row['variant']}_{key}": row[key] for row in table for key in keys if key in row}


def format_table(table: list[dict[str, Any]]) -> str:
    header = f"{'variant':<12}" + "".join(f"{k:>18}" for k in TABLE_KEYS)
    lines = [header] + [f"{r['variant']:<12}" + "".join(f"{r[k]:>18.2f}" for k in TABLE_KEYS) for r in table]
    return "\n".join(lines)


def course_settings(source: Path, profile: str, rows: list[dict[str, str]]) -> BenchConfig:
    """The profile's benchmark sizes, with the held-out tickets in the model's chat format."""
    from transformers import AutoTokenizer

    sizes, tokenizer = get_profile(profile), AutoTokenizer.from_pretrained(source)
    prompts = [format_chat(tokenizer, row) for row in rows]
    return BenchConfig(prompts, sizes.max_new_tokens, prompts[0], sizes.timing_tokens, sizes.timing_repeats)


GENAI_VARIANT = "genai_int4"  # onnxruntime-genai's generator over the int4 export


def course_variants(
    source: Path, onnx_dirs: dict[str, Path], gguf_dirs: dict[str, Path]
) -> dict[str, tuple[str, Path]]:
    """The benchmark's rows, ``{name: (runtime kind, folder)}``: torch eager first (the
    reference for agreement), the ONNX exports under our loop, the int4 export under
    onnxruntime-genai, then llama.cpp's GGUF files."""
    folders = {TORCH_VARIANT: ("torch", Path(source))} | {name: ("onnx", d) for name, d in onnx_dirs.items()}
    if "onnx_int4" in onnx_dirs:
        folders[GENAI_VARIANT] = ("genai", onnx_dirs["onnx_int4"])
    return folders | {name: ("gguf", d) for name, d in gguf_dirs.items()}


def run_benchmark(
    source: Path, profile: str, onnx_dirs: dict[str, Path], gguf_dirs: dict[str, Path]
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Benchmark the built variants of the model folder ``source`` beside torch eager, on the
    profile's validation tickets (``slmops bench``: comparing recipes is a choice)."""

    rows = list(load_splits()["validation"])[: get_profile(profile).n_eval]
    return bench_variants(course_variants(source, onnx_dirs, gguf_dirs), course_settings(source, profile, rows), rows)


def _child_main(kind: str, folder: str) -> None:
    settings = BenchConfig(**json.loads(sys.stdin.read()))
    print(json.dumps(measure(kind, folder, settings)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="internal: measure one variant in this process")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "FOLDER"), required=True)
    _child_main(*parser.parse_args().measure)
