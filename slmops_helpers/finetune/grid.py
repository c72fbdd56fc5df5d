"""Section 3, a hyperparameter grid from a YAML file (the analogue of an Olive config), and Olive's command."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from .. import training
from .methods import MethodConfig

# --- hyperparameter grid (the analogue of an Olive config file) ---------------------------

GRID_EXAMPLE = "notebooks/configs/lora_grid.yaml"
GRID_KEYS = {"rank": int, "alpha": int, "lr": float, "targets": list, "steps": int}


def read_grid(path: str | Path) -> list[dict[str, Any]]:
    """Read a YAML grid ``{fixed: {...}, search: {key: [values...]}}`` into a list of runs."""
    import yaml

    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(
            f"{path} is not valid YAML ({err}). Fix: compare with notebooks/configs/lora_grid.yaml."
        ) from err
    return expand_grid(spec, source=str(path))


def expand_grid(spec: Any, source: str = "grid") -> list[dict[str, Any]]:
    """Validate a grid spec and return every combination of its ``search`` values over ``fixed``."""
    example = "Fix: write `fixed: {rank: 8, ...}` and `search: {lr: [0.0005, 0.001]}`."
    if not isinstance(spec, dict) or set(spec) - {"fixed", "search"} or "search" not in spec:
        raise ValueError(f"{source}: expected a mapping with keys `search` (and optional `fixed`). {example}")
    fixed, search = spec.get("fixed") or {}, spec["search"]
    if not isinstance(fixed, dict) or not isinstance(search, dict) or not search:
        raise ValueError(f"{source}: `fixed` and `search` must be mappings, `search` not empty. {example}")
    for key, values in search.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{source}: search.{key} must be a non-empty list of values, got {values!r}. {example}")
    runs = [{**fixed, **dict(zip(search, combo, strict=True))} for combo in itertools.product(*search.values())]
    for key, value in (kv for run in runs for kv in run.items()):
        _check_grid_value(source, key, value)
    return runs


def _check_grid_value(source: str, key: str, value: Any) -> None:
    if key not in GRID_KEYS:
        raise ValueError(f"{source}: unknown key {key!r}. Fix: use only {sorted(GRID_KEYS)}.")
    want = GRID_KEYS[key]
    if isinstance(value, bool) or not (isinstance(value, want) or want is float and isinstance(value, int)):
        raise ValueError(f"{source}: {key}={value!r} should be a {want.__name__}.")


# --- Olive, for learners who use it ------------------------------------------------------


def olive_finetune_command(
    model_id: str, spec: MethodConfig, config: training.TrainConfig, data_files: str, output: str
) -> str:
    """The ``olive finetune`` command line that asks for the same run (flags as in Olive's docs)."""
    if spec.method not in ("lora", "qlora"):
        raise ValueError(f"olive finetune offers lora and qlora; got {spec.method!r}.")
    return " \\\n  ".join(
        [
            f"olive finetune --method {spec.method} -m {model_id}",
            f"-d json --data_files {data_files} --train_split train --eval_split validation",
            '--text_template "<|im_start|>user\\n{message}<|im_end|>\\n<|im_start|>assistant\\n{target}"',
            f"--per_device_train_batch_size {config.batch_size} --max_steps {config.max_steps}",
            f"--learning_rate {config.lr} --lora_r {spec.rank} --lora_alpha {spec.alpha}",
            f"-o {output}",
        ]
    )
