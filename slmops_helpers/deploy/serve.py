"""``slmops serve PACKAGE``: a local, OpenAI-compatible chat server for one package, ONNX or
GGUF (``package.load_package`` picks onnxruntime or llama.cpp from the manifest; every
limit, error and parameter below is the same for both).

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (``"stream": true`` sends
server-sent events, as OpenAI's API does: one per token as it is generated; an error after
the stream has started comes as a last ``data: {"error": ...}`` event, then the connection
closes), ``GET /health``. Bound to loopback. Every request is bounded (body size, prompt
tokens, ``max_tokens``, requests waiting); anything malformed gets a 4xx JSON error in
OpenAI's shape and the server carries on. Generation is greedy and one at a time (a 2-core
device gains nothing from running two at once); other requests wait their turn, up to
``max_waiting``.

OpenAI parameters: ``max_tokens`` / ``max_completion_tokens``, ``stream``, ``stop`` (the
answer ends before the first stop string, ``finish_reason: "stop"``) and ``n=1`` are
served; ``seed`` is accepted because greedy decoding gives the same answer for every seed.
``response_format`` is ``{"type": "text"}`` (the default) or this server's own
``{"type": "ticket_format"}``: the answer is decoded under the ticket format's token mask
(``constrained``), so its category and error code are always well-formed; JSON formats are
refused, since the answer is three lines, not JSON. Sampling and scoring options
(``temperature``, ``top_p``, ``logprobs``, penalties) are accepted only at their greedy
defaults; any other value, and any unknown field, is refused with a 400 naming it, never
silently ignored. Standard library only (``http.server``): a device package should not
need a web framework to answer.

    curl -s 127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
      -d '{"model": "kestrel-k2-assistant", "messages": [{"role": "user", "content": "E-104 again"}]}'
"""

from __future__ import annotations

import errno
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..constrained import TicketFormat
from .package import fill_prompt, load_package

ROLES = ("system", "user", "assistant")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeConfig:
    max_tokens: int = 256  # per answer
    max_prompt_tokens: int = 1024
    max_body_bytes: int = 64_000
    max_waiting: int = 32  # requests queued behind the one being answered

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"ServeConfig.{name} must be >= 1, got {value}.")


class RequestError(Exception):
    """A client mistake: becomes a 4xx JSON answer."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


# What this server does with each OpenAI chat parameter. Anything else is refused with a 400
# naming it: a client that asks for something and silently gets something else is worse off.
SUPPORTED = ("model", "messages", "max_tokens", "max_completion_tokens", "stream", "stop", "n", "seed")
GREEDY_ONLY = {  # accepted at the value that means greedy decoding, refused otherwise
    "temperature": 0,
    "top_p": 1,
    "logprobs": False,
    "top_logprobs": 0,
    "frequency_penalty": 0,
    "presence_penalty": 0,
}
MAX_STOP = 4  # OpenAI's own limit on stop sequences
RESPONSE_FORMATS = {"text": {"type": "text"}, "ticket_format": {"type": "ticket_format"}}


def _refuse(name: str, why: str) -> RequestError:
    return RequestError(400, f"Unsupported value for '{name}': {why}", "unsupported_parameter")


def _check_options(request: dict[str, Any]) -> None:
    for name, value in request.items():
        if name in GREEDY_ONLY:
            neutral = GREEDY_ONLY[name]
            if value is not None and (isinstance(value, bool) != isinstance(neutral, bool) or value != neutral):
                raise _refuse(name, f"this server decodes greedily; send {neutral!r} or leave '{name}' out.")
        elif name == "response_format":
            if value not in (None, *RESPONSE_FORMATS.values()):
                raise _refuse(
                    name,
                    f"send one of {list(RESPONSE_FORMATS.values())}; the answer is the three-line ticket format, "
                    "not JSON.",
                )
        elif name not in SUPPORTED:
            raise RequestError(
                400,
                f"Unknown or unsupported parameter '{name}'. This server accepts {list(SUPPORTED)}, "
                f"and {sorted(GREEDY_ONLY)} / response_format at their greedy defaults.",
                "unsupported_parameter",
            )
    n = request.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise _refuse("n", "this server generates one answer per request; send n=1 or leave it out.")
    seed = request.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise RequestError(
            400, "'seed' must be an integer (greedy decoding gives one answer for every seed).", "invalid_seed"
        )


def _stop_list(stop: Any) -> list[str]:
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(x, str) and x for x in stops) or len(stops) > MAX_STOP:
        raise RequestError(
            400, f"'stop' must be a non-empty string or a list of at most {MAX_STOP} non-empty strings.", "invalid_stop"
        )
    return stops


def parse_chat_request(body: bytes, model_name: str, limits: ServeConfig) -> dict[str, Any]:
    """Validate a /v1/chat/completions body; return messages, max_tokens, stream, stop."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"Body is not valid JSON ({err}).", "invalid_json") from err
    if not isinstance(request, dict):
        raise RequestError(400, "Body must be a JSON object.", "invalid_request")
    if request.get("model", model_name) != model_name:
        raise RequestError(
            404, f"Model {request['model']!r} is not served here; use {model_name!r}.", "model_not_found"
        )
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list of {role, content} objects.", "invalid_messages")
    for i, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise RequestError(
                400, f"messages[{i}] needs 'role' in {list(ROLES)} and a string 'content'.", "invalid_messages"
            )
    max_tokens = request.get("max_tokens", request.get("max_completion_tokens", limits.max_tokens))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= limits.max_tokens:
        raise RequestError(400, f"'max_tokens' must be an integer in [1, {limits.max_tokens}].", "invalid_max_tokens")
    stream = request.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(400, "'stream' must be true or false.", "invalid_stream")
    _check_options(request)
    return {
        "messages": messages,
        "max_tokens": max_tokens,
        "stream": stream,
        "stop": _stop_list(request.get("stop")),
        "constrained": request.get("response_format") == RESPONSE_FORMATS["ticket_format"],
    }


def cut_at_stop(pieces: Any, stops: list[str]) -> Any:
    """Pass text pieces through until one of ``stops`` appears; yield the text before it and
    end. Holds back only as many characters as a stop string could still be completed
    with, so streaming stays incremental. The generator's return value says whether a stop
    string ended the text."""
    if not stops:
        yield from pieces
        return False
    hold, buffer = max(map(len, stops)) - 1, ""
    for piece in pieces:
        buffer += piece
        hits = [i for i in (buffer.find(s) for s in stops) if i >= 0]
        if hits:
            if buffer[: min(hits)]:
                yield buffer[: min(hits)]
            return True
        if len(buffer) > hold:
            yield buffer[: len(buffer) - hold]
            buffer = buffer[len(buffer) - hold :]
    if buffer:
        yield buffer
    return False


class ChatService:
    """The model behind the server: prompt building, bounded, one generation at a time."""

    def __init__(self, package: Path, limits: ServeConfig = ServeConfig()) -> None:
        self.lm, self.manifest, self.spec = load_package(package)
        self.name, self.limits = self.spec["Name"], limits
        self._turn = threading.Lock()
        self._slots = threading.BoundedSemaphore(limits.max_waiting + 1)
        self._format: TicketFormat | None = None  # built on first use (a fraction of a second)

    def ticket_format(self) -> TicketFormat:
        if self._format is None:
            try:
                self._format = TicketFormat.for_model(self.lm)
            except ValueError as err:  # a tokenizer that cannot write the format: the request cannot be served
                raise RequestError(
                    400,
                    f"response_format 'ticket_format' is not available for this model: {err}",
                    "unsupported_parameter",
                ) from err
        return self._format

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
            )
        return ids

    def answer(
        self, messages: list[dict[str, str]], max_tokens: int, stop: list[str] | None = None, constrained: bool = False
    ):
        """Yield the answer's text pieces; the last item is (finish_reason, prompt_tokens, completion_tokens).

        ``stop`` strings end the answer before them, with finish_reason "stop" (OpenAI's rule);
        ``constrained`` decodes under the ticket format's mask (an answer cut by ``max_tokens``
        is still a prefix of the format)."""
        ids = self.prompt_ids(messages)
        cursor = self.ticket_format().cursor() if constrained else None
        if len(ids) + max_tokens > self.lm.context_length:
            raise RequestError(
                400,
                f"Prompt of {len(ids)} tokens + max_tokens {max_tokens} exceeds the model's context of "
                f"{self.lm.context_length}. Shorten the messages or lower max_tokens.",
                "context_length_exceeded",
            )
        if not self._slots.acquire(blocking=False):
            raise RequestError(429, "Too many requests waiting; retry shortly.", "server_busy")
        try:
            with self._turn:
                count = 0

                def texts():
                    nonlocal count
                    for token in self.lm.stream(ids, max_tokens, constraint=cursor):
                        count += 1
                        yield token.text

                stopped = yield from cut_at_stop(texts(), stop or [])
                yield ("stop" if stopped or count < max_tokens else "length", len(ids), count)
        finally:
            self._slots.release()


def _chunk(completion_id: str, model: str, delta: dict, finish: str | None) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def make_handler(service: ChatService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "slmops-serve"
        timeout = 30  # seconds a client may stall mid-request before its thread gives up

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the notebook prints its own summary
            pass

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, code: str) -> None:
            kind = "invalid_request_error" if status < 500 else "server_error"
            self._json(status, {"error": {"message": message, "type": kind, "code": code}})

        def do_GET(self) -> None:
            if self.path in ("/health", "/v1/health"):
                self._json(200, {"status": "ok", "model": service.name})
            elif self.path == "/v1/models":
                model = {"id": service.name, "object": "model", "owned_by": "slmops-course"}
                self._json(200, {"object": "list", "data": [model]})
            else:
                self._error(404, f"No route {self.path}; try /v1/chat/completions or /v1/models.", "not_found")

        def do_POST(self) -> None:
            try:
                if self.path != "/v1/chat/completions":
                    raise RequestError(404, f"No route {self.path}; POST to /v1/chat/completions.", "not_found")
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError as err:
                    raise RequestError(400, "Content-Length must be an integer.", "bad_content_length") from err
                if not 0 < length <= service.limits.max_body_bytes:
                    raise RequestError(
                        413, f"Body must be 1..{service.limits.max_body_bytes} bytes; got {length}.", "bad_body_size"
                    )
                request = parse_chat_request(self.rfile.read(length), service.name, service.limits)
                pieces = service.answer(
                    request["messages"], request["max_tokens"], request["stop"], request["constrained"]
                )
                first = next(pieces)  # runs validation and waits for our turn before any header is sent
                self._reply(request["stream"], first, pieces)
            except RequestError as err:
                self._error(err.status, str(err), err.code)
            except Exception as err:  # never let one request take the server down
                self._error(500, f"Internal error: {type(err).__name__}: {err}", "internal_error")

        def _reply(self, stream: bool, first: Any, pieces: Any) -> None:
            completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
            items = [first]
            if not stream:
                items += list(pieces)
                finish, prompt_tokens, completion_tokens = items[-1]
                message = {"role": "assistant", "content": "".join(items[:-1])}
                choice = {"index": 0, "message": message, "finish_reason": finish}
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
                usage["total_tokens"] = prompt_tokens + completion_tokens
                payload = {"id": completion_id, "object": "chat.completion", "created": int(time.time())}
                self._json(200, payload | {"model": service.name, "choices": [choice], "usage": usage})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()  # HTTP/1.0: closing the connection ends the stream

            def send(data: dict | str) -> None:
                self.wfile.write(f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode())
                self.wfile.flush()

            send(_chunk(completion_id, service.name, {"role": "assistant"}, None))
            try:
                # One event per token as it is made: ``pieces`` is a generator, consumed lazily.
                for item in itertools.chain([first], pieces):
                    if isinstance(item, tuple):
                        send(_chunk(completion_id, service.name, {}, item[0]))
                    else:
                        send(_chunk(completion_id, service.name, {"content": item}, None))
            except Exception as err:  # headers are sent: report in the stream, never a 2nd response
                error = {"message": f"Internal error: {type(err).__name__}: {err}", "type": "server_error"}
                try:
                    send({"error": error | {"code": "internal_error"}})
                except OSError:
                    pass  # the client has gone
                return
            send("[DONE]")

    return Handler


class CourseHTTPServer(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of 20 clients overflows it and a
    # loaded machine then resets some connections. Waiting requests are bounded by ServeConfig.
    request_queue_size = 128
    daemon_threads = True


def serve(package: Path, host: str = "127.0.0.1", port: int = 8000, limits: ServeConfig = ServeConfig()) -> None:
    """Serve ``package`` until interrupted (Ctrl-C)."""
    if host not in LOOPBACK:
        raise ValueError(f"host {host!r} is not loopback; the course server only listens on {list(LOOPBACK)}.")
    service = ChatService(Path(package), limits)
    try:
        server = CourseHTTPServer((host, port), make_handler(service))
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        raise ValueError(
            f"Port {port} on {host} is taken (another `slmops serve`?). Fix: pass --port with a free port, "
            "or stop the other server."
        ) from None
    print(
        f"Serving {service.name} ({service.manifest['version']}) at http://{host}:{server.server_port}/v1", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
