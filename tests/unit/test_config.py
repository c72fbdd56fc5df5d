import ast
import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from slmops_helpers.config import (
    PROFILES,
    Profile,
    artifacts_dir,
    cache_dir,
    check_sizes,
    get_profile,
    project_root,
    sizes_for,
)


def test_get_profile_known_and_unknown():
    assert get_profile("smoke").name == "smoke"
    with pytest.raises(ValueError, match=r"Unknown profile 'fast'.*\['full', 'smoke'\]"):
        get_profile("fast")


def test_profiles_scale_the_same_knobs():
    assert PROFILES["full"].n_eval > PROFILES["smoke"].n_eval
    with pytest.raises(ValueError, match="n_eval must be >= 1"):
        Profile("bad", n_eval=0, max_new_tokens=1, timing_tokens=1, timing_repeats=1)


def test_project_root_from_a_subfolder(root, monkeypatch):
    assert project_root(root / "notebooks") == root
    monkeypatch.chdir(root / "notebooks")  # where JupyterLab runs a notebook
    assert artifacts_dir() == root / "artifacts"  # the same artifacts/ as a run from the root
    assert artifacts_dir("elsewhere/out") == Path("elsewhere/out")  # an explicit folder wins


def test_project_root_outside_a_checkout(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass output_dir"):
        project_root(tmp_path)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMOPS_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("SLMOPS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "slmops-course"


SECTIONS = ("distill", "finetune", "deploy", "pipeline")


@pytest.mark.parametrize("section", SECTIONS)
def test_each_section_has_sizes_for_every_profile_and_no_other(section):
    config = importlib.import_module(f"slmops_helpers.{section}.config")
    assert set(config.SIZES) == set(PROFILES)
    for name in PROFILES:
        assert config.get_config(name) is config.SIZES[name]
    with pytest.raises(ValueError, match=r"Unknown profile 'huge'"):
        config.get_config("huge")


def test_sizes_for_names_the_fix_when_a_section_lacks_a_profile():
    assert sizes_for({"smoke": 1, "full": 2}, "full") == 2
    with pytest.raises(ValueError, match="Fix: add them to its SIZES table"):
        sizes_for({"smoke": 1}, "full")


@dataclass(frozen=True)
class _Sizes:
    steps: int
    lr: float
    gammas: tuple[int, ...]
    rates: dict
    every: bool = False
    name: str = "x"


def test_check_sizes_refuses_a_zero_count_a_rate_at_zero_and_an_empty_list():
    check_sizes(_Sizes(1, 1e-4, (1, 2), {"lora": 2e-3}))  # a valid one passes, flags and names unbounded
    for bad, field in (
        (_Sizes(0, 1e-4, (1,), {"a": 1.0}), "steps"),
        (_Sizes(1, 0.0, (1,), {"a": 1.0}), "lr"),
        (_Sizes(1, 1e-4, (1, 0), {"a": 1.0}), "gammas"),
        (_Sizes(1, 1e-4, (), {"a": 1.0}), "gammas"),
        (_Sizes(1, 1e-4, (1,), {"a": -1.0}), "rates"),
    ):
        with pytest.raises(ValueError, match=rf"_Sizes\.{field}"):
            check_sizes(bad)


def test_a_section_config_checks_itself_when_built():
    from slmops_helpers.finetune.config import SIZES

    with pytest.raises(ValueError, match=r"FinetuneConfig\.seeds"):
        dataclasses.replace(SIZES["smoke"], seeds=0)


def test_only_config_modules_turn_a_profile_into_numbers(root):
    """A table keyed by both profiles belongs in ``config.py`` or a section's ``config`` module: a third
    profile then means editing those files only."""
    found = []
    for path in sorted((root / "slmops_helpers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            keys = {k.value for k in getattr(node, "keys", []) if isinstance(k, ast.Constant)}
            if isinstance(node, ast.Dict) and set(PROFILES) <= keys and path.name != "config.py":
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not found, f"sizes per profile outside a config module: {found}"
