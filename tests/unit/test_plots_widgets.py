import matplotlib

matplotlib.use("Agg")

from slmops_helpers import plots
from slmops_helpers.fleet import plan_fleet
from slmops_helpers.models import footprint_table
from slmops_helpers.widgets import fleet_calculator, fleet_text


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


def test_fleet_calculator_reacts_to_its_controls():
    box = fleet_calculator()
    model, precision = box.children[0].children
    out = box.children[2]
    precision.value = "int4"
    model.value = "smollm2-1.7b-instruct"
    assert precision.value == "int4" and out is not None
    assert len(box.children) == 3
