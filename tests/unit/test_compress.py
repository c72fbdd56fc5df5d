import pytest
import torch

from slmops_helpers import compress


@pytest.mark.parametrize("bits, max_rel_error", [(8, 0.01), (4, 0.2)])
def test_quantize_round_trip_error_and_size(bits, max_rel_error):
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    qt = compress.quantize_weight(w, bits=bits, group_size=32)
    assert qt.dequantize().shape == w.shape
    assert compress.relative_error(w, qt.dequantize()) < max_rel_error
    n_groups = w.numel() // 32
    assert qt.nbytes == w.numel() * bits // 8 + n_groups * 2  # integers + fp16 scales


def test_int4_packing_is_lossless_for_every_value():
    values = torch.arange(-8, 8, dtype=torch.int8).repeat(4)
    assert torch.equal(compress._unpack_int4(compress._pack_int4(values)), values)


def test_quantize_rejects_bad_arguments():
    w = torch.randn(4, 8)
    with pytest.raises(ValueError, match="bits must be one of"):
        compress.quantize_weight(w, bits=3)
    with pytest.raises(ValueError, match="group_size must be even and divide"):
        compress.quantize_weight(w, group_size=5)


def test_quantized_model_bytes_embedding_choice(tiny_model):
    full = compress.quantized_model_bytes(tiny_model, bits=4)
    keep = compress.quantized_model_bytes(tiny_model, bits=4, quantize_embeddings=False)
    emb = tiny_model.get_input_embeddings().weight
    assert keep["kept"] - full["kept"] == emb.numel() * 4
    assert full["total"] < keep["total"] < sum(p.numel() * 4 for p in tiny_model.parameters())


def test_prune_weight_magnitude_keeps_the_largest():
    w = torch.tensor([[0.1, -5.0], [0.2, 3.0]])
    pruned = compress.prune_weight(w, 0.5)
    assert torch.equal(pruned, torch.tensor([[0.0, -5.0], [0.0, 3.0]]))
    assert compress.sparsity(pruned) == 0.5
    assert compress.sparsity(compress.prune_weight(torch.randn(100, 10), 0.9, "random")) == pytest.approx(0.9)


def test_prune_weight_bad_input():
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        compress.prune_weight(torch.ones(2), 1.0)
    with pytest.raises(ValueError, match="method must be one of"):
        compress.prune_weight(torch.ones(2), 0.5, "smallest")


def test_csr_bytes_formula_and_break_even():
    m = torch.zeros(10, 10)
    m[0, :5] = 1
    assert compress.csr_bytes(m) == 5 * 8 + 11 * 4
    dense = torch.randn(100, 100)
    assert compress.csr_bytes(compress.prune_weight(dense, 0.5)) > dense.numel() * 4
    assert compress.csr_bytes(compress.prune_weight(dense, 0.9)) < dense.numel() * 4
    with pytest.raises(ValueError, match="2-D"):
        compress.csr_bytes(torch.ones(3))


def test_pruning_effect_measures_and_restores(tiny_model):
    weight = tiny_model.model.layers[0].mlp.down_proj.weight
    before = weight.detach().clone()
    ids = torch.randint(0, tiny_model.config.vocab_size, (1, 12))
    rows = compress.pruning_effect(tiny_model, ids, weight, [0.0, 0.9])
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6) and rows[0]["top1_agreement"] == 1.0
    assert rows[1]["kl"] > rows[0]["kl"]
    assert torch.equal(weight, before)
