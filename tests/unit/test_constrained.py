"""Constrained decoding keeps any model's answer inside the ticket format: a random
"model" over a vocabulary of characters and multi-character tokens still writes a
category from the list and a valid error code; a cut answer stays a prefix of the format;
an impossible format is a clear error."""

from __future__ import annotations

import string

import numpy as np
import pytest

from slmops_helpers.data import CATEGORIES, follows_format, parse_prediction
from slmops_helpers.decoding import greedy_stream
from slmops_helpers.decoding.constrained import REPLY, TicketFormat, _chain, ticket_header

EOS = 0
TEXTS = ["<end>"] + list(string.printable) + [
    "category", ": ", "category: ", "billing", "bill", "ing", "setup", "account_access", "E-", "E-1", "104", "10",
    "\nerror_code: ", "\nreply: ", "none", " the", " hub", "reply", "\n", ":\n", " E-999 ok", "\n\n",
]  # fmt: skip


def _texts(ids):
    return "".join(TEXTS[i] for i in ids)


def _answer(fmt, seed, n=80, constrained=True):
    rng = np.random.default_rng(seed)
    step = lambda new: rng.normal(size=len(TEXTS)).astype(np.float32)  # noqa: E731  (a random "model")
    cursor = fmt.cursor() if constrained else None
    return "".join(t.text for t in greedy_stream(step, [1], n, {EOS}, _texts, cursor))


@pytest.fixture(scope="module")
def fmt():
    return TicketFormat(TEXTS, {EOS})


def test_every_answer_is_in_the_format(fmt):
    free = [_answer(fmt, seed, constrained=False) for seed in range(40)]
    assert sum(follows_format(a) for a in free) == 0  # a random model on its own never is
    for seed in range(40):
        answer = _answer(fmt, seed, n=200)
        assert follows_format(answer), answer
        parsed = parse_prediction(answer)
        assert parsed["category"] in CATEGORIES
        code = answer.split("\n")[1].removeprefix("error_code: ")
        assert code == "none" or (code.startswith("E-") and code[2:].isdigit() and len(code) == 5)


def test_a_cut_answer_is_a_prefix_of_the_format(fmt):
    for n in (1, 3, 7, 12):
        answer = _answer(fmt, seed=n, n=n)
        fmt.follow(answer)  # raises if the text left the format


def test_the_end_token_waits_for_a_visible_reply_character(fmt):
    cursor = fmt.cursor()
    for token in (TEXTS.index("category: "), TEXTS.index("setup"), TEXTS.index("\nerror_code: ")):
        cursor.advance(token)
    cursor.advance(TEXTS.index("none"))
    cursor.advance(TEXTS.index("\nreply: "))
    assert not cursor.in_header
    logits = np.zeros(len(TEXTS), dtype=np.float32)
    logits[EOS] = 10.0
    assert cursor.choose(logits) != EOS  # an empty reply is not allowed to end
    cursor.advance(TEXTS.index(" hub"))
    assert cursor.choose(logits) == EOS


def test_tokens_crossing_fields_are_allowed(fmt):
    allowed = {TEXTS[i] for i in fmt.allowed(fmt.follow("category: billing\nerror_code: E-"))}
    assert {"1", "104", "10"} <= allowed and "E-" not in allowed and " hub" not in allowed
    assert " E-999 ok" in {TEXTS[i] for i in fmt.allowed(fmt.follow("category: setup\nerror_code: none\nreply:"))}
    assert fmt.follow("category: setup\nerror_code: none\nreply: anything at all") is REPLY


def test_impossible_or_ambiguous_formats_are_refused():
    no_z = [t for t in TEXTS if "z" not in t]
    with pytest.raises(ValueError, match="No sequence of tokens writes 'category: z'"):
        TicketFormat(no_z, {EOS}, ticket_header(categories=("zebra", "billing")))
    for options in (["bill", "billing"], ["billing", "bill"]):
        with pytest.raises(ValueError, match="is a prefix of"):
            _chain([options, ["!"]])
    with pytest.raises(ValueError, match="empty string"):
        _chain([["", "x"]])
    with pytest.raises(ValueError, match="end-of-answer"):
        TicketFormat(TEXTS, set())
    with pytest.raises(ValueError, match="leaves the format"):
        TicketFormat(TEXTS, {EOS}).follow("categori")


def test_builds_from_the_tiny_models_tokenizer(tiny_onnx):
    from slmops_helpers.deploy.runtime import OnnxCausalLM

    lm = OnnxCausalLM(tiny_onnx, threads=1)
    texts = lm.token_texts()
    assert len(texts) == len(lm.vocab()) and texts[2] == ""  # the end token decodes to nothing
    with pytest.raises(ValueError, match="continues the answer 'category:' inside"):  # its words carry no spaces
        TicketFormat.for_model(lm)
    fmt = TicketFormat(texts, lm.eos_ids, _chain([["category"], [":"], ["billing", "setup"]]))
    assert {texts[i] for i in fmt.allowed(fmt.follow("category:"))} == {"billing", "setup"}
