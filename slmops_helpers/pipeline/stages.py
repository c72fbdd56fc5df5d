"""The capstone's release pipeline (notebook 05): one new model version taken from training
data to a fleet, built from the sections' own helpers.

distill (section 2's cached teacher answers) → fine-tune (LoRA, merged; section 3) →
export + package (section 4) → measure → register (``registry``) → gate (``gate``) →
staged rollout (``rollout``) → feedback for the next round. Each function below is one
step; the notebook calls them in order and shows what each one decided.

>>> prod = find_production()                                   # doctest: +SKIP
>>> settings = bench.course_settings(prod.source, "smoke", test_rows)   # doctest: +SKIP
>>> table = measure_packages({"production": prod.package}, settings, test_rows)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import data, finetune, training
from .._io import atomic_directory, atomic_write_text
from ..config import artifacts_dir
from ..deploy import bench, export
from ..deploy.bench import summarize
from ..deploy.package import PackageError, verify_package
from ..deploy.runtime import OnnxCausalLM
from ..deploy.steps import PACKAGE_NAME as PACKAGE_NAME  # re-exported: section 4 packages what section 5 releases
from ..distill import TeacherOutputs, entry_path, read_entry, teacher_cache_dir
from ..fleet import Variant

# The benchmark columns the gate may check (notebooks/configs/gate.yaml): same names in both.
GATE_KEYS = ("score", "size_mib", "ms_per_token_p50", "ms_per_token_p95", "tok_s", "ttft_ms", "peak_mib", "agreement")


# --- what runs in production now ----------------------------------------------------------


@dataclass(frozen=True)
class Production:
    """The release in production: its package (None until one is built) and its PyTorch source."""

    package: Path | None
    source: Path  # the model folder the package was exported from: the next round trains from it
    label: str  # which model that is, in words
    manifest: dict[str, Any] | None = None


def find_production(output_dir: str | Path | None = None, deploy_from: str | Path | None = None) -> Production:
    """Section 4's package and the model folder it came from, or what section 4 would deploy.

    The package (``artifacts/04_deployment/package``) counts only if it verifies and one of
    the course's model folders has the source fingerprint its manifest records; otherwise
    the result names ``export.deploy_source``'s folder with ``package=None`` (build it). The
    folders tried are ``export.deploy_candidates``: the same list section 4 chose from.
    """

    package = artifacts_dir(output_dir) / "04_deployment" / "package"
    if deploy_from is None and (package / "manifest.json").is_file():
        try:
            manifest = verify_package(package)
        except PackageError:
            manifest = None
        wanted = (manifest or {}).get("lineage", {}).get("source_fingerprint")
        for folder in (c.source for c in export.deploy_candidates(output_dir=output_dir)):
            try:
                if wanted and export.source_fingerprint(folder) == wanted:
                    label = manifest["lineage"].get("deployed_from", str(folder))
                    return Production(package, folder, label, manifest)
            except FileNotFoundError:
                continue
    source, label = export.deploy_source(deploy_from)
    return Production(None, Path(source), label, None)


# --- distill: section 2's teacher answers, from its cache ---------------------------------


def cached_teacher_outputs(
    teacher: Any, prompts: list[str], max_new_tokens: int, cache_root: Path | None = None
) -> Any:
    """Section 2's cached teacher answers to ``prompts``, or None unless every one is cached.

    Read-only: it never generates (answering 40 prompts takes minutes on a CPU), so a
    pipeline can use the teacher's data when notebook 02 made it and skip it otherwise.
    Same cache key as ``distill.generate_teacher_outputs``: the teacher's weights and the
    generation settings.
    """

    if not prompts:
        raise ValueError("No prompts given: pass the training prompts the teacher answered.")
    folder = teacher_cache_dir(teacher, {"max_new_tokens": max_new_tokens, "do_sample": False}, cache_root)
    entries = [read_entry(entry_path(folder, p), p) for p in prompts]
    if any(e is None for e in entries):
        return None
    return TeacherOutputs([e["text"] for e in entries], [e["finished"] for e in entries], len(entries), 0, 0, folder)


# --- fine-tune: LoRA on the production model, merged ----------------------------------------


def fine_tune_and_merge(
    model: Any, tokenizer: Any, spec: Any, config: Any, train_examples: list, val_examples: list, parity_rows: list
) -> tuple[Any, Any, Any]:
    """LoRA (or any ``MethodConfig``) on ``model``, then merged: (plain model, TrainResult, ``MergeParity``)."""

    trainable = finetune.make_trainable(model, spec)
    result = training.train(trainable, train_examples, val_examples, config, tokenizer.pad_token_id, desc="candidate")
    ids = tokenizer([data.format_chat(tokenizer, r) for r in parity_rows], return_tensors="pt", padding=True)
    device = next(model.parameters()).device
    merged, parity = finetune.merge_with_parity(trainable, ids.input_ids.to(device), ids.attention_mask.to(device))
    return merged, result, parity


def save_model(model: Any, tokenizer: Any, folder: str | Path) -> Path:
    """Save a model and its tokenizer as one plain transformers folder, atomically."""
    with atomic_directory(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(folder)


# --- package ---------------------------------------------------------------------------------


def copy_package(package: str | Path, dest: str | Path) -> Path:
    """Verify ``package``, copy it to ``dest`` atomically, verify the copy.

    A registry entry must point at files nobody overwrites: re-running notebook 04b
    rewrites its package, but not this copy.
    """

    verify_package(Path(package))
    with atomic_directory(dest) as tmp:
        for path in Path(package).iterdir():
            shutil.copy2(path, tmp / path.name)
    verify_package(Path(dest))
    return Path(dest)


# --- measure ---------------------------------------------------------------------------------


def measure_packages(
    packages: dict[str, Path], settings: Any, rows: list[dict[str, str]], speed_rounds: int = 10
) -> list[dict[str, Any]]:
    """Benchmark packages side by side: one table row each (section 4's columns).

    ``settings`` (``bench.course_settings``) holds the prompts of ``rows``, the held-out
    tickets the task score is computed on. Quality, size and peak memory come from one
    run per package in a fresh process (``bench.bench_variants``; the first package is the
    reference for ``agreement``). The speed columns come from ``interleaved_speed``: a gate
    that compares latencies must compare the packages, not the moments they ran at.
    """

    if not packages:
        raise ValueError("No packages to measure.")
    if speed_rounds < 1:
        raise ValueError(f"speed_rounds must be >= 1, got {speed_rounds}.")
    once = dataclasses.replace(settings, repeats=1)  # its speed runs are superseded below
    table, _ = bench.bench_variants({name: ("onnx", Path(p)) for name, p in packages.items()}, once, rows)
    speed = interleaved_speed(packages, settings.timing_prompt, settings.timing_tokens, speed_rounds)
    for row in table:
        row.update({k: speed[row["variant"]][k] for k in SPEED_KEYS})
    return table


SPEED_KEYS = ("ttft_ms", "ms_per_token_p50", "ms_per_token_p95", "tok_s")


def interleaved_speed(packages: dict[str, Path], prompt: str, tokens: int, rounds: int) -> dict[str, dict[str, float]]:
    """Speed of each package measured in turns, in this process: A, B, C, A, B, C, ...

    Each package generates ``tokens`` tokens from ``prompt`` (no early stop, so every run
    does the same work) once to warm up, then ``rounds`` times; the runs of different
    packages alternate, so whatever else the machine does meanwhile slows them alike.
    Returns ``bench.summarize``'s speed figures per package.
    """

    if rounds < 1 or tokens < 2:
        raise ValueError(f"Need rounds >= 1 and tokens >= 2, got rounds={rounds}, tokens={tokens}.")
    models = {name: OnnxCausalLM(folder) for name, folder in packages.items()}
    ids = {name: lm.encode(prompt) for name, lm in models.items()}
    runs: dict[str, list[list[float]]] = {name: [] for name in models}
    for round_ in range(rounds + 1):
        for name, lm in models.items():
            times = [t.seconds for t in lm.stream(ids[name], tokens, stop_at_eos=False)]
            if round_:  # round 0 warms up: first runs allocate buffers
                runs[name].append(times)
    return {name: summarize({"load_s": 0.0, "runs_s": r, "peak_mib": 0.0}) for name, r in runs.items()}


def gate_metrics(row: dict[str, Any]) -> dict[str, float]:
    """A benchmark row under the gate's metric names (``score``, ``size_mib``, ...)."""
    missing = [key for key in GATE_KEYS if key not in row]
    if missing:
        raise ValueError(f"Benchmark row lacks {missing}. Fix: pass a row of measure_packages / bench_variants.")
    return {key: float(row[key]) for key in GATE_KEYS}


# --- roll out ----------------------------------------------------------------------------------


def rollout_variants(table: list[dict[str, Any]], shippable: dict[str, bool]) -> list[Variant]:
    """The builds the fleet may receive, as measured (``fleet.Variant``, named by build).

    ``shippable`` maps each build of the release to whether it passed the quality gate
    (``steps.shippable_builds``); only those that did are offered, so a device that none
    of them fits stays unserved (``fleet.pick_variants`` returns -1) rather than receiving a
    refused build. Every number is this round's own measurement of that build.
    """
    rows = {row["variant"]: row for row in table}
    unknown = sorted(set(shippable) - set(rows))
    if unknown:
        raise ValueError(f"No measurement of build(s) {unknown}; measured: {sorted(rows)}. Fix: measure them first.")
    fields = [f.name for f in dataclasses.fields(Variant) if f.name != "name"]
    offered = [Variant(name, **{f: rows[name][f] for f in fields}) for name, ok in shippable.items() if ok]
    if not offered:
        raise ValueError("No build of this release passed the gate: there is nothing to roll out.")
    return offered


def write_feedback(records: list[dict[str, Any]], path: str | Path) -> Path:
    """The feedback set as JSON lines (one flagged answer per line), written atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    return atomic_write_text(path, text)


def read_feedback(path: str | Path) -> list[dict[str, Any]]:
    """The records ``write_feedback`` wrote."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def feedback_summary(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts of flagged answers by kind, by device class and by stage, most frequent first."""
    summary: dict[str, dict[str, int]] = {"kind": {}, "device_class": {}, "stage": {}}
    for record in records:
        for key, counts in summary.items():
            counts[record[key]] = counts.get(record[key], 0) + 1
    return {key: dict(sorted(counts.items(), key=lambda kv: -kv[1])) for key, counts in summary.items()}
