"""The CUDA code paths: device and dtype choice, a training step and decoding on the GPU,
and QLoRA with bitsandbytes' CUDA kernels. Skipped, with the reason, where there is no
CUDA (every course machine); run them wherever one is: ``pytest -m gpu``."""

from __future__ import annotations

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
