"""What the real-tool exercises check: the artifacts a learner made with the course's tools.

A real-tool exercise is judged on what exists after the learner's cell ran (a folder of
weights, an adapter, a package, a policy file, a gate's exit code), measured again here,
never on a number typed into the cell. These helpers read such artifacts:

* ``work_dir``: where a lab's artifacts go (``artifacts/labs/labNN/``);
* ``folder_of``: the learner's folder, or an INCORRECT result that names the fix;
* ``safetensors_tensors``: every tensor a saved folder holds, read without building a model;
* ``greedy_mismatch``: whether a list of tokens is the model's greedy continuation, in one
  forward pass (teacher forcing), so a check need not generate the answer again;
* ``inputs_stamp``: one key for what a check read (files by size and modification time, values
  by repr), so a verdict on unchanged artifacts is not measured again (``Question.result``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..config import artifacts_dir
from .checks import Result, incorrect

__all__ = ["work_dir", "folder_of", "safetensors_tensors", "greedy_mismatch", "inputs_stamp", "NEAR_TIE"]

NEAR_TIE = 1e-3  # logits this close are a tie that float rounding may break either way


def work_dir(lab: str, output_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder for lab ``lab``'s artifacts ("01" → ``artifacts/labs/lab01``), created if missing."""
    folder = artifacts_dir(output_dir) / "labs" / f"lab{lab}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def folder_of(value: Any, name: str, must_hold: tuple[str, ...] = ()) -> Path | Result:
    """The learner's ``value`` as an existing folder holding ``must_hold`` (file name patterns).

    Args:
        value: what the learner set ``name`` to: a str or a Path.
        name: the variable's name, for the message.
        must_hold: glob patterns that must each match a file in the folder.
    Returns:
        The folder, or an INCORRECT result saying what is missing.
    """
    if not isinstance(value, str | os.PathLike):
        return incorrect(f"`{name}` should be the path of a folder (a str or a Path), got {type(value).__name__}.")
    folder = Path(value)
    if not folder.is_dir():
        return incorrect(f"`{name}` is {str(folder)!r}, which is not a folder: run the cell that writes it.")
    for pattern in must_hold:
        if not any(folder.glob(pattern)):
            return incorrect(
                f"`{name}` ({folder}) holds no {pattern}: was the save interrupted, or is it another folder?"
            )
    return folder


def safetensors_tensors(folder: Path) -> dict[str, Any]:
    """Every tensor in the folder's ``*.safetensors`` files, by name (torch tensors, as stored)."""
    from safetensors import safe_open

    tensors: dict[str, Any] = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118  # safe_open has keys(), not iteration
                tensors[key] = f.get_tensor(key)
    return tensors


def greedy_mismatch(model: Any, prompt_ids: list[int], tokens: list[int]) -> int | None:
    """The first position where ``tokens`` is not the model's greedy choice after ``prompt_ids``
    (a near-tie is not a mismatch), or None when every token is.

    One forward pass over prompt and tokens gives the logits at every position: what a
    greedy decoder would have picked there, without generating again.
    """
    import torch

    if not tokens:
        return None
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids) + list(tokens)], device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float().cpu().numpy()
    for i, token in enumerate(tokens):
        row = logits[i]
        if not 0 <= token < row.shape[0] or row.max() - row[token] > NEAR_TIE * max(1.0, float(np.abs(row).max())):
            return i
    return None


MAX_STAMPED_FILES = 2000


def _stamp(value: Any, depth: int = 0) -> Any:
    """What identifies one learner value for a verdict: a path's files (name, size, modification
    time), a function's code with what it reads (``_function_stamp``), a plain value's repr; None
    for anything else (an object in memory may change without any sign, so its verdict is never
    reused)."""
    if isinstance(value, os.PathLike) or (isinstance(value, str) and os.sep in value and Path(value).exists()):
        path = Path(value)
        if not path.exists():
            return ("missing", str(path))
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        if len(files) > MAX_STAMPED_FILES:  # not an artifact a lab writes: check every time
            return None
        return [str(path.resolve())] + [(str(p.relative_to(path)), *_file_stamp(p)) for p in files]
    if callable(value) and hasattr(value, "__code__"):
        return _function_stamp(value, depth)
    if value is None or isinstance(value, str | int | float | bool):
        return repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a config: its fields say it all
        return f"{type(value).__qualname__}{value!r}"
    if isinstance(value, dict):
        stamps = {repr(k): _stamp(v, depth) for k, v in value.items()}
        return None if any(s is None for s in stamps.values()) else ("dict", *sorted(stamps.items()))
    if isinstance(value, list | tuple):
        stamps = [_stamp(v, depth) for v in value]
        return None if any(s is None for s in stamps) else (type(value).__name__, *map(repr, stamps))
    return None


MAX_FUNCTION_DEPTH = 3  # a learner's function calling their helper calling another: deeper is checked every time


def _function_stamp(function: Any, depth: int) -> Any:
    """A function's code and defaults, and the values it reads: the variables it closes over
    and the notebook globals it names (a module or class by its name; a function, recursively).
    Two closures of one ``def`` with different captured values are different inputs; None when
    one of those values cannot be stamped or the calls nest too deep."""
    if depth >= MAX_FUNCTION_DEPTH:
        return None
    code = function.__code__
    namespace = getattr(function, "__globals__", {})
    names = sorted({name for c in _codes(code) for name in c.co_names if name in namespace})
    read = {f"global {name}": namespace[name] for name in names}
    for name, cell in zip(code.co_freevars, function.__closure__ or (), strict=True):
        try:
            read[f"closed {name}"] = cell.cell_contents
        except ValueError:  # a cell not yet assigned
            read[f"closed {name}"] = "<unassigned>"
    stamps = {key: _read_stamp(value, depth) for key, value in read.items()}
    stamps["defaults"] = _stamp(list(function.__defaults__ or ()), depth + 1)
    if any(stamp is None for stamp in stamps.values()):
        return None
    return (function.__qualname__, [(c.co_code, repr(_plain_consts(c))) for c in _codes(code)], sorted(stamps.items()))


def _read_stamp(value: Any, depth: int) -> Any:
    """A value a function reads: modules and classes stand for themselves by name."""
    import inspect

    if inspect.ismodule(value):
        return ("module", value.__name__)
    if isinstance(value, type) or inspect.isbuiltin(value):
        return ("name", getattr(value, "__module__", ""), getattr(value, "__qualname__", repr(value)))
    return _stamp(value, depth + 1)


def _codes(code: Any) -> list[Any]:
    """A code object and those nested in it (its inner functions, lambdas, comprehensions)."""
    inner = [c for c in code.co_consts if hasattr(c, "co_code")]
    return [code] + [nested for c in inner for nested in _codes(c)]


def _plain_consts(code: Any) -> tuple[Any, ...]:
    """The constants a code object holds, without nested code (whose repr names a memory address)."""
    return tuple(c for c in code.co_consts if not hasattr(c, "co_code"))


def _file_stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def inputs_stamp(values: dict[str, Any]) -> str | None:
    """One key for a real-tool check's inputs (``_stamp`` of each), or None when one cannot be
    stamped: the check then runs every time. Equal keys mean the same files, unchanged, and the
    same values, so the verdict already given holds."""
    stamp = _stamp(dict(values))  # a dict stamps each value, and is None when one cannot be stamped
    return None if stamp is None else repr(stamp)
