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


def temperature_text(view: dict[str, Any], temperature: float) -> str:
    """What one temperature does, in words (``view`` from ``distill.temperature_view``)."""
    return (
        f"T = {temperature:g}: the teacher's top token gets {view['teacher_top1']:.1%} of the probability, "
        f"entropy {view['teacher_entropy']:.2f} nats.\n"
        f"KL between teacher and student = {view['kl']:.4f}; the loss uses T²·KL = {view['kd_term']:.4f}."
    )


def temperature_explorer(teacher_logits: Any, student_logits: Any, tokenizer: Any, top_k: int = 8) -> Any:
    """Slide the temperature and watch the teacher's next-token distribution flatten and
    the distillation term change; a view over ``distill.temperature_view``."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .distill import KL_KINDS, temperature_view
    from .plots import plot_temperature

    temperature = w.FloatLogSlider(1.0, base=10, min=-0.5, max=1, step=0.05, description="T")
    kind = w.Dropdown(options=list(KL_KINDS), value="forward", description="KL")
    out = w.Output()

    def update(*_: Any) -> None:
        view = temperature_view(teacher_logits, student_logits, temperature.value, top_k, kind.value)
        labels = [repr(tokenizer.decode([i])) for i in view["ids"]]
        with out:
            out.clear_output(wait=True)
            print(temperature_text(view, temperature.value))
            fig = plot_temperature(view, labels, temperature.value)
            display(fig)
            plt.close(fig)

    for control in (temperature, kind):
        control.observe(update, names="value")
    update()
    return w.VBox([w.HBox([temperature, kind]), out])
