"""The course site: the executed notebooks as static HTML, with an index page.

``slmops site`` (``make site``) writes ``artifacts/site/``::

    index.html                  the sections in order: learning goals, headline metrics,
                                run time and slowest cells, links
    notebooks/NN_name.html      each executed notebook from artifacts/notebooks/, plots inline
    labs/NN_name.html           each section's lab, as the learner gets it (not executed)
    glossary.html               GLOSSARY.md
    prerequisites.html          docs/prerequisites.md: the math and ML each section assumes

The site opens from disk with no network: pages use nbconvert's ``lab`` template minus
every script it would fetch from a CDN (require.js, MathJax, mermaid, the widget
manager). Widgets cannot run without a kernel, so each one is replaced by a static
snapshot of what it showed when the notebook ran (its controls' values and its output).
The folder is written atomically: a failed build leaves the previous site untouched.

This module collects the sections and builds the site; ``site.metrics`` says which
figures each index card shows, ``site.pages`` renders one notebook as a page.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..._io import atomic_directory
from ...config import artifacts_dir, project_root
from .. import runner
from .metrics import CONTEXT_KEYS, HEADLINES, format_metric, headline_metrics
from .pages import NAV_CSS, PAGE_TEMPLATE, WIDGET_STATE, WIDGET_VIEW, nav_bar, render_page, static_widgets

__all__ = [  # the names of site.metrics and site.pages stay importable from here
    "CONTEXT_KEYS",
    "HEADLINES",
    "NAV_CSS",
    "PAGE_TEMPLATE",
    "WIDGET_STATE",
    "WIDGET_VIEW",
    "Section",
    "build_site",
    "collect_sections",
    "format_metric",
    "headline_metrics",
    "learning_goals",
    "nav_bar",
    "notebook_title",
    "render_index",
    "render_page",
    "static_widgets",
]

# The phrasings a notebook's first cell uses to introduce its learning goals.
GOALS_INTRO = re.compile(
    r"^\s*(?:#+\s*|\*\*)?(?:you will leave knowing how to|learning goals|you will learn(?: how)? to)\b", re.I
)
BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")

INDEX_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 62em; margin: 2em auto;
  padding: 0 1em; color: #1f2937; line-height: 1.5; }
h1 { margin-bottom: 0.2em; } .lead { color: #4b5563; margin-top: 0; }
section { border: 1px solid #e5e7eb; border-radius: 8px; padding: 0.5em 1.5em 1em; margin: 1.5em 0; }
section h2 { margin-bottom: 0.3em; } .links a { margin-right: 1.5em; font-weight: 600; color: #1d4ed8; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.2em 1em 0.2em 0; text-align: left; }
td.value { font-variant-numeric: tabular-nums; font-weight: 600; } .muted { color: #6b7280; font-size: 0.9em; }
details { margin-top: 0.6em; } code { background: #f3f4f6; padding: 0 0.2em; border-radius: 3px; }
"""


@dataclass
class Section:
    """One course section as the index shows it."""

    number: str
    stem: str
    title: str
    goals: list[str]
    executed: Path | None = None  # the executed copy, if the notebook has been run
    lab: Path | None = None
    metrics: dict[str, Any] | None = None
    cell_times: list[tuple[int, float, str]] = field(default_factory=list)

    @property
    def page(self) -> str:
        return f"notebooks/{self.stem}.html"

    @property
    def lab_page(self) -> str:
        return f"labs/{self.stem}.html"


def _markdown_cells(nb: dict) -> list[str]:
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "markdown"]
    return [c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in cells]


def notebook_title(nb: dict, fallback: str) -> str:
    """The notebook's first ``# heading`` (else ``fallback``)."""
    for text in _markdown_cells(nb):
        for line in text.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return fallback


def learning_goals(nb: dict) -> list[str]:
    """The bullet list after "You will leave knowing how to" in the notebook's opening cell.

    The opening cell is the first markdown cell (the second, for a generated lab whose first
    cell is a "generated from" note). Bullets may wrap onto indented continuation lines;
    the list ends at the first line that is neither. [] when no goals are stated.
    """
    for text in _markdown_cells(nb)[:2]:
        lines = text.splitlines()
        start = next((i for i, line in enumerate(lines) if GOALS_INTRO.match(line)), None)
        if start is None:
            continue
        goals: list[str] = []
        for line in lines[start + 1 :]:
            if match := BULLET.match(line):
                goals.append(match.group(1).strip())
            elif goals and line.startswith((" ", "\t")) and line.strip():
                goals[-1] += " " + line.strip()
            elif goals or line.strip():
                break
        return goals
    return []


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def collect_sections(root: Path, artifacts: Path) -> list[Section]:
    """Every course notebook in order, with what has been recorded for it so far."""
    sections = []
    for source in runner.course_notebooks(root):
        nb = _read(source)
        section = Section(
            runner.notebook_number(source), source.stem, notebook_title(nb, source.stem), learning_goals(nb)
        )
        executed = artifacts / "notebooks" / source.name
        if executed.is_file():
            section.executed = executed
            # (prompt number as shown on the page, seconds, first line) per timed code cell
            cells = _read(executed)["cells"]
            section.cell_times = [
                (cells[i].get("execution_count") or i, t, src) for i, t, src in runner.cell_times(executed)
            ]
        metrics = artifacts / "metrics" / f"{source.stem}.json"
        if metrics.is_file():
            section.metrics = _read(metrics)
        lab = root / "labs" / source.name
        section.lab = lab if lab.is_file() else None
        sections.append(section)
    return sections


def _markdown(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return markdown2html_mistune(text)


def render_index(sections: list[Section], generated: str) -> str:
    """The home page: one card per section, in course order."""
    cards = []
    for s in sections:
        parts = [f"<h2>{html.escape(s.title)}</h2>"]
        if s.goals:
            parts.append("<p><strong>You will leave knowing how to</strong></p>")
            parts.append(_markdown("\n".join(f"- {g}" for g in s.goals)))
        links = []
        if s.executed:
            links.append(f'<a href="{s.page}">Read the executed notebook</a>')
        if s.lab:
            links.append(f'<a href="{s.lab_page}">Lab {int(s.number)} (exercises)</a>')
        if links:
            parts.append(f'<p class="links">{"".join(links)}</p>')
        if not s.executed:
            parts.append(
                f'<p class="muted">Not run yet: <code>slmops run --only {s.number}</code>, '
                "then <code>slmops site</code>.</p>"
            )
        if s.metrics:
            m = s.metrics
            rows = "".join(
                f'<tr><td>{html.escape(label)}</td><td class="value">{html.escape(value)}</td></tr>'
                for label, value in headline_metrics(s.stem, m)
            )
            context = ", ".join(f"{k} {m[k]}" for k in ("profile", "model", "device") if k in m)
            parts.append(f'<table class="metrics">{rows}</table><p class="muted">Measured with {context}.</p>')
            others = "".join(
                f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(format_metric(v, '{:.4g}'))}</td></tr>"
                for k, v in sorted(m.items())
                if k not in CONTEXT_KEYS and not k.startswith("version_")
            )
            parts.append(f"<details><summary>All recorded metrics</summary><table>{others}</table></details>")
        if s.cell_times:
            slowest = sorted(s.cell_times, key=lambda r: -r[1])[:3]
            total = sum(t for _, t, _ in s.cell_times)
            items = "".join(
                f"<li>In [{n}]: {t:.0f} s <code>{html.escape(src[:60])}</code></li>" for n, t, src in slowest
            )
            parts.append(
                f"<details><summary>Timing: {total:.0f} s of cell execution; the slowest cells</summary>"
                f"<ul>{items}</ul></details>"
            )
        cards.append(f'<section id="section-{s.number}">{"".join(parts)}</section>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>SLMOps course</title>
<style>{INDEX_CSS}</style>
</head>
<body>
<h1>SLMOps course</h1>
<p class="lead">Operate small language models through their whole life cycle, measured on a real model
(SmolLM2-135M-Instruct), offline. The sections in order, with what each run measured.</p>
{"".join(cards)}
<p class="links"><a href="prerequisites.html">Prerequisites</a> · <a href="glossary.html">Glossary</a></p>
<p class="muted">Generated {html.escape(generated)} by <code>slmops site</code> from artifacts/notebooks/ and
artifacts/metrics/. Opens from disk; nothing here loads from the network.</p>
</body>
</html>
"""


def _link_notebooks(page: str, stems: set[str], up: str = "../") -> str:
    """Point links to course notebooks (``../notebooks/01_x.ipynb``), ``GLOSSARY.md`` and
    ``docs/prerequisites.md`` at their site pages; ``up`` leads from the page's folder to the
    site root ("" for the index and the root's own pages)."""

    def repl(match: re.Match) -> str:
        folder, stem = match.group(2), match.group(3)
        return f'href="{up}{folder}/{stem}.html"' if stem in stems else match.group(0)

    page = re.sub(r'href="((?:\.\./)*)(notebooks|labs)/([\w-]+)\.ipynb"', repl, page)
    # a notebook's link to the next one in its own folder (04 to 04b): the page beside this one
    page = re.sub(
        r'href="([\w-]+)\.ipynb"', lambda m: f'href="{m.group(1)}.html"' if m.group(1) in stems else m.group(0), page
    )
    page = re.sub(
        r'href="((?:\.\./)*)docs/prerequisites\.md(#[\w-]*)?"',
        lambda m: f'href="{up}prerequisites.html{m.group(2) or ""}"',
        page,
    )
    return re.sub(
        r'href="((?:\.\./)*)GLOSSARY\.md(#[\w-]*)?"', lambda m: f'href="{up}glossary.html{m.group(2) or ""}"', page
    )


def render_glossary(text: str, title: str = "glossary") -> str:
    """``GLOSSARY.md`` as the site's glossary page (notebook pages link their terms to it), or
    another course document at the site root under ``title``."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>SLMOps course: {html.escape(title)}</title>
<style>{INDEX_CSS}</style>
</head>
<body>
<p class="links"><a href="index.html">Course index</a></p>
{_markdown(text)}
</body>
</html>
"""


def build_site(
    root: Path | None = None,
    artifacts: Path | None = None,
    out: Path | None = None,
    *,
    run_missing: bool = True,
    profile: str = "smoke",
) -> Path:
    """Render the course site into ``out`` (default artifacts/site/); return its index.html.

    With ``run_missing`` the notebooks that have no executed copy yet are run first
    (``runner.run_course``); without, they appear on the index as "not run yet".
    """
    root = root or project_root()
    artifacts = artifacts or artifacts_dir()
    out = out or artifacts / "site"
    if run_missing:
        missing = [
            runner.notebook_number(p)
            for p in runner.course_notebooks(root)
            if not (artifacts / "notebooks" / p.name).is_file()
        ]
        if missing:
            print(f"running notebooks {', '.join(missing)} first (profile {profile})")
            runner.run_course(profile, only=missing)
    sections = collect_sections(root, artifacts)
    stems = {s.stem for s in sections}
    with atomic_directory(out) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it private; a site is for reading
        (tmp / "notebooks").mkdir()
        (tmp / "labs").mkdir()
        for i, s in enumerate(sections):
            nav = [("Course index", "../index.html")]
            if i > 0 and sections[i - 1].executed:
                nav.append((f"Previous: {sections[i - 1].title}", f"../{sections[i - 1].page}"))
            if i + 1 < len(sections) and sections[i + 1].executed:
                nav.append((f"Next: {sections[i + 1].title}", f"../{sections[i + 1].page}"))
            if s.executed:
                links = nav + ([(f"Lab {int(s.number)}", f"../{s.lab_page}")] if s.lab else [])
                page = render_page(static_widgets(_read(s.executed)), s.title, nav_bar(links))
                (tmp / s.page).write_text(_link_notebooks(page, stems), encoding="utf-8")
            if s.lab:
                lab = _read(s.lab)
                title = notebook_title(lab, f"Lab {int(s.number)}")
                links = [("Course index", "../index.html")] + ([(s.title, f"../{s.page}")] if s.executed else [])
                page = render_page(static_widgets(lab), title, nav_bar(links))
                (tmp / s.lab_page).write_text(_link_notebooks(page, stems), encoding="utf-8")
        generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        index = _link_notebooks(render_index(sections, generated), stems, up="")
        (tmp / "index.html").write_text(index, encoding="utf-8")
        glossary = root / "GLOSSARY.md"  # the index always links it, so the page always exists
        text = glossary.read_text() if glossary.is_file() else "# Glossary\n\nThis checkout has no GLOSSARY.md."
        (tmp / "glossary.html").write_text(render_glossary(text), encoding="utf-8")
        prerequisites = root / "docs" / "prerequisites.md"  # linked from the index and each notebook's start
        text = prerequisites.read_text() if prerequisites.is_file() else "# Prerequisites\n\nThis checkout has none."
        page = _link_notebooks(render_glossary(text, "prerequisites"), stems, up="")
        (tmp / "prerequisites.html").write_text(page, encoding="utf-8")
    return out / "index.html"
