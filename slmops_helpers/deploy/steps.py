"""Notebook 04's steps, each a call that returns what it measured as metric keys.

The notebook stays prose with short calls; what each step does (and the lineage a
package records) is written once here and tested.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import data
from ..data import refuse_test_rows, require_test_rows
from ..decoding import divergence_margin
from ..uncertainty import TicketScores, difference_metrics, drop_upper_bound, interval_metrics
from . import bench, checklist, client, export, llamacpp, package, quant_study
from .runtime import GenaiLM, OnnxCausalLM, TorchCausalLM

PACKAGE_NAME = "kestrel-k2-assistant"


def parity_metrics(torch_lm: TorchCausalLM, onnx_lm: OnnxCausalLM, prompts: list[str], new_tokens: int = 24):
    """Logit parity of the export against PyTorch, and how much of the greedy answers agree."""
    parity = bench.logit_parity(torch_lm, onnx_lm, prompts, new_tokens=new_tokens)
    greedy = [[t.id for t in onnx_lm.stream(onnx_lm.encode(p), new_tokens)] for p in prompts]
    return parity, {
        "onnx_max_abs_diff": parity.max_abs_diff,
        "onnx_parity_noise": parity.noise,
        "onnx_parity_bound": parity.bound,
        "onnx_argmax_flips": parity.flips,
        "onnx_greedy_agreement": bench.prefix_agreement(greedy, parity.reference_answers),
    }


def build_course_exports(source: Path) -> dict[str, Path]:
    """Every export notebook 04 makes of the model folder ``source`` (cached): section 4.3's recipes, the
    variants it benchmarks and, where llama.cpp is installed, the GGUF files. ``slmops prepare --exports``
    runs it at setup, so that the notebook's first run finds them built (on a 2-core CPU they take minutes)."""
    from tqdm.auto import tqdm

    levers = quant_study.levers_for(True, llamacpp.availability()[0])
    folders = {
        name: export.build_recipe(source, r) for name, r in tqdm(export.RECIPES.items(), desc="ONNX", unit="export")
    }
    folders |= llamacpp.build_all(source) if llamacpp.availability()[0] else {}
    return folders | {
        lever.name: quant_study.build(source, lever) for lever in tqdm(levers, desc="study", unit="export")
    }


def size_metrics(variant_dirs: dict[str, Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What every variant's bytes are (for the plot) and each one's size against fp32."""
    breakdown = [{"variant": name, **export.size_breakdown(folder)} for name, folder in variant_dirs.items()]
    fp32 = export.onnx_files_mib(variant_dirs["onnx_fp32"])
    out = {f"{name}_ratio": export.onnx_files_mib(folder) / fp32 for name, folder in variant_dirs.items()}
    int4 = next(r for r in breakdown if r["variant"] == "onnx_int4")
    out |= {
        "int4_reduction_pct": 100 * (1 - out["onnx_int4_ratio"]),
        "int4_scales_mib": int4["scales_mib"],
        "int4_float_mib": int4["float_mib"],
    }
    return breakdown, out


@dataclass(frozen=True)
class QualityGate:
    """Section 4's gate over the benchmark: how far below fp32 each variant may be (the one-sided
    upper bound of its drop, in points) and whether that is within the margin. Decisions read this;
    ``metrics()`` flattens it once, for the metrics file and the readings."""

    margin: float
    drop_bounds: dict[str, float]  # variant -> upper bound of its drop below the fp32 export
    differences: dict[str, Any]  # each smaller precision's paired difference from fp32, as metric keys

    def passed(self, variant: str) -> bool:
        return variant in self.drop_bounds and self.drop_bounds[variant] <= self.margin + 1e-9

    def smallest_passing(self, order: tuple[str, ...]) -> str | None:
        """The first variant of ``order`` (smallest first) that ran and passed."""
        return next((v for v in order if self.passed(v)), None)

    def figures(self, variant: str) -> dict[str, Any]:
        """The gate's verdict on one variant, under the names a package's lineage records."""
        return {"drop_bound_points": self.drop_bounds[variant], "quality_ok": self.passed(variant)}

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"quality_margin_points": self.margin, "quality_choice_split": "validation"}
        for variant in self.drop_bounds:
            out |= {f"{variant}_{key}": value for key, value in self.figures(variant).items()}
        return out | self.differences


def quality_gate(
    table: list[dict[str, Any]], rows: list[dict[str, str]], margin: float, significance: float
) -> QualityGate:
    """Which variants may ship: the course gate's non-inferiority score rule (``gate.score_rule``),
    each variant paired against the fp32 export on the benchmark's ``rows``, which must be
    validation tickets (this is a choice; test rows are refused).

    A variant passes when the one-sided ``1 - significance`` upper bound of its drop below fp32
    is at most ``margin`` points. Each smaller precision's paired difference
    (``<precision>_vs_fp32_score_diff``) comes along."""
    refuse_test_rows(rows, "Choosing which precision to ship")
    by_name = {r["variant"]: r for r in table}
    reference = by_name["onnx_fp32"]["tickets"]
    bounds = {r["variant"]: drop_upper_bound(r["tickets"], reference, significance) for r in table}
    differences: dict[str, Any] = {}
    for variant in ("onnx_fp16", "onnx_int8", "onnx_int4", *GGUF_4BIT):
        if variant in by_name:
            name = f"{variant.removeprefix('onnx_')}_vs_fp32"
            differences |= difference_metrics(name, by_name[variant]["tickets"], reference)
    return QualityGate(margin, bounds, differences)


GGUF_4BIT = ("gguf_q4_0", "gguf_q4_k_m")  # llama.cpp's 4-bit variants, raced against the int4 ONNX export


def runtime_race(table: list[dict[str, Any]]) -> dict[str, Any]:
    """int4 ONNX against the fastest llama.cpp 4-bit variant of the benchmark, same model, same CPU,
    same run (``int4_vs_llamacpp`` > 1: ONNX decodes faster); empty when llama.cpp did not run."""
    by_name = {row["variant"]: row for row in table}
    measured = [by_name[v] for v in GGUF_4BIT if v in by_name]
    if not measured:
        return {}
    best = max(measured, key=lambda row: row["tok_s"])
    return {"llamacpp_best_4bit": best["variant"], "int4_vs_llamacpp": by_name["onnx_int4"]["tok_s"] / best["tok_s"]}


PACKAGE_ORDER = ("onnx_int4", "onnx_int8", "onnx_fp16", "onnx_fp32")  # smallest first


def chosen_variant(gate: QualityGate) -> str:
    """The smallest ONNX variant that passes the quality gate (fp32 passes by definition)."""
    if (chosen := gate.smallest_passing(PACKAGE_ORDER)) is None:
        raise ValueError("No ONNX variant passed the quality gate, not even fp32: run steps.quality_gate first.")
    return chosen


def genai_metrics(lm: OnnxCausalLM, folder: Path, ids: list[int], ours: list[int], max_new_tokens: int) -> dict:
    """Decode the same int4 folder with onnxruntime-genai's generator: where it parts from our
    loop, and how close to a tie that was (its speed is in the benchmark, measured like ours)."""
    theirs = [t.id for t in GenaiLM(folder).stream(ids, max_new_tokens)]
    return {
        "genai_agreement": bench.prefix_agreement([theirs], [ours]),
        "genai_divergence_margin": divergence_margin(lambda x: lm.logits(x)[-1], ids, ours, theirs),  # 0.0: same
    }


def lineage(
    base_model: str, source: Path, origin: str, variant: str, recipe_note: str, data_hash: str, **more: Any
) -> dict[str, Any]:
    """What a package records about where it came from (``manifest.json``'s ``lineage``).

    ``origin`` says which model was exported (``deployed_from``); ``more`` adds what a
    release knows besides (``adapter``, ``parent``, ``metrics``).
    """
    return {
        "base_model": base_model,
        "deployed_from": origin,
        "source_fingerprint": export.source_fingerprint(source),
        "variant": variant,
        "recipe": recipe_note,
        "data_hash": data_hash,
        **more,
    }


GGUF_ORDER = tuple(reversed(llamacpp.GGUF_TYPES))  # smallest first


def chosen_gguf(gate: QualityGate) -> str | None:
    """The smallest GGUF variant that passes the same quality gate (None when none ran or passed)."""
    return gate.smallest_passing(GGUF_ORDER)


def write_gguf_package(
    gguf_dirs: dict[str, Path],
    variant: str | None,
    table: list[dict[str, Any]],
    gate: QualityGate,
    origin: dict[str, Any],
    out: Path,
) -> Path | None:
    """The same package contract around GGUF ``variant`` (``origin``: the ONNX package's lineage,
    whose variant, recipe and figures this replaces); None when no variant was chosen."""
    if variant is None:
        return None
    figures = variant_figures(table, gate, variant)
    origin = origin | {"variant": variant, "recipe": llamacpp.NOTES[variant], "metrics": figures}
    return package.write_package(gguf_dirs[variant], out, PACKAGE_NAME, "1.0.0", origin, data.SYSTEM_PROMPT)


def variant_figures(table: list[dict[str, Any]], gate: QualityGate, variant: str) -> dict[str, Any]:
    """One variant's benchmark figures and the gate's verdict on it: what its package records as the
    measurements that justified the release."""
    row = next(r for r in table if r["variant"] == variant)
    keys = bench.TABLE_KEYS + bench.INTERVAL_KEYS
    return {k: row[k] for k in keys if k in row} | gate.figures(variant)


def tamper_check(package_dir: Path, work: Path) -> tuple[bool, str]:
    """Flip one byte of a copy's weights: does the loader refuse it? (detected, the refusal)"""
    tampered = work / "tampered"
    shutil.rmtree(tampered, ignore_errors=True)
    shutil.copytree(package_dir, tampered)
    with open(tampered / "model.onnx.data", "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 1]))
    try:
        package.verify_package(tampered)
        return False, "accepted"
    except package.PackageError as err:
        return True, str(err)
    finally:
        shutil.rmtree(tampered)


def chat_request(content: str, max_tokens: int) -> dict[str, Any]:
    """One user message to the package's model: what every trial below sends."""
    return {"model": PACKAGE_NAME, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}


def server_trial(
    package_dir: Path, rows: list[dict[str, str]], first_message: str
) -> tuple[dict[str, Any], list[str], Any]:
    """Start ``slmops serve`` on the package: one streamed answer, one under the ticket format's
    mask, 20 concurrent requests, 50 malformed ones."""
    with client.ServerProcess(package_dir) as url:
        streamed = client.stream_chat(url, chat_request(first_message, 24))
        masked = client.request(
            f"{url}/chat/completions", chat_request(first_message, 48) | {"response_format": {"type": "ticket_format"}}
        )
        start = time.perf_counter()
        replies = client.load_test(url, [chat_request(r["message"], 16) for r in (rows * 3)[:20]], concurrency=20)
        wall = time.perf_counter() - start
        latencies = [r.seconds for r in replies if r.status == 200]
        bad = [
            client.request(f"{url}/chat/completions", raw=body) for body in client.malformed_requests(PACKAGE_NAME, 50)
        ]
        healthy = client.request(f"{url}/health").status == 200
    out = {
        "server_wall_s": wall,
        "server_ok": len(latencies),
        "server_p50_s": float(np.percentile(latencies, 50)),
        "server_p95_s": float(np.percentile(latencies, 95)),
        "server_malformed_4xx": sum(400 <= r.status < 500 for r in bad),
        "server_healthy_after": healthy,
        "server_ticket_format_ok": masked.status == 200
        and data.follows_format(masked.body["choices"][0]["message"]["content"]),
    }
    return out, streamed, bad[0].body


def gguf_server_trial(package_dir: Path, message: str, expected: str, max_tokens: int) -> dict[str, Any]:
    """The GGUF package behind the same server and client calls: a plain answer, a streamed one,
    and whether both are the answer llama.cpp gave for the same ticket in the benchmark."""
    payload = chat_request(message, max_tokens)
    with client.ServerProcess(package_dir) as url:
        plain = client.request(f"{url}/chat/completions", payload)
        streamed = "".join(client.stream_chat(url, payload))
    text = plain.body["choices"][0]["message"]["content"] if plain.status == 200 else ""
    same = text.strip() == streamed.strip() == expected.strip()
    return {"gguf_server_ok": plain.status == 200, "gguf_server_same_answer": same}


def run_checklist(
    package_dir: Path, answers: list[str], rows: list[dict[str, str]], min_score: float, memory_runs: int
):
    """The module's validation checklist against the package as a device loads it."""
    deployed, _, spec = package.load_package(package_dir)
    prompts = {
        "short": package.fill_prompt(spec, "E-104?"),
        "medium": package.fill_prompt(spec, rows[0]["message"]),
        "long": package.fill_prompt(spec, " ".join(r["message"] for r in rows[:8])),
    }
    results = [
        checklist.check_domain(answers, rows, min_score),
        checklist.check_format(answers),
        checklist.check_memory_stable(deployed, prompts["medium"], runs=memory_runs),
        checklist.check_input_lengths(deployed, prompts),
        checklist.check_edge_cases(deployed, package.fill_prompt(spec, "Mi hub dice E-104 😢 ¿qué hago?")),
    ]
    out = {"checklist_passed": sum(r.passed for r in results), "checklist_total": len(results)}
    out |= {f"checklist_{k}": r.passed for k, r in zip(checklist.CHECKS, results, strict=True)}
    return results, out


def test_report(
    packages: dict[str, tuple[str, Path]], settings: bench.BenchConfig, rows: list[dict[str, str]],
    deployed: TicketScores,
) -> dict[str, Any]:  # fmt: skip
    """Score each chosen package once on the test ``rows`` (``settings`` holds their prompts), each in a
    fresh process like the benchmark, paired against the deployed PyTorch model's test scores
    (``deployed``): ``<name>_test_score`` with its interval and ``<name>_vs_deployed_score_diff``."""
    require_test_rows(rows, "The package report")
    out: dict[str, Any] = {"report_split": "test", "report_tickets": len(rows), "deployed_score": deployed.mean}
    out |= interval_metrics("deployed", deployed)
    settings = dataclasses.replace(settings, repeats=1, timing_tokens=2)  # answers only: speed was measured
    for name, (kind, folder) in packages.items():
        raw = bench.measure_isolated(kind, folder, settings)
        tickets = TicketScores.from_answers(raw["answers"], rows)
        out[f"{name}_test_score"] = tickets.mean
        out |= interval_metrics(f"{name}_test", tickets)
        out |= difference_metrics(f"{name}_vs_deployed", tickets, deployed)
    return out


def prompts_for(lm: TorchCausalLM | OnnxCausalLM, rows: list[dict[str, str]]) -> list[str]:
    return [lm.chat_prompt(data.build_messages(r)) for r in rows]
