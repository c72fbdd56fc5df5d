"""``slmops serve PACKAGE``: a local, OpenAI-compatible chat server for one package, ONNX or
GGUF (``package.load_package`` picks onnxruntime or llama.cpp from the manifest; every
limit, error and parameter below is the same for both).

Endpoints: ``POST /v1/chat/completions`` (``"stream": true`` sends server-sent events, as
OpenAI's API does: one per token as it is generated; an error after the stream has
started comes as a last ``data: {"error": ...}`` event, then the stream ends),
``GET /v1/models``, ``GET /health``, and the API's OpenAPI description at
``/openapi.json`` (browsable at ``/docs``). Bound to loopback. Every request is bounded
(body size, prompt tokens, ``max_tokens``, ``n``, requests waiting); anything malformed
gets a 4xx JSON error in OpenAI's shape naming the fix, and the server carries on.
Generation is one request at a time (a 2-core device gains nothing from running two at
once); other requests wait their turn, up to ``max_waiting``.

OpenAI parameters served:

- ``messages``: roles ``system``, ``developer`` (read as system), ``user``, ``assistant``;
  ``content`` a string or a list of ``{"type": "text", "text": ...}`` parts (joined by
  newlines; other part types are refused by name);
- ``max_tokens`` / ``max_completion_tokens``, ``stream``, ``stream_options``
  (``include_usage``: a last chunk with the token counts), ``stop`` (the answer ends
  before the first stop string, ``finish_reason: "stop"``), ``n`` answers per request;
- sampling (``decoding.SamplingParams``): ``temperature`` (0, the default, is greedy: the
  answers the notebooks measure), ``top_p``, ``presence_penalty``, ``frequency_penalty``,
  and llama.cpp's and vLLM's ``top_k`` and ``min_p``; ``seed`` makes a sampled answer
  reproducible (same seed, same request, same answers);
- ``logprobs`` / ``top_logprobs``: the model's own log-probability of each answer token and
  of the most likely tokens at its position;
- ``response_format``: ``{"type": "text"}`` (the default); ``json_object`` (any JSON
  object) and ``json_schema`` (``{"name": ..., "schema": {...}}``), both decoded under a
  grammar (``grammar``: llguidance), so the answer parses and validates unless
  ``max_tokens`` cut it (``finish_reason: "length"``); and this server's own
  ``{"type": "ticket_format"}``: the course's three-line format under its token mask
  (``constrained``);
- ``user`` is accepted as metadata and not used. Every other field (``tools``,
  ``logit_bias``, a typo) is refused with a 400 naming it, never silently ignored.

The protocol (the request's validation, the response objects) is ``chat_api``; here are the
model behind it (``ChatService``) and the HTTP layer: FastAPI on uvicorn with sse-starlette's
event streams, what llama-cpp-python's and vLLM's OpenAI servers stand on.

    curl -s 127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
      -d '{"model": "kestrel-k2-assistant", "messages": [{"role": "user", "content": "E-104 again"}]}'
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException

from ..decoding import Constraint, Sampler, StreamedToken
from ..decoding.constrained import TicketFormat
from .chat_api import (
    CHAT_REQUEST_SCHEMA,
    ChatRequest,
    Finish,
    Piece,
    RequestError,
    ServeConfig,
    Usage,
    chunks,
    completion,
    cut_at_stop,
    error_body,
    parse_chat_request,
)
from .grammar import GrammarError, JsonGrammar
from .package import fill_prompt, load_package

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ChatService:
    """The model behind the server: prompt building, bounded, one generation at a time."""

    def __init__(self, package: Path, limits: ServeConfig | None = None) -> None:
        self.lm, self.manifest, self.spec = load_package(package)
        self.name, self.limits = self.spec["Name"], limits or ServeConfig()
        self._turn = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.limits.max_waiting + 1)
        self._format: TicketFormat | None = None  # built on first use (a fraction of a second)
        self._grammar: JsonGrammar | None = None  # likewise
        self._texts: list[str] | None = None  # each token's own text, for logprobs
        self._build = threading.Lock()

    def ticket_format(self) -> TicketFormat:
        with self._build:
            if self._format is None:
                try:
                    self._format = TicketFormat.for_model(self.lm)
                except ValueError as err:  # a tokenizer that cannot write the format: the request cannot be served
                    raise RequestError(
                        400,
                        f"response_format 'ticket_format' is not available for this model: {err}",
                        "unsupported_parameter",
                        "response_format",
                    ) from err
            return self._format

    def json_grammar(self) -> JsonGrammar:
        with self._build:
            if self._grammar is None:
                self._grammar = JsonGrammar.for_model(self.lm)
            return self._grammar

    def token_text(self, token: int) -> str:
        if self._texts is None:
            self._texts = self.lm.token_texts()
        return self._texts[token] if 0 <= token < len(self._texts) else ""

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        # One user message: the package's own template (with its system prompt), as Foundry
        # Local does. A whole conversation: the model's chat template.
        if len(messages) == 1 and messages[0]["role"] == "user":
            prompt = fill_prompt(self.spec, messages[0]["content"])
        else:
            prompt = self.lm.chat_prompt(messages)
        ids = self.lm.encode(prompt)
        if len(ids) > self.limits.max_prompt_tokens:
            raise RequestError(
                400,
                f"Prompt is {len(ids)} tokens; this server accepts at most {self.limits.max_prompt_tokens}. "
                "Shorten the messages.",
                "prompt_too_long",
                "messages",
            )
        return ids

    def constraints(self, request: ChatRequest) -> Callable[[], Constraint | None]:
        """A fresh constraint per answer for ``request.response_format``; checked now, so a
        schema that cannot compile is a 400 before the request waits for its turn."""
        if request.response_format == "ticket_format":
            fmt = self.ticket_format()
            return fmt.cursor
        if request.response_format in ("json_object", "json_schema"):
            grammar = self.json_grammar()
            try:
                grammar.compile(request.schema)
            except GrammarError as err:
                raise RequestError(
                    400,
                    f"The JSON schema in response_format cannot be compiled to a grammar: {err}. "
                    "Fix: simplify or correct the schema.",
                    "invalid_schema",
                    "response_format",
                ) from err
            return lambda: grammar.cursor(request.schema)
        return lambda: None

    def answer(self, request: ChatRequest) -> Iterator[Piece | Finish | Usage]:
        """Yield each answer's ``Piece``s then its ``Finish``, answer by answer, and a last ``Usage``.

        ``stop`` strings end an answer before them, with finish reason "stop" (OpenAI's
        rule); a format keeps every answer inside it (an answer cut by ``max_tokens`` is
        still a prefix of the format). A seeded request draws its answers from one
        generator seeded with ``seed``, so it gives the same answers every time."""
        ids = self.prompt_ids(request.messages)
        make_constraint = self.constraints(request)
        if len(ids) + request.max_tokens > self.lm.context_length:
            raise RequestError(
                400,
                f"Prompt of {len(ids)} tokens + max_tokens {request.max_tokens} exceeds the model's context of "
                f"{self.lm.context_length}. Shorten the messages or lower max_tokens.",
                "context_length_exceeded",
                "max_tokens",
            )
        if not self._slots.acquire(blocking=False):
            raise RequestError(429, "Too many requests waiting; retry shortly.", "server_busy")
        try:
            with self._turn:
                seed = None if request.seed is None else request.seed % 2**64
                rng = np.random.default_rng(seed)
                total = 0
                for index in range(request.n):
                    sampler = None if request.sampling.greedy else Sampler(request.sampling, rng)
                    count = 0

                    def tokens(sampler=sampler) -> Iterator[StreamedToken]:
                        nonlocal count
                        kwargs = {"sampler": sampler} if sampler is not None else {}
                        stream = self.lm.stream(ids, request.max_tokens, constraint=make_constraint(), **kwargs)
                        for token in stream:
                            count += 1
                            yield token

                    pieces = cut_at_stop(tokens(), request.stop)
                    while True:
                        try:
                            text, toks = next(pieces)
                        except StopIteration as end:
                            stopped = end.value
                            break
                        yield Piece(index, text, tuple(toks))
                    total += count
                    yield Finish(index, "stop" if stopped or count < request.max_tokens else "length")
                yield Usage(len(ids), total)
        finally:
            self._slots.release()


# --- the HTTP layer: FastAPI on uvicorn --------------------------------------------------------


def create_app(service: ChatService) -> FastAPI:
    """The FastAPI application serving ``service`` (run it with uvicorn: ``serve``)."""
    app = FastAPI(
        title="slmops serve",
        version=str(service.manifest.get("version", "")),
        description=f"An OpenAI-compatible chat server for the package {service.name!r} (slmops-course).",
        redoc_url=None,
    )
    # Requests wait for their turn in a worker thread: enough threads for every request the
    # server admits, so a queue of waiting requests never starves the health checks.
    state: dict[str, Any] = {}

    def limiter() -> anyio.CapacityLimiter:
        if "limiter" not in state:
            state["limiter"] = anyio.CapacityLimiter(service.limits.max_waiting + 3)
        return state["limiter"]

    def error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
        return JSONResponse(error_body(status, message, code, param), status_code=status)

    @app.exception_handler(RequestError)
    async def request_error(_: Request, err: RequestError) -> JSONResponse:
        return error(err.status, str(err), err.code, err.param)

    @app.exception_handler(HTTPException)
    async def no_route(request: Request, err: HTTPException) -> JSONResponse:
        if err.status_code in (404, 405):
            return error(
                404,
                f"No route {request.method} {request.url.path}; POST to /v1/chat/completions, GET /v1/models.",
                "not_found",
            )
        return error(err.status_code, str(err.detail), "http_error")

    @app.exception_handler(Exception)
    async def internal(_: Request, err: Exception) -> JSONResponse:  # never let one request take the server down
        return error(500, f"Internal error: {type(err).__name__}: {err}", "internal_error")

    @app.get("/health", summary="Liveness: the model is loaded")
    @app.get("/v1/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": service.name}

    @app.get("/v1/models", summary="The one model served")
    async def models() -> dict[str, Any]:
        model = {"id": service.name, "object": "model", "owned_by": "slmops-course"}
        return {"object": "list", "data": [model]}

    async def in_thread(call: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(call, *args, limiter=limiter())

    @app.post(
        "/v1/chat/completions",
        summary="OpenAI chat completions (plain or server-sent events)",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": CHAT_REQUEST_SCHEMA}}}
        },
    )
    async def chat(http: Request) -> Any:
        try:
            length = int(http.headers.get("content-length") or 0)
        except ValueError as err:
            raise RequestError(400, "Content-Length must be an integer.", "bad_content_length") from err
        if not 0 < length <= service.limits.max_body_bytes:
            raise RequestError(
                413, f"Body must be 1..{service.limits.max_body_bytes} bytes; got {length}.", "bad_body_size"
            )
        request = parse_chat_request(await http.body(), service.name, service.limits)
        events = service.answer(request)
        # The first event runs validation and waits for this request's turn, before any header is sent.
        first = await in_thread(next, events, None)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if not request.stream:
            rest = await in_thread(list, events)
            whole = completion(service.name, request, [first, *rest], completion_id, service.token_text)
            return JSONResponse(whole)

        async def stream() -> Any:
            pieces = chunks(service.name, request, _chain(first, events), completion_id, service.token_text)
            try:
                while (item := await in_thread(next, pieces, None)) is not None:
                    yield {"data": json.dumps(item)}
            except Exception as err:  # headers are sent: report in the stream, never a 2nd response
                body = error_body(500, f"Internal error: {type(err).__name__}: {err}", "internal_error")
                yield {"data": json.dumps(body)}
                return
            finally:
                with anyio.CancelScope(shield=True):  # a client that left: give the turn back now
                    await anyio.to_thread.run_sync(events.close)
            yield {"data": "[DONE]"}

        return EventSourceResponse(stream(), sep="\n", ping=15)

    return app


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _bind(host: str, port: int) -> socket.socket:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"Port {port} is out of range. Fix: pass --port from 1 to 65535 (0 picks a free port).")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno != errno.EADDRINUSE:
            raise
        raise ValueError(
            f"Port {port} on {host} is taken (another `slmops serve`?). Fix: pass --port with a free port, "
            "or stop the other server."
        ) from None
    # Listening before uvicorn starts: a client that connects as soon as the address is
    # printed waits in the backlog instead of being refused.
    sock.listen(128)
    return sock


def _uvicorn(service: ChatService) -> Any:
    import uvicorn

    config = uvicorn.Config(
        create_app(service), log_level="warning", access_log=False, timeout_graceful_shutdown=5, backlog=128
    )
    return uvicorn.Server(config)


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


@contextmanager
def running(service: ChatService, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``service`` from a background thread for the length of a ``with`` block; yields the base URL."""
    sock = _bind(host, port)
    server = _uvicorn(service)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The server thread did not start.")
            time.sleep(0.01)
        yield _url(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve(package: Path, host: str = "127.0.0.1", port: int = 8000, limits: ServeConfig | None = None) -> None:
    """Serve ``package`` until interrupted (Ctrl-C)."""
    if host not in LOOPBACK:
        raise ValueError(f"host {host!r} is not loopback; the course server only listens on {list(LOOPBACK)}.")
    sock = _bind(host, port)  # a bad or taken port fails before the model loads
    try:
        service = ChatService(Path(package), limits)
        server = _uvicorn(service)
        print(
            f"Serving {service.name} ({service.manifest['version']}) at {_url(host, sock.getsockname()[1])}", flush=True
        )
        server.run(sockets=[sock])
    finally:
        sock.close()
