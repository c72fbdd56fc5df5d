"""Lab 04's real-tool exercises (q10: package the smallest quantized build, measured; q11: ask the
served package through the openai client), checked on the tiny model's ONNX builds: the right
artifacts pass, and each slip (another build, no variant in the lineage, MB for MiB, seconds for
milliseconds, an answer cut short, a completion object, the course's own HTTP helper) is named."""

from __future__ import annotations

import pytest

from slmops_helpers.deploy.package import write_package
from slmops_helpers.deploy.runtime import OnnxCausalLM
from slmops_helpers.labs import Outcome, Question, ____, lab04_real
from slmops_helpers.models import files_mib


@pytest.fixture
def smallest(monkeypatch, tiny_int8):
    """The tiny model's int8 build stands for the smallest recipe; its context holds 128 tokens."""
    monkeypatch.setattr(lab04_real, "_smallest_build", lambda: ("onnx_int8", tiny_int8))
    monkeypatch.setattr(lab04_real, "timing_prompt", lambda lm: "the hub is offline")
    monkeypatch.setattr(lab04_real, "ASK_TOKENS", 8)
    return tiny_int8


def package(build, folder, variant="onnx_int8"):
    lineage = {"base_model": "tiny-random-llama"} | ({"variant": variant} if variant else {})
    return write_package(build, folder, "tiny-assistant", "1", lineage)


def verdict(exercise, namespace):
    result = Question(exercise(), namespace).result()
    return result.outcome, result.message


def q10(folder, *, mib=None, p50=None):
    own = lab04_real._p50_ms(OnnxCausalLM(folder))
    namespace = {"package_dir": folder, "package_mib": files_mib(folder) if mib is None else mib}
    return verdict(lab04_real.PackageSmallest, namespace | {"p50_ms": own if p50 is None else p50(own)})


def test_q10_passes_the_smallest_build_measured(smallest, tmp_path, monkeypatch):
    monkeypatch.setattr(lab04_real, "SPEED_FACTOR", 20.0)  # the tiny model's sub-millisecond steps jitter
    folder = package(smallest, tmp_path / "package")
    got = q10(folder)
    assert got[0] is Outcome.CORRECT, got[1]
    blank = {"package_dir": folder, "package_mib": ____, "p50_ms": ____}
    assert verdict(lab04_real.PackageSmallest, blank)[0] is Outcome.NOT_ATTEMPTED


def test_q10_names_each_slip(smallest, tiny_onnx, tmp_path):
    got, message = q10(package(tiny_onnx, tmp_path / "fp32", variant="onnx_fp32"))
    assert got is Outcome.INCORRECT and "smallest" in message, message
    got, message = q10(package(smallest, tmp_path / "no_variant", variant=None))
    assert got is Outcome.INCORRECT and "lineage" in message, message
    folder = package(smallest, tmp_path / "package")
    got, message = q10(folder, mib=files_mib(folder) * 2**20 / 10**6)
    assert got is Outcome.INCORRECT and "MB" in message, message
    got, message = q10(folder, mib=files_mib(folder) * 0.9)
    assert got is Outcome.INCORRECT and "every file" in message, message
    got, message = q10(folder, p50=lambda own: own / 1000)
    assert got is Outcome.INCORRECT and "seconds" in message, message
    got, message = q10(folder, p50=lambda own: own * 100)
    assert got is Outcome.INCORRECT and "per token" in message, message
    (folder / "genai_config.json").write_text("{}")  # tampered after packaging
    namespace = {"package_dir": folder, "package_mib": files_mib(folder), "p50_ms": 1.0}
    got, message = verdict(lab04_real.PackageSmallest, namespace)
    assert got is Outcome.INCORRECT and "not a sound package" in message, message


def ask_with(max_tokens=None, whole=False):
    def ask(url, message):
        from openai import OpenAI

        client = OpenAI(base_url=url, api_key="x")
        completion = client.chat.completions.create(
            model="tiny-assistant",
            messages=[{"role": "user", "content": message}],
            max_tokens=max_tokens or lab04_real.ASK_TOKENS,
            temperature=0,
        )
        return completion if whole else completion.choices[0].message.content

    return ask


def test_q11_asks_the_served_package_through_the_learners_client(smallest, tmp_path):
    folder = package(smallest, tmp_path / "package")
    got = verdict(lab04_real.AskTheServer, {"package_dir": folder, "ask": ask_with()})
    assert got[0] is Outcome.CORRECT, got[1]
    got, message = verdict(lab04_real.AskTheServer, {"package_dir": folder, "ask": ask_with(max_tokens=3)})
    assert got is Outcome.INCORRECT and "max_tokens" in message, message
    got, message = verdict(lab04_real.AskTheServer, {"package_dir": folder, "ask": ask_with(whole=True)})
    assert got is Outcome.INCORRECT and "choices[0].message.content" in message, message
    got, message = verdict(lab04_real.AskTheServer, {"package_dir": tmp_path / "none", "ask": ask_with()})
    assert got is Outcome.INCORRECT and "finish q10" in message, message


def test_q11_refuses_the_courses_own_client_and_is_not_attempted_while_blank(smallest, tmp_path):
    from slmops_helpers.deploy import client

    def ask(url, message):
        payload = {"model": "tiny-assistant", "messages": [{"role": "user", "content": message}]}
        return client.request(f"{url}/chat/completions", payload).body["choices"][0]["message"]["content"]

    folder = package(smallest, tmp_path / "package")
    got, message = verdict(lab04_real.AskTheServer, {"package_dir": folder, "ask": ask})
    assert got is Outcome.INCORRECT and "write it yourself" in message, message
    assert verdict(lab04_real.AskTheServer, {"package_dir": folder, "ask": ____})[0] is Outcome.NOT_ATTEMPTED
