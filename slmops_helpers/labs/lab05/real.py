"""Lab 05's exercises on the real tools: register two real builds of the course model (its
ONNX fp32 and int4 exports) with their measured size and per-ticket scores, then gate the
int4 build against the fp32 one with ``slmops gate`` under a policy the learner writes, and
read its exit code. The rest of lab 05 is in ``exercises`` and ``next_round``."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...data import build_messages, read_rows
from ...deploy.export import build_variant, onnx_files_mib
from ...models import is_prepared, prepare_model
from ...pipeline.gate import evaluate_gate, load_policy, score_rule
from ...pipeline.registry import Registry, RegistryError
from ...uncertainty import TicketScores
from .. import Exercise, Result, incorrect, is_number, learner_answer
from ..checks import fresh_rng

__all__ = [
    "LAB_TICKETS",
    "MAX_NEW_TOKENS",
    "lab_builds",
    "lab_tickets",
    "answer_tickets",
    "RegisterBuilds",
    "GateBuilds",
]

LAB_TICKETS = 4  # validation tickets each build is scored on: a few seconds per build on a laptop CPU
MAX_NEW_TOKENS = 40  # the course's answers fit in it (category, error code, a one-sentence reply)
BUILDS = {"fp32": "onnx_fp32", "int4": "onnx_int4"}  # the reference and the candidate, as notebook 04 exports them
MAX_MARGIN, MAX_SIGNIFICANCE = 10.0, 0.10  # q9: looser than this, a score rule no longer guards anything


def _source() -> Path:
    """The model notebook 04 deploys by default: the course's tuned model, else the base."""
    from ...finetune import tuned_dir  # torch and peft: only when the lab asks

    return tuned_dir() if is_prepared(tuned_dir()) else Path(prepare_model())


@functools.cache
def lab_builds() -> dict[str, Path]:
    """The ONNX fp32 and int4 builds of the deployed model (cached by notebook 04: no export here)."""
    source = _source()
    return {label: build_variant(source, variant) for label, variant in BUILDS.items()}


def lab_tickets(n: int = LAB_TICKETS) -> list[dict[str, str]]:
    """The first ``n`` validation tickets: choices read validation, never test (section 4.5)."""
    return [r for r in read_rows() if r["split"] == "validation"][:n]


def answer_tickets(lm: Any, rows: list[dict[str, str]], max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """A runtime's greedy answers to ``rows``, prompted through its own chat template (section 4.8)."""
    return [lm.generate(lm.chat_prompt(build_messages(row)), max_new_tokens) for row in rows]


@functools.cache
def _runtime(label: str) -> Any:
    """The check's own session of a build, loaded once per kernel (loading fp32 takes seconds)."""
    from ...deploy.runtime import OnnxCausalLM  # onnxruntime: loaded only when a check runs

    return OnnxCausalLM(lab_builds()[label])


def _entry(registry: Registry, entry_id: Any, name: str) -> Any:
    if not isinstance(entry_id, str):
        return incorrect(f"`{name}` should be a registry entry id (a str such as 'support-assistant-v1').")
    try:
        return registry.get(entry_id)
    except (RegistryError, FileNotFoundError):
        return incorrect(f"`{name}` is {entry_id!r}, which is not an entry of the registry at `registry_root`.")


class Lab05RealExercise(Exercise):
    notebook = "05_slmops_pipeline.ipynb"  # in labs/source/
    real_tools = True


class RegisterBuilds(Lab05RealExercise):
    name, title, tier, var = "q8", "Register two real builds with what was measured", "stretch", None
    hint_text = (
        "Registry(registry_root).register(name, base_model=..., files=[the build's folder], metrics={'score': ..., "
        "'size_mib': ...}, per_ticket={'score': TicketScores...}, parent=...). The size is what the build's ONNX "
        "files weigh; the per-ticket scores come from TicketScores.from_answers on the same tickets for both."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        root = learner_answer(ns, "registry_root")
        ids = {"fp32": learner_answer(ns, "reference_id"), "int4": learner_answer(ns, "candidate_id")}
        if not isinstance(root, str | Path) or not (Path(root) / "index.json").is_file():
            return incorrect("`registry_root` should be the folder of your registry, holding its index.json.")
        registry = Registry(root)
        entries = {}
        for label, entry_id in ids.items():
            name = "reference_id" if label == "fp32" else "candidate_id"
            entry = _entry(registry, entry_id, name)
            if isinstance(entry, Result):
                return entry
            try:
                registry.verify(entry)
            except RegistryError:
                return incorrect(f"`{name}`'s package files changed or vanished since it was registered.")
            build = lab_builds()[label]
            if str((build / "model.onnx").resolve()) not in entry.files:
                return incorrect(f"`{name}` should register the {label} build's folder (lab_builds()[{label!r}]).")
            size = entry.metrics.get("size_mib")
            if is_number(size, name="size_mib") or abs(size - onnx_files_mib(build)) > 1e-6 * onnx_files_mib(build):
                return incorrect(
                    f"`{name}`'s size_mib is not what its build's ONNX files weigh, in MiB: measure the folder."
                )
            tickets = entry.per_ticket.get("score")
            if tickets is None or "score" not in entry.metrics:
                return incorrect(f"`{name}` records no per-ticket score: register it with per_ticket={{'score': ...}}.")
            entries[label] = entry
        if entries["int4"].parent != ids["fp32"]:
            return incorrect("The candidate's lineage does not name the reference as its parent.")
        want = [str(r["id"]) for r in lab_tickets()]
        for entry in entries.values():
            if list(entry.per_ticket["score"]["ids"]) != want:
                return incorrect(
                    "The per-ticket scores are not on `tickets` (the same tickets, in order, for both builds)."
                )
        return self._spot_check(entries)

    @staticmethod
    def _spot_check(entries: dict[str, Any]) -> Result | None:
        """Answer one hidden ticket with each build again: its recorded score must be what that build scores."""
        rows = lab_tickets()
        i = int(fresh_rng().integers(len(rows)))  # a hidden ticket, new at every attempt
        for label, entry in entries.items():
            lm = _runtime(label)
            scored = TicketScores.from_answers(answer_tickets(lm, [rows[i]]), [rows[i]])
            if abs(scored.values[0] - float(entry.per_ticket["score"]["values"][i])) > 1e-6:
                return incorrect(
                    f"A ticket's recorded score for the {label} build is not what that build answers: score each "
                    f"build's own answers (answer_tickets) on `tickets`, with at most {MAX_NEW_TOKENS} new tokens."
                )
        return None


class GateBuilds(Lab05RealExercise):
    name, title, tier, var = "q9", "Gate the int4 build with `slmops gate`", "stretch", None
    hint_text = (
        "A policy file is YAML, one metric per key (section 5.6 and notebooks/configs/gate.yaml show the form). "
        "Run the command as a CI job would: subprocess.run on [sys.executable, '-m', 'slmops_helpers.cli', 'gate', "
        "...], capturing its output as text; its returncode is the decision, its stdout the report."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        policy_path = learner_answer(ns, "policy_path")
        exit_code, output = learner_answer(ns, "gate_exit_code"), learner_answer(ns, "gate_output")
        root = learner_answer(ns, "registry_root")
        ids = (learner_answer(ns, "candidate_id"), learner_answer(ns, "reference_id"))
        if not isinstance(policy_path, str | Path) or not Path(policy_path).is_file():
            return incorrect("`policy_path` should be the path of the policy file you wrote.")
        try:
            rules = load_policy(policy_path)
            rule = score_rule(rules)
        except ValueError as err:
            return incorrect(f"The gate cannot use your policy: {err}")
        if rule.limit > MAX_MARGIN or rule.significance > MAX_SIGNIFICANCE:
            return incorrect(
                f"Your score rule is so loose it guards nothing: a margin of at most {MAX_MARGIN:g} points, at a "
                f"significance of at most {MAX_SIGNIFICANCE:g}."
            )
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            return incorrect(f"`gate_exit_code` should be the command's exit code (an int), got {exit_code!r}.")
        if not isinstance(output, str):
            return incorrect(f"`gate_output` should be what the command printed (a str), got {type(output).__name__}.")
        try:
            report = evaluate_gate(ids[0], ids[1], rules, registry_root=root)
        except (ValueError, FileNotFoundError) as err:
            return incorrect(f"The gate cannot compare your entries under your policy: {err}")
        if exit_code != (0 if report.passed else 1) or report.format().strip() not in output:
            return incorrect(
                "`gate_exit_code` and `gate_output` are not what `slmops gate` gives for candidate_id against "
                "reference_id under your policy: run the command and keep its returncode and stdout."
            )
        return None
