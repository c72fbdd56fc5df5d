"""The course dataset: support tickets for the fictional Kestrel K2 home hub.

Each row is a customer message with three human-written references: its category
(8 confusable labels), the error code it mentions (normalised to ``E-NNN``, or
``none``) and a short reply. The model is asked to answer in a fixed three-line
format, so one generation is scored on classification, extraction and generation:

    category: connectivity
    error_code: E-104
    reply: Move the hub closer to the router and ...

See ``README.md`` beside this file for the dataset card (license CC BY 4.0) and
``PRODUCT.md`` for the product facts the replies rely on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent
DATASET_FILE = DATA_DIR / "support_tickets.jsonl"
CATEGORIES = (
    "billing",
    "account_access",
    "setup",
    "connectivity",
    "firmware_update",
    "hardware_fault",
    "privacy_data",
    "feature_request",
)
SPLITS = ("train", "validation", "test")
FIELDS = ("id", "split", "message", "category", "error_code", "reply")
NO_CODE = "none"
SYSTEM_PROMPT = (
    "You are the on-device support assistant of the Kestrel K2 home hub. "
    "Read the customer's message and answer in exactly three lines:\n"
    f"category: one of {', '.join(CATEGORIES)}\n"
    "error_code: the error code mentioned, written like E-104, or none\n"
    "reply: one or two short sentences that solve the problem"
)


class DatasetError(ValueError):
    """A row of the dataset file breaks the schema."""


# --- loading and validation ---------------------------------------------------------------


def normalize_error_code(text: str) -> str:
    """'E104', 'e-104', 'error 104' → 'E-104'; anything without three digits → 'none'."""
    match = re.search(r"(\d{3})", text or "")
    return f"E-{match.group(1)}" if match else NO_CODE


def validate_row(row: Any, where: str) -> dict[str, str]:
    """Check one parsed row against the schema; raise DatasetError naming the fix."""
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}.")
    if set(row) != set(FIELDS):
        raise DatasetError(
            f"{where}: fields {sorted(row)} do not match the schema; "
            f"missing {sorted(set(FIELDS) - set(row))}, unexpected {sorted(set(row) - set(FIELDS))}."
        )
    for field in FIELDS:
        if not isinstance(row[field], str) or not row[field].strip():
            raise DatasetError(f"{where}: field {field!r} must be a non-empty string.")
    if row["split"] not in SPLITS:
        raise DatasetError(f"{where}: split {row['split']!r} is not one of {SPLITS}.")
    if row["category"] not in CATEGORIES:
        raise DatasetError(f"{where}: category {row['category']!r} is not one of {CATEGORIES}.")
    if row["error_code"] != NO_CODE and not re.fullmatch(r"E-\d{3}", row["error_code"]):
        raise DatasetError(f"{where}: error_code {row['error_code']!r} must look like 'E-104' or be 'none'.")
    return row


def read_rows(path: Path = DATASET_FILE) -> list[dict[str, str]]:
    """Read and validate every row of a JSONL dataset file (ids must be unique)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Dataset file {path} not found. Fix: reinstall the course (`make setup`).")
    rows, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {n}"
        try:
            row = validate_row(json.loads(line), where)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{where}: not valid JSON ({err.msg}). Fix the line or remove it.") from err
        if row["id"] in seen:
            raise DatasetError(f"{where}: duplicate id {row['id']!r}; ids must be unique.")
        seen.add(row["id"])
        rows.append(row)
    if not rows:
        raise DatasetError(f"{path} holds no rows.")
    return rows


def load_splits(path: Path = DATASET_FILE) -> Any:
    """The dataset as a ``datasets.DatasetDict`` with train / validation / test."""
    from datasets import Dataset, DatasetDict

    rows = read_rows(path)
    return DatasetDict({s: Dataset.from_list([r for r in rows if r["split"] == s]) for s in SPLITS})


def dataset_hash(path: Path = DATASET_FILE) -> str:
    """sha256 of the dataset file: the data part of a model's lineage."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def refuse_test_rows(rows: Any, what: str) -> None:
    """Refuse a *selection* (which model, recipe, gamma or step) that would read the test tickets.

    Choices are made on the validation tickets; the test tickets are scored once, for what was
    chosen, so that the reported score is not the best of several draws on the same tickets."""
    test = [str(r.get("id", "?")) for r in rows if isinstance(r, dict) and r.get("split") == "test"]
    if test:
        raise ValueError(
            f"{what} is a choice, and {len(test)} of its rows are test tickets ({', '.join(test[:3])}...). "
            "Fix: choose on the validation split (data.load_splits()['validation']); score the test tickets once, "
            "for what was chosen."
        )


def require_test_rows(rows: Any, what: str) -> None:
    """Refuse a *report* on rows that are not all test tickets (a row without a split is not one):
    the reported score must be the held-out one, scored once for what was chosen."""
    other = [str(r.get("id", "?")) for r in rows if not isinstance(r, dict) or r.get("split") != "test"]
    if other:
        raise ValueError(
            f"{what} scores the test tickets, and {len(other)} of its rows are not test tickets "
            f"({', '.join(other[:3])}...). Fix: pass test rows (data.load_splits()['test'])."
        )


def label_counts(rows: Any) -> dict[str, int]:
    return dict(Counter(r["category"] for r in rows))


# --- prompts and targets -----------------------------------------------------------------


def format_target(row: dict[str, str]) -> str:
    """The reference answer, in the three-line format the model is taught."""
    return f"category: {row['category']}\nerror_code: {row['error_code']}\nreply: {row['reply']}"


def build_messages(row: dict[str, str], with_target: bool = False) -> list[dict[str, str]]:
    """Chat messages for one ticket: system instructions, the customer's message, and
    (for training) the reference answer as the assistant's turn."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": row["message"]}]
    if with_target:
        messages.append({"role": "assistant", "content": format_target(row)})
    return messages


def format_chat(tokenizer: Any, row: dict[str, str], with_target: bool = False) -> str:
    """The ticket rendered with the model's own chat template, ready to tokenize."""
    return tokenizer.apply_chat_template(
        build_messages(row, with_target), tokenize=False, add_generation_prompt=not with_target
    )


# --- the task metric -------------------------------------------------------------------


def parse_prediction(text: str) -> dict[str, str]:
    """Pull category / error_code / reply out of a model's answer, tolerantly.

    Field lines (``category: ...``) win. An answer that ignores the format still gets
    credit for its content: the first category label it mentions, the first error code
    it writes, and its whole text as the reply. Anything absent comes back as an empty
    string, which scores as wrong (never a crash).
    """
    fields = {"category": "", "error_code": "", "reply": ""}
    free_text = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower().replace(" ", "_")
        if sep and key in fields:
            fields[key] = fields[key] or value.strip()
        else:
            free_text.append(line.strip())
    lowered = text.lower()
    if not fields["category"]:
        mentioned = [(lowered.find(c.replace("_", " ")), c) for c in CATEGORIES if c.replace("_", " ") in lowered]
        fields["category"] = min(mentioned)[1] if mentioned else ""
    if not fields["error_code"] and (code := re.search(r"\be-?\s?\d{3}\b", lowered)):
        fields["error_code"] = code.group(0)
    fields["reply"] = fields["reply"] or " ".join(t for t in free_text if t)
    fields["category"] = fields["category"].lower().replace(" ", "_").strip(".")
    fields["error_code"] = normalize_error_code(fields["error_code"]) if fields["error_code"] else ""
    return fields


def follows_format(text: str) -> bool:
    """True when the answer has the three field lines, in order, with values."""
    return re.search(r"(?m)^category:\s*\S.*\n^error_code:\s*\S.*\n^reply:\s*\S", text.strip()) is not None


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())


def rouge_l_f1(prediction: str, reference: str) -> float:
    """ROUGE-L F1 on lower-cased words: longest common subsequence, no stemming."""
    pred, ref = _words(prediction), _words(reference)
    if not pred or not ref:
        return 0.0
    prev = [0] * (len(ref) + 1)
    for p in pred:  # classic O(n·m) LCS, one row at a time
        row = [0]
        for j, r in enumerate(ref, start=1):
            row.append(prev[j - 1] + 1 if p == r else max(prev[j], row[j - 1]))
        prev = row
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def _ticket_parts(predictions: list[str], rows: list[dict[str, str]]) -> list[tuple[float, float, float]]:
    """(category right, error code right, reply ROUGE-L) per ticket, each 0–1."""
    if len(predictions) != len(rows):
        raise ValueError(f"Got {len(predictions)} predictions for {len(rows)} rows; pass one answer per row.")
    if not rows:
        raise ValueError("Nothing to score: pass at least one row.")
    parts = []
    for text, row in zip(predictions, rows, strict=True):
        p = parse_prediction(text)
        parts.append(
            (float(p["category"] == row["category"]), float(p["error_code"] == row["error_code"]),
             rouge_l_f1(p["reply"], row["reply"]))
        )  # fmt: skip
    return parts


def ticket_scores(predictions: list[str], rows: list[dict[str, str]]) -> list[float]:
    """Each ticket's own task score, 0–100: the mean of its three parts. Their mean is the
    ``score`` of ``score_predictions``, which is what lets ``uncertainty`` resample tickets."""
    return [100 * sum(p) / 3 for p in _ticket_parts(predictions, rows)]


def score_predictions(predictions: list[str], rows: list[dict[str, str]]) -> dict[str, float]:
    """Score answers against the human-written references.

    Returns ``category_acc``, ``error_code_acc`` and ``reply_rouge_l`` (each 0–1),
    ``format_ok`` (share of answers that follow the three-line format) and ``score``: the
    mean of the three task parts, on a 0–100 scale.
    """
    parts, n = _ticket_parts(predictions, rows), len(rows)
    category_acc, error_code_acc, reply = (sum(column) / n for column in zip(*parts, strict=True))
    return {
        "category_acc": category_acc,
        "error_code_acc": error_code_acc,
        "reply_rouge_l": reply,
        "format_ok": sum(follows_format(p) for p in predictions) / n,
        "score": 100 * (category_acc + error_code_acc + reply) / 3,
    }


def trivial_baselines(train: list[dict[str, str]], test: list[dict[str, str]]) -> dict[str, float]:
    """Scores that need no model: the floor any model must clear.

    ``majority``: the most common training category, the most common training code,
    and the most common reply of that category. ``copy``: echoes the message as reply.
    """
    category = Counter(r["category"] for r in train).most_common(1)[0][0]
    code = Counter(r["error_code"] for r in train).most_common(1)[0][0]
    reply = next(r["reply"] for r in train if r["category"] == category)
    majority = format_target({"category": category, "error_code": code, "reply": reply})
    copy = [format_target({"category": category, "error_code": code, "reply": r["message"]}) for r in test]
    return {
        "majority_score": score_predictions([majority] * len(test), test)["score"],
        "copy_score": score_predictions(copy, test)["score"],
    }
