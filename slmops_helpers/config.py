"""Profiles and paths: the two knobs every notebook shares.

A notebook's ``parameters`` cell sets ``profile = "smoke"`` (minutes on a 2-core CPU,
used by CI and in class) or ``"full"`` (the real run, meant for a GPU). Both record the
same metric names; only the sizes differ. The sizes every notebook shares are a ``Profile``
here; each section's own sizes are one dataclass per profile in its ``config`` module
(``distill.config``, ``finetune.config``, ``deploy.config``, ``pipeline.config``), read with
``sizes_for`` and checked with ``check_sizes``: the only places where a profile becomes numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

PROJECT_NAME = "slmops-course"


@dataclass(frozen=True)
class Profile:
    """Sizes that scale a notebook between a class demo and the real run."""

    name: str
    n_eval: int  # held-out rows scored per model
    max_new_tokens: int  # generation budget per answer
    timing_tokens: int  # tokens generated when measuring speed
    timing_repeats: int  # repeated speed runs, for p50/p95
    # Longest one cell may run under the course runner. A smoke cell takes minutes, and a hung one should
    # fail long before CI's limit; a full-profile cell trains for up to an hour on a 2-core CPU (the
    # profile is meant for a GPU), so it runs unbounded (None).
    cell_timeout_s: int | None = None

    def __post_init__(self) -> None:
        for field in ("n_eval", "max_new_tokens", "timing_tokens", "timing_repeats"):
            if getattr(self, field) < 1:
                raise ValueError(f"Profile.{field} must be >= 1, got {getattr(self, field)}")


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", n_eval=12, max_new_tokens=48, timing_tokens=32, timing_repeats=3, cell_timeout_s=1800),
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


SizesT = TypeVar("SizesT")


def sizes_for(table: Mapping[str, SizesT], profile: str) -> SizesT:
    """A section's sizes for ``profile``: ``table[profile]``, after checking the profile exists."""
    name = get_profile(profile).name  # raises for an unknown profile, listing the choices
    if name not in table:
        raise ValueError(f"No sizes for profile {name!r} in this section. Fix: add them to its SIZES table.")
    return table[name]


def check_sizes(sizes: object) -> None:
    """Reject a sizes dataclass with a count below 1 or a rate at or below 0, naming the field.

    Counts are ints (at least 1), rates are floats (above 0), a tuple holds counts, a mapping
    holds rates: a zero step budget or a negative learning rate fails here, not an hour later."""
    name = type(sizes).__name__
    for field in fields(sizes):  # type: ignore[arg-type]  # any dataclass
        value = getattr(sizes, field.name)
        values = (
            list(value.values()) if isinstance(value, Mapping) else list(value) if isinstance(value, tuple) else [value]
        )
        if isinstance(value, tuple | Mapping) and not values:
            raise ValueError(f"{name}.{field.name} is empty. Fix: give it at least one value.")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue  # a flag or a name: nothing to bound
            if (isinstance(v, int) and v < 1) or v <= 0:
                kind = "a count, at least 1" if isinstance(v, int) else "a rate, above 0"
                raise ValueError(f"{name}.{field.name} = {value!r}: each value is {kind}.")


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
