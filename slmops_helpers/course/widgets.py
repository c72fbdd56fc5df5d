"""Widgets: thin views over pure, tested functions (nothing is computed here).

Each helper has two renderings of the same ``render()`` (text and figure): a live widget
for a learner or an instructor in JupyterLab, and a static view for a headless run. The
course runner (``runner.run_notebook``, used by ``slmops run`` and the tests) has no
frontend, so nobody could move a slider; it sets ``SLMOPS_HEADLESS=1`` for the kernel and
gets the static view. Live widget cells were also the only cells seen to stall a headless
run (a known class of hang: jupyter/nbclient#312, nteract/papermill#723), and a static
view sends no widget messages at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import HEADLESS_ENV, headless
from ..fleet import CostAssumptions, plan_fleet
from ..models import BYTES_PER_WEIGHT, PRESETS

STATIC_NOTE = (
    "Static view: this run has no Jupyter frontend ({env}=1, set by the course runner), so the "
    "controls are not shown; open the notebook in JupyterLab to move them. Shown with: {settings}."
)

Render = Callable[[], tuple[str, Any]]


def _image(fig: Any) -> Any:
    """The figure as a PNG display object: it renders whether or not pyplot's inline
    backend has been loaded (figures built without pyplot never load it)."""
    import io

    from IPython.display import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return Image(data=buffer.getvalue(), format="png")


def _show(render: Render) -> None:
    """Print the rendering's text and display its figure (into the current output)."""
    from IPython.display import display

    text, fig = render()
    print(text)
    display(_image(fig))


def _view(controls: list[Any], layout: Callable[[list[Any], Any], Any], render: Render) -> Any:
    """A live widget (``layout(controls, output)``) re-rendered on every change, or, headless,
    the static view of the controls' current values; returns the widget or None."""
    from IPython.display import Markdown, display

    if headless():
        settings = ", ".join(f"{c.description} = {c.value}" for c in controls)
        display(Markdown(STATIC_NOTE.format(env=HEADLESS_ENV, settings=settings)))
        _show(render)
        return None
    import ipywidgets as w

    out = w.Output()

    def update(*_: Any) -> None:
        with out:
            out.clear_output(wait=True)
            _show(render)

    for control in controls:
        control.observe(update, names="value")
    update()
    return layout(controls, out)


def fleet_text(plan: Any) -> str:
    """The calculator's result as text (tested on its own)."""
    return (
        f"Model needs {plan.model_mib:,.0f} MiB of RAM; {plan.devices_fitting:,} of {plan.devices_total:,} devices "
        f"({plan.share_fitting:.0%}) can run it.\n"
        f"Edge: model updates cost ${plan.edge_update_usd_per_month:,.2f}/month in downloads.\n"
        f"Cloud: serving every device's requests costs ${plan.cloud_usd_per_month:,.2f}/month."
    )


def fleet_calculator() -> Any:
    """Pick a model, a precision and usage; see which devices fit and what it costs."""
    import ipywidgets as w

    from ..plots import plot_fleet  # matplotlib, only when a widget draws

    model = w.Dropdown(
        options=[(f"{p.name} ({p.params_millions:.0f} M)", p.name) for p in PRESETS.values()], description="model"
    )
    precision = w.Dropdown(options=list(BYTES_PER_WEIGHT), value="fp32", description="precision")
    requests = w.IntSlider(20, min=1, max=500, description="requests/day")
    price = w.FloatLogSlider(0.5, base=10, min=-2, max=1, description="$/M tokens")

    def render() -> tuple[str, Any]:
        plan = plan_fleet(
            int(PRESETS[model.value].params_millions * 1e6),
            precision.value,
            costs=CostAssumptions(requests_per_device_per_day=requests.value, cloud_usd_per_million_tokens=price.value),
        )
        return fleet_text(plan), plot_fleet(plan)

    def layout(controls: list[Any], out: Any) -> Any:
        return w.VBox([w.HBox(controls[:2]), w.HBox(controls[2:]), out])

    return _view([model, precision, requests, price], layout, render)


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

    from ..distill import KL_KINDS, temperature_view  # torch, only for notebook 02's widget
    from ..plots import plot_temperature  # matplotlib, only when a widget draws

    temperature = w.FloatLogSlider(1.0, base=10, min=-0.5, max=1, step=0.05, description="T")
    kind = w.Dropdown(options=list(KL_KINDS), value="forward", description="KL")

    def render() -> tuple[str, Any]:
        view = temperature_view(teacher_logits, student_logits, temperature.value, top_k, kind.value)
        labels = [repr(tokenizer.decode([i])) for i in view["ids"]]
        return temperature_text(view, temperature.value), plot_temperature(view, labels, temperature.value)

    def layout(controls: list[Any], out: Any) -> Any:
        return w.VBox([w.HBox(controls), out])

    return _view([temperature, kind], layout, render)
