"""Section 2, stage 1: the teacher's answers, cached on disk and validated before training.

``generate_teacher_outputs`` answers the training prompts in batches and caches every
answer (keyed by model, prompt and generation settings), so an interrupted run resumes
and a corrupted entry is regenerated. ``validate_outputs`` drops empty, malformed,
truncated or degenerate answers; ``encode_distillation_set`` turns what is left into
training examples.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_json
from ..config import cache_dir
from ..data import CATEGORIES, NO_CODE, follows_format, normalize_error_code, parse_prediction
from ..training import encode_example

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

    def format(self, n_examples: int = 3) -> str:
        """How many were kept, the count per reason, and the first few dropped answers."""
        lines = [f"kept {len(self.rows)} of {len(self.rows) + len(self.rejected)} teacher answers"]
        lines += [f"  {reason:<17} {n}" for reason, n in self.counts.items()]
        lines += [f"--- dropped {r['id']} ({r['reason']}): {r['text'][:160]!r}" for r in self.rejected[:n_examples]]
        return "\n".join(lines)


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
