from pathlib import Path

import pytest

from slmops_helpers.config import PROFILES, Profile, artifacts_dir, cache_dir, get_profile, project_root


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
