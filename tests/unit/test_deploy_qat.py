"""Quantization-aware fine-tuning: onnxruntime's int4 grid, the straight-through forward, and an
export that holds exactly the weights QAT trained."""

import dataclasses

import numpy as np
import pytest
import torch

from slmops_helpers import models
from slmops_helpers.deploy import export, qat


def test_the_grid_is_onnxruntimes_symmetric_int4_and_snapping_is_idempotent():
    w = torch.randn(6, 64, generator=torch.Generator().manual_seed(0))
    w[0, 5] = -3.0  # a negative extreme: its scale is positive, and it still lands on code -8
    grid = qat.int4_grid(w, 32)
    for block, rounded in zip(w.reshape(-1, 32), grid.reshape(-1, 32), strict=True):
        extreme = block[block.abs().argmax()]
        codes = rounded / (extreme / -8)
        assert torch.allclose(codes, codes.round(), atol=1e-4) and -8 <= codes.round().min() <= codes.round().max() <= 7
        assert codes[block.abs().argmax()].item() == pytest.approx(-8)  # the extreme is a grid point
        # half a step inside the grid; on the far side of zero the grid stops at 7 steps, one short of the extreme
        assert (rounded - block).abs().max() <= extreme.abs() / 8 + 1e-6
    assert torch.equal(qat.int4_grid(grid, 32), grid)  # what the exporter re-derives from snapped weights
    with pytest.raises(ValueError, match="blocks of 48.*Fix: pick a block size"):
        qat.int4_grid(w, 48)


def test_fake_quant_rounds_forward_and_passes_the_gradient_straight_through():
    w = torch.randn(4, 32, requires_grad=True)
    out = qat.fake_quant(w)
    assert torch.equal(out.detach(), qat.int4_grid(w.detach()))
    (out * torch.arange(32.0)).sum().backward()
    assert torch.equal(w.grad, torch.arange(32.0).expand(4, 32))


def test_int4_forward_computes_with_the_rounded_weights_and_leaves_the_model_as_it_was(tiny_source):
    model, tokenizer = models.load_model(str(tiny_source), device="cpu", dtype=torch.float32)
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        before = model(ids).logits
        with qat.int4_forward(model):
            rounded = model(ids).logits
        after = model(ids).logits
        qat.snap(model)
        snapped = model(ids).logits
    assert torch.equal(before, after) and not torch.allclose(before, rounded)
    assert torch.allclose(rounded, snapped, atol=1e-5)  # the forward QAT trains is the snapped model's
    names = {name for name, _ in qat.rounded_modules(model)}
    assert "lm_head" in names and "model.embed_tokens" in names and any("down_proj" in n for n in names)


def test_fine_tune_trains_on_training_tickets_caches_and_exports_the_weights_it_trained(
    tiny_source, rows, onnx_root, tmp_path, monkeypatch
):
    monkeypatch.setattr(qat, "cache_dir", lambda: tmp_path)
    config = qat.QatConfig(steps=2, batch=2, lr=1e-3, max_length=512)
    with pytest.raises(ValueError, match="training tickets only"):
        qat.fine_tune(tiny_source, [dict(rows[0], split="validation")], config)
    folder = qat.fine_tune(tiny_source, rows, config)
    assert (folder / qat.MARKER).is_file() and folder.parent.name == export.source_fingerprint(tiny_source)
    trained, _ = models.load_model(str(folder), device="cpu", dtype=torch.float32)
    down = trained.model.layers[0].mlp.down_proj.weight.detach()
    assert torch.equal(qat.int4_grid(down), down)  # saved on the grid
    # the control: the same steps in float, cached apart, its weights left where training put them
    control = qat.fine_tune(tiny_source, rows, dataclasses.replace(config, on_grid=False))
    assert control != folder and control.name == folder.name + "-float"
    floated, _ = models.load_model(str(control), device="cpu", dtype=torch.float32)
    floated_down = floated.model.layers[0].mlp.down_proj.weight.detach()
    assert not torch.equal(qat.int4_grid(floated_down), floated_down)
    monkeypatch.setattr(qat.training, "train", None)  # a second run would fail if it trained
    assert qat.fine_tune(tiny_source, rows, config) == folder  # cached

    # the builder's int4 export re-derives the same scales and codes: its weights are QAT's, exactly
    int4 = export.build_recipe(folder, export.Recipe("int4"), onnx_root)
    stored = _matmul_nbits_weight(int4, "layers.0/mlp/down_proj", *down.shape)
    np.testing.assert_allclose(stored, down.numpy(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="lr must be positive"):
        qat.QatConfig(steps=1, batch=1, lr=0.0)


def _matmul_nbits_weight(folder, node_part, n, k):
    """Dequantize one MatMulNBits node's 4-bit weight ([N, K], as torch stores a linear layer's)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(folder / export.ONNX_FILE))
    node = next(x for x in model.graph.node if x.op_type == "MatMulNBits" and node_part in x.name)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    packed, scales = inits[node.input[1]], inits[node.input[2]].reshape(n, -1)
    assert len(node.input) < 4 or not node.input[3], "symmetric: no zero points"
    low, high = packed & 0x0F, packed >> 4
    codes = np.stack([low, high], axis=-1).reshape(n, -1)[:, :k].astype(np.float32) - 8
    return (codes.reshape(n, -1, 32) * scales[:, :, None]).reshape(n, k)
