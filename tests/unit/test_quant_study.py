"""Section 4.3's quantization study (slmops_helpers.deploy.quant_study) on a tiny model and made-up rows."""

import hashlib
import json

import numpy as np
import onnx
import pytest

from slmops_helpers.deploy import export, quant_study, report
from slmops_helpers.deploy.export import LM_HEAD, ONNX_FILE, Recipe
from slmops_helpers.deploy.runtime import OnnxCausalLM
from slmops_helpers.reference import Reference
from slmops_helpers.uncertainty import TicketScores


def _ops(folder):
    return {n.name: n for n in onnx.load(str(folder / ONNX_FILE), load_external_data=False).graph.node}


def test_tied_int8_embedding_reads_the_8_bit_head(tiny_source, onnx_root):
    untied = export.build_recipe(tiny_source, Recipe("int8"), onnx_root)
    tied = export.build_recipe(tiny_source, Recipe("int8", tie_embedding=True), onnx_root)
    assert tied != untied and export.is_built(tied)
    ops = _ops(tied)
    lookup = ops["/model/embed_tokens/GatherBlockQuantized"]
    assert lookup.op_type == "GatherBlockQuantized" and export.EMBEDDING not in ops
    assert {a.name: a.i for a in lookup.attribute}["bits"] == 8
    # the fp32 embedding is gone: only the 8-bit blocks and their scales remain
    assert export.size_breakdown(tied)["float_mib"] < export.size_breakdown(untied)["float_mib"]
    assert export.onnx_files_mib(tied) < export.onnx_files_mib(untied)
    # the same model up to the embedding's 8-bit rounding
    a, b = OnnxCausalLM(untied), OnnxCausalLM(tied)
    ids = a.encode("the order arrived broken and I want a refund")
    la, lb = a.logits(ids), b.logits(ids)
    assert np.abs(la - lb).max() < 0.05 * np.abs(la).max()


def test_tie_embedding_names_what_it_needs(tiny_source, onnx_root, tiny_onnx, tmp_path):
    import shutil

    copy = tmp_path / "fp32"
    shutil.copytree(tiny_onnx, copy)
    with pytest.raises(ValueError, match="no quantized head and fp32 embedding to tie"):
        export.tie_embedding(copy)


def test_recipe_options_are_refused_where_they_do_not_apply():
    with pytest.raises(ValueError, match=r"Unknown model-builder option\(s\) \['blocksize'\]"):
        Recipe("int4", builder_options={"blocksize": "16"})
    with pytest.raises(ValueError, match="block_size='48'.*16, 32, 64, 128, 256"):
        Recipe("int4", builder_options={"block_size": "48"})
    with pytest.raises(ValueError, match="per_channel is a quantize_dynamic option"):
        Recipe("int8", per_channel=True)
    with pytest.raises(ValueError, match="tie_embedding applies to the builder's int8 export"):
        Recipe("int4", tie_embedding=True)


def test_later_recipe_options_keep_the_earlier_cache_keys():
    recipe = Recipe("int8", tool="quantize_dynamic", exclude=(LM_HEAD,))
    before = json.dumps([recipe.precision, recipe.tool, recipe.execution_provider, [], [LM_HEAD]])
    assert recipe.key() == hashlib.sha256(before.encode()).hexdigest()[:10]
    assert Recipe("int8", tool="quantize_dynamic", exclude=(LM_HEAD,), per_channel=True).key() != recipe.key()


def test_levers_are_named_once_and_the_reference_comes_first():
    assert len(quant_study.BY_NAME) == len(quant_study.LEVERS)
    for every_lever in (False, True):
        levers = quant_study.levers_for(every_lever)
        assert levers[0].name == quant_study.REFERENCE and all(lv.name in quant_study.BY_NAME for lv in levers)
    assert len(quant_study.levers_for(True)) == len(quant_study.LEVERS) > len(quant_study.levers_for(False))
    assert not any(lv.gguf for lv in quant_study.levers_for(True, llamacpp_ok=False))
    assert quant_study.BY_NAME["onnx_int4_blocksize16"].recipe.builder_options == {"block_size": "16"}


def test_bits_per_weight_counts_the_whole_file():
    assert quant_study.bits_per_weight(1.0, 2**20) == 8.0
    assert quant_study.bits_per_weight(4.0, 2**20) == 32.0


def test_parameters_are_counted_from_the_safetensors(tiny_source, tiny_llama_factory):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_source)
    assert quant_study.source_parameters(tiny_source) == sum(p.numel() for p in model.parameters())


def test_mean_kl_is_zero_for_the_same_distribution_and_matches_the_formula():
    p = quant_study.log_softmax(np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]))
    q = quant_study.log_softmax(np.array([[1.0, 1.0, -1.0], [0.0, 1.0, 0.0]]))
    assert quant_study.mean_kl([p], [p]) == pytest.approx(0.0, abs=1e-12)
    expected = np.mean([(np.exp(p[i]) * (p[i] - q[i])).sum() for i in range(2)])
    assert quant_study.mean_kl([p], [q]) == pytest.approx(expected)
    assert quant_study.mean_kl([p], [q]) > 0
    with pytest.raises(ValueError, match="different shapes"):
        quant_study.mean_kl([p], [q[:1]])


def test_answer_logprobs_row_i_predicts_answer_token_i():
    class Echo:  # logits at position j put all mass on ids[j] + 1
        def logits(self, ids):
            out = np.full((len(ids), 20), -30.0)
            out[np.arange(len(ids)), np.array(ids) + 1] = 30.0
            return out

    prompt, answer = [3, 4, 5], [6, 7, 8]  # each token is the previous one + 1
    rows = quant_study.answer_logprobs(Echo(), prompt, answer)
    assert rows.shape == (3, 20) and list(rows.argmax(axis=1)) == answer


def _row(name, diff, bound, bits, kl, passes, size=100.0):
    lever = quant_study.BY_NAME[name]
    tickets = TicketScores(("a", "b"), (50.0 + diff, 50.0 + diff))
    return quant_study.StudyRow(
        lever, size, bits, 50 + diff, tickets, diff, (diff - 1, diff + 1), bound, kl, 80.0, 300.0, passes
    )


ROWS = [
    _row("onnx_fp32", 0.0, 0.0, 32.0, 0.0, True, 515),
    _row("onnx_int8_tensor", -20.0, 25.0, 7.0, 0.4, False, 210),
    _row("onnx_int8", -0.5, 1.5, 9.0, 0.003, True, 147),
    _row("onnx_int4_rtn", -14.0, 20.0, 5.1, 0.25, False, 83),
    _row("gguf_q8_0", -0.1, 2.0, 8.5, 0.002, True, 138),
    _row("gguf_q4_k_m", -5.0, 9.0, 6.3, 0.04, False, 101),
]


def test_study_metrics_name_the_smallest_passing_file_per_runtime_and_read_back():
    m = quant_study.study_metrics(ROWS)
    assert m["qs_smallest_passing_onnx"] == "onnx_int8" and m["qs_smallest_passing_gguf"] == "gguf_q8_0"
    assert m["qs_smallest_passing_4bit_onnx"] == "none" and m["qs_smallest_passing_4bit_gguf"] == "none"
    assert m["qs_onnx_int8_kl"] == 0.003 and m["qs_onnx_int4_rtn_passes"] is False
    back = quant_study.rows_from_metrics(m)
    assert [r["variant"] for r in back] == [r.lever.name for r in ROWS]  # the study's order
    assert back[2]["diff_ci_low"] == -1.5
    table = quant_study.format_table(back, 5)
    assert table.count("passes (≤ 5)") == 3 and table.count("fails (≤ 5)") == 3


def test_the_study_refuses_test_tickets_and_needs_the_reference_first(tiny_source):
    settings = None  # refused before any work
    with pytest.raises(ValueError, match="is a choice"):
        quant_study.run_study(
            tiny_source, quant_study.levers_for(False), [{"id": "t", "split": "test"}], settings, 5, 0.05
        )
    with pytest.raises(ValueError, match="first lever must be the reference"):
        quant_study.run_study(
            tiny_source, quant_study.levers_for(False)[1:], [{"id": "v", "split": "validation"}], settings, 5, 0.05
        )


def test_outlier_probe_finds_a_planted_outlier_channel(tiny_model, tiny_tokenizer):
    import torch

    from slmops_helpers import data

    rows = [r for r in data.read_rows() if r["split"] == "train"][:2]
    with pytest.raises(ValueError, match="reads training tickets only"):
        quant_study.outlier_probe(tiny_model, tiny_tokenizer, [r | {"split": "validation"} for r in rows])
    plain = quant_study.outlier_probe(tiny_model, tiny_tokenizer, rows)
    assert set(plain) >= {"q_proj", "down_proj"} and all(r >= 1 for r in plain.values())
    # one channel of every MLP's hidden activation made 1000x larger: down_proj's inputs now hold an outlier
    for layer in tiny_model.model.layers:
        with torch.no_grad():
            layer.mlp.up_proj.weight[0] *= 1000
    planted = quant_study.outlier_probe(tiny_model, tiny_tokenizer, rows)
    assert planted["down_proj"] > 10 * plain["down_proj"]
    m = quant_study.probe_metrics(planted)
    assert m["outlier_worst_kind"] == "down_proj" and "down_proj ×" in report.outlier_reading(m)


def test_the_reading_says_plainly_when_no_4_bit_recipe_passes():
    m = quant_study.study_metrics(ROWS) | {"quality_margin_points": 5.0, "profile": "full"}
    text = report.quant_study_reading(m, Reference("04_deployment", problem="none"), 48)
    assert "**none passes the gate**: the closest is `gguf_q4_k_m`" in text
    assert "int8: the recipe decides" in text and "rank correlation" in text
    passing = [*ROWS[:3], _row("onnx_int4_rtn", -1.0, 3.0, 5.1, 0.01, True, 83)]
    m = quant_study.study_metrics(passing) | {"quality_margin_points": 5.0, "profile": "smoke"}
    full = Reference("04_deployment", quant_study.study_metrics(ROWS) | {"deploy_choice_tickets": 48})
    text = report.quant_study_reading(m, full, 8)
    assert "passes the gate: `onnx_int4_rtn`" in text and "the full reference run measured 6 on 48" in text


def test_a_keep_float_lever_keeps_those_matmuls_in_fp32(tiny_source, monkeypatch, onnx_root):
    from slmops_helpers.deploy import export as export_module

    real = export_module.build_recipe
    monkeypatch.setattr(
        export_module, "build_recipe", lambda source, recipe, root=None: real(source, recipe, onnx_root)
    )
    folder = quant_study.build(tiny_source, quant_study.BY_NAME["onnx_int8_tensor_keep_down"])
    ops = {name: node.op_type for name, node in _ops(folder).items()}
    downs = [name for name in ops if "/mlp/down_proj/" in name]
    assert downs and all(ops[name] == "MatMul" for name in downs)  # kept in float
    assert ops[LM_HEAD] == "MatMul" and "MatMulInteger" in ops.values()  # the rest is int8
    lever = quant_study.Lever("x", "nothing matches", Recipe("int8", tool="quantize_dynamic"), keep_float="/nope/")
    with pytest.raises(ValueError, match="nothing to keep in fp32"):
        quant_study.build(tiny_source, lever)


def test_variants_are_taken_by_name_and_an_unknown_one_lists_the_choices(tiny_source):
    with pytest.raises(ValueError, match="Unknown variant 'onnx_int3'.*gguf_q4_1.*onnx_int4_blocksize16"):
        quant_study.variant_folders(tiny_source, ["onnx_int3"])
