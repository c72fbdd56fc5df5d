"""One executed notebook as a standalone page of the course site, readable with no network.

Pages use nbconvert's ``lab`` template minus every script it would fetch from a CDN
(require.js, MathJax, mermaid, the widget manager). Widgets cannot run without a kernel,
so each one is replaced by a static snapshot of what it showed when the notebook ran.
"""

from __future__ import annotations

import html
import json
import re

__all__ = ["WIDGET_VIEW", "WIDGET_STATE", "PAGE_TEMPLATE", "NAV_CSS", "static_widgets", "nav_bar", "render_page"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

# nbconvert's lab template without anything fetched from the network.
PAGE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}<style type="text/css">{{ resources.site_css }}</style>{%- endblock html_head_css -%}
{%- block body_header -%}{{ super() }}{{ resources.site_nav }}{%- endblock body_header -%}
{%- block body_footer -%}{{ resources.site_nav }}{{ super() }}{%- endblock body_footer -%}
"""
NAV_CSS = """
nav.site-nav { display: flex; gap: 1.5em; padding: 0.6em 1em; margin: 0 0 1em; background: #f3f4f6;
  border-bottom: 1px solid #d1d5db; font-family: system-ui, sans-serif; font-size: 14px; }
nav.site-nav a { color: #1d4ed8; text-decoration: none; } nav.site-nav a:hover { text-decoration: underline; }
.site-widget-note { font-style: italic; color: #555; padding: 0.2em 0; }
"""


def _plain(text: str) -> str:
    """HTML widget values (tqdm bars) as plain text."""
    return html.unescape(re.sub(r"<[^>]+>", "", text)).replace("\u2007", " ").strip()


def static_widgets(nb: dict) -> dict:
    """Replace each widget output with a static snapshot of what it showed; drop widget state.

    Output widgets contribute the outputs they captured (text, plots); controls contribute
    their label and value; tqdm bars their text. Works on the notebook dict in place.
    """
    state = nb.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def walk(model_id: str, outputs: list[dict], controls: list[str], texts: list[str]) -> None:
        model = state.get(model_id)
        if model is None:
            return
        name, st = model.get("model_name", ""), model.get("state", {})
        if name == "OutputModel":
            outputs.extend(st.get("outputs", []))
        elif name in ("HTMLModel", "LabelModel"):
            texts.append(_plain(str(st.get("value", ""))))
        elif name.endswith("ProgressModel"):
            pass  # a progress bar: its HTML labels (tqdm) tell the story
        elif ("description" in st and "value" in st) or "_options_labels" in st:
            labels = st.get("_options_labels")
            value = labels[st["index"]] if labels and isinstance(st.get("index"), int) else st.get("value")
            controls.append(f"{st.get('description') or name.removesuffix('Model')} = {value}")
        for child in st.get("children", []):
            walk(str(child).removeprefix("IPY_MODEL_"), outputs, controls, texts)

    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        new_outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                new_outputs.append(out)
                continue
            captured: list[dict] = []
            controls: list[str] = []
            texts: list[str] = []
            walk(view.get("model_id", ""), captured, controls, texts)
            if controls or captured:
                note = "Interactive widget (run the notebook in JupyterLab to use it); as it ran"
                note += f": {', '.join(controls)}." if controls else "."
                new_outputs.append({"output_type": "display_data", "metadata": {}, "data": {"text/html": _note(note)}})
                new_outputs.extend(captured)
            elif any(texts):
                text = " ".join(t for t in texts if t)
                new_outputs.append({"output_type": "stream", "name": "stdout", "text": text + "\n"})
            # else: a widget with nothing to show statically (no state saved): leave it out
        cell["outputs"] = new_outputs
    return nb


def _note(text: str) -> str:
    return f'<div class="site-widget-note">{html.escape(text)}</div>'


def nav_bar(links: list[tuple[str, str]]) -> str:
    items = "".join(f'<a href="{html.escape(href)}">{html.escape(label)}</a>' for label, href in links)
    return f'<nav class="site-nav">{items}</nav>'


def render_page(nb: dict, title: str, nav: str) -> str:
    """One notebook as a standalone HTML page (inline CSS and images, no scripts fetched)."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    node = nbformat.reads(json.dumps(nb), as_version=4)  # normalizes list-of-lines sources and outputs
    node.metadata["title"] = title
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"slmops_site.html.j2": PAGE_TEMPLATE})],
        template_file="slmops_site.html.j2",
    )
    body, _ = exporter.from_notebook_node(node, resources={"site_nav": nav, "site_css": NAV_CSS})
    return body
