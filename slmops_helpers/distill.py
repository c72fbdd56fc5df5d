"""Section 2, distillation: move a teacher's knowledge into a smaller, faster student.

The two stages of the recipe, each a few short functions:

1. **Teacher data.** ``generate_teacher_outputs`` answers the training prompts with the
   teacher, in batches, caching every answer on disk (keyed by model, prompt and
   generation settings) so that an interrupted run resumes and a corrupted entry is
   regenerated. ``validate_outputs`` drops empty, malformed, truncated or degenerate
   answers before anything trains on them.
2. **Student training.** ``build_student`` keeps some of the teacher's decoder blocks
   (DistilBERT's initialisation; ``max_blocks_within`` says how many fit a parameter
   budget, ``block_choices`` offers which); ``make_loss_fn`` plugs the loss
   ``α·T²·KL + (1−α)·CE`` into ``training.train``. With ``alpha=0`` it is plain
   cross-entropy: on teacher outputs that is sequence-level distillation, on the human
   references it trains the student-without-distillation baseline.

>>> student = build_student(teacher, block_choices(30, 7)["both ends"])  # doctest: +SKIP
>>> loss_fn = make_loss_fn(student, teacher, KDConfig(temperature=2.0, alpha=0.5))  # doctest: +SKIP
>>> training.train(student, train_examples, val_examples, TrainConfig(), pad_id, loss_fn=loss_fn)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ._io import atomic_write_json
from .config import cache_dir, get_profile
from .data import (
    CATEGORIES,
    NO_CODE,
    follows_format,
    format_chat,
    normalize_error_code,
    parse_prediction,
    score_predictions,
)
from .inference import generate_answers, generate_timed, speed_summary
from .models import MIB, PeakMemory, tensor_bytes
from .training import IGNORE, encode_example

KL_KINDS = ("forward", "reverse")


@dataclass(frozen=True)
class KDConfig:
    """The distillation loss ``alpha·T²·KL + (1−alpha)·CE``.

    ``kind="forward"`` is KL(teacher‖student): the student spreads mass over everything
    the teacher finds plausible. ``"reverse"`` is KL(student‖teacher): the student may
    concentrate on the teacher's main modes. ``hidden_weight > 0`` adds
    ``hidden_weight · hidden_state_loss``: the student's blocks also imitate the teacher's
    intermediate states, on every token of the prompt and the answer.
    """

    temperature: float = 2.0  # T > 0; T > 1 flattens both distributions before comparing
    alpha: float = 0.5  # weight of the soft-target (KL) term, in [0, 1]; 0 = plain cross-entropy
    kind: str = "forward"
    hidden_weight: float = 0.0  # weight of the hidden-state term (see hidden_state_loss); 0 = off

    def __post_init__(self) -> None:
        if not (
            isinstance(self.temperature, (int, float)) and self.temperature > 0 and math.isfinite(self.temperature)
        ):
            raise ValueError(
                f"KDConfig.temperature must be a positive number, got {self.temperature}. Fix: use e.g. 2.0."
            )
        if not (isinstance(self.alpha, (int, float)) and 0 <= self.alpha <= 1):
            raise ValueError(
                f"KDConfig.alpha must lie in [0, 1], got {self.alpha}. "
                "Fix: 0 = only the hard labels, 1 = only the teacher's soft targets."
            )
        if self.kind not in KL_KINDS:
            raise ValueError(f"KDConfig.kind must be one of {KL_KINDS}, got {self.kind!r}.")
        if not (isinstance(self.hidden_weight, (int, float)) and 0 <= self.hidden_weight < math.inf):
            raise ValueError(
                f"KDConfig.hidden_weight must be a number >= 0, got {self.hidden_weight}. Fix: 0 turns the term off."
            )


@dataclass(frozen=True)
class DistillConfig:
    """The sizes notebook 02 scales between a class demo (smoke) and the real run (full)."""

    n_teacher_prompts: int  # training prompts the teacher answers (balanced over categories)
    teacher_max_new_tokens: int  # room for a whole answer: longer ones count as truncated
    eval_max_new_tokens: int  # generation budget when scoring on held-out references
    n_val: int  # validation rows: loss curves, and the task score that picks the kept step
    max_steps: int
    eval_every: int
    patience: int  # evaluations without a new best validation score before a run stops
    batch_size: int
    lr: float  # above the module's 1e-5…5e-5: a student cut from 30 to 7 blocks must re-learn a lot
    param_budget: float  # the student keeps as many blocks as fit in this share of the teacher's parameters


_SHARED = {"teacher_max_new_tokens": 80, "eval_max_new_tokens": 64, "batch_size": 8, "param_budget": 0.40}
SIZES: dict[str, DistillConfig] = {
    # smoke: few steps, so a large learning rate; measured on 2 quiet CPU cores, 12 steps at 1e-3 reach a
    # lower validation loss than at 3e-4 or 2e-3
    "smoke": DistillConfig(n_teacher_prompts=40, n_val=8, max_steps=12, eval_every=4, patience=2, lr=1e-3, **_SHARED),
    "full": DistillConfig(
        n_teacher_prompts=224, n_val=48, max_steps=240, eval_every=20, patience=3, lr=5e-4, **_SHARED
    ),
}


def get_config(profile: str) -> DistillConfig:
    """The distillation sizes of ``profile`` (raises for an unknown profile, listing the choices)."""
    return SIZES[get_profile(profile).name]


# --- stage 1: teacher data, cached on disk ------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_fingerprint(model: Any) -> str:
    """A short hash of a model's config and weights (a strided sample of every tensor).

    Retraining the teacher changes its weights, hence this fingerprint, hence the cache key.
    """
    config = {k: v for k, v in model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, p in model.named_parameters():
        sample = p.detach().flatten()[:: max(1, p.numel() // 1024)].float().cpu()
        digest.update(name.encode() + sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def teacher_cache_dir(model: Any, settings: dict[str, Any], root: Path | None = None) -> Path:
    """The folder of one (model, generation settings) pair; one file per prompt inside."""
    key = _sha256(json.dumps({"model": model_fingerprint(model), **settings}, sort_keys=True))[:16]
    return (root or cache_dir() / "teacher_outputs") / key


def _entry_checksum(prompt_sha: str, text: str, finished: bool) -> str:
    return _sha256(json.dumps([prompt_sha, text, finished]))


def entry_path(folder: Path, prompt: str) -> Path:
    """Where the cached teacher answer to ``prompt`` lives in a ``teacher_cache_dir``."""
    return folder / f"{_sha256(prompt)[:24]}.json"


def read_entry(path: Path, prompt: str) -> dict[str, Any] | None:
    """A cached answer, or None when missing or corrupt (unreadable, wrong prompt, bad checksum)."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        ok = entry["prompt_sha256"] == _sha256(prompt) and entry["checksum"] == _entry_checksum(
            entry["prompt_sha256"], entry["text"], entry["finished"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return entry if ok else None


@dataclass
class TeacherOutputs:
    """The teacher's answers, in prompt order, and what the cache did."""

    texts: list[str]
    finished: list[bool]  # False: the answer hit max_new_tokens before its end token
    n_cached: int
    n_generated: int
    n_corrupt: int  # entries found damaged on disk and regenerated
    folder: Path


@torch.inference_mode()
def _generate_batch(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> list[tuple[str, bool]]:
    """Greedy answers for one batch, each with whether it reached an end token."""
    device = next(model.parameters()).device
    eos = {tokenizer.eos_token_id, *(_as_list(model.generation_config.eos_token_id))} - {None}
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # decoder-only: pad on the left
    try:
        batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
        out = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    finally:
        tokenizer.padding_side = side
    new = out[:, batch.input_ids.shape[1] :].tolist()  # (B, new tokens)
    return [(tokenizer.decode(ids, skip_special_tokens=True).strip(), any(i in eos for i in ids)) for ids in new]


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def generate_teacher_outputs(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int = 16,
    cache_root: Path | None = None,
) -> TeacherOutputs:
    """Answer every prompt with the teacher (greedy), reusing answers cached on disk.

    Each answer is written atomically as soon as its batch finishes, so an interrupted
    run loses at most one batch; a damaged entry is detected (checksum) and regenerated.
    """
    from tqdm.auto import tqdm

    if not prompts:
        raise ValueError("No prompts to answer: pass at least one training prompt.")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    settings = {"max_new_tokens": max_new_tokens, "do_sample": False}
    folder = teacher_cache_dir(model, settings, cache_root)
    paths = [entry_path(folder, p) for p in prompts]
    entries = [read_entry(path, p) for path, p in zip(paths, prompts, strict=True)]
    n_corrupt = sum(e is None and path.exists() for e, path in zip(entries, paths, strict=True))
    todo = [i for i, e in enumerate(entries) if e is None]
    n_cached = len(prompts) - len(todo)
    if todo:
        atomic_write_json(folder / "settings.json", settings)
    for start in tqdm(range(0, len(todo), batch_size), desc="teacher answers", unit="batch", disable=not todo):
        chunk = todo[start : start + batch_size]
        for i, (text, finished) in zip(
            chunk, _generate_batch(model, tokenizer, [prompts[i] for i in chunk], max_new_tokens), strict=True
        ):
            sha = _sha256(prompts[i])
            entries[i] = {
                "prompt_sha256": sha,
                "text": text,
                "finished": finished,
                "checksum": _entry_checksum(sha, text, finished),
            }
            atomic_write_json(paths[i], entries[i])
    return TeacherOutputs(
        [e["text"] for e in entries], [e["finished"] for e in entries], n_cached, len(todo), n_corrupt, folder
    )


# --- validating teacher outputs --------------------------------------------------------------

REASONS = ("empty", "truncated", "malformed", "unknown category", "bad error code", "degenerate")


def output_problem(text: str, finished: bool = True) -> str | None:
    """Why a teacher answer is unfit to train on (one of REASONS), or None when it is fine."""
    if not text.strip():
        return "empty"
    if not finished:
        return "truncated"
    if not follows_format(text):
        return "malformed"
    fields = parse_prediction(text)
    if fields["category"] not in CATEGORIES:
        return "unknown category"
    raw_code = re.search(r"(?m)^error_code:\s*(.*)$", text).group(1).strip().lower()
    if raw_code != NO_CODE and normalize_error_code(raw_code) == NO_CODE:
        return "bad error code"
    words = re.findall(r"\w+", fields["reply"].lower())
    trigrams = Counter(zip(words, words[1:], words[2:], strict=False))
    if len(words) < 3 or len(set(words)) < 0.4 * len(words) or max(trigrams.values(), default=0) >= 3:
        return "degenerate"
    return None


@dataclass
class ValidationReport:
    """Which teacher answers survive, and why the others were dropped."""

    rows: list[dict[str, str]]  # kept rows, with their teacher answers in ``targets``
    targets: list[str]
    rejected: list[dict[str, str]] = field(default_factory=list)  # id, reason, text

    @property
    def counts(self) -> dict[str, int]:
        """Rejections per reason, every reason listed (zeros included)."""
        found = Counter(r["reason"] for r in self.rejected)
        return {reason: found.get(reason, 0) for reason in REASONS}


def validate_outputs(rows: list[dict[str, str]], outputs: TeacherOutputs | list[str]) -> ValidationReport:
    """Keep the rows whose teacher answer passes ``output_problem``; report the rest."""
    texts = outputs.texts if isinstance(outputs, TeacherOutputs) else list(outputs)
    finished = outputs.finished if isinstance(outputs, TeacherOutputs) else [True] * len(texts)
    if len(texts) != len(rows):
        raise ValueError(f"Got {len(texts)} teacher answers for {len(rows)} rows; pass one answer per row.")
    report = ValidationReport([], [])
    for row, text, done in zip(rows, texts, finished, strict=True):
        if reason := output_problem(text, done):
            report.rejected.append({"id": row.get("id", "?"), "reason": reason, "text": text})
        else:
            report.rows.append(row)
            report.targets.append(text)
    return report


# --- the training set ----------------------------------------------------------------------


def balanced_subset(rows: list[dict[str, str]], n: int) -> list[dict[str, str]]:
    """Up to ``n`` rows taken round-robin over categories (diverse and balanced), in a stable order."""
    by_category: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row)
    queues = [list(v) for _, v in sorted(by_category.items())]
    picked: list[dict[str, str]] = []
    while len(picked) < n and any(queues):
        picked += [q.pop(0) for q in queues if q][: n - len(picked)]
    return picked


def encode_distillation_set(
    tokenizer: Any, rows: list[dict[str, str]], targets: list[str] | None, max_length: int
) -> list[dict[str, list[int]]]:
    """Encode (prompt, target) pairs for ``training.train``; refuse an empty or malformed set.

    ``targets`` are the teacher's answers (sequence-level distillation); None trains on
    the human references.
    """
    if not rows:
        raise ValueError(
            "The training set is empty: no rows (or every teacher answer was rejected). "
            "Fix: answer more prompts with the teacher, or inspect the validation report."
        )
    if targets is not None and len(targets) != len(rows):
        raise ValueError(f"Got {len(targets)} targets for {len(rows)} rows; pass one target per row.")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("message"), str) or not row["message"].strip():
            raise ValueError(
                f"Training row {i} is malformed: it needs a non-empty 'message' string. Fix: check the rows."
            )
        if targets is not None and not (isinstance(targets[i], str) and targets[i].strip()):
            raise ValueError(
                f"Training target {i} (row {row.get('id', '?')}) is empty. Fix: run validate_outputs first."
            )
        if targets is None and not all(isinstance(row.get(k), str) for k in ("category", "error_code", "reply")):
            raise ValueError(
                f"Training row {i} lacks its reference (category, error_code, reply). Fix: check the rows."
            )
    return [
        encode_example(tokenizer, row, max_length, target=None if targets is None else targets[i])
        for i, row in enumerate(rows)
    ]


# --- the student: keep some of the teacher's blocks ---------------------------------------------


def keep_every(n_layers: int, k: int, keep_last: bool = True) -> list[int]:
    """One decoder block out of every ``k``, in depth order.

    ``keep_last=True`` counts from the top (blocks k−1, 2k−1, …, n−1), so the block that
    feeds the output head survives; ``False`` counts from the bottom (0, k, 2k, …), as
    DistilBERT did with k=2.
    """
    if not (isinstance(k, int) and 1 <= k <= n_layers):
        raise ValueError(f"k must be an integer between 1 and n_layers={n_layers}, got {k}.")
    return sorted(range(n_layers - 1, -1, -k)) if keep_last else list(range(0, n_layers, k))


def block_choices(n_layers: int, n: int) -> dict[str, list[int]]:
    """Three ways to keep ``n`` of ``n_layers`` blocks spread over the depth, by what they anchor.

    ``"from the top"`` keeps the last block (it feeds the output head), ``"from block 0"``
    the first (it reads the embeddings, as DistilBERT kept), ``"both ends"`` both, with
    the rest spread evenly between them.
    """
    if not (isinstance(n, int) and 2 <= n <= n_layers):
        raise ValueError(f"n must be an integer between 2 and n_layers={n_layers}, got {n}.")
    stride = n_layers // n
    return {
        "from the top": keep_every(n_layers, stride)[-n:],
        "from block 0": keep_every(n_layers, stride, keep_last=False)[:n],
        "both ends": [round(i * (n_layers - 1) / (n - 1)) for i in range(n)],
    }


def max_blocks_within(teacher_config: Any, budget: float) -> int:
    """The most decoder blocks a student cut from ``teacher_config`` may keep with at most
    ``budget`` (a share, e.g. 0.4) of the teacher's parameters."""
    if not 0 < budget <= 1:
        raise ValueError(f"budget is a share of the teacher's parameters, in (0, 1]; got {budget}.")
    limit = budget * count_config_parameters(teacher_config)
    n = 0  # every block adds parameters, so count up and stop at the first that does not fit
    while (
        n < teacher_config.num_hidden_layers and count_config_parameters(student_config(teacher_config, n + 1)) <= limit
    ):
        n += 1
    if n == 0:
        raise ValueError(
            f"Not even one block fits in {budget:.0%} of the teacher's parameters (the embedding alone is most "
            "of it). Fix: raise the budget."
        )
    return n


def student_config(teacher_config: Any, n_layers: int) -> Any:
    """The teacher's config with ``n_layers`` decoder blocks (per-layer lists cut to match)."""
    config = copy.deepcopy(teacher_config)
    config.num_hidden_layers = n_layers
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:n_layers]
    return config


def count_config_parameters(config: Any) -> int:
    """Parameters of a causal LM built from ``config``, counted without allocating weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def build_student(teacher: Any, keep: list[int]) -> Any:
    """A smaller model initialised from the teacher: its embeddings, final norm and head,
    and the decoder blocks listed in ``keep`` (in that order)."""
    from transformers import AutoModelForCausalLM

    n = teacher.config.num_hidden_layers
    if not keep or len(set(keep)) != len(keep) or not all(isinstance(i, int) and 0 <= i < n for i in keep):
        raise ValueError(f"keep must list distinct block indices in [0, {n}), got {keep}.")
    keep = sorted(keep)
    new_index = {old: new for new, old in enumerate(keep)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        match = re.match(r"(.*\.layers\.)(\d+)(\..*)", name)
        if match is None:
            state[name] = tensor.clone()
        elif int(match.group(2)) in new_index:
            state[f"{match.group(1)}{new_index[int(match.group(2))]}{match.group(3)}"] = tensor.clone()
    device, dtype = next(teacher.parameters()).device, next(teacher.parameters()).dtype
    student = AutoModelForCausalLM.from_config(student_config(teacher.config, len(keep))).to(dtype)
    student.load_state_dict(state, strict=True)
    student.tie_weights()
    student.generation_config = copy.deepcopy(teacher.generation_config)
    return student.to(device).eval()


def check_same_vocabulary(
    teacher: Any, student: Any, teacher_tokenizer: Any = None, student_tokenizer: Any = None
) -> None:
    """Logit distillation compares distributions token by token: both need one vocabulary."""
    sizes = [m.get_output_embeddings().weight.shape[0] for m in (teacher, student)]
    same_tokens = (
        teacher_tokenizer is None
        or student_tokenizer is None
        or teacher_tokenizer.get_vocab() == student_tokenizer.get_vocab()
    )
    if sizes[0] != sizes[1] or not same_tokens:
        raise ValueError(
            f"Teacher and student use different vocabularies (output sizes {sizes[0]} vs {sizes[1]}"
            f"{'' if same_tokens else ', tokenizers differ'}): their logits cannot be compared token by token. "
            "Fix: build the student from the teacher (build_student) or from the same model family, "
            "or distil at sequence level only (alpha=0, no teacher logits)."
        )


# --- the loss -------------------------------------------------------------------------------


def soften(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the last dimension: T > 1 flattens, T < 1 sharpens."""
    KDConfig(temperature=temperature)
    return torch.softmax(logits / temperature, dim=-1)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
    kind: str = "forward",
) -> torch.Tensor:
    """``alpha·T²·KL + (1−alpha)·CE``, averaged over N tokens.

    Args:
        student_logits, teacher_logits: (N, V) logits for the same N positions.
        targets: (N,) the token ids that follow (hard labels for the cross-entropy).
        temperature, alpha, kind: see KDConfig. The T² keeps the soft term's gradients
            on the same scale as the cross-entropy's when T changes (Hinton et al., 2015).
    """
    KDConfig(temperature, alpha, kind)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ: "
            "the models must share a vocabulary. Fix: see check_same_vocabulary."
        )
    ce = F.cross_entropy(student_logits, targets)
    if alpha == 0:
        return ce
    return alpha * temperature**2 * kl_divergence(student_logits, teacher_logits, temperature, kind) + (1 - alpha) * ce


def kl_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, kind: str = "forward"
) -> torch.Tensor:
    """Mean KL between the softened (N, V) distributions; the teacher gets no gradient."""
    log_s = F.log_softmax(student_logits / temperature, dim=-1)  # (N, V)
    log_t = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    if kind == "forward":  # KL(teacher ‖ student) = Σ p_t (log p_t − log p_s)
        return (log_t.exp() * (log_t - log_s)).sum(-1).mean()
    return (log_s.exp() * (log_s - log_t)).sum(-1).mean()  # KL(student ‖ teacher)


def _decode(model: Any, batch: dict[str, torch.Tensor], hidden_states: bool = False) -> Any:
    return model.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=hidden_states
    )


def answer_logits(model: Any, batch: dict[str, torch.Tensor], decoded: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, V) logits at the positions that predict an answer token, and those N tokens.

    Runs the output head only where the loss looks (answer tokens are about a third of
    a sequence here), which saves most of the head's time and memory. ``decoded``: the
    decoder's output for ``batch``, when the caller already has it.
    """
    hidden = (decoded if decoded is not None else _decode(model, batch)).last_hidden_state
    labels = batch["labels"][:, 1:]  # position t predicts token t+1
    mask = labels != IGNORE  # (B, T-1)
    return model.get_output_embeddings()(hidden[:, :-1][mask]), labels[mask]


class TeacherLogitCache:
    """A frozen teacher's answer logits (``answer_logits``), computed once per example.

    The teacher never changes during distillation, so its logits for a training example
    are the same at every epoch: only batches holding an example not seen yet run the
    teacher. Examples are told apart by their real tokens and labels, so a batch may be
    padded differently from the one that first held them (padding is masked out).
    """

    def __init__(self, teacher: Any) -> None:
        self.teacher = teacher
        self.rows: dict[bytes, torch.Tensor] = {}

    @staticmethod
    def _keys(batch: dict[str, torch.Tensor]) -> list[bytes]:
        real = batch["attention_mask"].bool()
        return [
            torch.cat([ids[m], labels[m]]).cpu().numpy().tobytes()
            for ids, labels, m in zip(batch["input_ids"], batch["labels"], real, strict=True)
        ]

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        keys = self._keys(batch)
        if any(key not in self.rows for key in keys):
            with torch.no_grad():
                logits = answer_logits(self.teacher, batch)[0]
            per_row = (batch["labels"][:, 1:] != IGNORE).sum(dim=1).tolist()
            for key, rows in zip(keys, logits.split(per_row), strict=True):
                self.rows.setdefault(key, rows)
        return torch.cat([self.rows[key] for key in keys])


def hidden_state_loss(
    student_states: tuple[torch.Tensor, ...],
    teacher_states: tuple[torch.Tensor, ...],
    keep: list[int],
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """Mean (1 − cosine similarity) between student and teacher hidden states, over real tokens.

    ``*_states`` are a decoder's ``hidden_states``: the embeddings, then one (B, T, H) state
    per block, the last one after the final norm. Student block j is paired with teacher
    block ``keep[j]``, the block it was copied from, and the final (normed) states, the ones
    the output head reads, with each other. Cosine ignores scale, so the teacher's few huge
    activations do not drown the rest (DistilBERT used a cosine loss on hidden states too).
    """
    if len(student_states) != len(keep) + 1 or max(keep) + 2 > len(teacher_states):
        raise ValueError(
            f"Cannot pair {len(student_states) - 1} student blocks with teacher blocks {keep} "
            f"(the teacher has {len(teacher_states) - 1}). Fix: pass the keep list the student was built with."
        )
    pairs = [(student_states[j + 1], teacher_states[k + 1]) for j, k in enumerate(keep[:-1])]
    pairs.append((student_states[-1], teacher_states[-1]))
    real = attention_mask.bool()  # (B, T): padding does not count
    losses = [1 - F.cosine_similarity(s[real], t[real].detach(), dim=-1).mean() for s, t in pairs]
    return torch.stack(losses).mean()


def make_loss_fn(
    student: Any,
    teacher: Any = None,
    config: KDConfig = KDConfig(),
    teacher_tokenizer: Any = None,
    student_tokenizer: Any = None,
    keep: list[int] | None = None,
    cache_teacher: bool = False,
) -> Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]:
    """A ``loss_fn(model, batch)`` for ``training.train``; vocabularies are checked now,
    before any training step. ``alpha=0`` needs no teacher (plain cross-entropy).
    ``config.hidden_weight > 0`` needs ``keep``, the teacher blocks the student was built from.

    ``cache_teacher=True`` keeps the teacher's answer logits of every training example
    after its first forward pass (see ``TeacherLogitCache``): from the second epoch on, a
    KD step costs about what a cross-entropy step does. It holds answer tokens × vocabulary
    float32 values in memory (notebook 02's full set: 11,656 × 49,152, about 2.2 GiB), so
    it suits small training sets like the course's.

    In eval mode (``training.evaluate_loss``) it returns the plain cross-entropy on the
    batch's labels: validate on the human references and every run's validation curve
    measures the same thing, so curves compare and early stopping keeps the student
    that best predicts the references, not the one best at imitating. That is still a
    loss, not the task score: see the README's full-profile runs for how far they can part.
    """
    needs_teacher = config.alpha > 0 or config.hidden_weight > 0
    if needs_teacher:
        if teacher is None:
            raise ValueError(
                f"alpha={config.alpha}, hidden_weight={config.hidden_weight} mix in the teacher's outputs: "
                "pass a teacher, or set both to 0."
            )
        check_same_vocabulary(teacher, student, teacher_tokenizer, student_tokenizer)
        teacher.eval()
    if cache_teacher and (config.alpha == 0 or config.hidden_weight > 0):
        raise ValueError(
            "cache_teacher keeps the teacher's logits, which only the KL term reads: it needs alpha > 0 and "
            f"hidden_weight == 0 (got alpha={config.alpha}, hidden_weight={config.hidden_weight})."
        )
    teacher_logits_of = TeacherLogitCache(teacher) if cache_teacher else None
    hidden = config.hidden_weight > 0
    if hidden and (
        keep is None
        or len(keep) != student.config.num_hidden_layers
        or not all(0 <= k < teacher.config.num_hidden_layers for k in keep)
    ):
        raise ValueError(
            f"hidden_weight > 0 pairs each student block with a teacher block, got keep={keep} for a student of "
            f"{student.config.num_hidden_layers} blocks. Fix: pass keep=, the list build_student got."
        )

    def loss_fn(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        decoded = _decode(model, batch, hidden_states=hidden and model.training)
        student_logits, targets = answer_logits(model, batch, decoded)
        if not needs_teacher or not model.training:
            return F.cross_entropy(student_logits, targets)
        with torch.no_grad():
            if teacher_logits_of is not None:
                teacher_decoded, teacher_logits = None, teacher_logits_of(batch)
            else:
                teacher_decoded = _decode(teacher, batch, hidden_states=hidden)
                teacher_logits = answer_logits(teacher, batch, teacher_decoded)[0] if config.alpha > 0 else None
        if teacher_logits is None:  # hidden-state term only: the teacher's head is not needed
            loss = F.cross_entropy(student_logits, targets)
        else:
            loss = kd_loss(student_logits, teacher_logits, targets, config.temperature, config.alpha, config.kind)
        if hidden:
            states = (decoded.hidden_states, teacher_decoded.hidden_states)
            loss = loss + config.hidden_weight * hidden_state_loss(*states, keep, batch["attention_mask"])
        return loss

    return loss_fn


# --- evaluation -------------------------------------------------------------------------------


def score_model(
    model: Any, tokenizer: Any, rows: list[dict[str, str]], max_new_tokens: int, batch_size: int = 16
) -> tuple[list[str], dict[str, float]]:
    """Greedy answers for ``rows`` and their scores against the human-written references."""
    prompts = [format_chat(tokenizer, row) for row in rows]
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size=batch_size)
    return answers, score_predictions(answers, rows)


def size_on_disk_mib(model: Any) -> float:
    """MiB that ``save_pretrained`` writes (safetensors, shared weights stored once)."""
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / MIB


def measure_inference(
    models: dict[str, Any], tokenizer: Any, prompt: str, n_tokens: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Speed and peak memory of greedy decoding, per model, with runs interleaved.

    Interleaving (teacher, student, … then again) spreads background load evenly over the
    models. ``peak_mib`` = the weights plus the most extra memory one generation needed.
    """
    runs: dict[str, list] = {name: [] for name in models}
    extra: dict[str, float] = dict.fromkeys(models, 0.0)
    for _ in range(repeats):
        for name, model in models.items():
            with PeakMemory(next(model.parameters()).device.type) as memory:
                runs[name].append(generate_timed(model, tokenizer, prompt, n_tokens))
            extra[name] = max(extra[name], memory.peak_mib)
    return {
        name: {**speed_summary(runs[name]), "peak_mib": tensor_bytes(model) / MIB + extra[name]}
        for name, model in models.items()
    }


def temperature_view(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    temperature: float,
    top_k: int = 8,
    kind: str = "forward",
) -> dict[str, Any]:
    """What temperature T does to one next-token distribution, for the widget.

    Returns the teacher's top-k token ids (ranked at T=1, so bars keep their order), both
    models' probabilities for them at T, the teacher's top-1 probability and entropy
    (nats) at T, the KL at T and the distillation term T²·KL.
    """
    KDConfig(temperature=temperature, kind=kind)
    t, s = teacher_logits.detach().float().flatten(), student_logits.detach().float().flatten()
    if t.shape != s.shape:
        raise ValueError(f"Teacher and student logits differ in size ({t.numel()} vs {s.numel()}).")
    p_t, p_s = soften(t, temperature), soften(s, temperature)
    ids = torch.topk(t, min(top_k, t.numel())).indices
    kl = float(kl_divergence(s[None], t[None], temperature, kind))
    return {
        "ids": ids.tolist(),
        "teacher_probs": p_t[ids].tolist(),
        "student_probs": p_s[ids].tolist(),
        "teacher_top1": float(p_t.max()),
        "teacher_entropy": float(-(p_t * torch.log(p_t.clamp_min(1e-30))).sum()),
        "kl": kl,
        "kd_term": temperature**2 * kl,
    }


SEED_CLAIMS = (  # seed 001 (the SLMOps module's distillation overview); "up to", no source given there
    ("inference time saved", 85.0, "inference_time_saved_pct"),
    ("memory saved", 95.0, "memory_saved_pct"),
    ("accuracy retained", 92.0, "retention_pct"),
)


def claims_vs_measured(metrics: dict[str, float]) -> list[dict[str, Any]]:
    """The seed's claims beside this run's numbers (percent), computed from the metrics."""
    measured = {
        "inference_time_saved_pct": 100 * (1 - metrics["student_ms_per_token"] / metrics["teacher_ms_per_token"]),
        "memory_saved_pct": 100 * (1 - metrics["student_peak_mib"] / metrics["teacher_peak_mib"]),
        "retention_pct": 100 * metrics["retention"],
    }
    return [{"claim": claim, "seed_pct": seed, "measured_pct": measured[key]} for claim, seed, key in SEED_CLAIMS]
