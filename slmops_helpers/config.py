"""Profiles and paths: the two knobs every notebook shares.

A notebook's ``parameters`` cell sets ``profile = "smoke"`` (minutes on a 2-core CPU,
used by CI and in class) or ``"full"`` (the real run, meant for a GPU). Both record the
same metric names; only the sizes differ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_NAME = "slmops-course"


@dataclass(frozen=True)
class Profile:
    """Sizes that scale a notebook between a class demo and the real run."""

    name: str
    n_eval: int  # held-out rows scored per model
    max_new_tokens: int  # generation budget per answer
    timing_tokens: int  # tokens generated when measuring speed
    timing_repeats: int  # repeated speed runs, for p50/p95

    def __post_init__(self) -> None:
        for field in ("n_eval", "max_new_tokens", "timing_tokens", "timing_repeats"):
            if getattr(self, field) < 1:
                raise ValueError(f"Profile.{field} must be >= 1, got {getattr(self, field)}")


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", n_eval=12, max_new_tokens=48, timing_tokens=32, timing_repeats=3),
    "full": Profile("full", n_eval=48, max_new_tokens=64, timing_tokens=128, timing_repeats=5),
}


def get_profile(name: str) -> Profile:
    """Return the profile called ``name``, or raise a ValueError that lists the choices."""
    if name not in PROFILES:
        raise ValueError(
            f"Unknown profile {name!r}. Set profile to one of {sorted(PROFILES)} "
            "in the notebook's parameters cell (or pass -p profile smoke to papermill)."
        )
    return PROFILES[name]


def project_root(start: Path | None = None) -> Path:
    """The course checkout: the nearest folder above ``start`` with our pyproject.toml.

    Notebooks run from ``notebooks/`` in JupyterLab and from the root under papermill;
    both must write to the same ``artifacts/``.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and f'name = "{PROJECT_NAME}"' in pyproject.read_text():
            return folder
    raise FileNotFoundError(
        f"No {PROJECT_NAME} checkout found above {here}. Fix: run from inside the course "
        "folder, or pass output_dir explicitly."
    )


def artifacts_dir(output_dir: str | os.PathLike | None = None) -> Path:
    """Where executed notebooks, metrics and plots go (git-ignored)."""
    return Path(output_dir) if output_dir else project_root() / "artifacts"


def cache_dir() -> Path:
    """Where prepared models and generated data are cached: $SLMOPS_CACHE or ~/.cache."""
    if env := os.environ.get("SLMOPS_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / PROJECT_NAME


# Set to "1" by the course runner for the kernels it starts: no frontend is attached, so
# widget helpers render their static view (``widgets``).
HEADLESS_ENV = "SLMOPS_HEADLESS"


def headless() -> bool:
    """True in a kernel the course runner started headlessly (``SLMOPS_HEADLESS=1``)."""
    return os.environ.get(HEADLESS_ENV, "") == "1"
