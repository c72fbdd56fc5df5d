"""Lab 04's real-tool exercises (q10: one quantization lever, each build's KL from fp32, the closer
one packaged and measured; q11: ask the served package through the openai client), checked on the
tiny model's ONNX builds: the right artifacts pass, and each slip (a KL that is not the mean
KL(fp32 ‖ build), the farther build, no variant in the lineage, MB for MiB, seconds for
milliseconds, an answer cut short, a completion object, the course's own HTTP helper) is named."""

from __future__ import annotations

import pytest

from slmops_helpers.deploy.package import write_package
from slmops_helpers.deploy.runtime import OnnxCausalLM
from slmops_helpers.labs import Outcome, Question, ____
from slmops_helpers.labs.lab04 import real as lab04_real
from slmops_helpers.models import files_mib

PAIRS = [("the hub is", " offline error code"), ("my app is not", " setup help")]


@pytest.fixture
def lever(monkeypatch, tiny_source, onnx_root, tiny_onnx, tiny_int8):
    """The tiny model's fp32 export and its two int8 builds stand for q10's lever; its context holds 128 tokens."""
    from slmops_helpers.deploy.export import Recipe, build_recipe

    tied = build_recipe(tiny_source, Recipe("int8", tie_embedding=True), onnx_root)
    builds = {"onnx_int8_tensor": tiny_int8, "onnx_int8": tied}
    monkeypatch.setattr(lab04_real, "_builds", lambda: (tiny_onnx, builds))
    monkeypatch.setattr(lab04_real, "kl_pairs", lambda lm: PAIRS)
    monkeypatch.setattr(lab04_real, "timing_prompt", lambda lm: "the hub is offline")
    monkeypatch.setattr(lab04_real, "ASK_TOKENS", 8)
    monkeypatch.setattr(lab04_real, "SPEED_FACTOR", 20.0)  # the tiny model's sub-millisecond steps jitter
    kl = lab04_real._kl_by_lever()
    closer = min(kl, key=kl.get)
    return builds, kl, closer


@pytest.fixture
def smallest(lever):
    """The build q10's package holds (q11 serves it)."""
    builds, _, closer = lever
    return builds[closer]


def package(build, folder, variant="onnx_int8"):
    lineage = {"base_model": "tiny-random-llama"} | ({"variant": variant} if variant else {})
    return write_package(build, folder, "tiny-assistant", "1", lineage)


def verdict(exercise, namespace):
    result = Question(exercise(), namespace).result()
    return result.outcome, result.message


def q10(folder, kl, *, mib=None, p50=None):
    own = lab04_real._p50_ms(OnnxCausalLM(folder))
    namespace = {"package_dir": folder, "package_mib": files_mib(folder) if mib is None else mib, "kl_by_lever": kl}
    return verdict(lab04_real.PackageCloser, namespace | {"p50_ms": own if p50 is None else p50(own)})


def test_q10_passes_the_closer_build_measured(lever, tmp_path):
    builds, kl, closer = lever
    assert set(kl) == set(lab04_real.LEVER) and all(v > 0 for v in kl.values())
    folder = package(builds[closer], tmp_path / "package", variant=closer)
    got = q10(folder, kl)
    assert got[0] is Outcome.CORRECT, got[1]
    blank = {"package_dir": folder, "package_mib": ____, "p50_ms": ____, "kl_by_lever": ____}
    assert verdict(lab04_real.PackageCloser, blank)[0] is Outcome.NOT_ATTEMPTED


def test_q10_names_each_slip(lever, tmp_path, monkeypatch):
    builds, kl, closer = lever
    monkeypatch.setattr(lab04_real, "_p50_ms", lambda lm: 2.0)  # the tiny model's sub-millisecond steps jitter
    farther = next(name for name in builds if name != closer)
    folder = package(builds[closer], tmp_path / "package", variant=closer)
    got, message = q10(package(builds[farther], tmp_path / "farther", variant=farther), kl)
    assert got is Outcome.INCORRECT and "smaller KL" in message, message
    got, message = q10(folder, {closer: kl[closer]})
    assert got is Outcome.INCORRECT and "each build of LEVER" in message, message
    got, message = q10(folder, {name: 2 * value for name, value in kl.items()})  # e.g. summed over two pairs
    assert got is Outcome.INCORRECT and "the direction" in message and str(round(kl[closer], 3)) not in message
    got, message = q10(package(builds[closer], tmp_path / "no_variant", variant=None), kl)
    assert got is Outcome.INCORRECT and "lineage" in message, message
    got, message = q10(folder, kl, mib=files_mib(folder) * 2**20 / 10**6)
    assert got is Outcome.INCORRECT and "MB" in message, message
    got, message = q10(folder, kl, mib=files_mib(folder) * 0.9)
    assert got is Outcome.INCORRECT and "every file" in message, message
    got, message = q10(folder, kl, p50=lambda own: own / 1000)
    assert got is Outcome.INCORRECT and "seconds" in message, message
    got, message = q10(folder, kl, p50=lambda own: own * 100)
    assert got is Outcome.INCORRECT and "per token" in message, message
    (folder / "genai_config.json").write_text("{}")  # tampered after packaging
    namespace = {"package_dir": folder, "package_mib": files_mib(folder), "p50_ms": 1.0, "kl_by_lever": kl}
    got, message = verdict(lab04_real.PackageCloser, namespace)
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


def long_answer_tickets(monkeypatch, folder):
    """The hidden ticket drawn from those whose tiny-model answer (ASK_TOKENS, as the check asks)
    runs past 3 tokens: the random tiny model ends some answers within 3, where a client cut at 3
    cannot show."""
    from slmops_helpers.deploy.package import fill_prompt, load_package

    lm, _, spec = load_package(folder)
    rows = [r for r in lab04_real.read_rows() if r["split"] == "validation"]
    prompts = {r["id"]: fill_prompt(spec, r["message"]) for r in rows}
    long = [r for r in rows if lm.generate(prompts[r["id"]], 3) != lm.generate(prompts[r["id"]], lab04_real.ASK_TOKENS)]
    assert len(long) >= len(rows) // 2, "most tiny-model answers should run past 3 tokens"
    monkeypatch.setattr(lab04_real, "read_rows", lambda: long)


def test_q11_asks_the_served_package_through_the_learners_client(smallest, tmp_path, monkeypatch):
    folder = package(smallest, tmp_path / "package")
    long_answer_tickets(monkeypatch, folder)
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
