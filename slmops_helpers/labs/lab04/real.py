"""Lab 04's exercises on the real tools: turn one quantization lever on the course model (int8
with one scale per tensor, or a scale per block of 32; both builds cached by notebook 04),
measure each build's KL from the fp32 export, package the closer one and measure its size and
speed (q10); then serve the package with ``slmops serve`` and ask it a ticket through the
``openai`` client (q11).
The rest of lab 04 is in ``exercises``, ``bench`` and ``decoding``."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...data import build_messages, format_target, read_rows
from ...deploy import quant_study
from ...deploy.client import ServerProcess, request, stream_chat
from ...deploy.export import build_variant
from ...deploy.package import MANIFEST, PackageError, fill_prompt, load_package, verify_package
from ...deploy.runtime import OnnxCausalLM
from ...models import files_mib, is_prepared, prepare_model, sha256_file
from .. import Exercise, Result, close, incorrect, is_number, learner_answer
from ..artifacts import folder_of
from ..checks import fresh_rng

__all__ = ["LEVER", "ASK_TOKENS", "lab_source", "timing_prompt", "kl_pairs", "PackageCloser", "AskTheServer"]

# q10: one lever, as section 4.3's study names its two ends: int8 weights with one scale per tensor
# (activations rounded per tensor), or a scale per block of 32 (weight-only)
LEVER = ("onnx_int8_tensor", "onnx_int8")
KL_TICKETS = 3  # q10: validation tickets whose reference answers the KL is measured on
ASK_TOKENS = 40  # q11: new tokens per answer (the course's answers fit in it)
TIMING_TOKENS = 16  # q10: tokens per timed run, no stop at the end token
SPEED_FACTOR = 3.0  # q10: a p50 further than this from the check's own is not this package's


def lab_source() -> Path:
    """The model notebook 04 deploys by default: the course's tuned model, else the base."""
    from ...finetune import tuned_dir  # torch and peft: only when the lab asks

    return tuned_dir() if is_prepared(tuned_dir()) else Path(prepare_model())


def timing_prompt(lm: Any) -> str:
    """q10's prompt for timing: the first validation ticket in the model's chat format."""
    row = next(r for r in read_rows() if r["split"] == "validation")
    return lm.chat_prompt(build_messages(row))


def kl_pairs(lm: Any, n: int = KL_TICKETS) -> list[tuple[str, str]]:
    """q10's (prompt, reference answer) pairs: the first ``n`` validation tickets in the model's chat format."""
    rows = [r for r in read_rows() if r["split"] == "validation"][:n]
    return [(lm.chat_prompt(build_messages(r)), format_target(r)) for r in rows]


@functools.cache
def _builds() -> tuple[Path, dict[str, Path]]:
    """The fp32 export and the lever's two builds (cached by notebook 04)."""
    source = lab_source()
    return build_variant(source, "onnx_fp32"), {n: quant_study.build(source, quant_study.BY_NAME[n]) for n in LEVER}


def _kl_by_lever() -> dict[str, float]:
    """The check's own measurement: each build's mean per-token KL from fp32 on ``kl_pairs``."""
    fp32_dir, builds = _builds()
    fp32 = OnnxCausalLM(fp32_dir)
    prompts, answers = map(list, zip(*kl_pairs(fp32), strict=True))
    reference = quant_study.teacher_forced(fp32, prompts, answers)
    return {
        name: quant_study.mean_kl(reference, quant_study.teacher_forced(OnnxCausalLM(folder), prompts, answers))
        for name, folder in builds.items()
    }


def _p50_ms(lm: Any, n_tokens: int = TIMING_TOKENS) -> float:
    ids = lm.encode(timing_prompt(lm))
    seconds = [t.seconds for t in lm.stream(ids, n_tokens, stop_at_eos=False)][1:]  # the first token is TTFT
    return 1000 * float(np.percentile(seconds, 50))


class Lab04RealExercise(Exercise):
    notebook = "04_deployment.ipynb"  # in labs/source/
    real_tools = True


class PackageCloser(Lab04RealExercise):
    name, title, tier, var = "q10", "One quantization lever, measured; package the closer build", "stretch", None
    hint_text = (
        "For each build and fp32: the logits of prompt + answer in one pass (lm.logits), keep the rows that predict "
        "the answer's tokens (from the prompt's last position on), log-softmax them. KL(fp32 ‖ build) at a "
        "position is the sum over the vocabulary of p_fp32 · (log p_fp32 − log p_build); average it over every "
        "answer token of every pair. Package the build with the smaller KL."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        size, p50 = learner_answer(ns, "package_mib"), learner_answer(ns, "p50_ms")
        kl = learner_answer(ns, "kl_by_lever")
        folder = folder_of(learner_answer(ns, "package_dir"), "package_dir", (MANIFEST,))
        if isinstance(folder, Result):
            return folder
        if not isinstance(kl, Mapping) or set(kl) != set(LEVER):
            return incorrect(f"`kl_by_lever` should map each build of LEVER ({', '.join(LEVER)}) to its KL.")
        for name in LEVER:
            if wrong := is_number(kl[name], name=f"kl_by_lever[{name!r}]"):
                return wrong
        measured_kl = _kl_by_lever()
        for name in LEVER:
            if close(kl[name], measured_kl[name], rtol=0.02, atol=1e-6) is not None:
                return incorrect(
                    f"`kl_by_lever[{name!r}]` is not the mean KL(fp32 ‖ build) per answer token on kl_pairs: check "
                    "the direction (fp32's probabilities weigh the log ratio), the positions (the rows that predict "
                    "the answer) and the average (over every answer token)."
                )
        try:
            manifest = verify_package(folder)
        except PackageError as err:
            return incorrect(f"`package_dir` is not a sound package: {err}")
        closer = min(measured_kl, key=measured_kl.__getitem__)
        if manifest["files"].get("model.onnx", {}).get("sha256") != sha256_file(_builds()[1][closer] / "model.onnx"):
            return incorrect("The package does not hold the build with the smaller KL: package the closer one.")
        if manifest.get("lineage", {}).get("variant") != closer:
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
