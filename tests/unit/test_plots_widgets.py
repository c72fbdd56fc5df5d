import matplotlib

matplotlib.use("Agg")

from slmops_helpers import plots
from slmops_helpers.course.widgets import fleet_calculator, fleet_text
from slmops_helpers.fleet import plan_fleet
from slmops_helpers.models import PRESETS, footprint_table


def test_lifecycle_has_every_stage():
    fig = plots.plot_lifecycle(highlight="deploy")
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert set(plots.LIFECYCLE) <= texts


def test_footprint_and_pruning_plots():
    fig = plots.plot_footprint(footprint_table(1000), {"fp32": 0.004})
    assert len(fig.axes[0].patches) == 8
    rows = [
        {"sparsity": s, "method": m, "kl": s, "top1_agreement": 1 - s}
        for m in ("magnitude", "random")
        for s in (0, 0.5)
    ]
    fig = plots.plot_pruning(rows)
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]


def test_fleet_plot_and_text_agree():
    plan = plan_fleet(1_700_000_000, "int4")
    fig = plots.plot_fleet(plan)
    assert f"{plan.devices_fitting:,} of {plan.devices_total:,}" in fig.axes[0].get_title()
    assert f"{plan.devices_fitting:,} of {plan.devices_total:,} devices" in fleet_text(plan)


def test_fleet_calculator_reacts_to_its_controls(capsys, monkeypatch):
    monkeypatch.delenv("SLMOPS_HEADLESS", raising=False)

    def shown_for(name: str, precision: str) -> str:
        return fleet_text(plan_fleet(int(PRESETS[name].params_millions * 1e6), precision))

    box = fleet_calculator()  # outside a kernel, its output goes to stdout
    model, precision = box.children[0].children
    first = model.value
    assert shown_for(first, "fp32") in capsys.readouterr().out
    precision.value = "int4"
    shown = capsys.readouterr().out
    assert shown_for(first, "int4") in shown and shown_for(first, "fp32") not in shown  # redrawn for the new value
    model.value = "smollm2-1.7b-instruct"
    assert shown_for("smollm2-1.7b-instruct", "int4") in capsys.readouterr().out


def test_headless_widgets_render_a_static_view(capsys, monkeypatch):
    import IPython.display

    displayed = []
    monkeypatch.setattr(IPython.display, "display", displayed.append)
    monkeypatch.setenv("SLMOPS_HEADLESS", "1")
    assert fleet_calculator() is None  # no controls nobody could move
    note, image = displayed
    assert "Static view" in note.data and "precision = fp32" in note.data and image.data[:4] == b"\x89PNG"
    model = next(iter(PRESETS.values()))
    assert fleet_text(plan_fleet(int(model.params_millions * 1e6), "fp32")) in capsys.readouterr().out


def test_fine_tuning_plots_show_every_method_and_run():
    rows = [
        {
            "method": m,
            "score": s,
            "trainable_pct": p,
            "artifact_mib": a,
            **{f"{k}_mib": 10.0 for k in plots.MEMORY_PARTS},
        }
        for m, s, p, a in (("full", 40, 100, 513), ("lora", 35, 0.68, 3.5), ("ia3", 20, 0.04, 0.2))
    ]
    fig = plots.plot_methods(rows, base_score=16)
    assert len(fig.axes) == 4 and [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["full", "lora", "ia3"]
    assert fig.axes[1].get_yscale() == "log"  # trainable % spans four orders of magnitude
    history = [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.5, "val_loss": 1.8}]
    fig = plots.plot_loss_curves({"a": history, "b": history}, stopped_at={"b": 2})
    assert len(fig.axes) == 1 and len(fig.axes[0].get_legend().get_texts()) == 2
    scored = [*history, {"step": 4, "train_loss": 1.2, "val_loss": 1.9, "val_score": 31.0}]
    fig = plots.plot_loss_curves({"a": scored, "b": history})
    assert len(fig.axes) == 2 and [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["a"]
    assert list(fig.axes[1].lines[0].get_ydata()) == [31.0]
    fig = plots.plot_memory_tips(
        [
            {"label": "batch 1", "activation_mib": 10, "s_per_step": 1},
            {"label": "batch 4", "activation_mib": 40, "s_per_step": 2},
        ]
    )
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["batch 1", "batch 4"]
