import json

import pytest

from slmops_helpers import data


def test_bundled_dataset_schema_splits_and_balance():
    rows = data.read_rows()
    by_split = {s: [r for r in rows if r["split"] == s] for s in data.SPLITS}
    assert {s: len(v) for s, v in by_split.items()} == {"train": 224, "validation": 48, "test": 48}
    for split, expected in (("train", 28), ("validation", 6), ("test", 6)):
        assert data.label_counts(by_split[split]) == {c: expected for c in data.CATEGORIES}
    assert len({r["message"] for r in rows}) == len(rows)


def test_codes_in_references_appear_in_messages():
    for row in data.read_rows():
        if row["error_code"] != data.NO_CODE:
            assert row["error_code"][2:] in row["message"], row["id"]


def test_load_splits_is_a_datasetdict():
    splits = data.load_splits()
    assert splits["test"].num_rows == 48 and set(splits["train"].column_names) == set(data.FIELDS)


def _write(tmp_path, lines):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = {
    "id": "a",
    "split": "train",
    "message": "hub says E104",
    "category": "connectivity",
    "error_code": "E-104",
    "reply": "Restart it.",
}


@pytest.mark.parametrize(
    "row, message",
    [
        ({**GOOD, "category": "biling"}, r"line 1: category 'biling' is not one of"),
        ({k: v for k, v in GOOD.items() if k != "reply"}, r"line 1: fields .* missing \['reply'\]"),
        ({**GOOD, "error_code": "104"}, r"error_code '104' must look like 'E-104'"),
        ({**GOOD, "split": "dev"}, r"split 'dev' is not one of"),
        ({**GOOD, "message": "  "}, r"field 'message' must be a non-empty string"),
    ],
)
def test_malformed_rows_name_line_and_field(tmp_path, row, message):
    with pytest.raises(data.DatasetError, match=message):
        data.read_rows(_write(tmp_path, [json.dumps(row)]))


def test_bad_json_duplicate_ids_and_empty_file(tmp_path):
    with pytest.raises(data.DatasetError, match="line 2: not valid JSON"):
        data.read_rows(_write(tmp_path, [json.dumps(GOOD), "{oops"]))
    with pytest.raises(data.DatasetError, match="duplicate id 'a'"):
        data.read_rows(_write(tmp_path, [json.dumps(GOOD), json.dumps(GOOD)]))
    with pytest.raises(data.DatasetError, match="holds no rows"):
        data.read_rows(_write(tmp_path, [""]))
    with pytest.raises(FileNotFoundError, match="make setup"):
        data.read_rows(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    "text, code", [("E104", "E-104"), ("e-104", "E-104"), ("error 311", "E-311"), ("none", "none"), ("", "none")]
)
def test_normalize_error_code(text, code):
    assert data.normalize_error_code(text) == code


def test_parse_prediction_is_tolerant():
    parsed = data.parse_prediction("Category: Hardware Fault\nerror_code: e204\nreply: Hold reset.\nreply: again")
    assert parsed == {"category": "hardware_fault", "error_code": "E-204", "reply": "Hold reset."}
    assert data.parse_prediction("") == {"category": "", "error_code": "", "reply": ""}


def test_parse_prediction_credits_content_outside_the_format():
    parsed = data.parse_prediction("Sounds like a billing problem, or maybe setup. Error e 501 means the card failed.")
    assert parsed["category"] == "billing"
    assert parsed["error_code"] == "E-501"
    assert parsed["reply"].startswith("Sounds like")
    assert not data.follows_format("Sounds like a billing problem")
    assert data.follows_format(data.format_target(GOOD))


def test_rouge_l():
    assert data.rouge_l_f1("the hub restarts", "the hub restarts") == 1.0
    assert data.rouge_l_f1("", "x") == 0.0
    # LCS("a b c d", "a c d e") = 3 → P = R = 3/4
    assert data.rouge_l_f1("a b c d", "a c d e") == pytest.approx(0.75)


def test_score_predictions_perfect_and_wrong():
    rows = [GOOD, {**GOOD, "id": "b", "category": "billing", "error_code": "none"}]
    perfect = data.score_predictions([data.format_target(r) for r in rows], rows)
    assert perfect["score"] == pytest.approx(100) and perfect["format_ok"] == 1.0
    wrong = data.score_predictions(["category: setup", "nothing"], rows)
    assert wrong["category_acc"] == 0 and wrong["format_ok"] == 0 and wrong["score"] < 10
    with pytest.raises(ValueError, match="one answer per row"):
        data.score_predictions(["x"], rows)


def test_trivial_baselines_stay_low():
    rows = data.read_rows()
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    baselines = data.trivial_baselines(train, test)
    assert 0 < baselines["majority_score"] < 50
    assert 0 < baselines["copy_score"] < 50


def test_format_chat_uses_the_template(tiny_tokenizer):
    prompt = data.format_chat(tiny_tokenizer, GOOD)
    assert prompt.startswith("<|system|> You are the on-device support assistant")
    assert prompt.endswith("<|assistant|> ")
    full = data.format_chat(tiny_tokenizer, GOOD, with_target=True)
    assert "category: connectivity\nerror_code: E-104\nreply: Restart it." in full


def test_dataset_hash_is_the_files_sha256_and_sees_a_one_byte_change(tmp_path):
    import hashlib

    raw = data.DATASET_FILE.read_bytes()
    assert data.dataset_hash() == hashlib.sha256(raw).hexdigest()
    edited = tmp_path / "tickets.jsonl"
    edited.write_bytes(raw.replace(b"E-104", b"E-105", 1))
    assert data.dataset_hash(edited) != data.dataset_hash()
