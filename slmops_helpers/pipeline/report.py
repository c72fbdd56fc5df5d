"""Notebook 05's readings: the sentence after each step of the release round, from the metrics."""

from __future__ import annotations

from typing import Any

from ..uncertainty import difference_from_metrics, difference_sentence


def production_reading(label: str, how: str, manifest: dict[str, Any], source: Any) -> str:
    return (
        f"Production: **{label}** as its `{manifest['lineage'].get('variant', '?')}` package ({how}): "
        f"version {manifest['version']}, "
        f"{len(manifest['files'])} files, exported from `{source}`."
    )


def measured_reading(m: dict[str, Any]) -> str:
    return (
        f"On {m['n_eval']} held-out tickets: production **{m['production_score']:.1f}**, candidate "
        f"**{m['candidate_score']:.1f}**, over-quantized build **{m['bad_candidate_score']:.1f}** "
        f"({m['over_quantized_size_mib']:.0f} MiB against the candidate's {m['candidate_size_mib']:.0f} MiB). "
        "Paired on the same tickets (95 % bootstrap intervals):\n"
        f"- {difference_sentence(m, 'candidate_vs_production', 'candidate', 'production')};\n"
        f"- {difference_sentence(m, 'over_quantized_vs_production', 'over-quantized', 'production')}."
    )


def _plain_note(m: dict[str, Any], verdict: Any) -> str:
    """What the same policy without its significance rule would have decided, when that differs."""
    if m["gate_plain_passed"] == verdict.passed:
        return ""
    ci = difference_from_metrics(m, "candidate_vs_production")
    if verdict.passed:  # the point rule refused what the tickets showed to be within the margin
        return "Judged on the point scores alone, the same policy would have refused it. "
    return (
        f"Judged on the point scores alone (a drop of {-ci.estimate:.1f}), the same policy would have passed it; "
        f"but on {ci.n} tickets the paired interval ({ci.low:+.1f} to {ci.high:+.1f}) cannot rule out a larger "
        "drop than the margin, and a gate that ships what it cannot vouch for gets easier to pass with every "
        "ticket it leaves out. "
    )


def gate_reading(m: dict[str, Any], verdict: Any, refusal: Any) -> str:
    first = (
        f"The candidate **passes** all {m['gate_checks']} checks and moves to *staging*. "
        if verdict.passed
        else f"The candidate **fails** {m['gate_failed_checks']} check(s): production stays; the rollout below "
        "re-ships production to show the mechanics. "
    ) + _plain_note(m, verdict)
    if refusal.passed:
        score = next((r for r in refusal.results if r.rule.metric == "score"), None)
        check = f" The gate's score check: {score.describe()}." if score is not None else ""
        return first + (
            f"The over-quantized build **passed too**, though it scored "
            f"{-m['over_quantized_vs_production_score_diff']:.1f} points below production on {m['n_eval']} tickets "
            f"(the CLI agreed: exit code {m['gate_cli_exit_code_bad']}).{check} Its tickets showed the drop to be "
            "within the margin, so under this policy the build is good enough; a tighter margin needs more tickets."
        )
    return first + (
        f"The over-quantized build is **refused**: {'; '.join(r.describe() for r in refusal.failures)}. It is "
        f"{m['over_quantized_size_mib']:.0f} MiB instead of {m['candidate_size_mib']:.0f} and runs at "
        f"{m['over_quantized_ms_per_token_p50']:.1f} ms per token against {m['candidate_ms_per_token_p50']:.1f}, but "
        f"a build that answers worse never ships; the CLI said so with exit code {m['gate_cli_exit_code_bad']}, "
        "which is what stops a CI pipeline."
    )


def tickets_reading(m: dict[str, Any]) -> str:
    margin = m["gate_margin_points"]
    return (
        f"Between candidate and production, the per-ticket differences spread by **{m['paired_diff_sd_points']:.1f} "
        f"points** (standard deviation). For a candidate exactly as good as production to pass a non-inferiority "
        f"margin 8 times out of 10 at 95 % confidence, a gate needs about **{m['tickets_needed_margin2']:,} "
        f"tickets** for a 2-point margin and **{m['tickets_needed_margin5']:,}** for 5 points. This round scored "
        f"{m['n_eval']}, which certify a margin of about **{m['certifiable_margin_points']:.1f} points**; the "
        f"policy's margin is {margin:g}. "
        + (
            "So the tickets can vouch for the policy. "
            if m["certifiable_margin_points"] <= margin
            else "So even a good candidate will often fail: the tickets cannot vouch for that margin. "
        )
        + "A tighter margin takes more held-out tickets, not a looser rule."
    )


def rollout_reading(m: dict[str, Any], bad: Any, rollback_hours: float) -> str:
    text = (
        f"The good release reached **{m['rollout_on_new']:,}** of {m['rollout_devices']:,} devices in "
        f"{m['rollout_hours']:.0f} simulated hours; simulating it took {m['rollout_seconds']:.2f} s. "
        f"It offered only builds that passed the gate ({m['rollout_variants'].replace(',', ', ')})"
        + (
            f"; {m['rollout_refused_builds'].replace(',', ', ')} was refused and is offered to no device"
            if m["rollout_refused_builds"]
            else ""
        )
        + (
            f". **{m['rollout_unserved']:,} devices ({m['rollout_unserved_pct']:.0f} %) fit none of them**: they keep "
            "the version they run, unserved by this release, until a smaller build passes the gate. "
            if m["rollout_unserved"]
            else ", and every device fits one. "
        )
        + "The bad build "
    )
    if not bad.halted:
        return text + "was not caught: its stages' error budgets are too loose."
    untouched = m["rollout_devices"] - m["bad_rollout_rolled_back"]
    return text + (
        f"**halted at the {m['bad_rollout_halted_at']} stage**: {bad.stages[-1].reason}; its "
        f"**{m['bad_rollout_rolled_back']:,}** devices were rolled back within {rollback_hours:g} hours, and the "
        f"other {untouched:,} never saw it. That is what a canary is for."
    )


def feedback_reading(m: dict[str, Any], path: str) -> str:
    return (
        f"{m['feedback_flagged']:,} answers were flagged during the rollout; **{m['feedback_records']}** of them are "
        f"kept for labelling in `{path}`: the next round's training data, once a person has labelled them."
    )


LESSON_ROWS = (
    ("production score", "production_score", "{:.1f}".format),
    ("candidate score", "candidate_score", "{:.1f}".format),
    ("over-quantized build score", "bad_candidate_score", "{:.1f}".format),
    ("candidate − production, paired (points)", "candidate_vs_production_score_diff", "{:+.1f}".format),
    ("tickets to certify a 2-point margin", "tickets_needed_margin2", "{:,}".format),
    ("margin the held-out tickets certify (points)", "certifiable_margin_points", "{:.1f}".format),
    ("held-out tickets", "n_eval", "{:d}".format),
    ("training steps", "train_steps", "{:d}".format),
    ("gate passed", "gate_passed", str),
    ("bad build refused", "bad_candidate_gate_passed", lambda v: str(not v)),
    ("bad rollout halted", "bad_rollout_halted", str),
)
