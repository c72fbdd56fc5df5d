"""JSON by grammar: answers that parse and validate against a JSON schema, whatever the model.

``response_format`` ``{"type": "json_schema", ...}`` or ``{"type": "json_object"}`` turns the
schema into a grammar, and at every step only the tokens that keep the answer a prefix of
some valid document may be chosen: the same idea as the ticket format's mask
(``constrained``), for a language a trie cannot hold (nesting, numbers, escapes, patterns).

The grammar engine is llguidance, the field library behind onnxruntime-genai's guidance,
llama.cpp's ``%llguidance`` grammars and one of vLLM's structured-output back ends. It was
chosen by measurement against xgrammar and outlines-core on the course tokenizer
(``benchmarks/grammar_engines.py``): all three compiled the benchmark's schemas; llguidance
compiled each in milliseconds and computed a token mask in a few hundredths of a
millisecond, installs as one small wheel with no dependency, and never imports torch;
xgrammar masks as fast but imports torch and requires transformers and triton, which a
deployed server must not carry; outlines-core builds each schema's whole index up front,
seconds for an open-ended schema such as ``json_object``.

The JSON is written compactly on one line (``{"a": 1, "b": [2, 3]}``): no free whitespace,
so a small model cannot pad an answer with blank lines until ``max_tokens`` runs out.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

# One line, Python's json.dumps separators: no whitespace the model could repeat forever.
COMPILE_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
ANY_OBJECT: dict[str, Any] = {"type": "object"}  # response_format json_object: any JSON object


class GrammarError(ValueError):
    """A schema the grammar engine cannot compile (the message says why)."""


def _one_line(message: str) -> str:
    return " ".join(message.split())  # the engine's messages span lines (a regex error draws a caret)


class JsonGrammar:
    """JSON schemas turned into token masks for one tokenizer; ``cursor(schema)`` starts one answer.

    ``tokenizer_json`` is the text of the model's ``tokenizer.json``; ``eos_ids`` end an
    answer (allowed once the document is complete)."""

    def __init__(self, tokenizer_json: str, eos_ids: set[int]) -> None:
        import llguidance

        if not eos_ids:
            raise ValueError("JsonGrammar needs the model's end-of-answer token ids.")
        self._llg = llguidance
        self.tokenizer = llguidance.LLTokenizer(tokenizer_json, eos_token=sorted(eos_ids))
        self.vocab_size = self.tokenizer.vocab_size
        self._compile = lru_cache(maxsize=32)(self._compile_uncached)  # a client repeats its schema

    @classmethod
    def for_model(cls, lm: Any) -> JsonGrammar:
        """Built from a runtime model with a folder (``OnnxCausalLM``, ``LlamaCppLM``)."""
        return cls((Path(lm.folder) / "tokenizer.json").read_text(encoding="utf-8"), lm.eos_ids)

    def compile(self, schema: dict[str, Any] | None = None) -> str:
        """The grammar of ``schema`` (``None``: any JSON object); ``GrammarError`` saying why
        when the engine cannot compile it."""
        if schema is not None and not isinstance(schema, dict):
            raise GrammarError(f"A JSON schema must be an object; got {type(schema).__name__}.")
        # Key order is kept: the engine writes properties in the order the schema lists them.
        return self._compile(json.dumps(ANY_OBJECT if schema is None else schema))

    def _compile_uncached(self, schema_json: str) -> str:
        try:
            grammar = self._llg.LLMatcher.grammar_from_json_schema(schema_json, overrides=COMPILE_OPTIONS)
        except ValueError as err:
            raise GrammarError(_one_line(str(err))) from err
        is_error, messages = self._llg.LLMatcher.validate_grammar_with_warnings(grammar, self.tokenizer)
        if is_error:
            raise GrammarError(_one_line(messages[0]))
        return grammar

    def cursor(self, schema: dict[str, Any] | None = None) -> JsonCursor:
        """One answer's position in the grammar of ``schema``: a ``decoding.Constraint``."""
        matcher = self._llg.LLMatcher(self.tokenizer, self.compile(schema), log_level=0)
        if matcher.is_error():
            raise GrammarError(_one_line(matcher.get_error()))
        return JsonCursor(matcher, self.vocab_size)


class JsonCursor:
    """A ``decoding.Constraint`` over an llguidance matcher."""

    def __init__(self, matcher: Any, vocab_size: int) -> None:
        self.matcher, self.vocab_size = matcher, vocab_size

    def allowed(self, vocab_size: int) -> np.ndarray:
        """The tokens that keep the answer inside the grammar, as a mask over ``vocab_size`` logits
        (ids past the tokenizer's vocabulary, padding rows of the embedding, are never allowed)."""
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        mask = np.unpackbits(bits, bitorder="little")[: self.vocab_size].view(bool)
        if self.matcher.is_error():
            raise RuntimeError(f"The JSON grammar failed: {self.matcher.get_error()}")
        if vocab_size > len(mask):
            mask = np.concatenate([mask, np.zeros(vocab_size - len(mask), dtype=bool)])
        return mask[:vocab_size]

    def choose(self, logits: np.ndarray) -> int:
        """The highest-scoring token the grammar allows here."""
        allowed = np.flatnonzero(self.allowed(len(logits)))
        return int(allowed[np.argmax(logits[allowed])])

    def advance(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"Token {token} left the JSON grammar: {self.matcher.get_error()}")

    @property
    def done(self) -> bool:
        """True once the document is complete (only the end token may follow)."""
        return self.matcher.is_stopped() or self.matcher.is_accepting()
