"""Notebook 04's readings: the sentence or table after each measurement, rendered from the metrics."""

from __future__ import annotations

from typing import Any

from ..fleet import VARIANTS  # the benchmark's torch and ONNX rows, named once
from ..reference import Reference
from ..uncertainty import difference_sentence, score_text
from .quant_study import format_table, rows_from_metrics
from .steps import GGUF_4BIT


def parity_reading(m: dict[str, Any], positions: int) -> str:
    return (
        f"Max |logit difference| over {positions} positions: **{m['onnx_max_abs_diff']:.1e}**, where float32 "
        f"alone moves PyTorch's logits by {m['onnx_parity_noise']:.1e} (bound {m['onnx_parity_bound']:.1e}); "
        f"next-token choices that differ outside a tie: **{m['onnx_argmax_flips']}**. Greedy answers agree on "
        f"**{m['onnx_greedy_agreement']:.0%}** of their tokens."
    )


def size_reading(m: dict[str, Any]) -> str:
    return (
        f"Measured: int4 is **×{m['onnx_int4_ratio']:.3f}** of fp32, **{m['int4_reduction_pct']:.0f}%** smaller; "
        f"int8 is ×{m['onnx_int8_ratio']:.3f}, fp16 ×{m['onnx_fp16_ratio']:.3f}. ×0.125 counts 4 bits per weight and "
        f"nothing else, but every block of 32 weights also stores a scale and a zero point ({m['int4_scales_mib']:.1f} "
        "MiB here), the "
        f"output layer stays at 8 bits, and norms stay in float ({m['int4_float_mib']:.1f} MiB). 'About 75%' is what "
        "int4 saves against an **fp16** baseline (16 → 4 bits), not against fp32. int8 stores a scale per block of "
        "32 as well, and its embedding reads the 8-bit output layer (they are one tied matrix): "
        f"×{m['onnx_int8_ratio']:.2f}, not ×0.25."
    )


def benchmark_reading(m: dict[str, Any], n_tickets: int) -> str:
    """Every column of the benchmark in words: what each precision buys and costs."""
    fastest = max(VARIANTS, key=lambda v: m[f"{v}_tok_s"])
    smallest = min(VARIANTS, key=lambda v: m[f"{v}_size_mib"])
    gate = ", ".join(f"{v} {'passes' if m[f'{v}_quality_ok'] else '**fails**'}" for v in VARIANTS)
    return (
        f"**Speed.** {fastest} decodes fastest: {m[f'{fastest}_tok_s']:.0f} tokens/s against torch eager's "
        f"{m['torch_fp32_tok_s']:.0f} (int4: **{m['int4_speedup_vs_torch']:.1f}×**). The p95 per-token latency "
        f"shows the tail a user feels: int4 {m['onnx_int4_ms_per_token_p95']:.1f} ms against p50 "
        f"{m['onnx_int4_ms_per_token_p50']:.1f} ms. Time to first token (prompt processing) is "
        f"{m['onnx_int4_ttft_ms']:.0f} ms for int4, {m['torch_fp32_ttft_ms']:.0f} ms for torch. fp16 runs at "
        f"{m['onnx_fp16_tok_s']:.0f} tokens/s against fp32's {m['onnx_fp32_tok_s']:.0f}, with a peak of "
        f"{m['onnx_fp16_peak_mib']:.0f} MiB against {m['onnx_fp32_peak_mib']:.0f}: the builder made this fp16 graph "
        "for CUDA, and onnxruntime's CPU provider has few fp16 kernels, so here fp16 halves the file, not the time "
        "or the memory.\n\n"
        f"**Size and memory.** {smallest} is smallest ({m[f'{smallest}_size_mib']:.0f} MiB on disk); int4 needs "
        f"**{m['onnx_int4_peak_mib']:.0f} MiB** of peak memory instead of torch's {m['torch_fp32_peak_mib']:.0f}, and "
        f"loads in {m['onnx_int4_load_s']:.1f} s against {m['torch_fp32_load_s']:.1f} s.\n\n"
        f"**Quality**, on {n_tickets} validation tickets, under the course gate's rule (shown, with 95 % "
        f"confidence, to be at most {m['quality_margin_points']:g} points below fp32's {m['onnx_fp32_score']:.1f}): "
        f"{gate}.\n\n" + quality_noise_reading(m, n_tickets)
    )


PRECISIONS = (("fp16_vs_fp32", "fp16", "onnx_fp16"), ("int8_vs_fp32", "int8", "onnx_int8"),
              ("int4_vs_fp32", "int4", "onnx_int4"))  # fmt: skip


def gate_verdict(m: dict[str, Any], variant: str) -> str:
    """The non-inferiority verdict on ``variant`` in words: how much worse than fp32 it may be."""
    bound, margin = m[f"{variant}_drop_bound_points"], m["quality_margin_points"]
    if m[f"{variant}_quality_ok"]:
        return f"at most {bound:.1f} points worse with 95 % confidence, within the {margin:g}-point margin: it may ship"
    return (
        f"it may be up to {bound:.1f} points worse, beyond the {margin:g}-point margin: refused "
        "(a drop the tickets cannot rule out counts against the candidate)"
    )


def quality_noise_reading(m: dict[str, Any], n_tickets: int) -> str:
    """Each smaller precision against fp32, paired on the same tickets, and the gate's verdict on it."""
    lines = [
        f"- {difference_sentence(m, name, label, 'fp32', n_tickets)}; {gate_verdict(m, variant)}."
        for name, label, variant in PRECISIONS
        if f"{name}_score_diff" in m
    ]
    return (
        f"Paired against fp32 on the same {n_tickets} tickets (95 % bootstrap intervals):\n" + "\n".join(lines) + "\n\n"
        "With few tickets the bound is wide, so only a variant that answers almost exactly like fp32 passes; "
        "more tickets let a slightly worse but smaller variant prove itself. These are validation tickets: "
        "the package is scored on the test tickets once, after the choice (section 4.10)."
    )


def genai_reading(m: dict[str, Any], parted: bool) -> str:
    where = (
        f" They part where the top two logits are {m['genai_divergence_margin']:.1e} apart: a near-tie, not a bug."
        if parted
        else ""
    )
    return (
        f"onnxruntime-genai's generator decoded the same folder at {m['genai_int4_tok_s']:.0f} tokens/s in the "
        f"benchmark (our loop: {m['onnx_int4_tok_s']:.0f}); its greedy tokens agree with our loop's on "
        f"{m['genai_agreement']:.0%} of this answer.{where}"
    )


def gguf_reading(rows: list[dict[str, Any]], status: str) -> str:
    """The GGUF files: size, and the tensor types each quantization type actually produced."""
    if not rows:
        return f"**llama.cpp is not available here**: {status} The benchmark shows the ONNX rows only."
    lines = ["| variant | MiB | stored as (MiB) |", "|---|---|---|"]
    for row in rows:
        types = ", ".join(f"{name} {mib:.0f}" for name, mib in row["types"].items() if mib >= 0.5)
        lines.append(f"| {row['variant']} | {row['size_mib']:.0f} | {types} |")
    return "\n".join(lines)


# A tokens/s ratio closer to 1 than this is read as a tie: between runs on one 2-core Xeon the
# ratio drifted by more than 20 % (three runs: 0.78, 0.97, 1.00; docs/results.md, "two runtimes").
RACE_TIE = 0.30


def runtime_reading(m: dict[str, Any], n_tickets: int) -> str:
    """Section 4.5's runtime race in words: ONNX against llama.cpp, and onnxruntime-genai's loop against ours."""
    genai = (
        f"onnxruntime-genai's own generator runs the int4 folder at {m['genai_int4_tok_s']:.0f} tokens/s against "
        f"our loop's {m['onnx_int4_tok_s']:.0f}: same graph, two loops around it."
    )
    if "int4_vs_llamacpp" not in m:
        return f"**Runtimes.** llama.cpp did not run here, so there is no race to read. {genai}"
    best, ratio = m["llamacpp_best_4bit"], m["int4_vs_llamacpp"]
    verdict = "level with" if abs(ratio - 1) < RACE_TIE else "faster than" if ratio > 1 else "slower than"
    lines = [
        f"**Runtimes.** The int4 ONNX export decodes at {m['onnx_int4_tok_s']:.0f} tokens/s, llama.cpp's fastest "
        f"4-bit file ({best}) at {m[f'{best}_tok_s']:.0f}: int4 ONNX is **×{ratio:.2f}**, {verdict} llama.cpp, "
        f"on this CPU and in this run. Speed on a shared 2-core machine drifts between runs by more than 20 %, "
        f"so a ratio within {RACE_TIE:.0%} of 1 reads as a tie: decide such a race with repeated runs on the "
        "device you target. "
        f"Peak memory: {m[f'{best}_peak_mib']:.0f} MiB for {best}, {m['onnx_int4_peak_mib']:.0f} MiB for int4 ONNX; "
        f"time to first token {m[f'{best}_ttft_ms']:.0f} against {m['onnx_int4_ttft_ms']:.0f} ms. {genai}",
        "",
        f"Quality on the same {n_tickets} validation tickets, paired against the fp32 export:",
    ]
    for variant in GGUF_4BIT:
        if f"{variant}_vs_fp32_score_diff" in m:
            lines.append(
                f"- {difference_sentence(m, f'{variant}_vs_fp32', variant, 'fp32', n_tickets)}; "
                f"{gate_verdict(m, variant)}."
            )
    return "\n".join(lines)


def decision_reading(m: dict[str, Any]) -> str:
    """What notebook 04 chose for notebook 04b to package: the smallest ONNX and GGUF variants that passed."""

    def figures(variant: str) -> str:
        return (
            f"{m[f'{variant}_size_mib']:.0f} MiB, {m[f'{variant}_tok_s']:.0f} tokens/s, its drop below fp32 at most "
            f"{m[f'{variant}_drop_bound_points']:.1f} points (margin {m['quality_margin_points']:.0f})"
        )

    onnx, gguf = m["chosen_onnx_variant"], m.get("chosen_gguf_variant")
    text = f"Exported: **{m['deployed_source']}**. The ONNX package holds **{onnx}**: {figures(onnx)}."
    if gguf:
        return text + f" The GGUF package holds **{gguf}**: {figures(gguf)}."
    return text + " No GGUF file passed the gate here (or llama.cpp did not run), so only ONNX ships."


def package_reading(m: dict[str, Any], n_files: int, refusal: str) -> str:
    return (
        f"The package holds **{m['package_variant']}** ({m['package_mib']:.0f} MiB, {n_files} files hashed, "
        f"verified). A copy with one flipped byte in its weights was "
        + (f"**refused**: {refusal}" if m["tamper_detected"] else "**accepted**: the manifest check is broken.")
    )


def server_reading(m: dict[str, Any]) -> str:
    return (
        f"{m['server_ok']}/20 concurrent requests answered in {m['server_wall_s']:.1f} s (p50 "
        f"{m['server_p50_s']:.1f} s, p95 {m['server_p95_s']:.1f} s: one model, so answers take turns and the p95 "
        f"grows with the queue); {m['server_malformed_4xx']}/50 malformed requests got a 4xx naming the problem; "
        f"healthy afterwards: {m['server_healthy_after']}. A request with `response_format` "
        f'`{{"type": "ticket_format"}}` came back '
        + ("in the three-line format." if m["server_ticket_format_ok"] else "**out of the format**: a bug.")
    )


def gguf_server_reading(m: dict[str, Any]) -> str:
    if "gguf_server_ok" not in m:
        return "No GGUF package passed the gate in this run (or llama.cpp is missing), so only ONNX was served."
    same = "the same answer llama.cpp gave in the benchmark" if m["gguf_server_same_answer"] else "**another answer**"
    return f"The GGUF package ({m['gguf_package_variant']}) behind the same server: plain and streamed requests " + (
        f"answered with {same}." if m["gguf_server_ok"] else "**failed**: the contract is broken for GGUF."
    )


def test_reading(m: dict[str, Any]) -> str:
    """The chosen packages on the test tickets, scored once after every choice was made."""
    n = m["report_tickets"]
    lines = [
        f"Scored once on {n} test tickets (no choice read them): the deployed model in PyTorch "
        f"{score_text(m, 'deployed')}."
    ]
    for name, label in (("package", m["package_variant"]), ("gguf_package", m.get("gguf_package_variant"))):
        if f"{name}_test_score" in m:
            lines.append(
                f"- the {label} package: {score_text(m, f'{name}_test')}; "
                f"{difference_sentence(m, f'{name}_vs_deployed', label, 'deployed', n)}."
            )
    return "\n".join(lines)


def checklist_reading(m: dict[str, Any]) -> str:
    failed = [k.removeprefix("checklist_") for k, v in m.items() if k.startswith("checklist_") and v is False]
    return f"**{m['checklist_passed']} of {m['checklist_total']}** checks pass" + (
        f"; failing: {', '.join(failed)}. A failed check blocks the release until it is fixed or consciously waived."
        if failed
        else ": the package is ready for the pipeline of section 5."
    )


def _pace(speedup: float) -> str:
    return f"×{speedup:.2f}, " + ("faster" if speedup > 1 else "slower") + " than the target alone"


def speculative_reading(m: dict[str, Any], n_tickets: int) -> str:
    """What the drafts bought, why (the cost model's terms), and what the first token paid."""
    verdict = (
        "Every answer was the fp32 model's own, token for token"
        if m["speculative_identical"]
        else "**Some answers differed from the fp32 model's own**: speculative decoding must never change a "
        "greedy answer, so this is a bug to find (or a near-tie between two logits, see section 4.2)"
    )
    ratio = m["speculative_int4_pass_ms"] / m["speculative_int4_target_pass_ms"]
    verify = m["speculative_int4_target_verify_ms"] / m["speculative_int4_target_pass_ms"]
    same, model = m["speculative_int4_speedup_same_threads"], m["speculative_int4_expected_speedup"]
    return (
        f"{verdict}, on {n_tickets} tickets. The fp32 export alone decodes at "
        f"{m['speculative_target_ms_per_token']:.1f} ms per token as deployed.\n\n"
        f"- **int4 drafting for fp32**, at its best gamma ({m['speculative_int4_gamma']}): the target kept "
        f"{m['speculative_int4_acceptance']:.0%} of the guesses; {m['speculative_int4_ms_per_token']:.1f} ms per "
        f"token, {_pace(m['speculative_int4_speedup'])} as deployed, and ×{same:.2f} against it with the same "
        f"sleeping threads (the cost model says ×{model:.2f}). "
        f"One int4 pass costs {ratio:.0%} of an fp32 pass on this CPU, while verifying "
        f"{m['speculative_int4_gamma'] + 1} tokens at once costs ×{verify:.2f} of one: the verification is nearly "
        "free, the draft is not. A draft pays when it is many times cheaper than the target *and* agrees with it: "
        "the method's authors drafted with far smaller models (T5-small, 77 M parameters, for T5-XXL's 11 B in "
        "Leviathan et al., 2023; a 4 B model for the 70 B Chinchilla in Chen et al., 2023).\n"
        f"- **Prompt lookup** (no model: it copies what followed the last occurrence of the recent tokens): "
        f"{m['speculative_lookup_acceptance']:.0%} of its guesses kept at gamma {m['speculative_lookup_gamma']}, "
        f"{m['speculative_lookup_ms_per_token']:.1f} ms per token, {_pace(m['speculative_lookup_speedup'])}. "
        "Its guesses are often wrong, but a wrong guess costs almost nothing."
        + (
            f" It beats the cost model's ×{m['speculative_lookup_expected_speedup']:.2f}: its guesses hold or fail in "
            "runs (a copied phrase continues or it does not), not one by one as the model assumes.\n"
            if m["speculative_lookup_speedup"] > 1.2 * m["speculative_lookup_expected_speedup"]
            else "\n"
        )
        + f"- **The first token** waits for the draft's prompt pass too: {m['speculative_int4_ttft_ms']:.0f} ms with "
        f"the int4 draft against {m['speculative_target_ttft_ms']:.0f} ms alone."
    )


def constrained_reading(m: dict[str, Any], n_tickets: int, untuned: Reference | None = None) -> str:
    """The mask's effect on the format and the fields, the paired score difference, and its cost; with
    section 1's reference record (``untuned``), what the same mask did for the untuned model."""
    return (
        f"In the format: **{m['constrained_format_ok']:.0%}** of constrained answers against "
        f"{m['unconstrained_format_ok']:.0%} without; category right {m['constrained_category_acc']:.0%} against "
        f"{m['unconstrained_category_acc']:.0%}, error code {m['constrained_error_code_acc']:.0%} against "
        f"{m['unconstrained_error_code_acc']:.0%}. "
        + difference_sentence(m, "constrained_vs_unconstrained", "constrained", "unconstrained", n_tickets)
        + f". {_mask_moved(m)}The mask cost {m['constrained_mask_overhead_pct']:+.0f} % in ms per token "
        f"({m['constrained_ms_per_token']:.1f} against {m['unconstrained_ms_per_token']:.1f}; a few percent either "
        "way is timing noise): it is a lookup for the header's tokens and nothing at all in the reply. The mask "
        "guarantees the *form*; it cannot make a wrong category right, only pick the model's best-scoring "
        "allowed one." + _mask_on_untuned(untuned)
    )


def _mask_on_untuned(ref: Reference | None) -> str:
    """Where the mask matters: the untuned model, measured in section 1.6's full reference run."""
    if ref is None or not ref.usable or ref.get("base_masked_format_ok") is None:
        return ""
    free, masked = ref.get("base_format_ok"), ref.get("base_masked_format_ok")
    return (
        f" Where the model has not learned the format, the mask matters: on the untuned model (section 1.6, "
        f"its full reference run on {ref.get('n_eval')} test tickets) well-formed answers went from {free:.0%} to "
        f"{masked:.0%} and the score from {ref.get('base_score'):.1f} to {ref.get('base_masked_score'):.1f}."
    )


def _mask_moved(m: dict[str, Any]) -> str:
    """Why a mask that only fixes form can move the fields' accuracy, when it did."""
    fields = ("category_acc", "error_code_acc")
    if all(m[f"constrained_{f}"] == m[f"unconstrained_{f}"] for f in fields):
        return ""
    return (
        "The fields moved because the mask changes an answer where the model's best token was not allowed, and "
        "from there the model continues from a prefix it would not have written, so later fields can change "
        "either way. "
    )


LESSON_ROWS = (
    ("deployed model's score", "deployed_score", "{:.1f}".format),
    ("untuned base's score", "untuned_score", "{:.1f}".format),
    ("int4 score", "onnx_int4_score", "{:.1f}".format),
    ("fp32 export score", "onnx_fp32_score", "{:.1f}".format),
    ("deployed − untuned, paired (points)", "deployed_vs_untuned_score_diff", "{:+.1f}".format),
    ("int4 − fp32, paired (points)", "int4_vs_fp32_score_diff", "{:+.1f}".format),
    ("int4 tokens/s", "onnx_int4_tok_s", "{:.0f}".format),
    ("torch fp32 tokens/s", "torch_fp32_tok_s", "{:.0f}".format),
    ("int4 size (MiB)", "onnx_int4_size_mib", "{:.0f}".format),
    ("llama.cpp Q4_0 tokens/s", "gguf_q4_0_tok_s", "{:.0f}".format),
    ("llama.cpp Q4_0 score", "gguf_q4_0_score", "{:.1f}".format),
    ("int4 ONNX ÷ best llama.cpp 4-bit, tokens/s", "int4_vs_llamacpp", "×{:.2f}".format),
    ("validation tickets for the choices", "deploy_choice_tickets", "{:d}".format),
)
SERVING_LESSON_ROWS = (  # notebook 04b's
    ("package's test score (scored once)", "package_test_score", "{:.1f}".format),
    ("package − deployed model on test, paired (points)", "package_vs_deployed_score_diff", "{:+.1f}".format),
    ("package size (MiB)", "package_mib", "{:.0f}".format),
    ("speculative, int4 draft: decode speedup", "speculative_int4_speedup", "×{:.2f}".format),
    ("speculative, prompt lookup: decode speedup", "speculative_lookup_speedup", "×{:.2f}".format),
    ("int4 format_ok, constrained", "constrained_format_ok", "{:.2f}".format),
    ("server p95 latency, 20 concurrent requests (s)", "server_p95_s", "{:.1f}".format),
)


def _row_text(r: dict[str, Any]) -> str:
    return (
        f"`{r['variant']}` {r['diff']:+.1f} [{r['diff_ci_low']:+.1f}, {r['diff_ci_high']:+.1f}] "
        f"(bound {r['drop_bound']:.1f}, {r['bits_per_weight']:.1f} bits/weight, {r['size_mib']:.0f} MiB)"
    )


def _rank_correlation(xs: list[float], ys: list[float]) -> float:
    import numpy as np

    rx, ry = np.argsort(np.argsort(xs)), np.argsort(np.argsort(ys))
    return float(np.corrcoef(rx, ry)[0, 1])


def quant_study_reading(m: dict[str, Any], ref: Any, n_tickets: int) -> str:
    """Section 4.3's study in words: the int8 recipes, the best 4-bit file, what KL adds; on a
    smoke run, the full reference's complete table beside it."""
    rows = rows_from_metrics(m)
    margin = m.get("quality_margin_points") or ref.get("quality_margin_points") or 5
    by = {r["variant"]: r for r in rows}
    fp32 = by["onnx_fp32"]
    parts = []
    int8 = [by[v] for v in ("onnx_int8_tensor", "onnx_int8_channel", "onnx_int8_blocks", "onnx_int8") if v in by]
    if int8:
        parts.append(
            f"**int8: the recipe decides.** On {n_tickets} validation tickets, against fp32's {fp32['score']:.1f}: "
            + "; ".join(_row_text(r) for r in int8)
            + ". Every one stores 8-bit weights; they differ in how many weights share a scale and in what happens "
            "to the activations."
        )
    if "onnx_int8" in by:
        r = by["onnx_int8"]
        parts.append(
            f"The course ships `onnx_int8` (weight-only blocks, embedding tied to the 8-bit head): {r['size_mib']:.0f} "
            f"MiB, {r['tok_s'] / fp32['tok_s']:.1f}× fp32's decode speed ({r['tok_s']:.0f} against "
            f"{fp32['tok_s']:.0f} tokens/s), peak {r['peak_mib']:.0f} MiB against {fp32['peak_mib']:.0f}."
        )
    four = [r for r in rows if r["bits_per_weight"] <= 6.5]
    if four:
        passing = [r for r in four if r["passes"]]
        best = min(four, key=lambda r: r["drop_bound"])
        verdict = (
            "passes the gate: " + ", ".join(f"`{r['variant']}`" for r in passing)
            if passing
            else f"**none passes the gate**: the closest is {_row_text(best)}, beyond the {margin:g}-point margin"
        )
        why = (
            ""
            if passing
            else " Rounding to 16 levels per block costs this model more than the gate allows; finer blocks, zero "
            "points, k-quant's scale search and 8-bit sensitive layers each buy part of it back, at the bits shown."
        )
        parts.append(
            f"**About 4 bits per weight** ({len(four)} recipes at ≤ 6.5 bits/weight, both runtimes): {verdict}.{why}"
        )
    if len(rows) >= 4:
        rho = _rank_correlation([r["kl"] for r in rows], [-r["diff"] for r in rows])
        agree = "much as" if rho >= 0.7 else "only roughly as" if rho >= 0.4 else "differently from how"
        parts.append(
            f"**KL and score.** Over the {len(rows)} recipes the KL ranks them {agree} the score drop does (rank "
            f"correlation {rho:.2f}). The KL averages over every answer token, so it separates recipes whose score "
            "intervals overlap; the score is still what the gate reads, because a small shift in the distribution "
            "can flip a category and a large one can leave the greedy answer unchanged."
        )
    if m.get("profile") != "full" and ref.usable and rows_from_metrics(ref.metrics):
        full = rows_from_metrics(ref.metrics)
        parts.append(
            f"This run measured {len(rows)} recipes on {n_tickets} tickets; the full reference run measured "
            f"{len(full)} on {ref.get('deploy_choice_tickets')}:\n\n" + format_table(full, margin)
        )
    return "\n\n".join(parts)


def outlier_reading(m: dict[str, Any]) -> str:
    """The outlier probe in words: each projection's largest-to-median input channel."""
    kinds = sorted(k.removeprefix("outlier_ratio_") for k in m if k.startswith("outlier_ratio_"))
    worst = m["outlier_worst_kind"]
    ratios = ", ".join(f"{k} ×{m[f'outlier_ratio_{k}']:.0f}" for k in kinds)
    levels = 127 / m[f"outlier_ratio_{worst}"]
    kept = ""
    if "qs_onnx_int8_tensor_keep_down_diff" in m and "qs_onnx_int8_tensor_diff" in m:
        kept = (
            f" The study tests it: the per-tensor recipe scores {m['qs_onnx_int8_tensor_diff']:+.1f} against fp32, "
            f"and {m['qs_onnx_int8_tensor_keep_down_diff']:+.1f} with every down-projection kept in fp32."
        )
    return (
        f"Largest input channel over the median one, averaged over the layers: {ratios}. At the input of "
        f"**{worst}** one scale per tensor leaves a typical channel about **{levels:.1f}** of int8's 127 levels a "
        "side: its rounding is coarsest there. A scale per block of 32 weights, with the "
        "activations left in float or rounded per block, is not stretched by a channel it does not hold." + kept
    )
