"""Lab 05's real-tool exercises (q8: register two builds, q9: gate them with `slmops gate`),
checked on a registry built here from two fake builds and a scripted runtime: the right
artifacts pass, and each slip (a changed file, a typed size, a lost parent, made-up scores,
a loose or inverted policy, an exit code that is not the command's) is named."""

from __future__ import annotations

import subprocess
import sys

import pytest

from slmops_helpers.data import format_target
from slmops_helpers.deploy.export import onnx_files_mib
from slmops_helpers.labs import Outcome, Question, ____
from slmops_helpers.labs.lab05 import real as lab05_real
from slmops_helpers.pipeline.registry import Registry
from slmops_helpers.uncertainty import TicketScores


class ScriptedLM:
    """A runtime that answers each ticket with its reference (fp32) or with nothing (int4)."""

    def __init__(self, right: bool) -> None:
        self.right = right

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return messages[-1]["content"]

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        row = next(r for r in lab05_real.lab_tickets() if r["message"] in prompt)
        return format_target(row) if self.right else "category: none"


@pytest.fixture
def builds(monkeypatch, tmp_path):
    folders = {}
    for label, size in (("fp32", 4000), ("int4", 1000)):
        folder = tmp_path / "builds" / label
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(bytes(size))
        (folder / "model.onnx.data").write_bytes(bytes(3 * size))
        folders[label] = folder
    runtimes = {"fp32": ScriptedLM(True), "int4": ScriptedLM(False)}
    monkeypatch.setattr(lab05_real, "lab_builds", lambda: folders)
    monkeypatch.setattr(lab05_real, "_runtime", lambda label: runtimes[label])
    return folders, runtimes


def register(builds, root, *, size_off=0.0, parent=True, made_up=False):
    folders, runtimes = builds
    registry, ids = Registry(root), {}
    tickets = lab05_real.lab_tickets()
    for label in ("fp32", "int4"):
        scores = TicketScores.from_answers(lab05_real.answer_tickets(runtimes[label], tickets), tickets)
        if made_up and label == "int4":
            scores = TicketScores(scores.ids, tuple(v + 10 for v in scores.values))
        entry = registry.register(
            "support-assistant",
            base_model="smollm2-135m-instruct",
            files=[folders[label]],
            metrics={"score": scores.mean, "size_mib": onnx_files_mib(folders[label]) + size_off},
            per_ticket={"score": scores},
            parent=ids.get("fp32") if parent else None,
        )
        ids[label] = entry.id
    return {"registry_root": root, "reference_id": ids["fp32"], "candidate_id": ids["int4"]}


def verdict(exercise, namespace):
    result = Question(exercise(), namespace).result()
    return result.outcome, result.message


def test_q8_passes_real_entries_and_is_not_attempted_while_blank(builds, tmp_path):
    blank = {"registry_root": ____, "reference_id": ____, "candidate_id": ____}
    assert verdict(lab05_real.RegisterBuilds, blank)[0] is Outcome.NOT_ATTEMPTED
    got = verdict(lab05_real.RegisterBuilds, register(builds, tmp_path / "registry"))
    assert got[0] is Outcome.CORRECT, got[1]


@pytest.mark.parametrize(
    "slip, says",
    [
        ({"size_off": 0.5}, "size_mib"),
        ({"parent": False}, "parent"),
        ({"made_up": True}, "recorded score"),
    ],
)
def test_q8_names_each_slip(builds, tmp_path, slip, says):
    got, message = verdict(lab05_real.RegisterBuilds, register(builds, tmp_path / "registry", **slip))
    assert got is Outcome.INCORRECT and says in message, message


def test_q8_refuses_a_package_changed_after_registering_and_swapped_ids(builds, tmp_path):
    namespace = register(builds, tmp_path / "registry")
    swapped = {**namespace, "reference_id": namespace["candidate_id"], "candidate_id": namespace["reference_id"]}
    got, message = verdict(lab05_real.RegisterBuilds, swapped)
    assert got is Outcome.INCORRECT and "fp32 build" in message, message
    (builds[0]["int4"] / "model.onnx").write_bytes(b"tampered")
    got, message = verdict(lab05_real.RegisterBuilds, namespace)
    assert got is Outcome.INCORRECT and "changed or vanished" in message, message


def gate(namespace, policy_text, tmp_path, exit_code=None):
    policy = tmp_path / "gate.yaml"
    policy.write_text(policy_text)
    args = ["gate", "--candidate", namespace["candidate_id"], "--reference", namespace["reference_id"]]
    args += ["--policy", str(policy), "--registry", str(namespace["registry_root"])]
    done = subprocess.run([sys.executable, "-m", "slmops_helpers.cli", *args], capture_output=True, text=True)
    code = done.returncode if exit_code is None else exit_code
    return {**namespace, "policy_path": policy, "gate_exit_code": code, "gate_output": done.stdout}


def test_q9_passes_the_commands_own_exit_code_and_report(builds, tmp_path):
    namespace = register(builds, tmp_path / "registry")
    got = verdict(lab05_real.GateBuilds, gate(namespace, "score: {max_drop: 5, significance: 0.05}\n", tmp_path))
    assert got[0] is Outcome.CORRECT, got[1]
    blank = {**namespace, "policy_path": ____, "gate_exit_code": ____, "gate_output": ____}
    assert verdict(lab05_real.GateBuilds, blank)[0] is Outcome.NOT_ATTEMPTED


@pytest.mark.parametrize(
    "policy, says",
    [
        ("score: {max_drop: 5}\n", "cannot use your policy"),  # no significance: decides on the point drop alone
        ("score: {max_drop: 40, significance: 0.05}\n", "guards nothing"),
        ("score: {max_drop: 5, significance: 0.5}\n", "guards nothing"),
        ("score: {min_gain: 0, significance: 0.05}\n", "cannot use your policy"),  # a gain rule, not a drop's
        ("size_mib: {max: 1}\n", "cannot use your policy"),
    ],
)
def test_q9_refuses_a_policy_that_does_not_guard_the_score(builds, tmp_path, policy, says):
    namespace = register(builds, tmp_path / "registry")
    got, message = verdict(lab05_real.GateBuilds, gate(namespace, policy, tmp_path))
    assert got is Outcome.INCORRECT and says in message, message


def test_q9_refuses_an_exit_code_the_command_did_not_give(builds, tmp_path):
    namespace = register(builds, tmp_path / "registry")
    for code in (0, 1):  # one of them is the command's; the other must fail, and so must a typed report
        ns = gate(namespace, "score: {max_drop: 5, significance: 0.05}\n", tmp_path, exit_code=code)
        right = verdict(lab05_real.GateBuilds, ns)[0] is Outcome.CORRECT
        assert right == (
            code == gate(namespace, "score: {max_drop: 5, significance: 0.05}\n", tmp_path)["gate_exit_code"]
        )
    ns = {
        **gate(namespace, "score: {max_drop: 5, significance: 0.05}\n", tmp_path),
        "gate_output": "Quality gate passed",
    }
    got, message = verdict(lab05_real.GateBuilds, ns)
    assert got is Outcome.INCORRECT and "returncode and stdout" in message
