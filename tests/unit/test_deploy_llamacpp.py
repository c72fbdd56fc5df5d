"""GGUF and llama.cpp: build flags read from the CPU, the converter and quantizer run on the
course's real model (the tiny test tokenizer is word-level, which llama.cpp's converter does
not take), files checked before use, and llama.cpp decoding what PyTorch decodes."""

from __future__ import annotations

import sys

import pytest

from slmops_helpers.deploy import llamacpp, llamacpp_setup
from slmops_helpers.deploy.runtime import TorchCausalLM

XEON = "processor: 0\nflags\t\t: fpu avx avx2 fma f16c avx512f avx512cd avx512vl avx512dq avx512bw avx512_vnni " \
    "avx512vbmi avx512_bf16 avx_vnni amx_tile amx_int8 amx_bf16\nflags : ignored second line"  # fmt: skip
ZEN3 = "flags : fpu avx avx2 fma f16c"
OLD = "flags : fpu sse4_2 avx"


def test_cpu_flags_reads_the_first_flags_line():
    assert "amx_int8" in llamacpp_setup.cpu_flags(XEON) and "ignored" not in llamacpp_setup.cpu_flags(XEON)
    assert llamacpp_setup.cpu_flags("no flags here") == set()


@pytest.mark.parametrize(
    "cpuinfo, on, off, kind",
    [
        (XEON, {"AVX2", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AVX_VNNI"}, {"AMX_INT8", "NATIVE"}, "avx512"),
        (ZEN3, {"AVX", "AVX2", "FMA", "F16C"}, {"AVX512", "AVX512_VNNI", "AMX_INT8", "NATIVE"}, "avx2"),
        (OLD, {"AVX"}, {"AVX2", "FMA", "AVX512"}, "generic"),
    ],
)
def test_build_flags_follow_the_cpu_and_keep_amx_off(cpuinfo, on, off, kind):
    options = llamacpp_setup.build_flags(llamacpp_setup.cpu_flags(cpuinfo))
    assert {f"-DGGML_{name}=ON" for name in on} <= set(options)
    assert {f"-DGGML_{name}=OFF" for name in off} <= set(options)
    assert llamacpp_setup.flag_set_name(options).startswith(f"{kind}-")


def test_avx512_needs_all_its_base_extensions():
    partial = llamacpp_setup.cpu_flags("flags : avx2 fma f16c avx512f")  # no BW/DQ/VL: GGML_AVX512 would crash
    assert "-DGGML_AVX512=OFF" in llamacpp_setup.build_flags(partial)


def test_different_flag_sets_get_different_wheel_caches():
    flag_sets = [llamacpp_setup.build_flags(llamacpp_setup.cpu_flags(c)) for c in (XEON, ZEN3)]
    assert len({llamacpp_setup.flag_set_name(options) for options in flag_sets}) == 2


def test_availability_names_the_fix_when_the_binding_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if it were not installed
    usable, reason = llamacpp_setup.availability()
    assert usable is False and "make setup" in reason


def test_a_missing_or_foreign_file_is_refused_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_gguf"):
        llamacpp.check_gguf(tmp_path / "model.gguf")
    (tmp_path / "model.gguf").write_bytes(b"\x08\x01onnx protobuf")
    with pytest.raises(ValueError, match="not a GGUF file.*build_gguf"):
        llamacpp.check_gguf(tmp_path / "model.gguf")
    with pytest.raises(ValueError, match="Unknown GGUF variant"):
        llamacpp.check_variant("gguf_q3")


# --- the course's real model through llama.cpp's tools ----------------------------------


@pytest.mark.slow
def test_a_truncated_gguf_is_refused_before_llama_cpp_reads_it(course_gguf, tmp_path):
    whole = course_gguf["gguf_q4_0"] / llamacpp.GGUF_FILE
    cut = tmp_path / llamacpp.GGUF_FILE
    with open(whole, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(whole.stat().st_size // 2))
    with pytest.raises(ValueError, match="truncated.*build_gguf"):
        llamacpp.check_gguf(cut)
    with pytest.raises(ValueError, match="truncated"):
        llamacpp.LlamaCppLM(tmp_path)


@pytest.mark.slow
def test_sizes_follow_the_types_and_k_quants_fall_back_on_576_wide_rows(course_gguf):
    from gguf import GGUFReader

    mib = {v: llamacpp.gguf_mib(d) for v, d in course_gguf.items()}
    assert mib["gguf_q4_0"] < mib["gguf_q4_k_m"] < mib["gguf_q8_0"] < mib["gguf_f16"]
    # Q4_0 stores 4.5 bits per weight against f16's 16; norms stay f32 and the file has a header
    assert 0.25 < mib["gguf_q4_0"] / mib["gguf_f16"] < 0.40
    reader = GGUFReader(course_gguf["gguf_q4_k_m"] / llamacpp.GGUF_FILE)
    matrices = [t for t in reader.tensors if len(t.shape) == 2]
    narrow = [t.tensor_type.name for t in matrices if int(t.shape[0]) % 256]  # rows k-quants cannot cut
    assert narrow and not any(name.endswith("_K") for name in narrow)
    assert any(t.tensor_type.name.endswith("_K") for t in matrices if int(t.shape[0]) % 256 == 0)
    types = llamacpp.tensor_types(course_gguf["gguf_q4_k_m"])
    assert list(types.values()) == sorted(types.values(), reverse=True)


@pytest.mark.slow
def test_the_header_reader_agrees_with_gguf_py(course_gguf):
    from gguf import GGUFReader

    for folder in course_gguf.values():
        path = folder / llamacpp.GGUF_FILE
        entries, end = llamacpp.read_tensor_table(path)
        reader = GGUFReader(path)
        assert [(e.name, e.type_name, e.n_bytes) for e in entries] == [
            (t.name, t.tensor_type.name, int(t.n_bytes)) for t in reader.tensors
        ]
        assert end == max(t.data_offset + t.n_bytes for t in reader.tensors) == path.stat().st_size


@pytest.fixture(scope="module")
def course_torch(course_source):
    return TorchCausalLM(course_source)


@pytest.fixture(scope="module")
def f16_lm(course_gguf):
    return llamacpp.LlamaCppLM(course_gguf["gguf_f16"], threads=2)


PROMPTS = ["My hub shows E-104 after the update.", "How do I change the billing address on my account?"]


@pytest.mark.slow
def test_llama_cpp_f16_decodes_what_pytorch_decodes(course_torch, f16_lm):
    from slmops_helpers import data
    from slmops_helpers.decoding import divergence_margin

    for message in PROMPTS:
        prompt = course_torch.chat_prompt(data.build_messages({"message": message}))
        ids = course_torch.encode(prompt)
        assert f16_lm.encode(prompt) == ids  # the same tokenizer files: the same token ids
        ours = [t.id for t in course_torch.stream(ids, 24)]
        theirs = [t.id for t in f16_lm.stream(ids, 24)]
        # f16 weights move the logits by far less than 0.5 (measured: ~0.05); a wrongly converted
        # tensor changes confident choices. So the two may only part where torch itself nearly tied.
        assert theirs == ours or divergence_margin(lambda x: course_torch.logits(x)[-1], ids, ours, theirs) < 0.5


@pytest.mark.slow
def test_llama_cpp_streams_timed_tokens_and_checks_the_context(f16_lm):
    ids = f16_lm.encode("Hello")
    tokens = list(f16_lm.stream(ids, 6, stop_at_eos=False))
    assert len(tokens) == 6 and all(t.seconds > 0 for t in tokens)
    assert "".join(t.text for t in tokens) == f16_lm.decode([t.id for t in tokens])
    assert [t.id for t in f16_lm.stream(ids, 6, stop_at_eos=False)] == [t.id for t in tokens]  # fresh cache each time
    with pytest.raises(ValueError, match="exceeds the model's context"):
        f16_lm.stream(ids, f16_lm.context_length)
    assert f16_lm.eos_ids == {f16_lm.tokenizer.token_to_id("<|im_end|>")}
