"""Which grammar engine decodes JSON for ``slmops serve``: llguidance, xgrammar and outlines-core
on the course tokenizer (SmolLM2, 49,152 tokens), measured the way the server uses them.

    .venv/bin/python benchmarks/grammar_engines.py [--tokenizer DIR]

For each schema of a small coverage set (enums, patterns, bounds, nesting, arrays, anyOf,
$ref, recursion, formats, tuples), and each engine that is installed: whether it compiles,
how long compiling takes, and the time to compute one token mask while walking a valid
document token by token (median and p95 over every step of every schema). The course
installs only the winner (llguidance); to measure the others, install them beside it:
``pip install outlines-core==0.2.14`` and ``pip install xgrammar==0.2.8`` (which pulls in
torch, transformers and triton). A benchmark, not a unit test: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SEPARATORS = (", ", ": ")  # the server's compact JSON (deploy.grammar.COMPILE_OPTIONS)

# (name, schema, a valid document): the document is walked token by token under each engine's mask.
SCHEMAS: list[tuple[str, dict[str, Any], Any]] = [
    (
        "ticket (enum, pattern, maxLength)",
        {
            "type": "object",
            "properties": {
                "category": {"enum": ["billing", "connectivity", "setup", "hardware", "account"]},
                "error_code": {"type": "string", "pattern": "^(none|E-[0-9]{3})$"},
                "reply": {"type": "string", "maxLength": 160},
            },
            "required": ["category", "error_code", "reply"],
            "additionalProperties": False,
        },
        {"category": "setup", "error_code": "E-104", "reply": "Unplug the hub for ten seconds, then pair it again."},
    ),
    (
        "numbers with bounds",
        {
            "type": "object",
            "properties": {"rating": {"type": "integer", "minimum": 1, "maximum": 5}, "score": {"type": "number"}},
            "required": ["rating", "score"],
            "additionalProperties": False,
        },
        {"rating": 4, "score": 0.875},
    ),
    (
        "nested array of objects",
        {
            "type": "object",
            "properties": {
                "steps": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 4,
                    "items": {
                        "type": "object",
                        "properties": {"n": {"type": "integer"}, "do": {"type": "string"}},
                        "required": ["n", "do"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["steps"],
            "additionalProperties": False,
        },
        {"steps": [{"n": 1, "do": "restart the hub"}, {"n": 2, "do": "update the app"}]},
    ),
    (
        "anyOf and nullable",
        {
            "type": "object",
            "properties": {
                "code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "n": {"type": ["integer", "null"]},
            },
            "required": ["code", "n"],
            "additionalProperties": False,
        },
        {"code": None, "n": 3},
    ),
    (
        "$defs and $ref",
        {
            "$defs": {"device": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}},
            "type": "object",
            "properties": {"hub": {"$ref": "#/$defs/device"}, "phone": {"$ref": "#/$defs/device"}},
            "required": ["hub", "phone"],
            "additionalProperties": False,
        },
        {"hub": {"id": "K2-1"}, "phone": {"id": "p-7"}},
    ),
    (
        "recursive tree",
        {
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                    },
                    "required": ["name", "children"],
                    "additionalProperties": False,
                }
            },
            "$ref": "#/$defs/node",
        },
        {"name": "root", "children": [{"name": "leaf", "children": []}]},
    ),
    (
        "string formats",
        {
            "type": "object",
            "properties": {
                "when": {"type": "string", "format": "date-time"},
                "mail": {"type": "string", "format": "email"},
            },
            "required": ["when", "mail"],
            "additionalProperties": False,
        },
        {"when": "2025-03-01T10:00:00Z", "mail": "ann@example.com"},
    ),
    (
        "tuple (prefixItems)",
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
        ["E-104", 3],
    ),
    (
        "dictionary (additionalProperties schema)",
        {"type": "object", "additionalProperties": {"type": "integer"}},
        {"a": 1, "b": 2},
    ),
    (
        "1,001-value enum",
        {
            "type": "object",
            "properties": {"code": {"enum": ["none"] + [f"E-{i:03d}" for i in range(1000)]}},
            "required": ["code"],
            "additionalProperties": False,
        },  # fmt: skip
        {"code": "E-731"},
    ),
    ("any JSON object (json_object)", {"type": "object"}, {"a": [1, 2, {"b": None}], "c": "x"}),
]


def document(value: Any) -> str:
    return json.dumps(value, separators=SEPARATORS)


# --- each engine behind the same three calls: compile, mask, advance -----------------------------


class Engine:
    name: str

    def compile(self, schema: dict[str, Any]) -> Any: ...

    def start(self, compiled: Any) -> Any: ...

    def mask(self, state: Any) -> np.ndarray: ...  # bool over the vocabulary

    def advance(self, state: Any, token: int) -> Any: ...


class Llguidance(Engine):
    name = "llguidance"

    def __init__(self, tokenizer_json: str, eos: int) -> None:
        from slmops_helpers.deploy.grammar import JsonGrammar

        self.grammar = JsonGrammar(tokenizer_json, {eos})

    def compile(self, schema):
        return schema if self.grammar.compile(schema) else None

    def start(self, compiled):
        return self.grammar.cursor(compiled)

    def mask(self, state):
        return state.allowed(self.grammar.vocab_size)

    def advance(self, state, token):
        state.advance(token)
        return state


class OutlinesCore(Engine):
    name = "outlines-core"

    def __init__(self, vocab: dict[str, int], eos: int) -> None:
        import outlines_core

        self.oc, self.eos, self.size = outlines_core, eos, len(vocab)
        decoder = byte_decoder()
        tokens: dict[bytes, list[int]] = {}
        for text, i in vocab.items():
            if i != eos and all(c in decoder for c in text):
                tokens.setdefault(bytes(decoder[c] for c in text), []).append(i)
        self.vocabulary = outlines_core.Vocabulary(eos, tokens)

    def compile(self, schema):
        regex = self.oc.json_schema.build_regex_from_schema(json.dumps(schema), whitespace_pattern=" ?")
        return self.oc.Index(regex, self.vocabulary)

    def start(self, compiled):
        return self.oc.Guide(compiled)

    def mask(self, state):
        out = np.zeros(self.size, dtype=bool)
        out[np.array(state.get_tokens(), dtype=np.int64)] = True
        return out

    def advance(self, state, token):
        state.advance(token)
        return state


class Xgrammar(Engine):
    name = "xgrammar"

    def __init__(self, tokenizer_json: str, size: int, eos: int) -> None:
        import xgrammar

        self.xgr = xgrammar
        info = xgrammar.TokenizerInfo(
            vocab_by_id(tokenizer_json, size), xgrammar.VocabType.BYTE_LEVEL, vocab_size=size, stop_token_ids=[eos]
        )
        self.compiler, self.size = xgrammar.GrammarCompiler(info, cache_enabled=False), size
        self.bitmask = xgrammar.allocate_token_bitmask(1, size)

    def compile(self, schema):
        return self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, separators=SEPARATORS)

    def start(self, compiled):
        return self.xgr.GrammarMatcher(compiled)

    def mask(self, state):
        state.fill_next_token_bitmask(self.bitmask)
        bits = self.bitmask.numpy()[0].view(np.uint8)
        return np.unpackbits(bits, bitorder="little")[: self.size].astype(bool)

    def advance(self, state, token):
        if not state.accept_token(token):
            raise ValueError(f"xgrammar refused token {token}")
        return state


def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-character table, inverted: a byte-level BPE token string back to its bytes."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def vocab_by_id(tokenizer_json: str, size: int) -> list[str]:
    vocab = json.loads(tokenizer_json)["model"]["vocab"]
    out = [""] * size
    for text, i in vocab.items():
        if i < size:
            out[i] = text
    for added in json.loads(tokenizer_json).get("added_tokens", []):
        if added["id"] < size:
            out[added["id"]] = added["content"]
    return out


# --- the measurement ---------------------------------------------------------------------------


def walk(engine: Engine, state: Any, ids: list[int]) -> list[float]:
    """Mask times (s) at every step of the document's tokens; each token must be allowed."""
    times = []
    for token in ids:
        start = time.perf_counter()
        mask = engine.mask(state)
        times.append(time.perf_counter() - start)
        if not mask[token]:
            raise ValueError(f"{engine.name} forbade token {token} of a valid document")
        state = engine.advance(state, token)
    return times


def measure(engines: list[Engine], encode: Callable[[str], list[int]]) -> list[dict[str, Any]]:
    rows = []
    for engine in engines:
        compiled_ok, compile_s, mask_s, failures, slowest = 0, [], [], [], ("", 0.0)
        for name, schema, doc in SCHEMAS:
            start = time.perf_counter()
            try:
                state = engine.start(engine.compile(schema))  # compiling includes the matcher's own set-up
                compile_s.append(time.perf_counter() - start)
                slowest = max(slowest, (name, compile_s[-1]), key=lambda pair: pair[1])
                mask_s += walk(engine, state, encode(document(doc)))
                compiled_ok += 1
            except Exception as err:  # an engine's refusal is a result here, not a crash
                failures.append(f"{name}: {type(err).__name__}: {str(err)[:90]}")
        rows.append(
            {
                "engine": engine.name,
                "schemas": f"{compiled_ok}/{len(SCHEMAS)}",
                "compile_ms_median": 1000 * statistics.median(compile_s) if compile_s else float("nan"),
                "compile_ms_max": 1000 * max(compile_s) if compile_s else float("nan"),
                "mask_ms_p50": 1000 * statistics.median(mask_s) if mask_s else float("nan"),
                "mask_ms_p95": 1000 * float(np.percentile(mask_s, 95)) if mask_s else float("nan"),
                "failures": failures,
                "slowest": f"{slowest[0]} ({1000 * slowest[1]:.0f} ms)",
            }
        )
    return rows


class TimedCursor:
    """A grammar cursor that times its own work (the mask and the step past a token)."""

    def __init__(self, cursor: Any) -> None:
        self.cursor, self.seconds = cursor, []

    def _timed(self, call: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        out = call(*args)
        self.seconds.append(time.perf_counter() - start)
        return out

    def choose(self, logits: np.ndarray) -> int:
        return self._timed(self.cursor.choose, logits)

    def allowed(self, vocab_size: int) -> np.ndarray:
        return self._timed(self.cursor.allowed, vocab_size)

    def advance(self, token: int) -> None:
        self._timed(self.cursor.advance, token)


def in_the_decode_loop(variant: Path, runs: int = 3) -> dict[str, float]:
    """The grammar's share of each token when the course's ONNX loop answers a ticket as JSON
    (greedy, the ticket schema): ms per token of the whole step and of the grammar's calls."""
    from slmops_helpers import data
    from slmops_helpers.deploy.grammar import JsonGrammar
    from slmops_helpers.deploy.runtime import OnnxCausalLM

    lm = OnnxCausalLM(variant)
    grammar, schema = JsonGrammar.for_model(lm), SCHEMAS[0][1]
    ids = lm.encode(lm.chat_prompt([{"role": "user", "content": data.load_splits()["validation"][0]["message"]}]))
    step_s, grammar_s, free_s = [], [], []
    for _ in range(runs):
        cursor = TimedCursor(grammar.cursor(schema))
        tokens = list(lm.stream(ids, 96, constraint=cursor))
        step_s += [t.seconds for t in tokens[1:]]  # after the prompt pass: one cached forward + the mask
        grammar_s.append(sum(cursor.seconds) / len(tokens))
        free_s += [t.seconds for t in list(lm.stream(ids, len(tokens), stop_at_eos=False))[1:]]
    return {
        "tokens": len(tokens),
        "step_ms_p50": 1000 * statistics.median(step_s),
        "free_step_ms_p50": 1000 * statistics.median(free_s),
        "grammar_ms_per_token": 1000 * statistics.median(grammar_s),
    }


def requirements(dist: str) -> str:
    """What installing ``dist`` pulls in (its declared dependencies, extras left out)."""
    from importlib import metadata

    needs = [r.split(";")[0].strip() for r in metadata.requires(dist) or [] if "extra ==" not in r]
    return ", ".join(needs) or "nothing"


def installed_mib(dist: str) -> float:
    """Bytes a distribution's own files take on disk (not its dependencies)."""
    from importlib import metadata

    files = metadata.distribution(dist).files or []
    return sum(f.locate().stat().st_size for f in files if f.locate().is_file()) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", help="folder with tokenizer.json (default: the prepared course model)")
    parser.add_argument("--onnx", help="an exported ONNX folder: also time the grammar inside the decode loop")
    args = parser.parse_args()
    if args.tokenizer:
        folder = Path(args.tokenizer)
    else:
        from slmops_helpers.models import DEFAULT_MODEL, prepare_model

        folder = Path(prepare_model(DEFAULT_MODEL))
    from tokenizers import Tokenizer

    text = (folder / "tokenizer.json").read_text(encoding="utf-8")
    tokenizer = Tokenizer.from_str(text)
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    eos = tokenizer.token_to_id("<|im_end|>") or tokenizer.token_to_id("<|endoftext|>") or 0

    def encode(doc: str) -> list[int]:
        return tokenizer.encode(doc, add_special_tokens=False).ids

    engines: list[Engine] = []
    for build in (
        lambda: Llguidance(text, eos),
        lambda: OutlinesCore(tokenizer.get_vocab(with_added_tokens=True), eos),
        lambda: Xgrammar(text, size, eos),
    ):
        try:
            engines.append(build())
        except ImportError as err:
            print(f"skipped: {err}")
    print(f"tokenizer {folder.name}: {size} tokens; {len(SCHEMAS)} schemas")
    print(f"{'engine':<14} {'schemas':>8} {'compile ms (median/max)':>24} {'mask ms p50':>12} {'p95':>8} {'MiB':>6}")
    for row in measure(engines, encode):
        dist = {"outlines-core": "outlines_core"}.get(row["engine"], row["engine"])
        compile_ms = f"{row['compile_ms_median']:.1f} / {row['compile_ms_max']:.1f}"
        print(
            f"{row['engine']:<14} {row['schemas']:>8} {compile_ms:>24} {row['mask_ms_p50']:>12.3f} "
            f"{row['mask_ms_p95']:>8.3f} {installed_mib(dist):>6.1f}"
        )
        for failure in row["failures"]:
            print(f"    refused {failure}")
        print(f"    slowest compile: {row['slowest']}; needs: {requirements(dist)}")
    if args.onnx:
        loop = in_the_decode_loop(Path(args.onnx))
        print(
            f"in the decode loop ({Path(args.onnx).name}, {loop['tokens']} JSON tokens, greedy): "
            f"{loop['step_ms_p50']:.1f} ms per token under the grammar vs {loop['free_step_ms_p50']:.1f} free; "
            f"the grammar's own calls {loop['grammar_ms_per_token']:.3f} ms per token"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
