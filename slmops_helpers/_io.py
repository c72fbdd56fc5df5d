"""Atomic writes: an interrupted run must never leave a half-written file or folder."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temp file in the same folder, then rename.

    ``os.replace`` is atomic on one filesystem, so readers see the old file or the
    new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; ours are meant to be shared reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder beside ``final``; on success it is renamed to ``final``.

    On any error (or Ctrl-C) the temp folder is removed and ``final`` is untouched.
    An existing ``final`` is replaced only once the new one is complete.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700 folders; caches and packages are meant to be shared reading
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_complete(folder: str | os.PathLike, marker: str, *required: str) -> bool:
    """True when ``folder`` is a finished cached build: its ``marker`` file (written last by
    ``build_directory``), every ``required`` file, and every file the marker lists under
    ``"files"`` at its recorded size (a file cut short or changed since fails)."""
    folder = Path(folder)
    try:
        sizes = json.loads((folder / marker).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return False
    files = [*((name, size) for name, size in sizes.items()), *((name, None) for name in required)]
    return all((folder / name).is_file() and size in (None, (folder / name).stat().st_size) for name, size in files)


@contextmanager
def build_directory(final: str | os.PathLike, marker: str, record: dict[str, Any]) -> Iterator[Path]:
    """``atomic_directory`` for a cached build: fill the yielded temp folder; on success the
    ``marker`` file is written last, holding ``record`` and the size of each file, and the
    folder moves into place. ``is_complete`` recognises the result."""
    with atomic_directory(final) as tmp:
        yield tmp
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_json(tmp / marker, {**record, "files": files})


def ensure_writable_dir(path: str | os.PathLike, fix: str) -> Path:
    """Create ``path`` if needed and prove it is writable, or raise naming ``fix``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test."):
            pass
    except OSError as err:
        raise PermissionError(f"Cannot write to {path} ({err.strerror}). Fix: {fix}") from err
    return path
