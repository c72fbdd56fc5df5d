"""JSON by grammar (``deploy.grammar``): the mask lets a valid document through token by token
and nothing else, ends it with the end token, refuses schemas it cannot compile with the
reason, and keeps random and sampled decoding inside the schema on a byte-level tokenizer
and (marked slow) on the course model's own tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slmops_helpers.decoding import Sampler, SamplingParams, greedy_stream
from slmops_helpers.deploy.grammar import GrammarError, JsonGrammar

SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"enum": ["billing", "setup"]},
        "code": {"type": "string", "pattern": "^E-[0-9]{3}$"},
        "n": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["category", "code", "n"],
    "additionalProperties": False,
}
EOS = 256  # the byte tokenizer's end token


@pytest.fixture(scope="module")
def grammar(byte_tokenizer_dir):
    return JsonGrammar((byte_tokenizer_dir / "tokenizer.json").read_text(), {EOS})


@pytest.fixture(scope="module")
def tokenizer(byte_tokenizer_dir):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(byte_tokenizer_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def ids_of(tokenizer):
    return lambda text: tokenizer.encode(text).ids


def test_a_valid_document_passes_token_by_token_then_only_the_end_token(grammar, ids_of):
    cursor = grammar.cursor(SCHEMA)
    for token in ids_of('{"category": "setup", "code": "E-104", "n": 3}'):
        mask = cursor.allowed(grammar.vocab_size)
        assert mask[token] and not mask[EOS]
        cursor.advance(token)
    assert cursor.done and np.flatnonzero(cursor.allowed(grammar.vocab_size)).tolist() == [EOS]


@pytest.mark.parametrize(
    "prefix, bad",
    [
        ("", "["),  # not an object
        ('{"category": "', "x"),  # not in the enum
        ('{"category": "setup", "code": "E-', "a"),  # the pattern wants a digit
        ('{"category": "setup", "code": "E-104", "n": ', "-"),  # minimum 0
        ('{"category": "setup", "code": "E-104", "n": 3', ","),  # no fourth property
        ("{", " "),  # compact: no free whitespace
    ],
)
def test_what_would_leave_the_schema_is_masked(grammar, ids_of, prefix, bad):
    cursor = grammar.cursor(SCHEMA)
    for token in ids_of(prefix):
        cursor.advance(token)
    assert not cursor.allowed(grammar.vocab_size)[ids_of(bad)[0]]


def test_the_mask_covers_padded_logits_and_choose_takes_the_best_allowed(grammar, ids_of):
    cursor = grammar.cursor(SCHEMA)
    mask = cursor.allowed(grammar.vocab_size + 63)  # an embedding padded past the tokenizer
    assert len(mask) == grammar.vocab_size + 63 and not mask[grammar.vocab_size :].any()
    logits = np.zeros(grammar.vocab_size + 63)
    logits[ids_of("[")[0]], logits[ids_of("{")[0]], logits[-1] = 9.0, 1.0, 99.0
    assert cursor.choose(logits) == ids_of("{")[0]


@pytest.mark.parametrize(
    "schema, why",
    [
        ({"type": "string", "pattern": "(unclosed"}, "unclosed group"),
        ({"$ref": "#/$defs/missing"}, "missing"),
        ({"type": "nonsense"}, "nonsense"),
        ("not a schema", "must be an object"),
    ],
)
def test_a_schema_that_cannot_compile_is_refused_with_the_reason(grammar, schema, why):
    with pytest.raises(GrammarError, match=why):
        grammar.compile(schema)


def test_compiled_grammars_are_cached_per_schema(grammar):
    assert grammar.compile(SCHEMA) is grammar.compile(json.loads(json.dumps(SCHEMA)))
    assert grammar.compile(None) == grammar.compile({"type": "object"})  # json_object: any object


def test_properties_come_in_the_schemas_order(grammar, ids_of):
    # "n" before "do": not alphabetical, so a grammar built from a key-sorted copy would refuse it
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "do": {"type": "string"}},
              "required": ["n", "do"], "additionalProperties": False}  # fmt: skip
    cursor = grammar.cursor(schema)
    for token in ids_of('{"n": 1, "do": "x"}'):
        assert cursor.allowed(grammar.vocab_size)[token]
        cursor.advance(token)
    assert cursor.done


def _random_decode(grammar, tokenizer, schema, seed, sampler=None, max_tokens=300):
    """Decode with random logits under the schema's mask (a model that knows nothing)."""
    rng = np.random.default_rng(seed)
    step = lambda new: rng.normal(0, 3, grammar.vocab_size)  # noqa: E731
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    tokens = list(greedy_stream(step, [0], max_tokens, {EOS}, decode, grammar.cursor(schema), sampler))
    assert len(tokens) < max_tokens, "the answer never ended"
    return decode([t.id for t in tokens])


@pytest.mark.parametrize("seed", range(8))
def test_random_and_sampled_decoding_always_validates(grammar, tokenizer, seed):
    import jsonschema

    jsonschema.validate(json.loads(_random_decode(grammar, tokenizer, SCHEMA, seed)), SCHEMA)
    sampler = Sampler(SamplingParams(temperature=1.0, top_p=0.9), np.random.default_rng(seed))
    jsonschema.validate(json.loads(_random_decode(grammar, tokenizer, SCHEMA, seed, sampler)), SCHEMA)


def test_an_empty_end_token_set_is_refused(byte_tokenizer_dir):
    with pytest.raises(ValueError, match="end-of-answer"):
        JsonGrammar((byte_tokenizer_dir / "tokenizer.json").read_text(), set())


@pytest.mark.slow
def test_the_course_tokenizer_writes_valid_json_under_the_mask(course_source):
    """SmolLM2's BPE tokens ("Ġ"-prefixed words, multi-character pieces) map to the right bytes."""
    import jsonschema
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(course_source / "tokenizer.json"))
    eos = tokenizer.token_to_id("<|im_end|>")
    grammar = JsonGrammar((course_source / "tokenizer.json").read_text(), {eos})
    schema = SCHEMA | {"properties": SCHEMA["properties"] | {"reply": {"type": "string", "maxLength": 40}}}
    schema["required"] = [*SCHEMA["required"], "reply"]
    rng = np.random.default_rng(0)
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    for _ in range(3):
        tokens = list(
            greedy_stream(lambda new: rng.normal(0, 3, size), [1], 200, {eos}, decode, grammar.cursor(schema))
        )
        jsonschema.validate(json.loads(decode([t.id for t in tokens])), schema)
