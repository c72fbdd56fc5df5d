"""The course site's headline metrics: which recorded figures each section's index card shows."""

from __future__ import annotations

from typing import Any

__all__ = ["HEADLINES", "CONTEXT_KEYS", "format_metric", "headline_metrics"]

# Headline metrics per notebook: (key, label, format). Keys missing from a run are skipped;
# a notebook without an entry shows its task scores and run time (see headline_metrics).
HEADLINES: dict[str, list[tuple[str, str, str]]] = {
    "01_introduction": [
        ("n_params", "parameters", "{:,.0f}"),
        ("measured_fp32_mib", "fp32 weights (MiB)", "{:.0f}"),
        ("measured_int4_mib", "int4 weights (MiB)", "{:.0f}"),
        ("gen_tok_s", "generation speed (tokens/s)", "{:.1f}"),
        ("base_score", "untuned task score (0-100)", "{:.1f}"),
        ("majority_score", "majority baseline (0-100)", "{:.1f}"),
    ],
    "02_distillation": [
        ("teacher_score", "teacher task score (0-100)", "{:.1f}"),
        ("student_score", "distilled student task score", "{:.1f}"),
        ("undistilled_score", "undistilled student task score", "{:.1f}"),
        ("student_param_share", "student size (share of teacher)", "{:.0%}"),
        ("speedup", "student speed-up", "{:.1f}x"),
        ("targets_met", "targets met (of 4)", "{:d}"),
    ],
    "03_fine_tuning": [
        ("base_score", "untuned task score (0-100)", "{:.1f}"),
        ("full_score", "full fine-tune", "{:.1f}"),
        ("lora_score", "LoRA", "{:.1f}"),
        ("qlora_score", "QLoRA", "{:.1f}"),
        ("ia3_score", "IA3", "{:.1f}"),
        ("lora_trainable_pct", "LoRA trainable share (%)", "{:.2f}"),
        ("lora_artifact_mib", "LoRA adapter file (MiB)", "{:.1f}"),
    ],
    "04_deployment": [
        ("deployed_score", "deployed model's task score", "{:.1f}"),
        ("untuned_score", "untuned base's task score", "{:.1f}"),
        ("torch_fp32_score", "PyTorch fp32 task score", "{:.1f}"),
        ("onnx_int4_score", "ONNX int4 task score", "{:.1f}"),
        ("torch_fp32_size_mib", "PyTorch fp32 size (MiB)", "{:.0f}"),
        ("onnx_int4_size_mib", "ONNX int4 size (MiB)", "{:.0f}"),
        ("torch_fp32_tok_s", "PyTorch fp32 speed (tokens/s)", "{:.1f}"),
        ("onnx_int4_tok_s", "ONNX int4 speed (tokens/s)", "{:.1f}"),
    ],
    "04b_serving": [
        ("package_variant", "packaged ONNX variant", "{}"),
        ("package_mib", "package size (MiB)", "{:.0f}"),
        ("package_test_score", "package's test score, scored once", "{:.1f}"),
        ("speculative_int4_speedup", "speculative decoding with the int4 draft (×)", "{:.2f}"),
        ("server_p95_s", "server p95 latency, 20 concurrent requests (s)", "{:.1f}"),
        ("checklist_passed", "validation checklist items passed", "{}"),
    ],
    "05_slmops_pipeline": [
        ("production_score", "production task score", "{:.1f}"),
        ("candidate_score", "candidate task score", "{:.1f}"),
        ("gate_passed", "candidate passed the gate", "{}"),
        ("bad_candidate_gate_passed", "over-quantized build passed the gate", "{}"),
        ("rollout_on_new", "devices on the new version", "{:,.0f}"),
        ("bad_rollout_rolled_back", "devices rolled back (bad build)", "{:,.0f}"),
    ],
}
CONTEXT_KEYS = {"profile", "model", "device", "python", "platform", "cpu_count"}


def format_metric(value: Any, fmt: str) -> str:
    """``value`` with ``fmt``, or plainly when the format does not fit its type."""
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def headline_metrics(stem: str, metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, formatted value) of the notebook's headline figures, in a fixed order."""
    spec = HEADLINES.get(stem)
    if spec is None:  # a section without a list yet: its scores, nothing else guessed
        spec = [(k, k.replace("_", " "), "{:.1f}") for k in sorted(metrics) if k.endswith("_score")][:6]
    rows = [(label, format_metric(metrics[key], fmt)) for key, label, fmt in spec if key in metrics]
    if "notebook_s" in metrics:
        rows.append(("run time (s)", format_metric(metrics["notebook_s"], "{:.0f}")))
    return rows
