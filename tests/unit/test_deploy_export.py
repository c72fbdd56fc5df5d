"""Export to ONNX on a tiny random Llama: the builder's fp32 graph passes the checker,
int8 shrinks it, builds are cached per source and recipe and written atomically, and
bad names give errors that list the choices."""

from __future__ import annotations

import json

import onnx
import pytest

from slmops_helpers.deploy import export
from slmops_helpers.deploy.export import LM_HEAD, MARKER, ONNX_FILE, Recipe


def test_fp32_export_is_complete_and_passes_the_checker(tiny_onnx, tiny_source):
    assert export.is_built(tiny_onnx)
    for name in ("model.onnx.data", "genai_config.json", "tokenizer.json", "chat_template.jinja"):
        assert (tiny_onnx / name).is_file(), name
    assert export.check_model(tiny_onnx) == ["SimplifiedLayerNormalization"]  # RMSNorm: the only relabelled op
    marker = json.loads((tiny_onnx / MARKER).read_text())
    assert marker["source"] == str(tiny_source)
    assert marker["recipe"]["precision"] == "fp32" and marker["recipe"]["key"] == export.RECIPES["onnx_fp32"].key()
    assert not (tiny_onnx / ".hf_cache").exists()


def test_fp32_graph_has_a_kv_cache_per_layer(tiny_onnx):
    model = onnx.load(str(tiny_onnx / ONNX_FILE), load_external_data=False)
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    for layer in range(2):
        for kind in ("key", "value"):
            assert f"past_key_values.{layer}.{kind}" in inputs
            assert f"present.{layer}.{kind}" in outputs
    assert {"input_ids", "attention_mask"} <= inputs and "logits" in outputs
    assert LM_HEAD in {n.name for n in model.graph.node}  # the exclusion the int8 recipe names exists


def test_int8_is_smaller_and_keeps_lm_head_in_fp32(tiny_onnx, tiny_int8):
    assert tiny_int8 != tiny_onnx and export.is_built(tiny_int8)
    assert export.onnx_files_mib(tiny_int8) < 0.5 * export.onnx_files_mib(tiny_onnx)
    export.check_model(tiny_int8)
    model = onnx.load(str(tiny_int8 / ONNX_FILE), load_external_data=False)
    ops = {n.name: n.op_type for n in model.graph.node}
    assert ops[LM_HEAD] == "MatMul"  # excluded: still a float MatMul
    assert any(op == "MatMulInteger" for op in ops.values())
    for name in ("genai_config.json", "tokenizer.json", "chat_template.jinja"):
        assert (tiny_int8 / name).is_file(), name  # side files copied for the runtime
    assert export.size_breakdown(tiny_int8)["quantized_mib"] > 0


def test_size_breakdown_accounts_for_the_weights(tiny_onnx, tiny_int8):
    fp32 = export.size_breakdown(tiny_onnx)
    assert fp32["quantized_mib"] == 0 and fp32["scales_mib"] == 0
    for folder in (tiny_onnx, tiny_int8):
        parts = export.size_breakdown(folder)
        data_mib = (folder / f"{ONNX_FILE}.data").stat().st_size / 2**20
        # every external byte is counted, plus the small tensors stored inline in the
        # graph file; onnx_files_mib counts both files, so it bounds the total from above
        total, eps = sum(parts.values()), 1e-9
        assert data_mib - eps <= total <= export.onnx_files_mib(folder) + eps
    int8 = export.size_breakdown(tiny_int8)
    assert int8["scales_mib"] > 0  # per-tensor scales and zero points are stored inline


def test_second_build_reuses_the_cached_folder(tiny_source, onnx_root, tiny_onnx, monkeypatch):
    mtime = (tiny_onnx / MARKER).stat().st_mtime_ns

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the builder ran again for a cached variant")

    monkeypatch.setattr(export, "_run_builder", no_rebuild)
    assert export.build_variant(tiny_source, "onnx_fp32", root=onnx_root) == tiny_onnx
    assert (tiny_onnx / MARKER).stat().st_mtime_ns == mtime


def test_variant_dir_depends_on_source_and_recipe(tiny_source, onnx_root):
    fp32, int4 = export.get_variant("onnx_fp32"), export.get_variant("onnx_int4")
    assert export.variant_dir(tiny_source, fp32, onnx_root) != export.variant_dir(tiny_source, int4, onnx_root)
    assert export.variant_dir(tiny_source, fp32, onnx_root).parent.name == export.source_fingerprint(tiny_source)
    assert (
        Recipe("int8", tool="quantize_dynamic").key() != Recipe("int8", tool="quantize_dynamic", exclude=("x",)).key()
    )


def test_source_fingerprint_changes_with_the_weights(tiny_source, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_source, copy)
    assert export.source_fingerprint(copy) == export.source_fingerprint(tiny_source)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert export.source_fingerprint(copy) != export.source_fingerprint(tiny_source)


def test_source_without_weights_names_the_fix(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        export.source_fingerprint(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"\*\.safetensors"):
        export.build_variant(tmp_path, "onnx_fp32", root=tmp_path / "onnx")


def test_unknown_variant_and_precision_list_the_choices(tiny_source, tmp_path):
    with pytest.raises(ValueError, match=r"onnx_int3.*onnx_fp16.*onnx_fp32.*onnx_int4.*onnx_int8"):
        export.build_variant(tiny_source, "onnx_int3", root=tmp_path)
    with pytest.raises(ValueError, match=r"'int3'.*\['fp32', 'fp16', 'int8', 'int4'\]"):
        export.build_recipe(tiny_source, Recipe("int3"), root=tmp_path)
    assert export.check_precision("int4") == "int4"
    assert not any(tmp_path.iterdir())  # nothing written before the check


def test_a_failing_builder_leaves_no_folder(tiny_source, tmp_path, monkeypatch):
    def broken_builder(source, out, recipe):
        (out / ONNX_FILE).write_bytes(b"half a graph")
        raise RuntimeError("builder crashed")

    monkeypatch.setattr(export, "_run_builder", broken_builder)
    recipe = export.get_variant("onnx_int4")
    with pytest.raises(RuntimeError, match="builder crashed"):
        export.build_recipe(tiny_source, recipe, root=tmp_path)
    final = export.variant_dir(tiny_source, recipe, tmp_path)
    assert not final.exists()
    assert list(final.parent.iterdir()) == []  # no temp folder left beside it either


def test_a_graph_failing_the_checker_is_not_cached(tiny_source, tmp_path, monkeypatch):
    def bad_graph(source, out, recipe):
        (out / ONNX_FILE).write_bytes(b"not a protobuf")

    monkeypatch.setattr(export, "_run_builder", bad_graph)
    recipe = export.get_variant("onnx_fp16")
    with pytest.raises(Exception):  # noqa: B017 - onnx's DecodeError; the point is what is left on disk
        export.build_recipe(tiny_source, recipe, root=tmp_path)
    assert not export.variant_dir(tiny_source, recipe, tmp_path).exists()


def test_builder_command_is_offline_and_local(tiny_source, tmp_path):
    command = export.builder_command(tiny_source, tmp_path / "out", export.get_variant("onnx_int4"), tmp_path / "hf")
    assert command[1:3] == ["-m", "onnxruntime_genai.models.builder"]
    assert command[command.index("-i") + 1] == str(tiny_source)
    assert command[command.index("-p") + 1] == "int4"
    assert command[command.index("-c") + 1] == str(tmp_path / "hf")
    assert command[-2:] == ["--extra_options", "algo_config=k_quant_last"]


@pytest.mark.slow
def test_course_int4_export_is_4_bit_with_an_8_bit_lm_head_and_int8_compute(course_source):
    # what the recipe note and the glossary say of the deployed int4 graph, read from the graph itself
    graph = onnx.load(str(export.build_variant(course_source, "onnx_int4") / ONNX_FILE), load_external_data=False)
    nodes = [n for n in graph.graph.node if n.op_type == "MatMulNBits"]
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes]
    bits = {n.name: a["bits"] for n, a in zip(nodes, attrs, strict=True)}
    assert [name for name, b in bits.items() if b == 8] == [f"{LM_HEAD}_Q8"]
    assert sum(b == 4 for b in bits.values()) == len(bits) - 1 > 100
    assert {a["accuracy_level"] for a in attrs} == {4}  # activations rounded to int8 inside each product
