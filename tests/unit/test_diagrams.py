"""Concept diagrams (slmops_helpers.diagrams): each draws the parts its idea has, labelled
from its arguments, and refuses arguments the idea cannot have."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from slmops_helpers import diagrams


def _patches(fig):
    return {p.get_gid(): p for ax in fig.axes for p in ax.patches if p.get_gid()}


def _texts(fig):
    return " ".join([t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes])


def test_lora_draws_w_beside_b_and_a_to_scale_and_counts_what_trains():
    fig = diagrams.lora(192, 576, 8)
    boxes = _patches(fig)
    w, b, a = boxes["W"], boxes["B"], boxes["A"]
    assert w.get_width() / w.get_height() == pytest.approx(576 / 192)  # W's shape, to scale
    assert b.get_height() == pytest.approx(w.get_height()) and a.get_width() == pytest.approx(w.get_width())
    assert b.get_width() < w.get_width() / 10 and a.get_height() < w.get_height() / 5  # thin: rank 8
    text = _texts(fig)
    assert "192 × 576" in text and "B\n192 × 8" in text and "A\n8 × 576" in text
    assert f"{8 * (192 + 576):,} weights train instead of {192 * 576:,}" in text
    plt.close(fig)
    for rank in (0, 193):
        with pytest.raises(ValueError, match="rank must be in"):
            diagrams.lora(192, 576, rank)


def test_kv_cache_reads_every_cached_key_and_computes_one():
    fig = diagrams.kv_cache(["a", "b", "c"], "d")
    boxes = _patches(fig)
    keys = [boxes[f"K{i}"] for i in range(4)]
    assert [k.get_facecolor() == keys[-1].get_facecolor() for k in keys] == [False, False, False, True]
    assert sum(gid.startswith("reads") for gid in boxes) == 4 and "query" in boxes
    assert "3 read from the cache" in _texts(fig)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("cached" in label for label in labels) and any("this step" in label for label in labels)
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one earlier token"):
        diagrams.kv_cache([], "d")


def test_speculative_round_keeps_the_accepted_guesses_and_the_targets_token():
    fig = diagrams.speculative_round(4, 1, 0.25)
    boxes = _patches(fig)
    assert [boxes[f"draft{i}"].get_width() for i in range(1, 5)] == [0.25] * 4
    assert boxes["verify"].get_x() == pytest.approx(1.0) and boxes["verify"].get_width() == 1.0
    colours = [boxes[f"guess{i}"].get_facecolor() for i in range(1, 5)]
    assert colours[0] != colours[1] != colours[2] and colours[2] == colours[3]  # kept, first miss, dropped
    assert "1 accepted → 2 tokens" in _texts(fig) and "2.00 target passes" in _texts(fig)
    plt.close(fig)
    for args, match in (((0, 0, 0.5), "gamma"), ((3, 4, 0.5), "accepted"), ((3, 1, 0.0), "draft_cost")):
        with pytest.raises(ValueError, match=match):
            diagrams.speculative_round(*args)


def test_quantize_block_round_trips_within_half_a_step():
    w = np.random.default_rng(0).normal(0, 0.05, 32)
    for symmetric in (True, False):
        q, scale, zero = diagrams.quantize_block(w, 4, symmetric)
        assert np.abs((q - zero) * scale - w).max() <= scale / 2 + 1e-12
        assert q.max() <= (7 if symmetric else 15) and q.min() >= (-8 if symmetric else 0)
    assert diagrams.quantize_block(w, 4, True)[2] == 0 and diagrams.quantize_block(w + 0.03, 4, False)[2] > 0
    with pytest.raises(ValueError, match="bits must be"):
        diagrams.quantize_block(w, 5, True)
    with pytest.raises(ValueError, match="one block"):
        diagrams.quantize_block(np.zeros((2, 16)), 4, True)


def test_quant_block_stores_scale_zero_point_and_one_cell_per_weight():
    w = np.linspace(-0.1, 0.3, 32)
    sym, asym = _patches(diagrams.quant_block(w, 4, True)), _patches(diagrams.quant_block(w, 4, False))
    assert "zero" not in sym and sum(g.startswith("q") for g in sym) == 32 and sym["scale"].get_width() == 16
    assert asym["zero"].get_width() == 4 and asym["q0"].get_width() == 4
    fig = diagrams.quant_block(w, 4, False)
    text = _texts(fig)
    assert "148 bits for 32 weights = 4.62 bits per weight" in text and "asymmetric: zero point" in text
    assert "144 bits for 32 weights = 4.5 bits per weight" in _texts(diagrams.quant_block(w, 4, True))
    plt.close("all")
