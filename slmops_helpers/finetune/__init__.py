"""Section 3, fine-tuning side by side: full fine-tuning, LoRA, QLoRA and IA3 on the same task.

One module per job: ``config`` (the sizes per profile), ``methods`` (adapting and training each method), ``artifacts``
(adapters saved, switched, merged with a parity check), ``grid`` (a YAML hyperparameter
grid, Olive's command) and ``tuned`` (the course's cached tuned model, the teacher of
section 2 and the model section 4 deploys). The names notebooks use are importable here.
"""

from .artifacts import MergeParity, check_adapter_fits, load_adapters, merge_with_parity, save_artifact
from .config import SIZES, FinetuneConfig, get_config
from .grid import GRID_EXAMPLE, GRID_KEYS, expand_grid, olive_finetune_command, read_grid
from .methods import (
    ATTENTION,
    METHODS,
    MLP,
    MethodConfig,
    MethodRun,
    add_ia3,
    add_lora,
    check_targets,
    fake_quantize_base,
    linear_module_names,
    load_4bit,
    load_qlora_base,
    lora_parameter_count,
    make_trainable,
    qlora_unavailable_reason,
    run_method,
    trainable_share,
)
from .tuned import (
    TUNED_CONFIG,
    TunedConfig,
    describe_tuned,
    load_tuned_model,
    prepare_tuned_model,
    tuned_dir,
    tuned_info,
)

__all__ = [
    "ATTENTION",
    "SIZES",
    "FinetuneConfig",
    "get_config",
    "GRID_EXAMPLE",
    "GRID_KEYS",
    "METHODS",
    "MLP",
    "TUNED_CONFIG",
    "MergeParity",
    "MethodConfig",
    "MethodRun",
    "TunedConfig",
    "add_ia3",
    "add_lora",
    "check_adapter_fits",
    "check_targets",
    "describe_tuned",
    "expand_grid",
    "fake_quantize_base",
    "linear_module_names",
    "load_4bit",
    "load_adapters",
    "load_qlora_base",
    "load_tuned_model",
    "lora_parameter_count",
    "make_trainable",
    "merge_with_parity",
    "olive_finetune_command",
    "prepare_tuned_model",
    "qlora_unavailable_reason",
    "read_grid",
    "run_method",
    "save_artifact",
    "trainable_share",
    "tuned_dir",
    "tuned_info",
]
