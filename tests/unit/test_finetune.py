"""Fine-tuning helpers on a tiny random Llama: target checks, trainable shares, adapter
save/load/switch, merge parity, the YAML grid, and the errors bad input should give."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

from slmops_helpers import evaluate, finetune, training
from slmops_helpers.finetune import ATTENTION, MethodConfig


def test_linear_module_names_lists_attention_and_mlp(tiny_model):
    assert finetune.linear_module_names(tiny_model) == sorted(ATTENTION + finetune.MLP)


def test_unknown_target_names_the_choices(tiny_model):
    with pytest.raises(ValueError, match=r"q_prj.*choose from.*q_proj"):
        finetune.check_targets(tiny_model, ("q_prj",))
    with pytest.raises(ValueError, match="No target modules"):
        finetune.check_targets(tiny_model, ())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "lora", "rank": 0}, "rank"),
        ({"method": "lora", "rank": -2}, "rank"),
        ({"method": "dora"}, "Unknown method"),
        ({"method": "lora", "alpha": 0}, "alpha"),
    ],
)
def test_method_spec_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MethodConfig(**kwargs)


def test_lora_trains_only_the_adapter_and_count_matches_the_formula(tiny_model):
    expected = finetune.lora_parameter_count(tiny_model, 4, ("q_proj", "v_proj"))
    # q_proj 32->32 and v_proj 32->16 (2 kv heads of 8) in each of 2 layers: 4*(64+48)*2
    assert expected == 4 * (32 + 32 + 32 + 16) * 2
    model = finetune.make_trainable(tiny_model, MethodConfig("lora", rank=4, targets=("q_proj", "v_proj")))
    count, pct = finetune.trainable_share(model)
    assert count == expected and 0 < pct < 100


def test_ia3_is_smaller_than_lora(tiny_model, tiny_tokenizer):
    from transformers import LlamaForCausalLM

    other = LlamaForCausalLM(tiny_model.config)
    ia3, _ = finetune.trainable_share(finetune.make_trainable(tiny_model, MethodConfig("ia3")))
    lora, _ = finetune.trainable_share(finetune.make_trainable(other, MethodConfig("lora", rank=4)))
    assert 0 < ia3 < lora


def test_full_fine_tuning_trains_everything(tiny_model):
    tiny_model.requires_grad_(False)
    _, pct = finetune.trainable_share(finetune.make_trainable(tiny_model, MethodConfig("full")))
    assert pct == 100.0


def _trained_lora(model, seed):
    peft_model = finetune.make_trainable(model, MethodConfig("lora", rank=4))
    torch.manual_seed(seed)
    with torch.no_grad():  # lora_B starts at zero: give it weights so the adapter changes outputs
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return peft_model.eval()


def test_merge_keeps_the_logits(tiny_model):
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, 7))
    base_logits = tiny_model(input_ids=ids).logits.clone()
    peft_model = _trained_lora(tiny_model, 0)
    merged, parity = finetune.merge_with_parity(peft_model, ids)
    assert parity.exact and parity.weight_error <= 1 and 0 < parity.noise < 1e-5
    assert not hasattr(merged, "peft_config")  # a plain transformers model again
    assert (merged(input_ids=ids).logits - base_logits).abs().max() > 1e-3  # and the adapter is in it
    assert parity.metrics()["merge_max_abs_diff"] == parity.max_abs_diff


@pytest.mark.parametrize("breakage", ["scaling dropped", "one layer left out"])
def test_merge_parity_catches_a_wrong_merge(tiny_model, breakage):
    """A merge that loses the adapter's alpha/r scaling, or one layer's update, must fail."""
    ids = torch.randint(0, tiny_model.config.vocab_size, (2, 7))
    peft_model = _trained_lora(tiny_model, 0)
    lora_layers = [m for m in peft_model.modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
    real_merge = type(lora_layers[0]).merge

    def broken_merge(layer, *args, **kwargs):
        if breakage == "one layer left out" and layer is lora_layers[-1]:
            return None
        if breakage == "scaling dropped":
            layer.scaling["default"] = 1.0  # rank 4, alpha 16: the true scaling is 4
        return real_merge(layer, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(lora_layers[0]), "merge", broken_merge)
        _, parity = finetune.merge_with_parity(peft_model, ids)
    assert not parity.exact and parity.weight_error > 1e3, parity


def test_merge_parity_refuses_a_quantized_base():
    model = torch.nn.Linear(2, 2)
    model.weight = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.uint8), requires_grad=False)
    with pytest.raises(ValueError, match="quantized ones"):
        finetune.merge_with_parity(model, torch.zeros(1, 2, dtype=torch.long))


def test_merge_parity_reads_real_tokens_only():
    """Logits at padding are never used: a difference there alone must not count."""

    class Fixed(torch.nn.Module):
        def __init__(self, logits, merged=None):
            super().__init__()
            self.logits, self.merged = logits, merged

        def forward(self, input_ids, attention_mask):
            return SimpleNamespace(logits=self.logits)

        def merge_and_unload(self):
            return self.merged

    before = torch.zeros(1, 4, 3)
    after = before.clone()
    after[0, 3] = 1.0  # the last position differs
    model = Fixed(before, Fixed(after))
    ids, mask = torch.ones(1, 4, dtype=torch.long), torch.tensor([[1, 1, 1, 0]])
    assert finetune.merge_with_parity(model, ids, mask)[1].max_abs_diff == 0.0
    assert finetune.merge_with_parity(model, ids)[1].max_abs_diff == 1.0  # no mask: every position is real


def test_adapters_save_load_and_switch(tiny_model, tmp_path):
    from transformers import LlamaForCausalLM

    ids = torch.randint(0, tiny_model.config.vocab_size, (1, 6))
    base_state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    outputs = {}
    for name, seed in (("customer_a", 1), ("customer_b", 2)):
        fresh = LlamaForCausalLM(tiny_model.config)
        fresh.load_state_dict(base_state)
        adapter = _trained_lora(fresh, seed)
        outputs[name] = adapter(input_ids=ids).logits
        mb = finetune.save_artifact(adapter, tmp_path / name)
        assert 0 < mb < 1 and (tmp_path / name / "adapter_config.json").is_file()
    base = LlamaForCausalLM(tiny_model.config)
    base.load_state_dict(base_state)
    model = finetune.load_adapters(base, {n: tmp_path / n for n in outputs})
    for name, expected in outputs.items():
        model.set_adapter(name)
        assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-5), name


def test_an_adapter_for_another_base_is_refused(tiny_model, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    finetune.save_artifact(_trained_lora(tiny_model, 0), tmp_path / "a")
    wider = LlamaForCausalLM(LlamaConfig(**tiny_model.config.to_dict() | {"hidden_size": 48}))
    with pytest.raises(ValueError, match="different base model"):
        finetune.load_adapters(wider, {"a": tmp_path / "a"})
    deeper_config = tiny_model.config.to_dict() | {"num_hidden_layers": 1}
    shallow = LlamaForCausalLM(LlamaConfig(**deeper_config))
    with pytest.raises(ValueError, match="absent from this base model"):
        finetune.check_adapter_fits(shallow, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        finetune.check_adapter_fits(tiny_model, tmp_path)


def test_save_artifact_is_atomic(tiny_model, tmp_path):
    class Broken:
        def save_pretrained(self, folder):
            (folder / "half.bin").write_bytes(b"x")
            raise OSError("disk full")

    with pytest.raises(OSError):
        finetune.save_artifact(Broken(), tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_grid_expands_every_combination(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("fixed: {targets: [q_proj], steps: 2}\nsearch: {rank: [4, 8], lr: [0.001, 0.0003]}\n")
    runs = finetune.read_grid(path)
    assert len(runs) == 4
    assert {(r["rank"], r["lr"]) for r in runs} == {(4, 0.001), (4, 0.0003), (8, 0.001), (8, 0.0003)}
    assert all(r["targets"] == ["q_proj"] and r["steps"] == 2 for r in runs)


def test_the_course_grid_file_is_valid(root):
    runs = finetune.read_grid(root / finetune.GRID_EXAMPLE)
    assert len(runs) >= 2 and all("lr" in r and "rank" in r for r in runs)


@pytest.mark.parametrize(
    "text, match",
    [
        ("search: [1, 2]", "mapping"),
        ("search: {rank: 4}", "non-empty list"),
        ("search: {depth: [1]}", "unknown key"),
        ("search: {rank: [4.5]}", "should be a int"),
        ("fixed: {lr: yes}\nsearch: {rank: [4]}", "should be a float"),
        ("search: {rank: [4]\n  lr: [", "not valid YAML"),
        ("serch: {rank: [4]}", "expected a mapping"),
    ],
)
def test_malformed_grids_name_the_fix(tmp_path, text, match):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        finetune.read_grid(path)


def test_olive_command_carries_the_run_settings():
    cmd = finetune.olive_finetune_command(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        MethodConfig("lora", rank=16, alpha=32),
        training.TrainConfig(lr=5e-4, max_steps=60, batch_size=4),
        "tickets.jsonl",
        "out/lora",
    )
    for part in (
        "olive finetune --method lora",
        "--lora_r 16",
        "--lora_alpha 32",
        "--max_steps 60",
        "--per_device_train_batch_size 4",
        "--learning_rate 0.0005",
        "-o out/lora",
    ):
        assert part in cmd
    with pytest.raises(ValueError, match="lora and qlora"):
        finetune.olive_finetune_command("m", MethodConfig("ia3"), training.TrainConfig(), "d", "o")


def test_qlora_runs_here_and_a_missing_bitsandbytes_names_the_fix(monkeypatch):
    assert finetune.qlora_unavailable_reason() is None  # pinned, with a CPU backend: a real 4-bit layer works
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if not installed
    assert "pip install bitsandbytes" in finetune.qlora_unavailable_reason()


def test_tuned_recipe_key_changes_with_the_recipe():
    a = finetune.TunedConfig()
    b = finetune.TunedConfig(config=training.TrainConfig(lr=1e-3, max_steps=41, batch_size=8, eval_every=10))
    assert a.key("m") == finetune.TunedConfig().key("m") != b.key("m") and a.key("m") != a.key("other")


def test_fake_quantized_base_has_few_distinct_values_per_group(tiny_model):
    before = tiny_model.model.layers[0].self_attn.q_proj.weight.clone()
    finetune.fake_quantize_base(tiny_model, bits=4)
    after = tiny_model.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(before, after)
    assert all(len(torch.unique(group)) <= 16 for group in after.flatten().view(-1, 32))  # int4: 16 levels per group
    assert (before - after).abs().max() < before.abs().max() / 7  # rounding, not replacement


def test_run_method_trains_saves_and_scores(tiny_model, tiny_tokenizer, tmp_path):
    row = {
        "id": "t",
        "split": "test",
        "message": "my hub is offline",
        "category": "connectivity",
        "error_code": "none",
        "reply": "reset the hub.",
    }
    examples = [training.encode_example(tiny_tokenizer, row, 128)] * 4
    split = {"train": examples, "validation": examples[:1], "test": [row, {**row, "id": "t-2"}]}
    config = training.TrainConfig(lr=1e-2, max_steps=2, batch_size=2)
    model, run = finetune.run_method(
        "lora", tiny_model, tiny_tokenizer, MethodConfig("lora", rank=2), config, split, 4, tmp_path
    )
    row_out = run.row()
    assert row_out["method"] == "lora" and 0 < row_out["trainable_pct"] < 100 and row_out["s_per_step"] > 0
    assert row_out["artifact_mib"] == pytest.approx(evaluate.files_mib(tmp_path / "lora"))
    assert run.tickets.n == 2 and run.row()["score_ci_low"] <= row_out["score"] <= run.row()["score_ci_high"]
    assert len(run.answers) == 2 and 0 <= row_out["score"] <= 100 and len(run.training.history) == 2
    assert row_out["peak_mib"] == pytest.approx(sum(run.memory_mib.values())) and hasattr(model, "peft_config")
    assert row_out["optimizer_mib"] == pytest.approx(2 * row_out["gradients_mib"]) and row_out["activations_mib"] > 0
