"""Reference records: what a real full-profile run of each notebook measured, committed.

A smoke run shows the mechanics in minutes, but a few training steps on a handful of
tickets cannot show most lessons (a distilled student beating its undistilled twin, LoRA
beating the base). So each notebook, when run with ``profile = "full"``, also writes
``notebooks/reference/<notebook>.full.json``: its own metric keys plus ``profile``,
``commit``, ``date``, ``machine`` and ``notebook_s``. A smoke run then shows *this run*
beside *the full reference run* and says which number comes from which.

Regenerate one with ``slmops run --profile full --only 02`` (on a GPU where you have one).
A missing, stale or malformed record never stops a notebook: ``read_reference`` says what
is wrong and which command fixes it, and the notebook carries on with its own numbers.
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._io import atomic_write_json
from .config import project_root

REFERENCE_DIR = Path("notebooks") / "reference"
RECORD_KEYS = ("profile", "commit", "date", "machine", "notebook_s")
# Per-run facts that are not the notebook's findings; a reference need not repeat them.
ENVIRONMENT_PREFIXES = ("version_", "python", "platform", "cpu_count", "device", "model", "commit", "date", "machine")


def regenerate_command(stem: str) -> str:
    return f"slmops run --profile full --only {stem[:2]}"


def reference_path(stem: str, root: Path | None = None) -> Path:
    return (root or project_root()) / REFERENCE_DIR / f"{stem}.full.json"


def _commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def machine() -> str:
    """The architecture and CPU model, as a reference record names the machine it ran on."""
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line), ""
        )
    return f"{platform.machine()} {cpu or platform.processor() or 'unknown CPU'}".strip()


def write_reference(stem: str, record: dict[str, Any], root: Path | None = None) -> Path:
    """Write ``record`` (a full run's metrics) as the notebook's reference, atomically."""
    if record.get("profile") != "full":
        raise ValueError(f"A reference comes from a full run; this record is profile={record.get('profile')!r}.")
    root = root or project_root()
    stamped = {**record, "commit": _commit(root), "date": datetime.now(UTC).isoformat(timespec="seconds")}
    stamped["machine"] = machine()
    return atomic_write_json(reference_path(stem, root), stamped)


@dataclass
class Reference:
    """A notebook's reference record, or why there is none (``problem``, naming the fix)."""

    stem: str
    metrics: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None

    def get(self, key: str) -> Any:
        return self.metrics.get(key) if self.usable else None

    def describe(self) -> str:
        """One sentence for the notebook: where the reference numbers come from, or what is wrong."""
        if not self.usable:
            return f"No full reference run to show beside this one: {self.problem}"
        m = self.metrics
        minutes = m["notebook_s"] / 60
        return (
            f'The full reference run: `profile = "full"` on {m["machine"]} ({m.get("device", "cpu")}), '
            f"{m['date'][:10]}, commit `{m['commit']}`, {minutes:.0f} min."
        )


def read_reference(stem: str, root: Path | None = None) -> Reference:
    """The committed reference of ``stem``; never raises: a bad record comes back with ``problem`` set."""
    path = reference_path(stem, root)
    fix = f"Fix: run `{regenerate_command(stem)}` to write it."
    if not path.is_file():
        return Reference(stem, problem=f"{path.name} is missing. {fix}")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return Reference(stem, problem=f"{path.name} is not valid JSON ({err}). {fix}")
    if not isinstance(record, dict):
        return Reference(stem, problem=f"{path.name} holds {type(record).__name__}, not a metrics record. {fix}")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        return Reference(stem, problem=f"{path.name} lacks {missing}: it was not written by a notebook. {fix}")
    if record["profile"] != "full":
        return Reference(stem, problem=f"{path.name} is from a {record['profile']!r} run, not a full one. {fix}")
    return Reference(stem, record)


def stale_keys(run: dict[str, Any], reference: Reference) -> list[str]:
    """The findings this run records that the reference does not: the record predates them."""
    return sorted(
        k for k in run if not k.startswith(ENVIRONMENT_PREFIXES) and k not in reference.metrics and k != "profile"
    )


Row = tuple[str, str, Callable[[Any], str]]  # label, metric key, how to print a value


def compare_table(run: dict[str, Any], reference: Reference, rows: Sequence[Row], run_label: str = "this run") -> str:
    """A markdown table: each metric in this run beside the full reference run ("—" where absent)."""

    def shown(value: Any, fmt: Callable[[Any], str]) -> str:
        return "—" if value is None else fmt(value)

    lines = [f"| | {run_label} | full reference run |", "|---|---|---|"]
    for label, key, fmt in rows:
        lines.append(f"| {label} | {shown(run.get(key), fmt)} | {shown(reference.get(key), fmt)} |")
    return "\n".join(lines)


def lesson_table(run: dict[str, Any], reference: Reference, rows: Sequence[Row], profile: str) -> str:
    """Where the reference numbers come from, then ``compare_table`` of ``rows``: each notebook's closing table."""
    return f"{reference.describe()}\n\n" + compare_table(run, reference, rows, run_label=f"this run ({profile})")
