"""Notebook 02's steps and readings, on tiny random models and hand-made metrics
(readings checked by their numbers and structure: ``readings``)."""

import pytest
from readings import bold, in_parentheses, numbers, table_cells

from slmops_helpers import distill, evaluate, training
from slmops_helpers.distill import KDConfig, report, steps
from slmops_helpers.reference import Reference
from slmops_helpers.uncertainty import TicketScores


@pytest.fixture
def teacher(tiny_tokenizer, tiny_llama_factory):
    return tiny_llama_factory(tiny_tokenizer, num_hidden_layers=4)


def test_teacher_metrics_put_the_teacher_beside_the_trivial_baselines(rows):
    scored = evaluate.Scored({"score": 40.0, "category_acc": 0.5}, ["x"] * 4)
    m = steps.teacher_metrics(scored, steps.Splits(rows, rows[:2], rows[:4]))
    assert m["teacher_score"] == 40.0 and m["teacher_category_acc"] == 0.5 and m["n_eval"] == 4
    assert m["teacher_margin_over_trivial"] == pytest.approx(40.0 - max(m["majority_score"], m["copy_score"]))


def test_validation_metrics_count_reasons_and_agreement(rows):
    good = "category: billing\nerror_code: none\nreply: Open the app and update the card on file today."
    report_ = distill.validate_outputs(rows[:3], [good, "", good])  # r0 billing, r1 setup (empty), r2 billing
    m = steps.validation_metrics(report_)
    assert (m["n_teacher_kept"], m["n_teacher_rejected"], m["rejected_empty"]) == (2, 1, 1)
    assert m["teacher_train_category_agreement"] == 1.0
    assert "kept 2 of 3 teacher answers" in report_.format() and "dropped r1 (empty)" in report_.format()


def test_choose_blocks_keeps_the_candidate_with_the_lowest_starting_loss(teacher, tiny_tokenizer, rows):
    examples = distill.encode_distillation_set(tiny_tokenizer, rows[:4], None, max_length=256)
    choice = steps.choose_blocks(teacher, examples, tiny_tokenizer.pad_token_id, param_budget=0.9)
    assert choice.initial_ce[choice.chosen] == min(choice.initial_ce.values())
    m = choice.metrics()
    assert m["student_layers"] == len(choice.keep) < m["teacher_layers"] == 4
    assert m["keep_layers"] == ",".join(map(str, choice.keep)) and m["student_init_val_ce"] > 0
    assert f"chosen: {choice.chosen}" in choice.format()


def test_train_student_trains_a_fresh_cut_and_keeps_the_best_scored_step(teacher, tiny_tokenizer, rows):
    examples = distill.encode_distillation_set(tiny_tokenizer, rows, None, max_length=256)
    sizes = distill.SIZES["smoke"].__class__(**{**distill.SIZES["smoke"].__dict__, "max_steps": 2, "eval_every": 1})
    setup = steps.StudentSetup(teacher, tiny_tokenizer, [0, 3], rows[:2], examples[:2], sizes)
    model, result = steps.train_student(setup, "distilled", examples, KDConfig(alpha=0.5))
    assert model.config.num_hidden_layers == 2 and result.steps == 2
    assert result.best_val_score is not None  # the validation score picked the kept step
    metrics = steps.run_metrics({"distilled": result, "sequence-level only": result, "no distillation": result})
    assert metrics["distill_steps"] == 2 and metrics["seq_best_step"] == result.best_step
    assert "distilled" in steps.format_runs(metrics) and "no distillation" in steps.format_runs(metrics)


IDS = tuple(f"t{i}" for i in range(12))


def _tickets(mean, spread=0.0):
    """12 per-ticket scores averaging ``mean``, alternating ± ``spread``."""
    return TicketScores(IDS, tuple(mean + (spread if i % 2 else -spread) for i in range(12)))


def _compared():
    parts = {"category_acc": 0.5, "error_code_acc": 0.5, "reply_rouge_l": 0.2, "format_ok": 1.0}
    scored = {
        name: evaluate.Scored({"score": s, **parts}, [], _tickets(s, 10))
        for name, s in (
            ("teacher", 50.0),
            ("distilled", 45.0),
            ("sequence-level only", 40.0),
            ("no distillation", 30.0),
        )
    }
    speed = {
        name: {
            "ms_per_token_p50": ms,
            "ms_per_token_p95": ms * 1.2,
            "tok_s": 1000 / ms,
            "ttft_ms": 3 * ms,
            "peak_mib": mib,
        }
        for name, ms, mib in (("teacher", 30.0, 600.0), ("distilled", 10.0, 250.0), ("no distillation", 10.0, 250.0))
    }
    return scored, speed


def test_comparison_metrics_and_targets():
    scored, speed = _compared()
    base = {"teacher_params": 100, "student_params": 38, "student_size_mib": 150.0, "student_param_share": 0.38}
    m = {**base, "undistilled_params": 38, "undistilled_size_mib": 150.0, **steps.comparison_metrics(scored, speed)}
    assert (m["retention"], m["undistilled_retention"], m["seq_retention"]) == (0.9, 0.6, 0.8)
    assert m["speedup"] == 3.0 and m["inference_time_saved_pct"] == pytest.approx(100 * 2 / 3)
    assert m["memory_saved_pct"] == pytest.approx(100 * (1 - 250 / 600))
    assert report.targets_met(m) == {
        "target_1_met": True,
        "target_2_met": True,
        "target_3_met": True,
        "target_4_met": True,
        "targets_met": 4,
    }
    # the same ±10 pattern on every ticket: each paired difference is exact, its interval a point
    assert m["distilled_vs_undistilled_score_diff"] == pytest.approx(15.0)
    assert m["distilled_vs_undistilled_score_diff_ci_low"] == pytest.approx(15.0)
    assert m["teacher_score_ci_low"] < 50.0 < m["teacher_score_ci_high"]
    assert [r["name"] for r in report.tradeoff_rows({**m, "teacher_params": 100, "undistilled_params": 38})] == [
        "teacher",
        "distilled student",
        "no distillation",
    ]
    table = report.comparison_table({**m, "teacher_size_mib": 400.0})
    assert table.splitlines()[0].count("|") == 5  # a label column, then teacher, distilled, undistilled
    cells = table_cells(table)
    score_label = next(label for label, key, _ in report.COMPARISON_ROWS if key == "score")
    assert cells[score_label] == ["50.0", "45.0", "30.0"]
    assert next(v for k, v in cells.items() if k.startswith("retention")) == ["100%", "90%", "60%"]
    intervals = [numbers(cell) for cell in next(v for k, v in cells.items() if "interval" in k)]
    assert [low < score < high for (low, high), score in zip(intervals, (50.0, 45.0, 30.0), strict=True)] == [True] * 3


def _metrics(gap, low, high, seq=(10.0, -2.0, 20.0), n_eval=12, **more):
    """Hand-made metrics with the paired differences (estimate, interval) the verdict reads."""
    m = {"speedup": 2.5, "retention": 0.8, "student_score": 30.0 + gap, "undistilled_score": 30.0,
         "seq_student_score": 30.0 + seq[0], "n_eval": n_eval, "distill_steps": 12, "teacher_score": 50.0,
         **more}  # fmt: skip
    for name, (est, lo, hi) in (("distilled_vs_undistilled", (gap, low, high)), ("seq_vs_undistilled", seq)):
        m |= {f"{name}_score_diff": est, f"{name}_score_diff_ci_low": lo, f"{name}_score_diff_ci_high": hi}
    return m


def test_verdict_decides_from_the_paired_interval_not_the_point_gap():
    text = report.verdict(_metrics(8.0, -3.0, 19.0), "full", Reference("02"))
    assert bold(text) == ["2.5×", "80%", "not distinguishable"]  # speed-up, retention, the distilled verdict
    # each paired difference with its 95 % interval; the distilled one also with its ticket count
    assert in_parentheses(text) == [[8.0, 95, -3.0, 19.0, 12], [10.0, 95, -2.0, 20.0]]
    seq_sentence = text[text.rindex("(") :]
    assert "not distinguishable" in seq_sentence and numbers(seq_sentence)[-1] == 12
    seq_better = report.verdict(_metrics(8.0, -3.0, 19.0, seq=(10.0, 2.0, 18.0)), "full", Reference("02"))
    seq_sentence = seq_better[seq_better.rindex("(") :]
    assert "more than" in seq_sentence and "not distinguishable" not in seq_sentence
    text = report.verdict(_metrics(15.0, 4.0, 26.0), "full", Reference("02"))
    assert bold(text)[-1] == "beat" and in_parentheses(text)[0] == [15.0, 95, 4.0, 26.0, 12]
    worse = report.verdict(_metrics(-10.0, -16.0, -4.0, n_eval=48), "full", Reference("02"))
    assert bold(worse)[-1] == "fell below" and in_parentheses(worse)[0] == [-10.0, 95, -16.0, -4.0, 48]


def test_verdict_reads_the_lesson_from_the_reference_on_a_smoke_run():
    ref = Reference("02", _metrics(9.8, 2.1, 17.5, n_eval=48))
    text = report.verdict(_metrics(-0.9, -3.0, 1.0), "smoke", ref)
    # this run's verdict, then the reference's (with its own interval and 48 tickets), then the sequence-level one
    assert bold(text) == ["2.5×", "80%", "not distinguishable", "beat"]
    assert in_parentheses(text) == [[-0.9, 95, -3.0, 1.0, 12], [9.8, 95, 2.1, 17.5, 48], [10.0, 95, -2.0, 20.0]]
    assert 12 in numbers(text[: text.index("**beat**")])  # the smoke run's training steps, said before the lesson
    old = Reference("02", {"student_score": 60.4, "undistilled_score": 50.6, "n_eval": 48})
    text = report.verdict(_metrics(-0.9, -3.0, 1.0), "smoke", old)
    assert in_parentheses(text)[1] == [] and 9.8 in numbers(text)  # a record without intervals: the point gap only
    missing = Reference("02", problem="02_distillation.full.json is missing. Fix: run `slmops run ...`")
    assert missing.describe() in report.verdict(_metrics(-0.9, -3.0, 1.0), "smoke", missing)


def test_teacher_reading_says_when_the_margin_is_too_thin():
    m = {
        "n_eval": 12, "teacher_score": 52.0, "teacher_category_acc": 0.5, "teacher_error_code_acc": 0.9,
        "teacher_reply_rouge_l": 0.2, "teacher_format_ok": 1.0, "majority_score": 20.0, "copy_score": 10.0,
    }  # fmt: skip
    assert "worth distilling" in report.teacher_reading({**m, "teacher_margin_over_trivial": 32.0})
    assert "too thin to build on" in report.teacher_reading({**m, "teacher_margin_over_trivial": 4.0})


def test_temperature_rows_cover_each_temperature(teacher, tiny_tokenizer):
    logits = steps.next_token_logits(teacher, tiny_tokenizer, "the hub is offline")
    rows = steps.temperature_rows(logits, logits * 0.5)
    assert [r["T"] for r in rows] == list(steps.TEMPERATURES)
    assert rows[0]["teacher_top1"] >= rows[-1]["teacher_top1"]  # a higher T flattens the distribution


def test_train_config_follows_the_profile_sizes():
    sizes = distill.get_config("smoke")
    config = steps.StudentSetup(None, None, [0], [], [], sizes, seed=3).train_config()
    assert isinstance(config, training.TrainConfig)
    assert (config.lr, config.max_steps, config.batch_size, config.seed) == (
        sizes.lr,
        sizes.max_steps,
        sizes.batch_size,
        3,
    )
