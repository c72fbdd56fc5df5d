"""Widgets: thin views over pure, tested functions (nothing is computed here)."""

from __future__ import annotations

from typing import Any

from .fleet import CostAssumptions, plan_fleet
from .models import BYTES_PER_WEIGHT, PRESETS


def fleet_text(plan: Any) -> str:
    """The calculator's result as text (tested on its own)."""
    return (
        f"Model needs {plan.model_gb:.2f} GB of RAM; {plan.devices_fitting:,} of {plan.devices_total:,} devices "
        f"({plan.share_fitting:.0%}) can run it.\n"
        f"Edge: model updates cost ${plan.edge_update_usd_per_month:,.2f}/month in downloads.\n"
        f"Cloud: serving every device's requests costs ${plan.cloud_usd_per_month:,.2f}/month."
    )


def fleet_calculator() -> Any:
    """Pick a model, a precision and usage; see which devices fit and what it costs."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .plots import plot_fleet

    model = w.Dropdown(
        options=[(f"{p.name} ({p.params_millions:.0f} M)", p.name) for p in PRESETS.values()], description="model"
    )
    precision = w.Dropdown(options=list(BYTES_PER_WEIGHT), value="fp32", description="precision")
    requests = w.IntSlider(20, min=1, max=500, description="requests/day")
    price = w.FloatLogSlider(0.5, base=10, min=-2, max=1, description="$/M tokens")
    out = w.Output()

    def update(*_: Any) -> None:
        plan = plan_fleet(
            int(PRESETS[model.value].params_millions * 1e6),
            precision.value,
            costs=CostAssumptions(requests_per_device_per_day=requests.value, cloud_usd_per_million_tokens=price.value),
        )
        with out:
            out.clear_output(wait=True)
            print(fleet_text(plan))
            fig = plot_fleet(plan)
            display(fig)
            plt.close(fig)

    for control in (model, precision, requests, price):
        control.observe(update, names="value")
    update()
    box = w.VBox([w.HBox([model, precision]), w.HBox([requests, price]), out])
    return box
