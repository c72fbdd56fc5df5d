"""Lab 03's exercises on the course model itself: a LoRA adapter written with peft, trained for
a few steps and saved (q9), then merged and checked for parity (q10), each checked on the
folder the learner wrote. The rest of lab 03 is in ``exercises``."""

from __future__ import annotations

import copy
import functools
import json
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from ... import training
from ...data import format_chat, read_rows
from ...models import DEFAULT_MODEL, load_model
from .. import Exercise, Result, incorrect, learner_answer
from ..artifacts import folder_of, safetensors_tensors
from ..checks import fresh_rng

__all__ = ["TRAIN_TICKETS", "TARGET_BUDGET", "lab_train_examples", "LoraOnCourseModel", "MergeOnCourseModel"]

TARGET_BUDGET = 1_000_000  # q3: LoRA parameters allowed at rank 8; q9's adapter keeps to it


class Lab03RealExercise(Exercise):
    notebook = "03_fine_tuning.ipynb"  # in labs/source/
    real_tools = True


# --- q9 and q10: an adapter on the course model, then its merge ------------------------------------

TRAIN_TICKETS = 4  # q9 trains on the first few training tickets: enough to move the loss in a few steps


def lab_train_examples(tokenizer: Any, n: int = TRAIN_TICKETS, max_length: int = 192) -> list[dict[str, list[int]]]:
    """The first ``n`` training tickets, encoded with their references (labels on the answer only)."""
    rows = [r for r in read_rows() if r["split"] == "train"][:n]
    return [training.encode_example(tokenizer, row, max_length=max_length) for row in rows]


@functools.cache
def _course_base(model_name: str = DEFAULT_MODEL) -> tuple[Any, Any]:
    """The course model as loaded from its prepared folder: the checks copy it, never change it."""
    return load_model(model_name, device="cpu")


def _linear_layers(model: Any) -> dict[str, tuple[int, int]]:
    """(in, out) of every linear layer inside the model's decoder blocks, by module name."""
    return {
        name: (module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    }


def fresh_course_model(model_name: str = DEFAULT_MODEL) -> tuple[Any, Any]:
    """A copy of the course model in float32 on the CPU, and its tokenizer."""
    model, tokenizer = _course_base(model_name)
    return copy.deepcopy(model), tokenizer


def _with_adapter(adapter_dir: Any, model_name: str = DEFAULT_MODEL) -> tuple[Any, Any]:
    """The course model with the learner's adapter loaded (peft), in eval mode, and its tokenizer."""
    from peft import PeftModel

    base, tokenizer = fresh_course_model(model_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PeftModel.from_pretrained(base, str(adapter_dir)).eval(), tokenizer


class LoraOnCourseModel(Lab03RealExercise):
    name, title, tier, var = "q9", "A LoRA adapter on the course model, trained and saved", "stretch", None
    hint_text = (
        "peft's LoraConfig takes r, lora_alpha, target_modules (q3's list) and task_type='CAUSAL_LM'; "
        "get_peft_model wraps the model. Optimise only the parameters that require a gradient, on "
        "training.collate(train_examples, ...), for a few steps; save_pretrained on the peft model writes only "
        "the adapter."
    )

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        from peft import LoraConfig

        config = learner_answer(ns, "lora_config")
        folder = folder_of(
            learner_answer(ns, "adapter_dir"), "adapter_dir", ("adapter_config.json", "adapter_model.safetensors")
        )
        if not isinstance(config, LoraConfig):
            return incorrect(f"`lora_config` should be a peft LoraConfig, got {type(config).__name__}.")
        if isinstance(folder, Result):
            return folder
        saved = json.loads((folder / "adapter_config.json").read_text())
        targets = sorted(saved.get("target_modules") or [])
        if saved.get("r") != config.r or targets != sorted(config.target_modules or []):
            return incorrect("`adapter_dir` holds an adapter made with another config than `lora_config`: save again.")
        layers = _linear_layers(_course_base()[0])
        if unknown := [t for t in targets if t not in {name.rsplit(".", 1)[-1] for name in layers}]:
            return incorrect(f"{unknown} are not linear layers of the course model's blocks.")
        tensors = safetensors_tensors(folder)
        lora = {k: t for k, t in tensors.items() if "lora_" in k}
        n_params = sum(t.numel() for t in lora.values())
        shapes = [shape for name, shape in layers.items() if name.rsplit(".", 1)[-1] in targets]
        if n_params != sum(int(config.r) * (i + o) for i, o in shapes):
            return incorrect("`adapter_dir` does not hold an A and a B for every targeted layer of every block.")
        if n_params > TARGET_BUDGET:
            return incorrect(f"The adapter trains {n_params:,} parameters, over q3's {TARGET_BUDGET:,} budget.")
        if untrained := sorted(k for k, t in lora.items() if "lora_B" in k and not bool(t.any())):
            return incorrect(
                f"`adapter_dir`'s {untrained[0]!r} is all zeros, as peft initialises B: the adapter was not trained "
                "(or saved before training)."
            )
        adapted, tokenizer = _with_adapter(folder)
        examples = lab_train_examples(tokenizer)
        pad = tokenizer.pad_token_id
        with adapted.disable_adapter():
            before = training.evaluate_loss(adapted, examples, pad)
        after = training.evaluate_loss(adapted, examples, pad)
        if not after < 0.98 * before:
            return incorrect(
                "With your adapter the loss on `train_examples` is not lower than the base model's: train on "
                "them (the loss of the references, labels on the answer), with a learning rate that moves it."
            )
        return None


class MergeOnCourseModel(Lab03RealExercise):
    name, title, tier, var = "q10", "Merge the adapter and check parity", "stretch", None
    hint_text = (
        "peft's merge_and_unload() folds every adapter into its weight and returns a plain transformers model: "
        "save that with save_pretrained. For parity, run the same tokens through the adapter model and the "
        "merged one and compare the logits."
    )
    PARITY = 1e-4  # of the logits' scale: float32 rounding stays far below it, a lost scale or layer far above

    def check_value(self, ns: Mapping[str, Any]) -> Result | None:
        from transformers import AutoModelForCausalLM

        merged_dir = learner_answer(ns, "merged_dir")
        adapter_dir = folder_of(learner_answer(ns, "adapter_dir"), "adapter_dir", ("adapter_config.json",))
        if isinstance(adapter_dir, Result):
            return incorrect(f"{adapter_dir.message} q10 merges q9's adapter: finish q9 first.")
        folder = folder_of(merged_dir, "merged_dir", ("config.json", "*.safetensors"))
        if isinstance(folder, Result):
            return folder
        tensors = safetensors_tensors(folder)
        if any("lora_" in k for k in tensors):
            return incorrect("`merged_dir` still holds LoRA tensors: merge them into the weights (merge_and_unload).")
        base, _ = _course_base()
        if all(
            torch.equal(t.float(), base.state_dict()[k].float()) for k, t in tensors.items() if k in base.state_dict()
        ):
            return incorrect("`merged_dir` holds the base model's weights unchanged: the adapter was not merged.")
        merged = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        adapted, tokenizer = _with_adapter(adapter_dir)
        rng = fresh_rng()  # a hidden ticket, new at every attempt
        rows = [r for r in read_rows() if r["split"] == "validation"]
        ids = torch.tensor([tokenizer(format_chat(tokenizer, rows[int(rng.integers(len(rows)))])).input_ids])
        with torch.inference_mode():
            want, got = adapted(input_ids=ids).logits, merged(input_ids=ids).logits
        if got.shape != want.shape:
            return incorrect("The merged model's logits do not have the adapter model's shape: another model?")
        scale = float(want.abs().max())
        if float((got - want).abs().max()) > self.PARITY * scale + 1e-5:
            return incorrect(
                "The merged model's logits differ from the adapter model's by more than rounding: was every "
                "adapter merged, with its scale alpha / r, into the weights q9 trained?"
            )
        return None
