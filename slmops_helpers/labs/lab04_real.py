"""Lab 04's exercises on the real tools: build the course model's quantized ONNX recipes
(cached by notebook 04), package the smallest, measure its size and speed (q10); then serve
the package with ``slmops serve`` and ask it a ticket through the ``openai`` client (q11).
The rest of lab 04 is in ``lab04``, ``lab04_bench`` and ``lab04_decoding``."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..data import build_messages, read_rows
from ..deploy.client import ServerProcess, request, stream_chat
from ..deploy.export import build_variant, onnx_files_mib
from ..deploy.package import MANIFEST, PackageError, fill_prompt, load_package, verify_package
from ..models import files_mib, is_prepared, prepare_model, sha256_file
from . import Exercise, Result, close, incorrect, is_number, learner_answer
from .artifacts import folder_of
from .checks import fresh_rng

__all__ = ["QUANTIZED", "ASK_TOKENS", "lab_source", "timing_prompt", "PackageSmallest", "AskTheServer"]

QUANTIZED = ("onnx_int8", "onnx_int4")  # q10: the recipes to compare, as notebook 04 exports them
ASK_TOKENS = 40  # q11: new tokens per answer (the course's answers fit in it)
TIMING_TOKENS = 16  # q10: tokens per timed run, no stop at the end token
SPEED_FACTOR = 3.0  # q10: a p50 further than this from the check's own is not this package's


def lab_source() -> Path:
    """The model notebook 04 deploys by default: the course's tuned model, else the base."""
    from ..finetune import tuned_dir  # torch and peft: only when the lab asks

    return tuned_dir() if is_prepared(tuned_dir()) else Path(prepare_model())


def timing_prompt(lm: Any) -> str:
    """q10's prompt for timing: the first validation ticket in the model's chat format."""
    row = next(r for r in read_rows() if r["split"] == "validation")
    return lm.chat_prompt(build_messages(row))


@functools.cache
def _smallest_build() -> tuple[str, Path]:
    """The quantized recipe whose ONNX files weigh least, and its folder (cached builds)."""
    builds = {name: build_variant(lab_source(), name) for name in QUANTIZED}
    name = min(builds, key=lambda n: onnx_files_mib(builds[n]))
    return name, builds[name]


def _p50_ms(lm: Any, n_tokens: int = TIMING_TOKENS) -> float:
    ids = lm.encode(timing_prompt(lm))
    seconds = [t.seconds for t in lm.stream(ids, n_tokens, stop_at_eos=False)][1:]  # the first token is TTFT
    return 1000 * float(np.percentile(seconds, 50))


class Lab04RealExercise(Exercise):
    notebook = "04_deployment.ipynb"  # in labs/source/
    real_tools = True


class PackageSmallest(Lab04RealExercise):
    name, title, tier, var = "q10", "Package the smallest quantized build, measured", "stretch", None
    hint_text = (
        "export.build_variant(source, name) returns each recipe's folder (cached: no export runs); compare what "
        "their ONNX files weigh. write_package copies one into a package. Time the package with "
        "OnnxCausalLM(...).stream(ids, TIMING_TOKENS, stop_at_eos=False): every token after the first is one "
        "decode step."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        size, p50 = learner_answer(ns, "package_mib"), learner_answer(ns, "p50_ms")
        folder = folder_of(learner_answer(ns, "package_dir"), "package_dir", (MANIFEST,))
        if isinstance(folder, Result):
            return folder
        try:
            manifest = verify_package(folder)
        except PackageError as err:
            return incorrect(f"`package_dir` is not a sound package: {err}")
        variant, build = _smallest_build()
        if manifest["files"].get("model.onnx", {}).get("sha256") != sha256_file(build / "model.onnx"):
            return incorrect(
                f"The package does not hold the smallest of {list(QUANTIZED)}: measure each build's ONNX files."
            )
        if manifest.get("lineage", {}).get("variant") != variant:
            return incorrect("The package's lineage does not name its variant (lineage['variant']): record it.")
        for name, value in (("package_mib", size), ("p50_ms", p50)):
            if wrong := is_number(value, name=name):
                return wrong
        if close(size, files_mib(folder), rtol=1e-9, atol=0) is not None:
            if close(size, files_mib(folder) * 2**20 / 10**6, rtol=1e-9, atol=0) is None:
                return incorrect("`package_mib` is in MB (10**6 bytes); a MiB is 2**20 bytes.")
            return incorrect("`package_mib` is not the size of the package's files: add up every file in it.")
        lm, _, _ = load_package(folder)
        own = _p50_ms(lm)
        if close(p50, own / 1000, rtol=0.5) is None:
            return incorrect("`p50_ms` looks like seconds; the name says milliseconds.")
        if not own / SPEED_FACTOR <= p50 <= own * SPEED_FACTOR:
            return incorrect(
                "`p50_ms` is not what this package takes per token on this machine: time the decode steps of the "
                "package itself, leaving out the first token."
            )
        return None


class AskTheServer(Lab04RealExercise):
    name, title, tier, var = "q11", "Serve the package and ask it with the openai client", "stretch", None
    hint_text = (
        "openai.OpenAI(base_url=url, api_key=...) talks to any OpenAI-compatible server; "
        "client.chat.completions.create(model=..., messages=[...], max_tokens=..., temperature=0) returns a "
        "completion whose choices[0].message.content is the answer. GET {url}/models names the model."
    )
    course_twins = (request, stream_chat)

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        ask = learner_answer(ns, "ask")
        folder = folder_of(learner_answer(ns, "package_dir"), "package_dir", (MANIFEST,))
        if isinstance(folder, Result):
            return incorrect(f"{folder.message} q11 serves q10's package: finish q10 first.")
        try:
            lm, _, spec = load_package(folder)
        except PackageError as err:
            return incorrect(f"`package_dir` is not a sound package: {err}")
        rows = [r for r in read_rows() if r["split"] == "validation"]
        message = rows[int(fresh_rng().integers(len(rows)))]["message"]  # a hidden ticket, new at every attempt
        want = lm.generate(fill_prompt(spec, message), ASK_TOKENS)
        with ServerProcess(folder) as url:
            started = time.perf_counter()
            got = ask(url, message)
            if time.perf_counter() - started > 120:
                return incorrect("`ask` took over two minutes: is max_tokens ASK_TOKENS?")
        if not isinstance(got, str):
            what = "a completion object: return its choices[0].message.content" if hasattr(got, "choices") else ""
            return incorrect(f"`ask` should return the answer's text (a str), got {type(got).__name__}. {what}")
        if got != want:
            if want.startswith(got) or got.startswith(want):
                return incorrect(f"`ask`'s answer is cut or run on: ask for max_tokens={ASK_TOKENS} new tokens.")
            return incorrect(
                "`ask`'s answer is not the package's greedy answer to the message: send it as the one user "
                "message, with temperature 0."
            )
        return None
