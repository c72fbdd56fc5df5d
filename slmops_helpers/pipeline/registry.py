"""A local, file-based model registry: which package was built from what, and where it stands.

One folder (default ``artifacts/registry/``) holds ``index.json``: every registered
entry with its lineage (base model, adapter, data hash, hyperparameters, parent entry),
its recorded metrics, the sha256 of each file of its package, and its stage
(candidate → staging → production, or archived). Entries are versioned per name:
``support-assistant-v1``, ``-v2``, …

Every change takes a lock file, reads the index, and writes it back atomically, so two
processes registering at once both land and a crash never leaves half an index.

>>> reg = Registry("artifacts/registry")
>>> entry = reg.register("support-assistant", base_model="smollm2-135m-instruct", files=["pkg/"])
>>> reg.promote(entry.id, "staging").stage
'staging'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .._io import atomic_write_json
from ..config import artifacts_dir
from ..metrics import check_flat
from ..models import sha256_file  # one hashing routine for models, packages and the registry
from ..uncertainty import TicketScores

STAGES = ("candidate", "staging", "production", "archived")
INDEX_FORMAT = 1
LOCK_TIMEOUT_S = 60
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class RegistryError(ValueError):
    """A registry problem the user can fix; the message says how."""


@dataclass(frozen=True)
class Entry:
    """One registered package version and where it came from."""

    id: str  # "<name>-v<version>"
    name: str
    version: int
    stage: str
    created: str  # ISO time, UTC
    base_model: str
    adapter: str | None = None  # e.g. "lora r=8" or a path
    data_hash: str | None = None  # sha256 of the training data (see ``sha256_data``)
    parent: str | None = None  # the entry this one was built from
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # absolute path -> sha256
    history: list[dict[str, str]] = field(default_factory=list)  # [{"stage", "at"}]
    notes: str = ""
    per_ticket: dict[str, dict[str, list]] = field(default_factory=dict)  # metric -> {"ids", "values"}


def sha256_data(records: Any) -> str:
    """A stable sha256 of JSON-able data (e.g. the training rows): same rows, same hash."""
    return hashlib.sha256(json.dumps(records, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def hash_package(paths: Sequence[str | os.PathLike]) -> dict[str, str]:
    """sha256 of every file in ``paths``; a folder stands for every file below it."""
    hashes = {}
    for given in paths:
        path = Path(given).resolve()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(
                f"Package path {given} does not exist. Fix: build the package first, or fix the path."
            )
        hashes.update({str(f): sha256_file(f) for f in files})
    return hashes


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_per_ticket(per_ticket: dict[str, TicketScores], metrics: dict[str, Any]) -> dict[str, dict[str, list]]:
    """Per-ticket results as JSON, each for a recorded metric whose value is their mean."""
    out = {}
    for metric, tickets in per_ticket.items():
        if not isinstance(tickets, TicketScores):
            raise RegistryError(
                f"per_ticket[{metric!r}] must be uncertainty.TicketScores, got {type(tickets).__name__}."
            )
        recorded = metrics.get(metric)
        if not tickets.matches(recorded):
            raise RegistryError(
                f"per_ticket[{metric!r}] averages {tickets.mean:.4g}, but metrics record {metric} = {recorded!r}. "
                "Fix: pass the metric and its per-ticket results from the same measurement."
            )
        out[metric] = tickets.to_json()
    return out


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise RegistryError(f"Unknown stage {stage!r}. Fix: use one of {list(STAGES)}.")


class Registry:
    """The registry in folder ``root`` (default ``artifacts/registry``)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else artifacts_dir() / "registry"
        self.index_path = self.root / "index.json"

    # -- storage -------------------------------------------------------------------
    def _lock(self) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(self.root / ".index.lock", timeout=LOCK_TIMEOUT_S)

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.index_path.is_file():
            return {}
        try:
            data = json.loads(self.index_path.read_text())
        except json.JSONDecodeError as err:
            raise RegistryError(
                f"{self.index_path} is not valid JSON ({err}). Fix: restore it from a backup, "
                "or delete the folder to start an empty registry."
            ) from err
        if (
            not isinstance(data, dict)
            or data.get("format") != INDEX_FORMAT
            or not isinstance(data.get("entries"), dict)
        ):
            raise RegistryError(
                f"{self.index_path} is not a format-{INDEX_FORMAT} registry index. Fix: point --root elsewhere."
            )
        return data["entries"]

    def _update(self, change: Callable[[dict[str, dict[str, Any]]], str]) -> Entry:
        """Lock, read, let ``change(entries)`` edit the dict and return an id, write, unlock."""
        try:
            with self._lock():
                entries = self._read()
                entry_id = change(entries)
                atomic_write_json(self.index_path, {"format": INDEX_FORMAT, "entries": entries})
        except Timeout as err:
            raise RegistryError(
                f"Another process has held {self.root / '.index.lock'} for {LOCK_TIMEOUT_S} s. "
                "Fix: wait for it to finish, then try again."
            ) from err
        return Entry(**entries[entry_id])

    # -- reading ---------------------------------------------------------------------
    def entries(self, name: str | None = None, stage: str | None = None) -> list[Entry]:
        """All entries, oldest first per name; optionally only one ``name`` or ``stage``."""
        if stage is not None:
            _check_stage(stage)
        found = [Entry(**e) for e in self._read().values()]
        found = [e for e in found if (name is None or e.name == name) and (stage is None or e.stage == stage)]
        return sorted(found, key=lambda e: (e.name, e.version))

    def get(self, entry_id: str) -> Entry:
        """The entry called ``entry_id``, or an error listing the ones that exist."""
        entries = self._read()
        if entry_id not in entries and not self.root.is_dir():
            raise RegistryError(f"No registry entry {entry_id!r}. {self.missing()}")
        if entry_id not in entries:
            known = ", ".join(sorted(entries)) or "none yet"
            raise RegistryError(
                f"No registry entry {entry_id!r} in {self.root} (known: {known}). Fix: `slmops registry list`."
            )
        return Entry(**entries[entry_id])

    def missing(self) -> str:
        """What to say when the registry folder does not exist (a missing registry is not an empty one)."""
        return (
            f"There is no registry at {self.root} (the folder does not exist). Fix: point at an existing registry "
            "folder; notebook 05 writes one at artifacts/05_slmops_pipeline/registry."
        )

    def latest(self, name: str, stage: str | None = None) -> Entry:
        """The newest version of ``name`` (in ``stage`` if given)."""
        found = self.entries(name=name, stage=stage)
        if not found:
            raise RegistryError(f"No entry named {name!r}{f' in stage {stage!r}' if stage else ''} in {self.root}.")
        return found[-1]

    def lineage(self, entry_id: str) -> list[Entry]:
        """The entry, its parent, its parent's parent, … (the entry first)."""
        entries = self._read()
        chain = [self.get(entry_id)]
        while chain[-1].parent in entries and len(chain) <= len(entries):  # the bound stops a loop
            chain.append(Entry(**entries[chain[-1].parent]))
        return chain

    # -- writing ---------------------------------------------------------------------
    def register(
        self,
        name: str,
        *,
        base_model: str,
        files: Sequence[str | os.PathLike] = (),
        metrics: dict[str, Any] | None = None,
        adapter: str | None = None,
        data_hash: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        parent: str | None = None,
        stage: str = "candidate",
        notes: str = "",
        per_ticket: dict[str, TicketScores] | None = None,
    ) -> Entry:
        """Record a new version of ``name``; its package ``files`` (files or folders) are hashed now.

        ``per_ticket`` keeps each ticket's result behind a metric (e.g. ``{"score": ...}``), so the
        gate can tell a real drop from noise between two entries (``gate``, ``significance``)."""
        if not _NAME.match(name):
            raise RegistryError(f"Entry name {name!r} must be letters, digits, '.', '_' or '-'. Fix: rename it.")
        if not base_model:
            raise RegistryError("register() needs base_model (the model it was built from).")
        _check_stage(stage)
        metrics = {k: (v.item() if hasattr(v, "item") else v) for k, v in (metrics or {}).items()}
        check_flat(metrics)
        hyperparameters = json.loads(json.dumps(hyperparameters or {}))  # must be JSON-able; detaches the caller's dict
        tickets = _check_per_ticket(per_ticket or {}, metrics)
        hashes = hash_package(list(files))  # outside the lock: hashing takes time

        def add(entries: dict[str, dict[str, Any]]) -> str:
            if parent is not None and parent not in entries:
                raise RegistryError(f"Parent {parent!r} is not in the registry. Fix: register it first or drop parent.")
            version = 1 + max((e["version"] for e in entries.values() if e["name"] == name), default=0)
            entry = Entry(
                id=f"{name}-v{version}",
                name=name,
                version=version,
                stage=stage,
                created=_now(),
                base_model=base_model,
                adapter=adapter,
                data_hash=data_hash,
                parent=parent,
                hyperparameters=hyperparameters,
                metrics=metrics,
                files=hashes,
                history=[{"stage": stage, "at": _now()}],
                notes=notes,
                per_ticket=tickets,
            )
            entries[entry.id] = asdict(entry)
            return entry.id

        return self._update(add)

    def promote(self, entry_id: str, stage: str) -> Entry:
        """Move an entry to ``stage``; promoting to production archives the previous production version."""
        _check_stage(stage)

        def move(entries: dict[str, dict[str, Any]]) -> str:
            if entry_id not in entries:
                raise RegistryError(f"No registry entry {entry_id!r}. Fix: `slmops registry list`.")
            target = entries[entry_id]
            if stage == "production":
                for other in entries.values():
                    if other["name"] == target["name"] and other["stage"] == "production" and other is not target:
                        other["stage"] = "archived"
                        other["history"].append({"stage": "archived", "at": _now(), "by": entry_id})
            target["stage"] = stage
            target["history"].append({"stage": stage, "at": _now()})
            return entry_id

        return self._update(move)

    def verify(self, entry: Entry | str) -> Entry:
        """Re-hash the entry's package files; raise naming every missing or changed file."""
        entry = self.get(entry) if isinstance(entry, str) else entry
        missing = [p for p in entry.files if not Path(p).is_file()]
        changed = [p for p, digest in entry.files.items() if p not in missing and sha256_file(p) != digest]
        if missing or changed:
            lines = [f"Registry entry {entry.id} does not match its package:"]
            lines += [f"  missing: {p}" for p in missing] + [f"  changed: {p}" for p in changed]
            lines.append(
                "Fix: restore the original files (rebuild with the same inputs), or register the new "
                "package as a new version instead of shipping this entry."
            )
            raise RegistryError("\n".join(lines))
        return entry


# -- text for the terminal and the notebook ---------------------------------------------
def format_entries(entries: list[Entry], root: Path | None = None) -> str:
    """One line per entry: id, stage, created, base model and file count."""
    if not entries:
        where = f" at {root}" if root is not None else ""
        return f"The registry{where} is empty. Register a package with Registry.register(...)."
    rows = [f"{'id':<32} {'stage':<11} {'created':<26} {'base model':<24} files"]
    rows += [f"{e.id:<32} {e.stage:<11} {e.created:<26} {e.base_model:<24} {len(e.files)}" for e in entries]
    return "\n".join(rows)


def format_entry(entry: Entry, lineage: list[Entry] | None = None) -> str:
    """Everything about one entry, lineage last."""
    lines = [f"{entry.id}  ({entry.stage}, created {entry.created})", f"  base model       {entry.base_model}"]
    for label, value in (("adapter", entry.adapter), ("data sha256", entry.data_hash), ("parent", entry.parent)):
        if value:
            lines.append(f"  {label:<16} {value}")
    if entry.notes:
        lines.append(f"  notes            {entry.notes}")
    for title, values in (("hyperparameters", entry.hyperparameters), ("metrics", entry.metrics)):
        lines.append(f"  {title}:" + ("" if values else " none"))
        lines += [
            f"    {k:<30} {v:.4g}" if isinstance(v, float) else f"    {k:<30} {v}" for k, v in sorted(values.items())
        ]
    lines.append(f"  files ({len(entry.files)}):")
    lines += [f"    {digest[:12]}  {path}" for path, digest in sorted(entry.files.items())]
    lines.append("  stages: " + " → ".join(h["stage"] for h in entry.history))
    if lineage and len(lineage) > 1:
        lines.append("  lineage: " + " ← ".join(e.id for e in lineage) + f" ← {lineage[-1].base_model}")
    return "\n".join(lines)


def run_command(
    action: str, entry_id: str | None = None, *, stage: str | None = None, root: str | os.PathLike | None = None
) -> int:
    """``slmops registry list|show|promote|verify``: print and return the exit code."""
    reg = Registry(root)
    if action != "list" and not entry_id:
        raise RegistryError(f"`slmops registry {action}` needs an entry id. Fix: pick one from `slmops registry list`.")
    if not reg.root.is_dir():  # before promote, which would otherwise create it
        raise RegistryError(reg.missing())
    if action == "list":
        print(format_entries(reg.entries(stage=stage), reg.root))
    elif action == "show":
        print(format_entry(reg.get(entry_id), reg.lineage(entry_id)))
    elif action == "promote":
        if stage is None:
            raise RegistryError(f"promote needs --stage (one of {list(STAGES)}).")
        entry = reg.promote(entry_id, stage)
        print(f"{entry.id} is now {entry.stage}")
    elif action == "verify":
        entry = reg.verify(entry_id)
        print(f"{entry.id}: all {len(entry.files)} package files match their sha256")
    else:
        raise RegistryError(f"Unknown registry action {action!r}; use list, show, promote or verify.")
    return 0
