"""The package's imports point down the life cycle, and each module shows its dependencies at its top.

Layers, lowest first; a module may import from its own layer or any layer below, never
from above. A module not listed here fails the test until it is placed.
"""

import ast
from pathlib import Path

LAYERS = (
    ("foundations", ("_io", "config", "decoding", "compress", "plots", "diagrams", "course.watchdog", "deploy.client")),
    ("data and models", ("data", "metrics", "models", "reference", "uncertainty", "decoding.speculative",
                         "decoding.constrained")),
    ("running and training", ("decoding.generate", "training", "distributed", "pipeline.registry", "fleet",
                              "decoding.race")),
    ("evaluation", ("evaluate", "intro")),
    ("fine-tuning", ("finetune",)),
    ("distillation", ("distill",)),
    ("deployment", ("deploy",)),
    ("operations", ("pipeline", "course.widgets")),
    ("course", ("labs", "course", "cli")),
)  # fmt: skip


def _layer(module: str) -> int:
    """The layer of ``module`` (dotted, without the package name): the longest listed prefix wins."""
    best, level = -1, None
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, level = len(name), i
    assert level is not None, f"slmops_helpers.{module} is in no layer: add it to LAYERS in {__file__}"
    return level


def _module_name(path: Path, package: Path) -> str:
    parts = path.with_suffix("").relative_to(package).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, package: Path):
    """(line, imported module, imported names, inside a function) for each package-internal import."""
    module = _module_name(path, package)
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    tree = ast.parse(path.read_text())
    in_function = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(fn)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            target = ".".join([*base, *([node.module] if node.module else [])])
            names = [a.name for a in node.names]
            if node.module is None:  # ``from . import data, training``: each name is a module
                for name in names:
                    yield node.lineno, ".".join([*base, name]).strip("."), [], id(node) in in_function
            else:
                yield node.lineno, target.strip("."), names, id(node) in in_function


def _package_files(root: Path):
    package = root / "slmops_helpers"
    return package, sorted(p for p in package.rglob("*.py") if p.stem != "__main__")


def test_import_layers(root):
    package, files = _package_files(root)
    upward, private = [], []
    for path in files:
        module = _module_name(path, package)
        if not module:
            continue  # the package's own __init__ imports nothing of its own
        for line, target, names, _ in _imports(path, package):
            if _layer(target) > _layer(module):
                above, below = LAYERS[_layer(target)][0], LAYERS[_layer(module)][0]
                upward.append(f"{module}:{line} imports {target} ({above} is above {below})")
            # ``____`` is the labs' public blank, not a private name
            hidden = [n for n in names if n.startswith("_") and n.strip("_")]
            if hidden:
                private.append(f"{module}:{line} imports {hidden} from {target}")
    assert not upward, "imports must point down the life cycle:\n" + "\n".join(upward)
    assert not private, "a private name is its module's business; make it public in one place:\n" + "\n".join(private)


def test_function_level_imports_say_why(root):
    """Package-internal imports sit at the top of the module, where a reader looks for what
    it depends on; one inside a function is allowed only with a comment giving the reason
    (a heavy dependency such as torch, papermill or onnxruntime that not every caller needs)."""
    package, files = _package_files(root)
    silent = []
    for path in files:
        lines = path.read_text().splitlines()
        for line, target, _, inside in _imports(path, package):
            if inside and "#" not in lines[line - 1]:
                silent.append(f"{path.relative_to(root)}:{line} imports {target} inside a function without a reason")
    assert not silent, "\n".join(silent)


def test_the_layer_check_can_fail(root, tmp_path):
    """The checks above are only worth something if an upward import is caught."""
    package = tmp_path / "slmops_helpers"
    package.mkdir()
    (package / "data.py").write_text("from .pipeline import run\n")
    (package / "pipeline.py").write_text("def run():\n    from .data import rows\n")
    found = {
        (str(p.name), t, inside)
        for p in (package / "data.py", package / "pipeline.py")
        for _, t, _, inside in _imports(p, package)
    }
    assert found == {("data.py", "pipeline", False), ("pipeline.py", "data", True)}
    assert _layer("pipeline") > _layer("data")
