"""Section 2's plots and temperature widget: thin views that must show what they are given."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from slmops_helpers import distill, plots
from slmops_helpers.course.widgets import temperature_explorer, temperature_text


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(27, generator=g) * 3, torch.randn(27, generator=g) * 3


def test_temperature_plot_shows_both_models(logits):
    view = distill.temperature_view(*logits, temperature=2.0, top_k=5)
    fig = plots.plot_temperature(view, [f"t{i}" for i in range(5)], 2.0)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx(view["teacher_probs"] + view["student_probs"])
    assert f"{view['kd_term']:.3f}" in ax.get_title() and "T = 2" in ax.get_ylabel()


def test_tradeoff_plot_labels_every_model():
    rows = [
        {"name": "teacher", "params": 134e6, "ms_per_token": 60.0, "score": 58.0},
        {"name": "student", "params": 50e6, "ms_per_token": 20.0, "score": 40.0},
    ]
    fig = plots.plot_distillation_tradeoff(rows)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["teacher\n134 M params", "student\n50 M params"]
    assert len(fig.axes[0].collections) == 2


def test_temperature_text_reports_the_view(logits):
    view = distill.temperature_view(*logits, temperature=4.0)
    text = temperature_text(view, 4.0)
    assert "T = 4" in text and f"{view['teacher_top1']:.1%}" in text and f"{view['kd_term']:.4f}" in text


def test_temperature_explorer_reacts_to_the_slider(logits, tiny_tokenizer, capsys, monkeypatch):
    monkeypatch.delenv("SLMOPS_HEADLESS", raising=False)
    box = temperature_explorer(*logits, tiny_tokenizer, top_k=4)  # outside a kernel, its output goes to stdout
    slider, kind = box.children[0].children
    assert "T = 1:" in capsys.readouterr().out
    slider.value = 8.0
    shown = capsys.readouterr().out
    assert "T = 8:" in shown and temperature_text(distill.temperature_view(*logits, 8.0, 4), 8.0) in shown
    kind.value = "reverse"
    assert temperature_text(distill.temperature_view(*logits, 8.0, 4, "reverse"), 8.0) in capsys.readouterr().out


def test_headless_temperature_explorer_shows_the_default_view(logits, tiny_tokenizer, capsys, monkeypatch):
    import IPython.display

    displayed = []
    monkeypatch.setattr(IPython.display, "display", displayed.append)
    monkeypatch.setenv("SLMOPS_HEADLESS", "1")
    assert temperature_explorer(*logits, tiny_tokenizer, top_k=4) is None
    note, image = displayed
    assert "Static view" in note.data and "T = 1.0, KL = forward" in note.data and image.data[:4] == b"\x89PNG"
    assert temperature_text(distill.temperature_view(*logits, 1.0, 4), 1.0) in capsys.readouterr().out
