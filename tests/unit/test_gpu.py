"""The CUDA code paths: device and dtype choice, a training step and decoding on the GPU,
bf16/fp16 autocast and gradient accumulation through accelerate, QLoRA with bitsandbytes'
CUDA kernels, and notebook 02's full profile (slow too). Skipped, with the reason, where
there is no CUDA (every course machine); run them wherever one is: ``pytest -m gpu``."""

from __future__ import annotations

import math
import os

import pytest
import torch

from slmops_helpers import finetune, models, training
from slmops_helpers.finetune import MethodConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: torch.cuda.is_available() is False here"),
]


def test_cuda_is_picked_with_a_half_precision_dtype(monkeypatch):
    monkeypatch.delenv("SLMOPS_DEVICE", raising=False)
    assert models.pick_device() == "cuda"
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert models.pick_dtype("cuda") == expected


def test_training_on_the_gpu_lowers_the_loss_like_on_the_cpu(tiny_tokenizer, tiny_llama_factory):
    row = {"message": "my hub is offline", "category": "wifi", "error_code": "none", "reply": "reset the hub."}
    examples = [training.encode_example(tiny_tokenizer, row, max_length=128) for _ in range(8)]
    config = training.TrainConfig(lr=1e-2, max_steps=10, batch_size=4, eval_every=5)
    losses = {}
    for device in ("cpu", "cuda"):
        model = tiny_llama_factory(tiny_tokenizer).to(device)
        result = training.train(model, examples, examples[:2], config, tiny_tokenizer.pad_token_id)
        losses[device] = [h["train_loss"] for h in result.history]
        assert next(model.parameters()).device.type == device
    assert losses["cuda"][-1] < 0.5 * losses["cuda"][0]
    # float32 on both: the first step sees the same weights and batch (TF32 matmuls may differ a little)
    assert losses["cuda"][0] == pytest.approx(losses["cpu"][0], rel=1e-3)


def test_qlora_uses_bitsandbytes_cuda_kernels_and_trains():
    assert finetune.qlora_unavailable_reason() is None
    model, tokenizer = finetune.load_4bit(device="cuda")
    four_bit = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    assert four_bit and all(m.weight.device.type == "cuda" for m in four_bit)
    peft_model = finetune.make_trainable(model, MethodConfig("qlora", rank=8, alpha=16))
    trainable, share = finetune.trainable_share(peft_model)
    assert 0 < share < 1.0 and trainable == finetune.lora_parameter_count(
        models.load_model(device="cpu", dtype=torch.float32)[0], 8, MethodConfig("qlora").targets
    )
    row = {"message": "E-104 on my hub", "category": "connectivity", "error_code": "E-104", "reply": "Restart it."}
    examples = [training.encode_example(tokenizer, row, max_length=256) for _ in range(4)]
    config = training.TrainConfig(lr=1e-3, max_steps=2, batch_size=2, eval_every=2)
    result = training.train(peft_model, examples, examples[:2], config, tokenizer.pad_token_id)
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result.history)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_through_accelerate(tiny_tokenizer, tiny_llama_factory, precision):
    """fp32 weights, bf16/fp16 autocast (fp16 with a gradient scaler): it learns, its first loss
    is the fp32 one within half-precision rounding, and the model comes back unpatched."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    row = {"message": "my hub is offline", "category": "wifi", "error_code": "none", "reply": "reset the hub."}
    examples = [training.encode_example(tiny_tokenizer, row, max_length=128) for _ in range(8)]
    losses = {}
    for mixed in (None, precision):
        model = tiny_llama_factory(tiny_tokenizer).to("cuda")
        config = training.TrainConfig(lr=1e-2, max_steps=10, batch_size=4, eval_every=5, mixed_precision=mixed)
        result = training.train(model, examples, examples[:2], config, tiny_tokenizer.pad_token_id)
        losses[mixed] = [h["train_loss"] for h in result.history]
        assert "forward" not in vars(model)  # accelerate's autocast wrapper stayed on the loss module
        assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert losses[precision][-1] < 0.5 * losses[precision][0]
    assert losses[precision][0] == pytest.approx(losses[None][0], rel=2e-2)


def test_gradient_accumulation_on_the_gpu_matches_one_batch(tiny_tokenizer, tiny_llama_factory):
    row = {"message": "my hub is offline", "category": "wifi", "error_code": "none", "reply": "reset the hub."}
    examples = [training.encode_example(tiny_tokenizer, row, max_length=128) for _ in range(8)]
    runs = []
    for steps in (1, 4):
        model = tiny_llama_factory(tiny_tokenizer).to("cuda")
        config = training.TrainConfig(lr=1e-2, max_steps=6, batch_size=8, gradient_accumulation_steps=steps)
        result = training.train(model, examples, examples[:2], config, tiny_tokenizer.pad_token_id)
        runs.append([h["train_loss"] for h in result.history])
    assert runs[1] == pytest.approx(runs[0], rel=1e-3)  # TF32 matmuls: a little looser than on the CPU


def test_qlora_trains_with_bf16_autocast():
    """QLoRA as section 3 runs it on a GPU: 4-bit bitsandbytes base, LoRA in fp32, bf16 autocast."""
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model, tokenizer = finetune.load_4bit(device="cuda")
    peft_model = finetune.make_trainable(model, MethodConfig("qlora", rank=8, alpha=16))
    row = {"message": "E-104 on my hub", "category": "connectivity", "error_code": "E-104", "reply": "Restart it."}
    examples = [training.encode_example(tokenizer, row, max_length=256) for _ in range(4)]
    config = training.TrainConfig(lr=1e-3, max_steps=6, batch_size=2, eval_every=3, mixed_precision="bf16")
    result = training.train(peft_model, examples, examples[:2], config, tokenizer.pad_token_id)
    losses = [h["train_loss"] for h in result.history]
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0]


@pytest.mark.slow
def test_notebook_02_full_profile_on_a_preset(root):
    """Notebook 02's full profile on the GPU, on $SLMOPS_GPU_MODEL (default: the offline preset;
    any preset where the hub, or a copied Hugging Face cache, has it). About an hour on 2 CPU
    cores; minutes on a GPU. Its metrics must be those of a full run, on CUDA."""
    from slmops_helpers.config import artifacts_dir
    from slmops_helpers.course.runner import run_notebook
    from slmops_helpers.metrics import read_metrics

    model = os.environ.get("SLMOPS_GPU_MODEL", models.DEFAULT_MODEL)
    notebook = root / "notebooks" / "02_distillation.ipynb"
    run_notebook(notebook, artifacts_dir() / "notebooks" / notebook.name, {"profile": "full", "model_name": model})
    m = read_metrics("02_distillation")
    assert m["profile"] == "full" and m["model"] == model and "cuda" in str(m["device"])
    assert m["teacher_score"] >= max(m["majority_score"], m["copy_score"]) + 10
    assert 0 < m["student_params"] < m["teacher_params"] and m["speedup"] > 1
