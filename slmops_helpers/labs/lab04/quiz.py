"""Lab 04's quiz, read from labs/source/quizzes/04_deployment.yaml, and the values it computes:
the model's shape for the KV cache, and the reference run's int8 agreements (``labs.measured``)."""

from __future__ import annotations

from ..measured import measured
from ..quiz import load_quiz

STEM = "04_deployment"
KV = {"layers": 30, "kv_heads": 3, "head_dim": 64, "q_heads": 9}  # SmolLM2-135M's config.json
FP32_BYTES = 4


def kv_kib(keys_and_values: int = 2, layers: int = KV["layers"], heads: int = KV["kv_heads"]) -> float:
    """KiB the KV cache holds per token of context, in fp32."""
    return keys_and_values * layers * heads * KV["head_dim"] * FP32_BYTES / 1024


QUIZ_VALUES = {
    "kv_layers": lambda: KV["layers"],
    "kv_heads": lambda: KV["kv_heads"],
    "kv_dim": lambda: KV["head_dim"],
    "q_heads": lambda: KV["q_heads"],
    "kv_kib": kv_kib,
    "kv_half_kib": lambda: kv_kib(keys_and_values=1),
    "kv_query_kib": lambda: kv_kib(heads=KV["q_heads"]),
    "kv_one_layer_kib": lambda: kv_kib(layers=1),
    # the reference run, not this run: the reading must not move with a quick smoke run
    "int8_source": lambda: measured(STEM, "qs_onnx_int8_tensor_diff", prefer_run=False).source,
    "int8_tensor_diff": lambda: measured(STEM, "qs_onnx_int8_tensor_diff", prefer_run=False).value,
    "int8_channel_diff": lambda: measured(STEM, "qs_onnx_int8_channel_diff", prefer_run=False).value,
    "int8_kept_diff": lambda: measured(STEM, "qs_onnx_int8_tensor_keep_down_diff", prefer_run=False).value,
    "outlier_down": lambda: measured(STEM, "outlier_ratio_down_proj", prefer_run=False).value,
}

QUIZ = load_quiz("04_deployment.ipynb", QUIZ_VALUES)
