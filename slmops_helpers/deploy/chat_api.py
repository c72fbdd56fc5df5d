"""OpenAI's chat completions protocol as ``slmops serve`` speaks it: the request, validated
field by field (``parse_chat_request``: every bad value is a ``RequestError`` naming the fix,
every field the server does not serve is refused by name), and the response objects, whole
(``completion``) or streamed (``chunks``), built from the events an answer produces
(``Piece``, ``Finish``, ``Usage``). No model and no HTTP here: ``serve`` has both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..decoding import MAX_TOP_LOGPROBS, SamplingParams, StreamedToken

ROLES = ("system", "developer", "user", "assistant")
MAX_STOP = 4  # OpenAI's own limit on stop sequences
RESPONSE_FORMATS = ("text", "json_object", "json_schema", "ticket_format")


@dataclass(frozen=True)
class ServeConfig:
    max_tokens: int = 256  # per answer
    max_prompt_tokens: int = 1024
    max_body_bytes: int = 64_000
    max_waiting: int = 32  # requests queued behind the one being answered
    max_n: int = 4  # answers per request: each one is a whole generation on the same cores

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"ServeConfig.{name} must be >= 1, got {value}.")


class RequestError(Exception):
    """A client mistake: becomes a 4xx JSON answer."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


# --- the request: every field, served or refused by name ----------------------------------

NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
# Each parameter this server serves, as the OpenAPI description shows it. Anything else is
# refused with a 400 naming it: a client that asks for something and silently gets
# something else is worse off.
PARAMETERS: dict[str, dict[str, Any]] = {
    "model": {"type": "string", "description": "The served model's name (GET /v1/models); may be left out."},
    "messages": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"enum": list(ROLES)},
                "content": {
                    "anyOf": [
                        {"type": "string"},
                        {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                            },
                        },
                    ]
                },
                "name": {"type": "string"},
            },
        },
    },
    "max_tokens": INTEGER | {"minimum": 1, "description": "Tokens per answer, at most the server's limit."},
    "max_completion_tokens": INTEGER | {"minimum": 1, "description": "The newer name of max_tokens."},
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": MAX_STOP}]},
    "n": INTEGER | {"minimum": 1, "description": "Answers per request, at most the server's limit."},
    "seed": INTEGER | {"description": "Same seed and request: same answers."},
    "temperature": NUMBER | {"minimum": 0, "maximum": 2, "description": "0 (the default) decodes greedily."},
    "top_p": NUMBER | {"exclusiveMinimum": 0, "maximum": 1},
    "top_k": INTEGER | {"minimum": -1, "description": "0 or -1: off."},
    "min_p": NUMBER | {"minimum": 0, "maximum": 1},
    "presence_penalty": NUMBER | {"minimum": -2, "maximum": 2},
    "frequency_penalty": NUMBER | {"minimum": -2, "maximum": 2},
    "logprobs": {"type": "boolean"},
    "top_logprobs": INTEGER | {"minimum": 0, "maximum": MAX_TOP_LOGPROBS},
    "response_format": {
        "type": "object",
        "properties": {"type": {"enum": list(RESPONSE_FORMATS)}, "json_schema": {"type": "object"}},
    },
    "user": {"type": "string", "description": "Accepted as metadata; not used."},
}
CHAT_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["messages"],
    "additionalProperties": False,
    "properties": PARAMETERS,
}


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat request (``parse_chat_request``)."""

    messages: list[dict[str, str]]  # string contents; developer messages as system ones
    max_tokens: int
    stream: bool = False
    stop: tuple[str, ...] = ()
    n: int = 1
    seed: int | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    logprobs: bool = False
    response_format: str = "text"  # one of RESPONSE_FORMATS
    schema: dict[str, Any] | None = None  # json_schema's schema
    include_usage: bool = False


def _invalid(name: str, rule: str, value: Any) -> RequestError:
    return RequestError(400, f"'{name}' must be {rule}; got {value!r:.80}.", f"invalid_{name}", name)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))


def _text(i: int, content: Any) -> str:
    """A message's content as one string: a string, or a list of text parts joined by newlines."""
    if isinstance(content, str):
        return content
    where = f"messages[{i}].content"
    if not isinstance(content, list) or not content:
        raise RequestError(
            400, f"{where} must be a string or a non-empty list of text parts.", "invalid_messages", "messages"
        )
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            raise RequestError(
                400,
                f"{where}[{j}] has type {kind!r}; this server reads text only. "
                'Fix: send {"type": "text", "text": "..."} parts (or a plain string).',
                "unsupported_content_part",
                "messages",
            )
        if not isinstance(part.get("text"), str) or set(part) - {"type", "text"}:
            raise RequestError(
                400, f'{where}[{j}] must be {{"type": "text", "text": "<a string>"}}.', "invalid_messages", "messages"
            )
        texts.append(part["text"])
    return "\n".join(texts)


def _messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise RequestError(
            400, "'messages' must be a non-empty list of {role, content} objects.", "invalid_messages", "messages"
        )
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or "content" not in message:
            raise RequestError(
                400,
                f"messages[{i}] needs 'role' in {list(ROLES)} and a 'content' (a string or a list of text parts).",
                "invalid_messages",
                "messages",
            )
        unknown = sorted(set(message) - {"role", "content", "name"})
        if unknown:
            raise RequestError(
                400,
                f"messages[{i}] has fields {unknown} this server does not serve (no tools); send role and content.",
                "unsupported_parameter",
                "messages",
            )
        role = "system" if message["role"] == "developer" else message["role"]  # OpenAI's newer name for system
        out.append({"role": role, "content": _text(i, message["content"])})
    return out


def _sampling(request: dict[str, Any]) -> SamplingParams:
    values: dict[str, Any] = {}
    ranges = {  # name: (accepted, rule)
        "temperature": (lambda v: _is_number(v) and 0 <= v <= 2, "a number between 0 and 2 (0 decodes greedily)"),
        "top_p": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1] (1 keeps every token)"),
        "top_k": (lambda v: _is_int(v) and v >= -1, "an integer >= 0 (0 or -1 keeps every token)"),
        "min_p": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1] (0 keeps every token)"),
        "presence_penalty": (lambda v: _is_number(v) and -2 <= v <= 2, "a number between -2 and 2"),
        "frequency_penalty": (lambda v: _is_number(v) and -2 <= v <= 2, "a number between -2 and 2"),
    }
    for name, (accepted, rule) in ranges.items():
        value = request.get(name)
        if value is None:
            continue
        if not accepted(value):
            raise _invalid(name, rule, value)
        values[name] = max(value, 0) if name == "top_k" else float(value)
    logprobs = request.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise _invalid("logprobs", "true or false", logprobs)
    top = request.get("top_logprobs")
    if top is not None:
        if not _is_int(top) or not 0 <= top <= MAX_TOP_LOGPROBS:
            raise _invalid("top_logprobs", f"an integer in [0, {MAX_TOP_LOGPROBS}]", top)
        if top and not logprobs:
            raise RequestError(
                400, "'top_logprobs' needs 'logprobs': true. Fix: send both.", "invalid_top_logprobs", "top_logprobs"
            )
    if logprobs:
        values["top_logprobs"] = top or 0
    return SamplingParams(**values)


def _response_format(value: Any) -> tuple[str, dict[str, Any] | None]:
    kind = value.get("type") if isinstance(value, dict) else None
    if value is None:
        return "text", None
    if kind not in RESPONSE_FORMATS:
        raise RequestError(
            400,
            f"Unsupported value for 'response_format': send {{'type': T}} with T in {list(RESPONSE_FORMATS)}.",
            "unsupported_parameter",
            "response_format",
        )
    extra = sorted(set(value) - {"type", "json_schema"} if kind == "json_schema" else set(value) - {"type"})
    if extra:
        raise RequestError(
            400, f"response_format {kind!r} takes no fields {extra}.", "invalid_response_format", "response_format"
        )
    if kind != "json_schema":
        return kind, None
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise RequestError(
            400,
            "response_format json_schema needs 'json_schema': {'name': ..., 'schema': {<a JSON schema object>}}.",
            "invalid_response_format",
            "response_format",
        )
    unknown = sorted(set(spec) - {"name", "schema", "strict", "description"})
    if unknown or not isinstance(spec.get("name", ""), str):
        raise RequestError(
            400,
            f"json_schema takes 'name', 'schema', 'strict' and 'description'; got {sorted(spec)}.",
            "invalid_response_format",
            "response_format",
        )
    return kind, spec["schema"]


def parse_chat_request(body: bytes, model_name: str, limits: ServeConfig) -> ChatRequest:
    """Validate a /v1/chat/completions body; ``RequestError`` naming the fix when it is not."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"Body is not valid JSON ({err}).", "invalid_json") from err
    if not isinstance(request, dict):
        raise RequestError(400, "Body must be a JSON object.", "invalid_request")
    unknown = [name for name in request if name not in PARAMETERS]
    if unknown:
        raise RequestError(
            400,
            f"Unknown or unsupported parameter '{unknown[0]}'. This server accepts {sorted(PARAMETERS)} "
            "(see /openapi.json).",
            "unsupported_parameter",
            unknown[0],
        )
    if request.get("model", model_name) != model_name:
        raise RequestError(
            404, f"Model {request['model']!r} is not served here; use {model_name!r}.", "model_not_found", "model"
        )
    messages = _messages(request.get("messages"))
    # null means "not given" for every optional field, as in OpenAI's own API description
    given = {name: request[name] for name in ("max_tokens", "max_completion_tokens") if request.get(name) is not None}
    if len(set(map(repr, given.values()))) > 1:
        raise RequestError(
            400,
            f"'max_tokens' ({given['max_tokens']!r}) and 'max_completion_tokens' ({given['max_completion_tokens']!r}) "
            "differ. Fix: send one of them.",
            "invalid_max_tokens",
            "max_tokens",
        )
    max_tokens = next(iter(given.values()), limits.max_tokens)
    if not _is_int(max_tokens) or not 1 <= max_tokens <= limits.max_tokens:
        raise RequestError(
            400, f"'max_tokens' must be an integer in [1, {limits.max_tokens}].", "invalid_max_tokens", "max_tokens"
        )
    stream = False if request.get("stream") is None else request["stream"]
    if not isinstance(stream, bool):
        raise RequestError(400, "'stream' must be true or false.", "invalid_stream", "stream")
    options = request.get("stream_options")
    if options is not None:
        if not stream:
            raise _invalid("stream_options", "sent only with 'stream': true", options)
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise _invalid("stream_options", '{"include_usage": true or false}', options)
        if not isinstance(options.get("include_usage", False), bool):
            raise _invalid("stream_options", '{"include_usage": true or false}', options)
    n = 1 if request.get("n") is None else request["n"]
    if not _is_int(n) or not 1 <= n <= limits.max_n:
        raise _invalid("n", f"an integer in [1, {limits.max_n}] (answers per request on this server)", n)
    seed = request.get("seed")
    if seed is not None and not _is_int(seed):
        raise _invalid("seed", "an integer", seed)
    user = request.get("user")
    if user is not None and not isinstance(user, str):
        raise _invalid("user", "a string", user)
    kind, schema = _response_format(request.get("response_format"))
    sampling = _sampling(request)
    return ChatRequest(
        messages=messages,
        max_tokens=max_tokens,
        stream=stream,
        stop=tuple(_stop_list(request.get("stop"))),
        n=n,
        seed=seed,
        sampling=sampling,
        logprobs=sampling.top_logprobs is not None,
        response_format=kind,
        schema=schema,
        include_usage=bool((options or {}).get("include_usage", False)),
    )


def _stop_list(stop: Any) -> list[str]:
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(x, str) and x for x in stops) or len(stops) > MAX_STOP:
        raise RequestError(
            400,
            f"'stop' must be a non-empty string or a list of at most {MAX_STOP} non-empty strings.",
            "invalid_stop",
            "stop",
        )
    return stops


def cut_at_stop(
    tokens: Iterable[StreamedToken], stops: Iterable[str]
) -> Generator[tuple[str, list[StreamedToken]], None, bool]:
    """Pass the tokens' text through until one of ``stops`` appears; yield ``(text, tokens)``
    pieces, each with the tokens whose text starts in it, and end before the stop string.
    Holds back only as many characters as a stop string could still be completed with, so
    streaming stays incremental. The generator's return value says whether a stop string
    ended the text."""
    stops = list(stops)
    if not stops:
        for token in tokens:
            yield token.text, [token]
        return False
    hold, buffer = max(map(len, stops)) - 1, ""
    pending: list[tuple[int, StreamedToken]] = []  # (where its text starts in buffer, token)
    for token in tokens:
        pending.append((len(buffer), token))
        buffer += token.text
        hits = [i for i in (buffer.find(s) for s in stops) if i >= 0]
        if hits:
            cut = min(hits)
            if buffer[:cut]:
                yield buffer[:cut], [t for start, t in pending if start < cut]
            return True
        if len(buffer) > hold:
            release = len(buffer) - hold
            yield buffer[:release], [t for start, t in pending if start < release]
            buffer = buffer[release:]
            pending = [(start - release, t) for start, t in pending if start >= release]
    if buffer or pending:
        yield buffer, [t for _, t in pending]
    return False


# --- what an answer produces, and OpenAI's response shapes --------------------------------


@dataclass(frozen=True)
class Piece:
    """Text of answer ``index``, with the tokens it came from (their log-probabilities)."""

    index: int
    text: str
    tokens: tuple[StreamedToken, ...] = ()


@dataclass(frozen=True)
class Finish:
    index: int
    reason: str  # "stop": end token or stop string; "length": max_tokens reached


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int  # every answer's tokens, as OpenAI counts them


def _logprobs(token_text: Callable[[int], str], tokens: Iterable[StreamedToken]) -> dict[str, Any]:
    def entry(token: int, logprob: float) -> dict[str, Any]:
        text = token_text(token)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    content = [
        entry(t.id, t.logprob) | {"top_logprobs": [entry(i, lp) for i, lp in t.top_logprobs]}
        for t in tokens
        if t.logprob is not None
    ]
    return {"content": content, "refusal": None}


def completion(
    model: str,
    request: ChatRequest,
    events: list[Piece | Finish | Usage],
    completion_id: str,
    token_text: Callable[[int], str],
) -> dict[str, Any]:
    """The ``chat.completion`` object for a whole (non-streamed) request; ``token_text`` names a
    token id in the log-probabilities."""
    texts: dict[int, list[str]] = {i: [] for i in range(request.n)}
    tokens: dict[int, list[StreamedToken]] = {i: [] for i in range(request.n)}
    finish: dict[int, str] = {}
    usage = Usage(0, 0)
    for event in events:
        if isinstance(event, Piece):
            texts[event.index].append(event.text)
            tokens[event.index] += event.tokens
        elif isinstance(event, Finish):
            finish[event.index] = event.reason
        else:
            usage = event
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": "".join(texts[i])},
            "logprobs": _logprobs(token_text, tokens[i]) if request.logprobs else None,
            "finish_reason": finish[i],
        }
        for i in range(request.n)
    ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage(usage),
    }


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def chunks(
    model: str,
    request: ChatRequest,
    events: Iterable[Piece | Finish | Usage],
    completion_id: str,
    token_text: Callable[[int], str],
) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed request, one per event; with
    ``include_usage``, every chunk has ``usage`` (null) and a last one has the counts."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
        out = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        out["choices"] = choices
        return out | ({"usage": usage} if request.include_usage else {})

    def choice(index: int, delta: dict[str, Any], finish: str | None, logprobs: Any = None) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}

    yield chunk([choice(i, {"role": "assistant", "content": ""}, None) for i in range(request.n)])
    for event in events:
        if isinstance(event, Piece):
            logprobs = _logprobs(token_text, event.tokens) if request.logprobs else None
            yield chunk([choice(event.index, {"content": event.text}, None, logprobs)])
        elif isinstance(event, Finish):
            yield chunk([choice(event.index, {}, event.reason)])
        elif request.include_usage:
            yield chunk([], _usage(event))


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
