"""Section 4.3's quantization study: the levers that decide what quantization costs, measured.

Each row is one recipe built from the deployed model with the field's own tools (the
onnxruntime-genai model builder, onnxruntime's quantizer, llama.cpp's quantizer) and
measured the same way, on validation tickets (the study chooses recipes):

- size on disk and **bits per weight**, the file's bits over the model's parameter count;
- the task score, **paired against the fp32 export** ticket by ticket, and the one-sided
  upper bound of the drop the course's gate reads (``gate.score_rule``);
- the **mean per-token KL divergence** from the fp32 export's next-token distribution, on
  the validation tickets' reference answers (teacher-forced): a low-variance measure that
  moves before the score does;
- decode speed and peak memory, each variant in a fresh process (``bench.measure_isolated``).

``outlier_probe`` measures why one scale per tensor fails: how far the largest input channel
of each kind of projection sits above the typical one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data import format_chat, format_target, refuse_test_rows
from ..uncertainty import TicketScores, drop_upper_bound, paired_difference
from . import bench, export, llamacpp
from .export import Recipe

REFERENCE = "onnx_fp32"


@dataclass(frozen=True)
class Lever:
    """One row of the study: a recipe and the lever it turns, in words."""

    name: str
    what: str
    recipe: Recipe | None = None  # an ONNX build ...
    gguf: str | None = None  # ... or a llama.cpp type (``llamacpp.GGUF_TYPES`` / ``STUDY_TYPES``)
    keep_float: str = ""  # quantize_dynamic: also keep every MatMul whose name holds this in fp32

    @property
    def runtime(self) -> str:
        return "gguf" if self.gguf else "onnx"


def _int4(what: str, **options: str) -> Lever:
    name = (
        "onnx_int4_" + "_".join(f"{k.replace('_', '')}{v}" for k, v in options.items()) if options else "onnx_int4_rtn"
    )
    return Lever(name, what, Recipe("int4", builder_options=dict(options)))


# Not here: int8 blocks with accuracy_level 1 (fp32 activations) decodes about 6 tokens/s on 2 cores, too
# slow for the full run; a 4-bit body with zero points and the tied embedding sharing its 4-bit blocks
# (is_symmetric=false alone) is a graph onnxruntime refuses to load (the builder's shared-embedding
# path); zero points are measured with k-quant, which keeps the head and embedding at 8 bits.
LEVERS: tuple[Lever, ...] = (
    Lever(REFERENCE, "fp32 export (the reference)", export.RECIPES["onnx_fp32"]),
    Lever(
        "onnx_int8_tensor",
        "int8, one scale per weight tensor, activations to uint8 per tensor at run time (quantize_dynamic)",
        Recipe("int8", tool="quantize_dynamic", exclude=(export.LM_HEAD,)),
    ),
    Lever(
        "onnx_int8_tensor_keep_down",
        "the same, with every MLP down-projection kept in fp32 (the inputs the outlier probe flags)",
        Recipe("int8", tool="quantize_dynamic", exclude=(export.LM_HEAD,)),
        keep_float="/mlp/down_proj/",
    ),
    Lever(
        "onnx_int8_channel",
        "the same, one scale per output channel",
        Recipe("int8", tool="quantize_dynamic", exclude=(export.LM_HEAD,), per_channel=True),
    ),
    Lever(
        "onnx_int8_blocks", "int8 weight-only, a scale per block of 32 (MatMulNBits), fp32 embedding", Recipe("int8")
    ),
    Lever("onnx_int8", "int8 weight-only blocks, embedding tied to the 8-bit head", export.RECIPES["onnx_int8"]),
    _int4("int4 round-to-nearest, symmetric, blocks of 32, activations to int8 (accuracy_level 4)"),
    _int4("the same, activations in fp32", accuracy_level="1"),
    _int4("the same, blocks of 16", block_size="16"),
    _int4("the same, blocks of 128", block_size="128"),
    Lever("onnx_int4", "k-quant (scale search per block), head and embedding at int8", export.RECIPES["onnx_int4"]),
    _int4("k-quant, sensitive layers at int8 (llama.cpp's mixed strategy)", algo_config="k_quant_mixed"),
    _int4("k-quant mixed, asymmetric blocks of 16", algo_config="k_quant_mixed", block_size="16", is_symmetric="false"),
    *(Lever(name, llamacpp.NOTES[name], gguf=name) for name in ("gguf_q8_0", "gguf_q6_k", "gguf_q5_k_m")),
    *(Lever(name, llamacpp.NOTES[name], gguf=name) for name in ("gguf_q5_0", "gguf_q4_k_m", "gguf_q4_1", "gguf_q4_0")),
)
BY_NAME = {lever.name: lever for lever in LEVERS}
# The levers the section's reading turns on: what a smoke run measures (``DeployConfig.study_every_lever``).
READING = (REFERENCE, "onnx_int8_tensor", "onnx_int8", "onnx_int4_rtn", "onnx_int4", "gguf_q4_k_m")


def levers_for(every_lever: bool, llamacpp_ok: bool = True) -> list[Lever]:
    """The study's rows, the fp32 reference first: every lever, or the reading's; llama.cpp's only where it
    is installed."""
    return [BY_NAME[n] for n in (tuple(BY_NAME) if every_lever else READING) if llamacpp_ok or not BY_NAME[n].gguf]


def build(source: Path, lever: Lever) -> Path:
    """The lever's variant of the model folder ``source`` (cached, atomic)."""
    if lever.gguf:
        return llamacpp.build_gguf(source, lever.gguf)
    assert lever.recipe is not None
    recipe = lever.recipe
    if lever.keep_float:  # node names come from the fp32 graph, so any depth of model works
        import onnx

        fp32 = export.build_recipe(source, export.RECIPES["onnx_fp32"])
        graph = onnx.load(str(fp32 / export.ONNX_FILE), load_external_data=False).graph
        kept = tuple(n.name for n in graph.node if n.op_type == "MatMul" and lever.keep_float in n.name)
        if not kept:
            raise ValueError(f"No MatMul in {fp32} has {lever.keep_float!r} in its name: nothing to keep in fp32.")
        recipe = replace(recipe, exclude=(*recipe.exclude, *kept))
    return export.build_recipe(source, recipe)


def variant_folders(source: Path, names: Sequence[str]) -> tuple[dict[str, Path], dict[str, Path]]:
    """Build the named variants of ``source`` (cached): the course's (``export.RECIPES``, llama.cpp's
    types) or the study's levers; returns the ONNX folders and the GGUF folders, by name."""
    onnx_dirs: dict[str, Path] = {}
    gguf_dirs: dict[str, Path] = {}
    for name in names:
        if name in export.RECIPES:
            onnx_dirs[name] = export.build_variant(source, name)
        elif name in BY_NAME and not BY_NAME[name].gguf:
            onnx_dirs[name] = build(source, BY_NAME[name])
        elif name in llamacpp.GGUF_TYPES | llamacpp.STUDY_TYPES:
            gguf_dirs[name] = llamacpp.build_gguf(source, name)
        else:
            known = sorted({*export.RECIPES, *BY_NAME, *llamacpp.GGUF_TYPES, *llamacpp.STUDY_TYPES})
            raise ValueError(f"Unknown variant {name!r}. Choose from: {', '.join(known)}.")
    return onnx_dirs, gguf_dirs


def source_parameters(source: Path) -> int:
    """Parameters stored in the model folder's safetensors (a tied matrix counts once)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(Path(source).glob("*.safetensors")):
        with safe_open(str(path), framework="np") as weights:
            for name in weights.keys():  # noqa: SIM118 - safe_open is not a mapping
                total += int(np.prod(weights.get_slice(name).get_shape()))
    if total == 0:
        raise FileNotFoundError(f"No weights in {source}. Fix: pass a folder written by save_pretrained.")
    return total


def bits_per_weight(size_mib: float, n_params: int) -> float:
    """What the file costs per weight, in bits: scales, zero points and float leftovers included."""
    return size_mib * 2**20 * 8 / n_params


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def answer_logprobs(lm: Any, prompt_ids: list[int], answer_ids: list[int]) -> np.ndarray:
    """Log-probabilities of the next token at each answer position, teacher-forced: row ``i``
    is the model's distribution for ``answer_ids[i]`` given the prompt and the answer before it."""
    ids, first = prompt_ids + answer_ids, len(prompt_ids) - 1
    if isinstance(lm, llamacpp.LlamaCppLM):
        logits = lm.logits(ids[:-1], first)
    else:
        logits = lm.logits(ids[:-1])[first:]
    return log_softmax(logits).astype(np.float32)


def mean_kl(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> float:
    """Mean over every answer token of KL(reference ‖ candidate), in nats."""
    if len(reference) != len(candidate):
        raise ValueError(f"Need one candidate per reference answer; got {len(candidate)} for {len(reference)}.")
    total, count = 0.0, 0
    for p_log, q_log in zip(reference, candidate, strict=True):
        if p_log.shape != q_log.shape:
            raise ValueError(f"Log-probabilities of different shapes: {p_log.shape} and {q_log.shape}.")
        total += float((np.exp(p_log) * (p_log - q_log)).sum())
        count += len(p_log)
    return total / count


def teacher_forced(lm: Any, prompts: list[str], answers: list[str]) -> list[np.ndarray]:
    """``answer_logprobs`` for each prompt and its reference answer (the chat's end token included)."""
    out = []
    for prompt, answer in zip(prompts, answers, strict=True):
        prompt_ids = lm.encode(prompt)
        whole = lm.encode(prompt + answer)
        if whole[: len(prompt_ids)] != prompt_ids:
            raise ValueError(
                "The prompt tokenizes differently inside prompt + answer; score on a chat-formatted prompt."
            )
        out.append(answer_logprobs(lm, prompt_ids, whole[len(prompt_ids) :]))
    return out


@dataclass
class StudyRow:
    """One lever's measurements."""

    lever: Lever
    size_mib: float
    bits_per_weight: float
    score: float
    tickets: TicketScores
    diff: float  # score − fp32's, paired
    diff_ci: tuple[float, float]
    drop_bound: float  # one-sided upper bound of fp32's score − this one's
    kl: float  # mean per-token KL from fp32, nats
    tok_s: float
    peak_mib: float
    passes: bool = False
    tensor_types: dict[str, float] | None = None  # GGUF: MiB stored in each llama.cpp type

    def as_dict(self) -> dict[str, Any]:
        keys = ("size_mib", "bits_per_weight", "score", "diff", "drop_bound", "kl", "tok_s", "peak_mib", "passes")
        return (
            {"variant": self.lever.name, "runtime": self.lever.runtime, "what": self.lever.what}
            | {k: getattr(self, k) for k in keys}
            | {"diff_ci_low": self.diff_ci[0], "diff_ci_high": self.diff_ci[1]}
        )


def run_study(
    source: Path,
    levers: list[Lever],
    rows: list[dict[str, str]],
    settings: bench.BenchConfig,
    margin: float,
    significance: float,
) -> list[StudyRow]:
    """Build and measure every lever on ``rows`` (validation tickets: the study is a choice);
    the first lever is the fp32 reference. ``margin`` and ``significance`` are the gate's."""
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    refuse_test_rows(rows, "Choosing a quantization recipe")
    if not levers or levers[0].name != REFERENCE:
        raise ValueError(f"The study's first lever must be the reference {REFERENCE!r}: every row is paired with it.")
    tokenizer = AutoTokenizer.from_pretrained(source)
    prompts = [format_chat(tokenizer, row) for row in rows]
    references = [format_target(row) + tokenizer.eos_token for row in rows]
    n_params = source_parameters(source)
    out: list[StudyRow] = []
    fp32_logprobs: list[np.ndarray] = []
    for lever in (bar := tqdm(levers, desc="quantization study", unit="recipe")):
        bar.set_postfix_str(lever.name)
        folder = build(source, lever)
        raw = bench.measure_isolated(lever.runtime, folder, settings)
        tickets = TicketScores.from_answers(raw["answers"], rows)
        logprobs = teacher_forced(bench.load_runtime(lever.runtime, folder), prompts, references)
        fp32_logprobs = fp32_logprobs or logprobs
        reference = out[0].tickets if out else tickets
        diff = paired_difference(tickets, reference)
        bound = drop_upper_bound(tickets, reference, significance)
        size = bench.variant_mib(lever.runtime, folder)
        out.append(
            StudyRow(
                lever,
                size,
                bits_per_weight(size, n_params),
                tickets.mean,
                tickets,
                diff.estimate,
                (diff.low, diff.high),
                bound,
                mean_kl(fp32_logprobs, logprobs),
                bench.summarize(raw)["tok_s"],
                raw["peak_mib"],
                bound <= margin + 1e-9,
                llamacpp.tensor_types(folder) if lever.gguf else None,
            )
        )
    return out


def smallest_passing(rows: list[StudyRow], runtime: str, max_bits: float | None = None) -> StudyRow | None:
    """The smallest file of ``runtime`` that passes the gate (at most ``max_bits`` per weight)."""
    fits = [r for r in rows if r.lever.runtime == runtime and r.passes and r.lever.name != REFERENCE]
    fits = [r for r in fits if max_bits is None or r.bits_per_weight <= max_bits]
    return min(fits, key=lambda r: r.size_mib, default=None)


def study_metrics(rows: list[StudyRow]) -> dict[str, Any]:
    """``qs_<variant>_<key>`` for the metrics contract, plus the smallest passing file per runtime."""
    out: dict[str, Any] = {"qs_variants": len(rows)}
    for row in rows:
        for key, value in row.as_dict().items():
            if key not in ("variant", "runtime", "what"):
                out[f"qs_{row.lever.name}_{key}"] = value
    for runtime in ("onnx", "gguf"):
        best = smallest_passing(rows, runtime)
        out[f"qs_smallest_passing_{runtime}"] = best.lever.name if best else "none"
        best4 = smallest_passing(rows, runtime, max_bits=5.0)
        out[f"qs_smallest_passing_4bit_{runtime}"] = best4.lever.name if best4 else "none"
    return out


def rows_from_metrics(metrics: dict[str, Any], levers: Sequence[Lever] = LEVERS) -> list[dict[str, Any]]:
    """The study's table back from recorded metrics (this run's or a reference record's)."""
    keys = ("size_mib", "bits_per_weight", "score", "diff", "diff_ci_low", "diff_ci_high", "drop_bound", "kl")
    keys += ("tok_s", "peak_mib", "passes")
    return [
        {"variant": lever.name, "runtime": lever.runtime, "what": lever.what}
        | {k: metrics[f"qs_{lever.name}_{k}"] for k in keys}
        for lever in levers
        if f"qs_{lever.name}_score" in metrics
    ]


def format_table(rows: list[dict[str, Any]], margin: float) -> str:
    """The study as a markdown table, one row per lever."""
    lines = [
        "| variant | lever | MiB | bits/weight | Δ score vs fp32 (95 %) | drop bound | gate | KL | tok/s | peak MiB |",
        "|---|---|---:|---:|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        verdict = "passes" if r["passes"] else "fails"
        lines.append(
            f"| `{r['variant']}` | {r['what']} | {r['size_mib']:.0f} | {r['bits_per_weight']:.2f} | "
            f"{r['diff']:+.1f} [{r['diff_ci_low']:+.1f}, {r['diff_ci_high']:+.1f}] | {r['drop_bound']:.1f} | "
            f"{verdict} (≤ {margin:g}) | {r['kl']:.3f} | {r['tok_s']:.0f} | {r['peak_mib']:.0f} |"
        )
    return "\n".join(lines)


def outlier_probe(model: Any, tokenizer: Any, rows: list[dict[str, str]]) -> dict[str, float]:
    """How far the largest input channel of each kind of projection sits above a typical one.

    For every linear layer, the largest |activation| each input channel takes over the
    ``rows`` (training tickets), then the ratio of the largest channel to the median one,
    averaged over the model's layers per kind (``q_proj``, ``down_proj``, ...). One scale per
    tensor must span the largest channel, so a ratio of R leaves the typical channel about
    127 / R of int8's levels.
    """
    import torch

    if not rows or any(row.get("split") != "train" for row in rows):
        raise ValueError(
            "The outlier probe reads training tickets only (what it finds then shapes a recipe, which is a "
            "choice scored on validation and test tickets). Fix: pass rows of the 'train' split."
        )
    peaks: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(_module: Any, inputs: tuple, _output: Any) -> None:
            seen = inputs[0].detach().abs().flatten(0, -2).amax(dim=0).float()
            peaks[name] = torch.maximum(peaks[name], seen) if name in peaks else seen

        return record

    handles = [
        module.register_forward_hook(hook(name))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    ]
    try:
        with torch.inference_mode():
            for row in rows:
                ids = tokenizer(format_chat(tokenizer, row, with_target=True), return_tensors="pt").input_ids
                model(ids.to(model.device))
    finally:
        for handle in handles:
            handle.remove()
    ratios: dict[str, list[float]] = {}
    for name, peak in peaks.items():
        ratios.setdefault(name.rsplit(".", 1)[-1], []).append(float(peak.max() / peak.median().clamp_min(1e-12)))
    return {kind: float(np.mean(values)) for kind, values in sorted(ratios.items())}


def probe_metrics(ratios: dict[str, float]) -> dict[str, Any]:
    worst = max(ratios, key=ratios.__getitem__)
    return {f"outlier_ratio_{kind}": ratio for kind, ratio in ratios.items()} | {"outlier_worst_kind": worst}
