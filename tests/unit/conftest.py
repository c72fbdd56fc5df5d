"""Fixtures for the section 4 (deploy) tests: a tiny random Llama saved to disk, its
ONNX export (built once per session by onnxruntime-genai's builder, about 10 s) and a
package written from that export. Everything lives in a session temp folder, never in
the course cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory, tiny_tokenizer, tiny_llama_factory) -> Path:
    """A saved tiny Llama (hidden 64, 4 heads, 2 kv heads, 2 layers, tied embeddings).

    ``initializer_range=0.5`` makes the random logits peaked enough that greedy decoding
    produces varied tokens (with the default 0.02 it repeats one token forever).
    """
    model = tiny_llama_factory(
        tiny_tokenizer,
        hidden_size=64,
        intermediate_size=128,
        initializer_range=0.5,
        bos_token_id=tiny_tokenizer.eos_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def onnx_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx_builds")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_source, onnx_root) -> Path:
    """The fp32 ONNX export of ``tiny_source`` (onnxruntime-genai builder, offline)."""
    from slmops_helpers.deploy.export import build_variant

    return build_variant(tiny_source, "onnx_fp32", root=onnx_root)


@pytest.fixture(scope="session")
def tiny_int8(tiny_source, onnx_root, tiny_onnx) -> Path:
    """Dynamic int8 of the fp32 export with lm_head kept in fp32 (onnxruntime's quantizer, < 1 s)."""
    from slmops_helpers.deploy.export import LM_HEAD, Recipe, build_recipe

    return build_recipe(tiny_source, Recipe("int8", tool="quantize_dynamic", exclude=(LM_HEAD,)), onnx_root)


@pytest.fixture(scope="session")
def tiny_package(tiny_onnx, tmp_path_factory) -> Path:
    """A package of the fp32 export; tests that change it work on a copy."""
    from slmops_helpers.deploy.package import write_package

    out = tmp_path_factory.mktemp("packages") / "tiny"
    lineage = {"base_model": "tiny-random-llama", "adapter": None, "data_sha256": "0" * 64}
    return write_package(tiny_onnx, out, "tiny-assistant", "1.0.0", lineage, system_prompt="Be brief.")


@pytest.fixture
def rows():
    """Eight tickets in the tiny tokenizer's words, two categories (the distillation tests' data)."""
    words = ["my hub is offline", "the app is not help", "billing error code", "setup wifi reply"]
    return [
        {"id": f"r{i}", "split": "train", "message": m, "category": c, "error_code": "none", "reply": "reset the hub."}
        for i, (m, c) in enumerate(zip(words * 2, ["billing", "setup"] * 4, strict=True))
    ]


@pytest.fixture(scope="module")
def onnx_lm(tiny_onnx):
    """The tiny export under the course's own onnxruntime loop."""
    from slmops_helpers.deploy.runtime import OnnxCausalLM

    return OnnxCausalLM(tiny_onnx, threads=1)


@pytest.fixture(scope="module")
def torch_lm(tiny_source):
    """The same tiny model in PyTorch, behind the same interface."""
    from slmops_helpers.deploy.runtime import TorchCausalLM

    return TorchCausalLM(tiny_source)


@pytest.fixture(scope="session")
def course_source() -> Path:
    """The course's tuned model (`make model` prepares it), or the untuned base where it is missing."""
    from slmops_helpers.finetune import tuned_dir
    from slmops_helpers.models import DEFAULT_MODEL, is_prepared, prepare_model

    return tuned_dir() if is_prepared(tuned_dir()) else Path(prepare_model(DEFAULT_MODEL))


@pytest.fixture(scope="session")
def course_gguf(course_source) -> dict[str, Path]:
    """Every GGUF variant of the course model, built by llama.cpp's own tools. They live in the
    course cache on purpose: notebook 04 builds the same files and reuses them. Skipped where
    llama.cpp could not be built, except in CI (SLMOPS_REQUIRE_LLAMA_CPP=1), where that fails."""
    import os

    from slmops_helpers.deploy import llamacpp, llamacpp_setup

    usable, reason = llamacpp_setup.availability()
    if not usable:
        if os.environ.get("SLMOPS_REQUIRE_LLAMA_CPP") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return llamacpp.build_all(course_source)


@pytest.fixture(scope="session")
def byte_tokenizer_dir(tmp_path_factory) -> Path:
    """A folder with a byte-level BPE ``tokenizer.json`` (each of the 256 bytes a token, then an
    end token ``<|end|>``): it can write any JSON, which the tiny word-level tokenizer cannot."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)} | {"<|end|>": len(alphabet)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<|end|>"])
    folder = tmp_path_factory.mktemp("byte_tokenizer")
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder
