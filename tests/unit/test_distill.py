"""Distillation helpers on tiny random Llamas: the KD loss against an independent
implementation, student construction, the teacher-output cache (resume, corruption),
output validation, and the errors bad input must raise before training starts."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from slmops_helpers import distill, evaluate, training
from slmops_helpers.distill import KDConfig
from slmops_helpers.distill import report as distill_report
from slmops_helpers.distill import teacher as teacher_module
from slmops_helpers.models import MIB, count_parameters, random_llama, tensor_bytes
from slmops_helpers.training import TrainConfig

GOOD = "category: billing\nerror_code: E-104\nreply: Open the app and update the card on file today."


def _llama(vocab_size: int, n_layers: int = 4, seed: int = 0):
    return random_llama(vocab_size, seed, num_hidden_layers=n_layers, pad_token_id=1, eos_token_id=2)


@pytest.fixture
def teacher(tiny_tokenizer):
    return _llama(len(tiny_tokenizer))


def _reference_kd(s, t, y, temperature, alpha, kind):
    """Independent formula: torch's kl_div (KL(target ‖ input)) and cross_entropy."""
    log_s, log_t = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    pair = (log_s, log_t) if kind == "forward" else (log_t, log_s)
    kl = F.kl_div(*pair, log_target=True, reduction="batchmean")
    return alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(s, y)


# --- the loss -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", distill.KL_KINDS)
@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (2.0, 0.9), (4.0, 1.0), (0.5, 0.0), (3.0, 0.3)])
def test_kd_loss_matches_an_independent_implementation(kind, temperature, alpha):
    g = torch.Generator().manual_seed(int(temperature * 10 + alpha * 100))
    s, t = torch.randn(12, 50, generator=g) * 3, torch.randn(12, 50, generator=g) * 3
    y = torch.randint(0, 50, (12,), generator=g)
    got = distill.kd_loss(s, t, y, temperature, alpha, kind)
    assert float(got) == pytest.approx(float(_reference_kd(s, t, y, temperature, alpha, kind)), rel=1e-5)


def test_kd_loss_properties():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(6, 20, generator=g), torch.randn(6, 20, generator=g)
    y = torch.randint(0, 20, (6,), generator=g)
    assert float(distill.kd_loss(s, s, y, 2.0, 1.0)) == pytest.approx(0, abs=1e-6)  # same distribution: no KL
    assert float(distill.kd_loss(s, t, y, 2.0, 0.0)) == pytest.approx(float(F.cross_entropy(s, y)))
    forward, reverse = (float(distill.kd_loss(s, t, y, 2.0, 1.0, k)) for k in distill.KL_KINDS)
    assert forward > 0 and reverse > 0 and forward != pytest.approx(reverse)
    s.requires_grad_(True)
    t.requires_grad_(True)
    distill.kd_loss(s, t, y, 2.0, 0.5).backward()
    assert s.grad is not None and t.grad is None  # the teacher is never trained


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": -2.0}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"kind": "sideways"}, "kind"),
    ],
)
def test_bad_kd_settings_fail_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KDConfig(**kwargs)
    with pytest.raises(ValueError, match=match):
        distill.kd_loss(torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), **kwargs)


def test_kd_loss_refuses_different_vocabularies():
    with pytest.raises(ValueError, match="share a vocabulary"):
        distill.kd_loss(torch.zeros(2, 5), torch.zeros(2, 6), torch.zeros(2, dtype=torch.long))


def test_answer_logits_give_the_models_own_loss(teacher, tiny_tokenizer, rows):
    examples = [training.encode_example(tiny_tokenizer, r, 128) for r in rows[:3]]
    batch = training.collate(examples, tiny_tokenizer.pad_token_id)
    plain = distill.make_loss_fn(teacher, config=KDConfig(alpha=0.0))  # alpha=0 needs no teacher
    with torch.no_grad():
        logits, targets = distill.answer_logits(teacher, batch)
        reference = float(teacher(**batch).loss)
        assert float(plain(teacher, batch)) == pytest.approx(reference, rel=1e-5)
    assert logits.shape == (len(targets), len(tiny_tokenizer))
    assert float(F.cross_entropy(logits, targets)) == pytest.approx(reference, rel=1e-5)


def test_validation_loss_is_the_cross_entropy_for_every_run(teacher, tiny_tokenizer, rows):
    student = distill.build_student(teacher, [1])
    batch = training.collate([training.encode_example(tiny_tokenizer, r, 128) for r in rows[:3]], 1)
    kd = distill.make_loss_fn(student, teacher, KDConfig(temperature=2.0, alpha=0.9))
    with torch.no_grad():
        ce = float(student(**batch).loss)
        student.train()
        assert float(kd(student, batch)) != pytest.approx(ce, rel=1e-3)  # training: the KD mixture
        student.eval()
        assert float(kd(student, batch)) == pytest.approx(ce, rel=1e-5)  # evaluation: plain cross-entropy


def test_make_loss_fn_checks_before_training(teacher, tiny_tokenizer):
    with pytest.raises(ValueError, match="pass a teacher"):
        distill.make_loss_fn(teacher, None, KDConfig(alpha=0.5))
    other = _llama(len(tiny_tokenizer) + 7)
    with pytest.raises(ValueError, match="different vocabularies"):
        distill.make_loss_fn(other, teacher, KDConfig(alpha=0.5))
    vocab = dict(tiny_tokenizer.get_vocab())  # same size, two words swapped: ids mean different things
    changed = type("Tok", (), {"get_vocab": lambda self: {**vocab, "hub": vocab["wifi"], "wifi": vocab["hub"]}})()
    with pytest.raises(ValueError, match="tokenizers differ"):
        distill.make_loss_fn(teacher, teacher, KDConfig(alpha=0.5), tiny_tokenizer, changed)


def test_distillation_pulls_the_student_towards_the_teacher(teacher, tiny_tokenizer, rows):
    with torch.no_grad():
        teacher.model.norm.weight *= 10  # a confident teacher: random tiny models are near-uniform
    student = distill.build_student(teacher, [0])
    examples = [training.encode_example(tiny_tokenizer, r, 128) for r in rows]
    batch = training.collate(examples, tiny_tokenizer.pad_token_id)

    def kl() -> float:
        with torch.no_grad():
            return float(
                distill.kl_divergence(
                    distill.answer_logits(student, batch)[0], distill.answer_logits(teacher, batch)[0], 2.0
                )
            )

    kl_only = distill.make_loss_fn(student, teacher, KDConfig(temperature=2.0, alpha=1.0))
    before = kl()
    config = TrainConfig(lr=3e-3, max_steps=8, batch_size=4, eval_every=4)
    result = training.train(student, examples, examples[:2], config, tiny_tokenizer.pad_token_id, loss_fn=kl_only)
    assert before > 0.01 and kl() < 0.5 * before
    assert result.steps == 8 and all(p.grad is None for p in teacher.parameters())


def test_cached_teacher_logits_give_the_same_loss_and_run_the_teacher_once_per_example(teacher, tiny_tokenizer, rows):
    student = distill.build_student(teacher, [0, 3])
    student.train()
    examples = [training.encode_example(tiny_tokenizer, r, 128) for r in rows]
    plain = distill.make_loss_fn(student, teacher, KDConfig(temperature=2.0, alpha=0.7))
    cached = distill.make_loss_fn(student, teacher, KDConfig(temperature=2.0, alpha=0.7), cache_teacher=True)
    calls = []
    hook = teacher.get_decoder().register_forward_hook(lambda module, args, out: calls.append(1))
    with torch.no_grad():
        for chunk in (examples[:3], examples[1:5], examples[5:], examples[2:6], examples[::-1]):
            batch = training.collate(chunk, tiny_tokenizer.pad_token_id)  # other neighbours, other padding
            n_before = len(calls)
            expected = float(plain(student, batch))
            assert len(calls) == n_before + 1  # the plain loss runs the teacher every time
            assert float(cached(student, batch)) == pytest.approx(expected, rel=1e-5)
    hook.remove()
    # rows 4-7 repeat the tokens of rows 0-3, so only the first two batches brought an unseen example:
    # the cached loss ran the teacher for those two alone
    assert len(calls) == 5 + 2
    with pytest.raises(ValueError, match="cache_teacher"):
        distill.make_loss_fn(student, teacher, KDConfig(alpha=0.0), cache_teacher=True)
    with pytest.raises(ValueError, match="cache_teacher"):
        distill.make_loss_fn(student, teacher, KDConfig(hidden_weight=1.0), keep=[0, 3], cache_teacher=True)


def _states(model, batch):
    with torch.no_grad():
        return model.get_decoder()(**{k: batch[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True)


def test_hidden_state_loss_pairs_each_block_with_its_source(teacher, tiny_tokenizer, rows):
    batch = training.collate([training.encode_example(tiny_tokenizer, r, 128) for r in rows[:3]], 1)
    teacher_states = _states(teacher, batch).hidden_states
    # the teacher against itself, every block paired with itself: identical states
    assert float(distill.hidden_state_loss(teacher_states, teacher_states, [0, 1, 2, 3], batch["attention_mask"])) == (
        pytest.approx(0.0, abs=1e-5)
    )
    student_states = _states(distill.build_student(teacher, [0, 3]), batch).hidden_states
    # block 0 is exact; the last states differ (block 3 now reads block 0's output, not block 2's)
    real = batch["attention_mask"].bool()
    expected = 0.5 * (1 - F.cosine_similarity(student_states[-1][real], teacher_states[-1][real], dim=-1).mean())
    loss = distill.hidden_state_loss(student_states, teacher_states, [0, 3], batch["attention_mask"])
    assert float(loss) == pytest.approx(float(expected), rel=1e-5) and float(loss) > 1e-3
    with pytest.raises(ValueError, match="keep list"):
        distill.hidden_state_loss(student_states, teacher_states, [0, 1, 3], batch["attention_mask"])


def test_hidden_state_term_trains_and_needs_its_inputs(teacher, tiny_tokenizer, rows):
    with pytest.raises(ValueError, match="hidden_weight"):
        KDConfig(hidden_weight=-1.0)
    with pytest.raises(ValueError, match="pass keep="):
        distill.make_loss_fn(teacher, teacher, KDConfig(hidden_weight=1.0))
    with pytest.raises(ValueError, match="pass keep="):  # 4 blocks, 3 listed: caught before any step
        distill.make_loss_fn(teacher, teacher, KDConfig(hidden_weight=1.0), keep=[0, 1, 2])
    with pytest.raises(ValueError, match="pass a teacher"):
        distill.make_loss_fn(teacher, None, KDConfig(alpha=0.0, hidden_weight=1.0), keep=[0])
    keep = [0, 3]
    student = distill.build_student(teacher, keep)
    examples = [training.encode_example(tiny_tokenizer, r, 128) for r in rows]
    batch = training.collate(examples, tiny_tokenizer.pad_token_id)

    def gap() -> float:
        pair = (_states(student, batch).hidden_states, _states(teacher, batch).hidden_states)
        return float(distill.hidden_state_loss(*pair, keep, batch["attention_mask"]))

    hidden_only = distill.make_loss_fn(student, teacher, KDConfig(alpha=1.0, hidden_weight=1.0), keep=keep)
    with torch.no_grad():
        student.train()
        kd_only = distill.make_loss_fn(student, teacher, KDConfig(alpha=1.0), keep=keep)
        assert float(hidden_only(student, batch)) == pytest.approx(float(kd_only(student, batch)) + gap(), rel=1e-4)
        ce_and_hidden = distill.make_loss_fn(student, teacher, KDConfig(alpha=0.0, hidden_weight=2.0), keep=keep)
        ce = float(F.cross_entropy(*distill.answer_logits(student, batch)))
        assert float(ce_and_hidden(student, batch)) == pytest.approx(ce + 2.0 * gap(), rel=1e-4)
        student.eval()
    before = gap()
    config = TrainConfig(lr=3e-3, max_steps=8, batch_size=4, eval_every=4)
    training.train(student, examples, examples[:2], config, tiny_tokenizer.pad_token_id, loss_fn=hidden_only)
    assert gap() < 0.5 * before


# --- the student ------------------------------------------------------------------------


def test_keep_every_and_its_errors():
    assert distill.keep_every(30, 5) == [4, 9, 14, 19, 24, 29]  # the last block, which feeds the head, stays
    assert distill.keep_every(30, 5, keep_last=False) == [0, 5, 10, 15, 20, 25]
    assert distill.keep_every(12, 2, keep_last=False) == [0, 2, 4, 6, 8, 10]  # DistilBERT's choice
    assert distill.keep_every(4, 4) == [3] and distill.keep_every(4, 1) == [0, 1, 2, 3]
    for k in (0, 31, 2.5):
        with pytest.raises(ValueError, match="k must be"):
            distill.keep_every(30, k)


def test_block_choices_anchor_the_top_the_bottom_or_both():
    assert distill.block_choices(30, 7) == {
        "from the top": [5, 9, 13, 17, 21, 25, 29],
        "from block 0": [0, 4, 8, 12, 16, 20, 24],
        "both ends": [0, 5, 10, 14, 19, 24, 29],
    }
    assert distill.block_choices(30, 6)["from the top"] == distill.keep_every(30, 5)
    assert distill.block_choices(4, 4) == dict.fromkeys(("from the top", "from block 0", "both ends"), [0, 1, 2, 3])
    for n in (1, 31, 2.0):
        with pytest.raises(ValueError, match="n must be"):
            distill.block_choices(30, n)


def test_max_blocks_within_a_parameter_budget(teacher):
    config = teacher.config  # 4 blocks; the embedding is most of a tiny model
    size = {n: distill.count_config_parameters(distill.student_config(config, n)) for n in range(1, 5)}
    total = distill.count_config_parameters(config)
    assert distill.max_blocks_within(config, 1.0) == 4
    for n in (1, 2, 3):
        assert distill.max_blocks_within(config, (size[n] + size[n + 1]) / 2 / total) == n
    with pytest.raises(ValueError, match="raise the budget"):
        distill.max_blocks_within(config, 0.5 * size[1] / total)
    for budget in (0.0, 1.5):
        with pytest.raises(ValueError, match="in \\(0, 1\\]"):
            distill.max_blocks_within(config, budget)


def test_pass_weights_count_the_head_every_pass(teacher):
    config = teacher.config  # tied: the head is the embedding, counted once
    head = config.vocab_size * config.hidden_size
    whole = distill.pass_weights(config, 4)
    assert whole.head == head and whole.student == whole.teacher == count_parameters(teacher)
    one = distill.pass_weights(config, 1)
    block = (whole.teacher - one.student) // 3
    assert one.student == whole.teacher - 3 * block and one.head_share == pytest.approx(head / one.student)
    assert one.floor == pytest.approx(one.student / whole.teacher) and head / whole.teacher < one.floor < 1
    untied = copy.deepcopy(config)
    untied.tie_word_embeddings = False  # a separate input embedding is a lookup, not a product
    assert distill.pass_weights(untied, 4).teacher == whole.teacher
    for n in (0, 5):
        with pytest.raises(ValueError, match="n_layers must be in"):
            distill.pass_weights(config, n)


def test_drafting_reading_gives_the_heads_floor(teacher):
    m = {
        "speculative_identical": True, "speculative_distilled_pass_ms": 2.0,
        "speculative_distilled_target_pass_ms": 4.0, "speculative_distilled_acceptance": 0.5,
        "speculative_undistilled_acceptance": 0.25, "speculative_distilled_gamma": 2,
        "speculative_undistilled_gamma": 1, "speculative_distilled_speedup": 0.8,
        "speculative_undistilled_speedup": 0.7, "hf_assisted_identical": True, "hf_assisted_speedup": 0.9,
    }  # fmt: skip
    w = distill.PassWeights(head=28_311_552, student=53_092_800, teacher=134_515_008)
    text = distill_report.drafting_reading(m, 3, w)
    assert "28.3 M weights" in text and "53% of the student's 53.1 M" in text
    assert "costs 39% of the teacher's (134.5 M)" in text and "goes below 21%" in text
    assert "output head" not in distill_report.drafting_reading(m, 3)


def test_student_keeping_every_block_is_the_teacher(teacher):
    ids = torch.randint(3, 20, (2, 9))
    clone = distill.build_student(teacher, [0, 1, 2, 3])
    assert torch.allclose(clone(input_ids=ids).logits, teacher(input_ids=ids).logits, atol=1e-6)


def test_student_takes_the_chosen_blocks(teacher):
    student = distill.build_student(teacher, [3, 1])  # order does not matter: kept in depth order
    assert student.config.num_hidden_layers == 2
    assert torch.equal(student.model.layers[0].mlp.up_proj.weight, teacher.model.layers[1].mlp.up_proj.weight)
    assert torch.equal(student.model.layers[1].self_attn.q_proj.weight, teacher.model.layers[3].self_attn.q_proj.weight)
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == [0, 1]  # KV cache slots renumbered
    assert student.get_input_embeddings().weight.data_ptr() == student.get_output_embeddings().weight.data_ptr()
    assert student.get_input_embeddings().weight.data_ptr() != teacher.get_input_embeddings().weight.data_ptr()
    assert count_parameters(student) == distill.count_config_parameters(student.config) < count_parameters(teacher)
    assert distill.count_config_parameters(teacher.config) == count_parameters(teacher)
    out = student.generate(torch.tensor([[4, 5, 6]]), max_new_tokens=4, do_sample=False, min_new_tokens=4)
    assert out.shape == (1, 7)  # the cache works with renumbered blocks


@pytest.mark.parametrize("keep", [[], [0, 0], [4], [-1]])
def test_build_student_rejects_bad_layer_lists(teacher, keep):
    with pytest.raises(ValueError, match="distinct block indices"):
        distill.build_student(teacher, keep)


def test_student_config_cuts_per_layer_lists(teacher):
    config = teacher.config
    config.layer_types = ["full_attention"] * 4
    small = distill.student_config(config, 2)
    assert small.num_hidden_layers == 2 and small.layer_types == ["full_attention"] * 2
    assert config.num_hidden_layers == 4  # the teacher's config is untouched


# --- teacher data: cache, resume, corruption -----------------------------------------------


def _prompts(n):
    words = "the hub is offline error code reply category billing setup wifi app help".split()
    return [" ".join(words[i % 7 : i % 7 + 4]) + f" {words[i % 13]}" for i in range(n)]


def test_teacher_outputs_are_cached_and_reused(teacher, tiny_tokenizer, tmp_path):
    prompts = _prompts(5)
    first = distill.generate_teacher_outputs(teacher, tiny_tokenizer, prompts, 6, batch_size=2, cache_root=tmp_path)
    assert (first.n_generated, first.n_cached, first.n_corrupt) == (5, 0, 0)
    assert len(first.texts) == 5 and len(list(first.folder.glob("*.json"))) == 6  # 5 answers + settings
    again = distill.generate_teacher_outputs(teacher, tiny_tokenizer, prompts, 6, batch_size=2, cache_root=tmp_path)
    assert (again.n_generated, again.n_cached) == (0, 5) and again.texts == first.texts
    assert again.finished == first.finished
    direct = teacher_module._generate_batch(teacher, tiny_tokenizer, prompts[:1], 6)[0][0]
    assert first.texts[0] == direct


def test_cache_key_follows_model_and_settings(teacher, tiny_tokenizer, tmp_path):
    folder = distill.teacher_cache_dir(teacher, {"max_new_tokens": 6}, tmp_path)
    assert distill.teacher_cache_dir(teacher, {"max_new_tokens": 7}, tmp_path) != folder
    assert distill.teacher_cache_dir(_llama(len(tiny_tokenizer), seed=1), {"max_new_tokens": 6}, tmp_path) != folder
    assert distill.teacher_cache_dir(_llama(len(tiny_tokenizer), seed=0), {"max_new_tokens": 6}, tmp_path) == folder


def test_corrupted_entries_are_regenerated_not_trusted(teacher, tiny_tokenizer, tmp_path):
    prompts = _prompts(4)
    first = distill.generate_teacher_outputs(teacher, tiny_tokenizer, prompts, 6, cache_root=tmp_path)
    entries = sorted(p for p in first.folder.glob("*.json") if p.name != "settings.json")
    entries[0].write_text('{"prompt_sha256": "trunc')  # torn write
    tampered = json.loads(entries[1].read_text())
    entries[1].write_text(json.dumps({**tampered, "text": "category: billing"}))  # edited: checksum no longer fits
    again = distill.generate_teacher_outputs(teacher, tiny_tokenizer, prompts, 6, cache_root=tmp_path)
    assert (again.n_corrupt, again.n_generated, again.n_cached) == (2, 2, 2)
    assert again.texts == first.texts


def test_an_interrupted_run_resumes(teacher, tiny_tokenizer, tmp_path, monkeypatch):
    prompts = _prompts(6)
    real, calls = teacher_module._generate_batch, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the learner pressed stop during the second batch
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_module, "_generate_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        distill.generate_teacher_outputs(teacher, tiny_tokenizer, prompts, 6, batch_size=2, cache_root=tmp_path)
    resumed = distill.generate_teacher_outputs(teacher, tiny_tokenizer, prompts, 6, batch_size=2, cache_root=tmp_path)
    assert (resumed.n_cached, resumed.n_generated) == (2, 4)
    assert not list(resumed.folder.glob(".*.tmp"))  # no half-written files left behind


def test_generation_input_errors(teacher, tiny_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="No prompts"):
        distill.generate_teacher_outputs(teacher, tiny_tokenizer, [], 6, cache_root=tmp_path)
    with pytest.raises(ValueError, match="max_new_tokens"):
        distill.generate_teacher_outputs(teacher, tiny_tokenizer, ["the hub"], 0, cache_root=tmp_path)


# --- validating teacher outputs ------------------------------------------------------------


@pytest.mark.parametrize(
    "text, finished, reason",
    [
        (GOOD, True, None),
        (GOOD.replace("E-104", "none"), True, None),
        ("   ", True, "empty"),
        (GOOD, False, "truncated"),
        ("The hub is a billing problem.", True, "malformed"),
        (GOOD.replace("billing", "weather"), True, "unknown category"),
        (GOOD.replace("E-104", "soon"), True, "bad error code"),
        (GOOD.replace("Open the app and update the card on file today.", "ok"), True, "degenerate"),
        (
            "category: setup\nerror_code: none\nreply: reset the hub reset the hub reset the hub reset the hub",
            True,
            "degenerate",
        ),
    ],
)
def test_output_problem_names_the_reason(text, finished, reason):
    assert distill.output_problem(text, finished) == reason
    assert reason is None or reason in distill.REASONS


def test_validate_outputs_keeps_good_and_reports_the_rest(rows):
    texts = [GOOD, "", GOOD, "no format at all", GOOD, GOOD, GOOD, GOOD.replace("billing", "x")]
    report = distill.validate_outputs(rows, texts)
    assert len(report.rows) == len(report.targets) == 5 and report.targets[0] == GOOD
    assert report.counts == {**dict.fromkeys(distill.REASONS, 0), "empty": 1, "malformed": 1, "unknown category": 1}
    assert report.rejected[0] == {"id": "r1", "reason": "empty", "text": ""}
    with pytest.raises(ValueError, match="one answer per row"):
        distill.validate_outputs(rows, texts[:3])


def test_encode_distillation_set_and_its_errors(tiny_tokenizer, rows):
    encoded = distill.encode_distillation_set(tiny_tokenizer, rows[:2], ["category: billing", "reply: help"], 128)
    assert len(encoded) == 2 and encoded[0]["labels"][-1] == tiny_tokenizer.eos_token_id
    assert len(distill.encode_distillation_set(tiny_tokenizer, rows, None, 128)) == len(rows)  # the references
    with pytest.raises(ValueError, match="training set is empty"):
        distill.encode_distillation_set(tiny_tokenizer, [], [], 128)
    with pytest.raises(ValueError, match="one target per row"):
        distill.encode_distillation_set(tiny_tokenizer, rows[:2], ["x"], 128)
    with pytest.raises(ValueError, match="row 1 is malformed"):
        distill.encode_distillation_set(tiny_tokenizer, [rows[0], {"text": "hi"}], ["a", "b"], 128)
    with pytest.raises(ValueError, match="target 0 .* is empty"):
        distill.encode_distillation_set(tiny_tokenizer, rows[:1], [" "], 128)
    with pytest.raises(ValueError, match="lacks its reference"):
        distill.encode_distillation_set(tiny_tokenizer, [{"message": "my hub"}], None, 128)


def test_balanced_subset_rotates_over_categories(rows):
    picked = distill.balanced_subset(rows, 4)
    assert [r["category"] for r in picked] == ["billing", "setup", "billing", "setup"]
    assert len(distill.balanced_subset(rows, 100)) == len(rows)


# --- evaluation helpers and the widget's pure function -----------------------------------------


def test_temperature_view_flattens_with_temperature():
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(40, generator=g) * 4, torch.randn(40, generator=g) * 4
    views = [distill.temperature_view(t, s, temp, top_k=5) for temp in (0.5, 1.0, 2.0, 8.0)]
    assert [len(v["ids"]) for v in views] == [5] * 4 and views[0]["ids"] == views[-1]["ids"]
    entropies, top1 = [v["teacher_entropy"] for v in views], [v["teacher_top1"] for v in views]
    assert entropies == sorted(entropies) and entropies[-1] < math.log(40)
    assert top1 == sorted(top1, reverse=True) and top1[0] == max(views[0]["teacher_probs"])
    for v, temp in zip(views, (0.5, 1.0, 2.0, 8.0), strict=True):
        assert v["kd_term"] == pytest.approx(temp**2 * v["kl"]) and v["kl"] >= 0
    with pytest.raises(ValueError, match="temperature"):
        distill.temperature_view(t, s, 0.0)
    with pytest.raises(ValueError, match="differ in size"):
        distill.temperature_view(t, s[:10], 1.0)


def test_size_on_disk_and_inference_measurement(teacher, tiny_tokenizer):
    assert evaluate.size_on_disk_mib(teacher) == pytest.approx(tensor_bytes(teacher) / MIB, rel=0.1)
    student = distill.build_student(teacher, [0])
    speed = evaluate.measure_inference({"teacher": teacher, "student": student}, tiny_tokenizer, "the hub", 4, 2)
    assert set(speed) == {"teacher", "student"}
    for name, model in (("teacher", teacher), ("student", student)):
        assert speed[name]["ms_per_token_p95"] >= speed[name]["ms_per_token_p50"] > 0
        assert speed[name]["peak_mib"] >= tensor_bytes(model) / MIB


def test_claims_vs_measured_arithmetic():
    m = {
        "student_ms_per_token": 20.0,
        "teacher_ms_per_token": 50.0,
        "student_peak_mib": 100.0,
        "teacher_peak_mib": 400.0,
        "retention": 0.9,
    }
    rows = {r["claim"]: r for r in distill.claims_vs_measured(m)}
    assert rows["inference time saved"]["measured_pct"] == pytest.approx(60)
    assert rows["memory saved"]["measured_pct"] == pytest.approx(75)
    assert rows["accuracy retained"] == {"claim": "accuracy retained", "seed_pct": 92.0, "measured_pct": 90.0}


def test_sizes_per_profile():
    assert distill.get_config("smoke").max_steps < distill.get_config("full").max_steps
    with pytest.raises(ValueError, match="Unknown profile"):
        distill.get_config("huge")


def test_score_model_scores_against_the_references(teacher, tiny_tokenizer, rows):
    scores, answers, _ = evaluate.score_model(teacher, tiny_tokenizer, rows[:3], max_new_tokens=4)
    assert len(answers) == 3 and 0 <= scores["score"] <= 100 and scores["format_ok"] == 0
