"""The course site, built from small handmade notebooks in tmp_path (no kernel, no model)."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from slmops_helpers import cli
from slmops_helpers.course import runner, site

# A 1×1 red PNG: a "plot" that a browser can decode.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
INTRO = """# 1 · Alpha section

Some words about it.

**You will leave knowing how to**
- compute a *footprint*;
- measure `speed` on a
  two-core laptop;
- prune one layer.

*Timing: about 1 minute.*
"""
EXTERNAL = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//", re.I)


def _notebook(intro: str, outputs: list | None = None, widgets: dict | None = None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("fig = plot()", execution_count=1 if outputs else None)
    code.outputs = [nbformat.from_dict(o) for o in outputs or []]
    nb.cells = [nbformat.v4.new_markdown_cell(intro), code, nbformat.v4.new_markdown_cell("## Next\nMore.")]
    if widgets:
        nb.metadata["widgets"] = {site.WIDGET_STATE: {"state": widgets, "version_major": 2, "version_minor": 0}}
    return nb


def _model(name: str, **state) -> dict:
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}


def _widget_output(model_id: str) -> dict:
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {
            site.WIDGET_VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0},
            "text/plain": "VBox()",
        },
    }


CALCULATOR = {
    "box": _model("VBoxModel", children=["IPY_MODEL_precision", "IPY_MODEL_out"]),
    "precision": _model("DropdownModel", description="precision", _options_labels=["fp32", "int4"], index=1),
    "out": _model(
        "OutputModel",
        outputs=[
            {"output_type": "stream", "name": "stdout", "text": "Model needs 0.08 GB of RAM\n"},
            {"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG, "text/plain": "<Figure>"}},
        ],
    ),
    "bar": _model("HBoxModel", children=["IPY_MODEL_pre", "IPY_MODEL_progress", "IPY_MODEL_post"]),
    "pre": _model("HTMLModel", value="Loading\u2007weights:\u2007100%"),
    "progress": _model("FloatProgressModel", value=272.0, max=272.0, description=""),
    "post": _model("HTMLModel", value="\u2007272/272\u2007[00:00&lt;00:00]"),
}


@pytest.fixture
def course(tmp_path):
    """notebooks/01 executed (plot + widgets) with metrics and a lab; notebooks/02 not run."""
    root, artifacts = tmp_path / "course", tmp_path / "course" / "artifacts"
    second = _notebook("# 2 · Beta section\n\nYou will learn to:\n\n1. distil a model\n2. compare it\n")
    executed = _notebook(
        INTRO,
        [
            {"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG, "text/plain": "<Figure>"}},
            _widget_output("box"),
            _widget_output("bar"),
        ],
        CALCULATOR,
    )
    executed.cells[1].metadata["papermill"] = {
        "start_time": "2026-01-01T00:00:00.000000",
        "end_time": "2026-01-01T00:00:02.400000",
    }
    for path, nb in (
        (root / "notebooks" / "01_alpha.ipynb", _notebook(INTRO)),
        (root / "notebooks" / "02_beta.ipynb", second),
        (root / "labs" / "01_alpha.ipynb", _notebook("*Generated from labs/source.*")),
        (artifacts / "notebooks" / "01_alpha.ipynb", executed),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
    (artifacts / "metrics").mkdir(parents=True)
    metrics = {"base_score": 16.11, "profile": "smoke", "model": "m", "device": "cpu", "notebook_s": 45.2}
    (artifacts / "metrics" / "01_alpha.json").write_text(json.dumps(metrics))
    return root, artifacts


def test_learning_goals_join_wrapped_bullets_and_stop_at_the_list_end():
    assert site.learning_goals(_notebook(INTRO)) == [
        "compute a *footprint*;",
        "measure `speed` on a two-core laptop;",
        "prune one layer.",
    ]


def test_learning_goals_other_phrasings_and_none():
    assert site.learning_goals(_notebook("# T\n\n## Learning goals\n\n* one\n* two\n\nText.")) == ["one", "two"]
    assert site.learning_goals(_notebook("# T\n\nNo goals stated here.\n- a stray bullet")) == []
    lab = _notebook("*Generated from the source.*")
    lab.cells.insert(1, nbformat.v4.new_markdown_cell("# Lab\n\nYou will leave knowing how to\n- check"))
    assert site.learning_goals(lab) == ["check"]


def test_title_is_the_first_top_level_heading():
    assert site.notebook_title(_notebook(INTRO), "x") == "1 · Alpha section"
    assert site.notebook_title(_notebook("no heading"), "fallback") == "fallback"


def test_headline_metrics_in_fixed_order_with_units_and_run_time():
    metrics = {"gen_tok_s": 14.56, "n_params": 134515008, "unrelated": 1, "notebook_s": 44.6}
    assert site.headline_metrics("01_introduction", metrics) == [
        ("parameters", "134,515,008"),
        ("generation speed (tokens/s)", "14.6"),
        ("run time (s)", "45"),
    ]
    # a section without a headline list shows its task scores
    assert site.headline_metrics("09_new", {"a_score": 50.0, "b": 2}) == [("a score", "50.0")]
    assert site.format_metric("n/a", "{:.1f}") == "n/a"


def test_static_widgets_snapshot_controls_outputs_and_progress_text():
    nb = json.loads(json.dumps(_notebook(INTRO, [_widget_output("box"), _widget_output("bar")], CALCULATOR)))
    outputs = site.static_widgets(nb)["cells"][1]["outputs"]
    assert "widgets" not in nb["metadata"]
    assert "precision = int4" in outputs[0]["data"]["text/html"]
    assert outputs[1]["text"].startswith("Model needs") and "image/png" in outputs[2]["data"]
    assert outputs[3] == {
        "output_type": "stream",
        "name": "stdout",
        "text": "Loading weights: 100% 272/272 [00:00<00:00]\n",
    }
    assert not any(site.WIDGET_VIEW in o.get("data", {}) for o in outputs)


def test_widget_without_saved_state_is_left_out():
    nb = json.loads(json.dumps(_notebook(INTRO, [_widget_output("gone")])))
    assert site.static_widgets(nb)["cells"][1]["outputs"] == []


def test_build_site_index_pages_and_links(course):
    root, artifacts = course
    index = site.build_site(root, artifacts, run_missing=False)
    assert index == artifacts / "site" / "index.html"
    text = index.read_text()
    # sections in order, with goals, metrics, links; the unrun one says how to run it
    assert text.index("1 · Alpha section") < text.index("2 · Beta section")
    assert "<em>footprint</em>" in text and "<li>distil a model</li>" in text
    assert "untuned task score" not in text  # 01_alpha has no headline list: task scores only
    assert "Measured with profile smoke" in text and "run time (s)" in text
    assert 'href="notebooks/01_alpha.html"' in text and 'href="labs/01_alpha.html"' in text
    assert "slmops run --only 02" in text and "notebooks/02_beta.html" not in text
    assert "In [1]: 2 s <code>fig = plot()</code>" in text  # slowest cells, numbered as on the page
    page = (artifacts / "site" / "notebooks" / "01_alpha.html").read_text()
    assert (
        len(re.findall(r'<img [^>]*src="data:image/png;base64', page)) == 2
    )  # the plot and the widget's captured plot, inline
    assert "precision = int4" in page and "Model needs 0.08 GB" in page
    assert 'href="../index.html"' in page and 'href="../labs/01_alpha.html"' in page
    for html in (artifacts / "site").rglob("*.html"):
        content = html.read_text()
        assert not EXTERNAL.search(content), f"{html.name} loads something from the network"
        assert "<script src" not in content
        for href in re.findall(r'href="([^"#:]+\.html)"', content):
            assert (html.parent / href).resolve().is_file(), f"{html.name}: broken link {href}"


def test_build_site_runs_only_the_missing_notebooks(course, monkeypatch):
    root, artifacts = course
    calls = []

    def fake_run_course(profile, only=None):
        calls.append((profile, only))
        nbformat.write(_notebook("# 2 · Beta section"), artifacts / "notebooks" / "02_beta.ipynb")

    monkeypatch.setattr(runner, "run_course", fake_run_course)
    site.build_site(root, artifacts, run_missing=True, profile="smoke")
    assert calls == [("smoke", ["02"])]
    assert (artifacts / "site" / "notebooks" / "02_beta.html").is_file()


def test_build_site_is_atomic(course, monkeypatch):
    root, artifacts = course
    site.build_site(root, artifacts, run_missing=False)
    before = (artifacts / "site" / "index.html").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(site, "render_page", broken)
    with pytest.raises(RuntimeError, match="renderer failed"):
        site.build_site(root, artifacts, run_missing=False)
    assert (artifacts / "site" / "index.html").read_text() == before
    assert sorted(p.name for p in artifacts.iterdir()) == ["metrics", "notebooks", "site"]  # no temp folder left


def test_links_to_course_notebooks_point_at_their_pages():
    page = '<a href="../notebooks/01_alpha.ipynb">x</a> <a href="labs/02_beta.ipynb">y</a> <a href="other.ipynb">z</a>'
    out = site._link_notebooks(page, {"01_alpha", "02_beta"})
    assert 'href="../notebooks/01_alpha.html"' in out and 'href="../labs/02_beta.html"' in out
    assert 'href="other.ipynb"' in out
    # a notebook linking the next part of its section, in the same folder (04 to 04b)
    assert site._link_notebooks('<a href="02_beta.ipynb">', {"02_beta"}) == '<a href="02_beta.html">'


def test_cli_site_subcommand(monkeypatch, capsys, tmp_path):
    seen = {}

    def fake_build_site(run_missing, profile):
        seen.update(run_missing=run_missing, profile=profile)
        return tmp_path / "index.html"

    monkeypatch.setattr(site, "build_site", fake_build_site)
    assert cli.main(["site", "--no-run"]) == 0
    assert seen == {"run_missing": False, "profile": "smoke"}
    assert "index.html" in capsys.readouterr().out


def test_glossary_links_point_at_the_site_glossary():
    page = '<a href="../GLOSSARY.md#kv-cache">KV cache</a> <a href="../GLOSSARY.md">all</a>'
    assert site._link_notebooks(page, set()) == (
        '<a href="../glossary.html#kv-cache">KV cache</a> <a href="../glossary.html">all</a>'
    )
    # the index sits at the site root: its links go down, not up
    assert site._link_notebooks('<a href="../GLOSSARY.md#nats">', set(), up="") == '<a href="glossary.html#nats">'
    rendered = site.render_glossary('# Glossary\n\n<a id="kv-cache"></a>**KV cache** — kept keys and values.')
    assert '<a id="kv-cache"></a>' in rendered and "<strong>KV cache</strong>" in rendered
    assert 'href="index.html"' in rendered


def test_prerequisites_page_is_built_and_linked_from_notebooks_and_the_index(course):
    root, artifacts = course
    (root / "docs").mkdir()
    (root / "docs" / "prerequisites.md").write_text(
        '# Prerequisites\n\n<a id="section-1"></a>\n## Section 1\n\n[KL](../GLOSSARY.md#kl-divergence)\n'
    )
    intro = INTRO + "\nSee the [prerequisites](../docs/prerequisites.md#section-1).\n"
    nbformat.write(_notebook(intro, [], None), artifacts / "notebooks" / "01_alpha.ipynb")
    site.build_site(root, artifacts, run_missing=False)
    out = artifacts / "site"
    page = (out / "prerequisites.html").read_text()
    assert "<title>SLMOps course: prerequisites</title>" in page and '<a id="section-1"></a>' in page
    assert 'href="glossary.html#kl-divergence"' in page  # the page sits at the site root
    assert 'href="prerequisites.html"' in (out / "index.html").read_text()
    assert 'href="../prerequisites.html#section-1"' in (out / "notebooks" / "01_alpha.html").read_text()
    assert site._link_notebooks('<a href="docs/prerequisites.md">', set(), up="") == '<a href="prerequisites.html">'
