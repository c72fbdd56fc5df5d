"""The OpenAI-compatible server on a tiny package: request validation (every malformed
kind and its status), then a real server on a loopback port answering models, chat,
streaming chat, concurrent load, malformed floods (4xx, still healthy), a full queue
(429) and prompts that do not fit the tiny model's 128-token context."""

from __future__ import annotations

import http.client
import json
import threading
import time
from contextlib import contextmanager

import pytest

from slmops_helpers.deploy import client
from slmops_helpers.deploy.package import fill_prompt
from slmops_helpers.deploy.serve import (
    ChatService,
    CourseHTTPServer,
    RequestError,
    ServeConfig,
    make_handler,
    parse_chat_request,
    serve,
)

MODEL = "tiny-assistant"
LIMITS = ServeConfig(max_tokens=16, max_prompt_tokens=100, max_body_bytes=64_000)
USER = {"role": "user", "content": "the hub is offline"}


# --- request validation, no server ----------------------------------------------------


def _parse(request, limits=LIMITS):
    body = request if isinstance(request, bytes) else json.dumps(request).encode()
    return parse_chat_request(body, MODEL, limits)


def test_parse_a_good_request_with_defaults():
    defaults = {"messages": [USER], "max_tokens": 16, "stream": False, "stop": [], "constrained": False}
    assert _parse({"messages": [USER]}) == defaults
    parsed = _parse({"model": MODEL, "messages": [USER], "max_tokens": 3, "stream": True, "stop": "\n"})
    assert parsed == defaults | {"max_tokens": 3, "stream": True, "stop": ["\n"]}
    assert _parse({"messages": [USER], "max_completion_tokens": 5})["max_tokens"] == 5  # the newer OpenAI name
    roles = [{"role": r, "content": "x"} for r in ("system", "user", "assistant")]
    assert _parse({"messages": roles})["messages"] == roles


@pytest.mark.parametrize(
    "request_, status, code",
    [
        (b"{not json", 400, "invalid_json"),
        (b"\xff\xfe\xfa", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"[]", 400, "invalid_request"),
        (b'"a string"', 400, "invalid_request"),
        (b"null", 400, "invalid_request"),
        ({"model": "gpt-4o", "messages": [USER]}, 404, "model_not_found"),
        ({"model": None, "messages": [USER]}, 404, "model_not_found"),
        ({"model": MODEL}, 400, "invalid_messages"),
        ({"messages": []}, 400, "invalid_messages"),
        ({"messages": "hello"}, 400, "invalid_messages"),
        ({"messages": {"role": "user", "content": "hi"}}, 400, "invalid_messages"),
        ({"messages": ["hi"]}, 400, "invalid_messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "invalid_messages"),
        ({"messages": [{"content": "hi"}]}, 400, "invalid_messages"),
        ({"messages": [{"role": "user"}]}, 400, "invalid_messages"),
        ({"messages": [{"role": "user", "content": 42}]}, 400, "invalid_messages"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, 400, "invalid_messages"),
        ({"messages": [USER, {"role": "tool", "content": "x"}]}, 400, "invalid_messages"),
        ({"messages": [USER], "max_tokens": 0}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": -1}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": 17}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": 10**6}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": "ten"}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": 4.0}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": True}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": None}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_completion_tokens": 99}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "stream": "yes"}, 400, "invalid_stream"),
        ({"messages": [USER], "stream": 1}, 400, "invalid_stream"),
        ({"messages": [USER], "stop": 3}, 400, "invalid_stop"),
        ({"messages": [USER], "stop": [""]}, 400, "invalid_stop"),
        ({"messages": [USER], "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_stop"),
        ({"messages": [USER], "seed": "x"}, 400, "invalid_seed"),
    ],
)
def test_parse_rejects_malformed_requests(request_, status, code):
    with pytest.raises(RequestError) as info:
        _parse(request_)
    assert (info.value.status, info.value.code) == (status, code)
    assert str(info.value)  # a message for the client


def test_the_error_messages_name_the_fix():
    with pytest.raises(RequestError, match=r"use 'tiny-assistant'"):
        _parse({"model": "gpt-4o", "messages": [USER]})
    with pytest.raises(RequestError, match=r"integer in \[1, 16\]"):
        _parse({"messages": [USER], "max_tokens": 0})
    with pytest.raises(RequestError, match=r"messages\[1\] needs 'role' in \['system', 'user', 'assistant'\]"):
        _parse({"messages": [USER, {"role": "bot", "content": "x"}]})


@pytest.mark.parametrize("field", ["max_tokens", "max_prompt_tokens", "max_body_bytes", "max_waiting"])
def test_serve_limits_must_be_positive(field):
    with pytest.raises(ValueError, match=f"ServeConfig.{field} must be >= 1"):
        ServeConfig(**{field: 0})


def test_serve_refuses_a_non_loopback_host(tmp_path):
    with pytest.raises(ValueError, match="not loopback"):
        serve(tmp_path, host="0.0.0.0")


def test_client_malformed_requests_cycle_through_every_kind():
    bodies = client.malformed_requests(MODEL, 50)
    assert len(bodies) == 50 and len(set(bodies)) == 14
    passed = []
    for body in set(bodies):
        try:
            passed.append(_parse(body, ServeConfig(max_tokens=256)))
        except RequestError as err:
            assert 400 <= err.status < 500
    # all but one fail validation; that one is a prompt far over any max_prompt_tokens
    assert len(passed) == 1 and len(passed[0]["messages"][0]["content"].split()) == 5000


# --- a real server on a loopback port -------------------------------------------------


@contextmanager
def running(service: ChatService):
    server = CourseHTTPServer(("127.0.0.1", 0), make_handler(service))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def service(tiny_package):
    return ChatService(tiny_package, LIMITS)


@pytest.fixture(scope="module")
def url(service):
    with running(service) as base:
        yield base


def _chat(url, payload, timeout=60):
    return client.request(f"{url}/chat/completions", payload, timeout=timeout)


def _expected(service, messages, max_tokens):
    if len(messages) == 1 and messages[0]["role"] == "user":
        prompt = fill_prompt(service.spec, messages[0]["content"])
    else:
        prompt = service.lm.chat_prompt(messages)
    ids = service.lm.encode(prompt)
    return ids, [t.text for t in service.lm.stream(ids, max_tokens)]


def test_models_and_health(url):
    reply = client.request(f"{url}/models")
    assert reply.status == 200
    assert reply.body["object"] == "list" and [m["id"] for m in reply.body["data"]] == [MODEL]
    root = url.removesuffix("/v1")
    assert client.request(f"{root}/health").body == {"status": "ok", "model": MODEL}
    assert client.request(f"{url}/health").status == 200


def test_unknown_routes_get_a_json_404(url):
    for reply in (client.request(f"{url}/completions"), client.request(f"{url}/models", {"x": 1})):
        assert reply.status == 404
        assert reply.body["error"]["code"] == "not_found" and reply.body["error"]["type"] == "invalid_request_error"


def test_chat_answers_like_the_runtime(url, service):
    reply = _chat(url, {"model": MODEL, "messages": [USER], "max_tokens": 8})
    assert reply.status == 200, reply.body
    ids, pieces = _expected(service, [USER], 8)
    choice = reply.body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "".join(pieces)}
    assert choice["finish_reason"] == ("length" if len(pieces) == 8 else "stop")
    assert reply.body["usage"]["prompt_tokens"] == len(ids)
    assert reply.body["usage"]["completion_tokens"] == len(pieces)
    assert reply.body["object"] == "chat.completion" and reply.body["model"] == MODEL
    assert reply.body["id"].startswith("chatcmpl-")


def test_a_conversation_uses_the_chat_template(url, service):
    messages = [{"role": "system", "content": "reply : none"}, USER, {"role": "assistant", "content": "wifi"}, USER]
    reply = _chat(url, {"messages": messages, "max_tokens": 6})
    assert reply.status == 200, reply.body
    ids, pieces = _expected(service, messages, 6)
    assert reply.body["choices"][0]["message"]["content"] == "".join(pieces)
    assert reply.body["usage"]["prompt_tokens"] == len(ids)


def test_streaming_sends_the_same_answer_as_events(url, service):
    payload = {"model": MODEL, "messages": [USER], "max_tokens": 8}
    pieces = client.stream_chat(url, payload)
    _, expected = _expected(service, [USER], 8)
    assert pieces == [p for p in expected if p]
    # the raw event stream: role first, one chunk per token, a finish reason, then [DONE]
    conn, response = _open_stream(url, payload, timeout=60)
    events = [line[6:] for line in response.read().decode().splitlines() if line.startswith("data: ")]
    conn.close()
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]] == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == ("length" if len(expected) == 8 else "stop")


def test_twenty_concurrent_requests_are_all_answered(url, service):
    words = "the hub is offline error code reply category none billing setup wifi app help my your it not".split()
    messages = [[{"role": "user", "content": f"{words[i % 18]} {words[(7 * i + 3) % 18]}"}] for i in range(20)]
    replies = client.load_test(url, [{"messages": m, "max_tokens": 4} for m in messages], concurrency=20)
    assert [r.status for r in replies] == [200] * 20
    # one generation at a time: each answer is its own prompt's, not a neighbour's
    for reply, m in zip(replies, messages, strict=True):
        assert reply.body["choices"][0]["message"]["content"] == "".join(_expected(service, m, 4)[1])


def test_fifty_malformed_requests_get_4xx_and_the_server_stays_up(url):
    replies = [
        client.request(f"{url}/chat/completions", raw=body, timeout=30) for body in client.malformed_requests(MODEL, 50)
    ]
    assert len(replies) == 50
    for reply in replies:
        assert 400 <= reply.status < 500, reply.body
        error = reply.body["error"]
        assert error["type"] == "invalid_request_error" and error["code"] and error["message"]
    codes = {r.body["error"]["code"] for r in replies}
    assert {"invalid_json", "invalid_messages", "invalid_max_tokens", "model_not_found", "prompt_too_long"} <= codes
    assert client.request(f"{url.removesuffix('/v1')}/health").status == 200
    assert _chat(url, {"messages": [USER], "max_tokens": 2}).status == 200


def _raw_post(url, headers: dict[str, str]) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").removesuffix("/v1").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/v1/chat/completions", skip_accept_encoding=True)
    for key, value in headers.items():
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    status, payload = response.status, json.loads(response.read())
    conn.close()
    return status, payload


def test_bad_body_sizes_and_headers_are_4xx(url, service):
    status, body = _raw_post(url, {"Content-Length": "0"})
    assert status == 413 and body["error"]["code"] == "bad_body_size"
    # refused from the header alone, before reading the body (so none is sent here: a body the
    # server never reads would make its close a connection reset, racing the client's read)
    status, body = _raw_post(url, {"Content-Length": "70000"})
    assert status == 413 and "64000" in body["error"]["message"]
    status, body = _raw_post(url, {"Content-Length": "-5"})
    assert status == 413
    status, body = _raw_post(url, {"Content-Length": "twelve"})
    assert status == 400 and body["error"]["code"] == "bad_content_length"
    assert client.request(f"{url}/models").status == 200


def test_prompts_over_the_limit_or_the_context_are_4xx(url, service):
    # max_prompt_tokens (100) is checked first, with the count in the message
    long = {"role": "user", "content": "hub " * 200}
    reply = _chat(url, {"messages": [long], "max_tokens": 4})
    assert reply.status == 400 and reply.body["error"]["code"] == "prompt_too_long"
    assert "at most 100" in reply.body["error"]["message"]
    # within max_prompt_tokens but, with max_tokens, past the model's 128-token context
    base = len(service.prompt_ids([{"role": "user", "content": ""}]))
    fits = {"role": "user", "content": "hub " * (100 - base)}
    assert len(service.prompt_ids([fits])) == 100
    reply = _chat(url, {"messages": [fits], "max_tokens": 16})
    assert reply.status == 200, reply.body  # 100 + 16 <= 128
    over = ServeConfig(max_tokens=64, max_prompt_tokens=100)
    with running(ChatService(service.lm.folder, over)) as other:
        reply = _chat(other, {"messages": [fits], "max_tokens": 40})
        assert reply.status == 400, reply.body
        assert reply.body["error"]["code"] == "context_length_exceeded"
        assert "context of 128" in reply.body["error"]["message"] and "max_tokens" in reply.body["error"]["message"]
        assert _chat(other, {"messages": [fits], "max_tokens": 28}).status == 200  # 100 + 28 == 128


def test_a_full_queue_answers_429_then_recovers(tiny_package):
    """max_waiting=1: one request generating (here: holding the turn) and one waiting fill the
    server; a third is refused at once with 429. Made deterministic by holding the service's
    turn lock from the test until both requests hold a slot."""
    service = ChatService(tiny_package, ServeConfig(max_tokens=4, max_waiting=1))
    payload = {"messages": [USER], "max_tokens": 4}
    with running(service) as url:
        results = []
        service._turn.acquire()
        try:
            waiting = [threading.Thread(target=lambda: results.append(_chat(url, payload))) for _ in range(2)]
            for thread in waiting:
                thread.start()
            deadline = time.monotonic() + 30
            while service._slots._value > 0:  # both requests validated and queued behind the turn
                assert time.monotonic() < deadline, "requests never reached the queue"
                time.sleep(0.01)
            busy = _chat(url, payload, timeout=30)
            assert busy.status == 429 and busy.body["error"]["code"] == "server_busy"
            assert client.request(f"{url}/models").status == 200  # GETs do not queue
        finally:
            service._turn.release()
        for thread in waiting:
            thread.join(timeout=60)
        assert [r.status for r in results] == [200, 200]
        assert _chat(url, payload).status == 200  # slots were given back


def test_slmops_serve_runs_as_a_process(tiny_package):
    with client.ServerProcess(tiny_package, startup_s=60) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert client.request(f"{url}/models").body["data"][0]["id"] == MODEL
        reply = client.request(f"{url}/chat/completions", {"messages": [USER], "max_tokens": 3})
        assert reply.status == 200 and reply.body["usage"]["completion_tokens"] <= 3


# --- streaming with scripted models ------------------------------------------------------


class ScriptedLM:
    """The tiny package's runtime with a scripted ``stream``: a fixed list of token texts,
    optionally waiting on ``release`` after the first and raising after ``fail_after``."""

    def __init__(self, real, texts, release=None, fail_after=None):
        self.real, self.texts, self.release, self.fail_after = real, texts, release, fail_after
        self.context_length = real.context_length

    def encode(self, prompt):
        return self.real.encode(prompt)

    def chat_prompt(self, messages):
        return self.real.chat_prompt(messages)

    def stream(self, ids, max_tokens, constraint=None):
        from slmops_helpers.decoding import StreamedToken

        assert constraint is None  # these tests do not ask for response_format

        for i, text in enumerate(self.texts[:max_tokens]):
            if i == self.fail_after:
                raise RuntimeError("the model broke mid-answer")
            yield StreamedToken(i + 1, text, 0.001)
            if i == 0 and self.release is not None:
                assert self.release.wait(timeout=20), "the test never released the scripted model"


@contextmanager
def scripted_server(tiny_package, **script):
    service = ChatService(tiny_package, LIMITS)
    service.lm = ScriptedLM(service.lm, **script)
    with running(service) as base:
        yield base


def _open_stream(url, payload=None, timeout=10):
    """POST a streaming chat request over raw HTTP; return (connection, response) once the headers are in."""
    host, port = url.removeprefix("http://").removesuffix("/v1").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    payload = payload or {"messages": [USER], "max_tokens": 8}
    conn.request("POST", "/v1/chat/completions", json.dumps(payload | {"stream": True}))
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    return conn, response


def _next_event(response):
    while True:
        line = response.readline()
        assert line, "the stream ended"
        if line.startswith(b"data: "):
            data = line[6:].strip().decode()
            return data if data == "[DONE]" else json.loads(data)


def test_streaming_delivers_the_first_token_before_the_rest_exists(tiny_package):
    release = threading.Event()
    with scripted_server(tiny_package, texts=["hub", " is", " down"], release=release) as url:
        conn, response = _open_stream(url)
        assert _next_event(response)["choices"][0]["delta"] == {"role": "assistant"}
        # The model is blocked after its first token: a server that buffers the answer
        # would send nothing more until release, and this read would time out.
        first = _next_event(response)
        assert first["choices"][0]["delta"] == {"content": "hub"} and not release.is_set()
        release.set()
        rest = [_next_event(response) for _ in range(4)]
        conn.close()
    assert [e["choices"][0]["delta"].get("content") for e in rest[:2]] == [" is", " down"]
    assert rest[2]["choices"][0]["finish_reason"] == "stop" and rest[3] == "[DONE]"


@pytest.mark.parametrize("texts, max_tokens, finish", [(["a", "b"], 8, "stop"), (["a", "b", "c"], 3, "length")])
def test_finish_reason_is_stop_at_eos_and_length_at_the_budget(tiny_package, texts, max_tokens, finish):
    # The scripted model ends after its texts, as the runtime does at EOS.
    with scripted_server(tiny_package, texts=texts) as url:
        reply = _chat(url, {"messages": [USER], "max_tokens": max_tokens})
        conn, response = _open_stream(url, {"messages": [USER], "max_tokens": max_tokens})
        events = [_next_event(response) for _ in range(len(texts) + 3)]
        conn.close()
    assert reply.body["choices"][0]["finish_reason"] == finish and reply.body["usage"]["completion_tokens"] == len(
        texts
    )
    assert events[-2]["choices"][0]["finish_reason"] == finish and events[-1] == "[DONE]"


def test_an_error_mid_stream_is_an_error_event_then_the_stream_closes(tiny_package):
    with scripted_server(tiny_package, texts=["a", "b", "c"], fail_after=1) as url:
        conn, response = _open_stream(url)
        events = [_next_event(response), _next_event(response), _next_event(response)]
        tail = response.read()  # the server closes the connection: read returns what is left
        conn.close()
        health = client.request(f"{url.removesuffix('/v1')}/health")
    assert events[1]["choices"][0]["delta"] == {"content": "a"}
    assert events[2]["error"]["code"] == "internal_error" and "broke mid-answer" in events[2]["error"]["message"]
    assert tail.strip() == b"" and health.status == 200  # no second HTTP response inside the stream


# --- OpenAI parameters: served, or refused by name -------------------------------------

SERVED = [
    {"max_tokens": 4},
    {"max_completion_tokens": 4},
    {"stream": False},
    {"stop": "\n"},
    {"stop": ["\n", "reply:"]},
    {"n": 1},
    {"seed": 7},
    {"temperature": 0},
    {"top_p": 1},
    {"logprobs": False},
    {"top_logprobs": 0},
    {"frequency_penalty": 0},
    {"presence_penalty": 0},
    {"response_format": {"type": "text"}},
    {"response_format": {"type": "ticket_format"}},
    {"temperature": None},
]
REFUSED = [
    ({"n": 2}, "n"),
    ({"n": True}, "n"),
    ({"temperature": 0.7}, "temperature"),
    ({"top_p": 0.9}, "top_p"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"presence_penalty": -1}, "presence_penalty"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "ticket"}}}, "response_format"),
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"logit_bias": {"1": 5}}, "logit_bias"),
    ({"user": "alice"}, "user"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"temprature": 0}, "temprature"),  # a typo is refused too, not ignored
]


@pytest.mark.parametrize("extra", SERVED, ids=lambda e: next(iter(e)))
def test_openai_parameters_the_server_serves(extra):
    assert _parse({"messages": [USER], **extra})["messages"] == [USER]


@pytest.mark.parametrize("extra, name", REFUSED, ids=[n for _, n in REFUSED])
def test_openai_parameters_the_server_refuses_by_name(extra, name):
    with pytest.raises(RequestError) as info:
        _parse({"messages": [USER], **extra})
    assert info.value.status == 400 and info.value.code == "unsupported_parameter"
    assert f"'{name}'" in str(info.value)


def test_at_least_twelve_openai_parameters_are_served_or_refused_by_name():
    names = {next(iter(e)) for e in SERVED} | {n for _, n in REFUSED}
    assert len(names - {"temprature"}) >= 12


@pytest.mark.parametrize(
    "pieces, stops, expected, stopped",
    [
        (["category: bil", "ling\nerr", "or_code"], ["\n"], ["category: bil", "ling"], True),
        (["cat", "egory", ": x"], ["egory:"], ["cat"], True),  # a stop string across two pieces
        (["abc", "def"], ["zz"], ["ab", "cde", "f"], False),  # holds back one character: "z" could start "zz"
        (["abc", "def"], [], ["abc", "def"], False),
        (["\nfirst"], ["\n"], [], True),
    ],
)
def test_cut_at_stop(pieces, stops, expected, stopped):
    from slmops_helpers.deploy.serve import cut_at_stop

    out = cut_at_stop(iter(pieces), stops)
    got = []
    while True:
        try:
            got.append(next(out))
        except StopIteration as end:
            assert end.value is stopped
            break
    whole = "".join(pieces)
    assert got == expected and "".join(got) == (whole.split(stops[0])[0] if stops else whole)


def test_stop_ends_the_answer_before_the_string_with_finish_reason_stop(tiny_package):
    texts = ["category", ": billing", "\nerror", "_code: none"]
    with scripted_server(tiny_package, texts=texts) as url:
        reply = _chat(url, {"messages": [USER], "max_tokens": 8, "stop": ["\n"]})
        streamed = client.stream_chat(url, {"messages": [USER], "max_tokens": 8, "stop": "\n"})
        plain = _chat(url, {"messages": [USER], "max_tokens": 8})
    assert reply.body["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "category: billing"},
        "finish_reason": "stop",
    }
    assert "".join(streamed) == "category: billing"
    assert plain.body["choices"][0]["message"]["content"] == "".join(texts)  # without stop: the whole answer


def test_a_refused_parameter_is_a_400_from_the_running_server(url):
    reply = _chat(url, {"messages": [USER], "temperature": 0.8})
    assert reply.status == 400 and reply.body["error"]["code"] == "unsupported_parameter"
    assert "temperature" in reply.body["error"]["message"] and client.request(f"{url}/health").status == 200


def test_a_taken_port_is_one_clear_error(tiny_package):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=rf"Port {port} on 127.0.0.1 is taken.*--port"):
            serve(tiny_package, port=port)


# --- the real openai client ----------------------------------------------------------


@pytest.fixture(scope="module")
def openai_client(url):
    openai = pytest.importorskip("openai", reason="the openai client is a dev dependency: pip install -e '.[dev]'")
    return openai.OpenAI(base_url=url, api_key="not-needed-locally", max_retries=0, timeout=60)


def test_the_openai_client_chats_and_streams(openai_client, service):
    _, expected = _expected(service, [USER], 8)
    reply = openai_client.chat.completions.create(model=MODEL, messages=[USER], max_tokens=8)
    assert reply.choices[0].message.content == "".join(expected) and reply.model == MODEL
    assert reply.choices[0].finish_reason == ("length" if len(expected) == 8 else "stop")
    assert reply.usage.completion_tokens == len(expected)
    stream = openai_client.chat.completions.create(model=MODEL, messages=[USER], max_tokens=8, stream=True)
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert pieces == [p for p in expected if p]
    assert [m.id for m in openai_client.models.list().data] == [MODEL]


def test_the_openai_client_gets_stop_n_and_seed(openai_client, service):
    _, expected = _expected(service, [USER], 8)
    text = "".join(expected)
    cut = text[len(text) // 2 :][:2] or text[:1]  # a stop string that occurs in the answer
    reply = openai_client.chat.completions.create(model=MODEL, messages=[USER], max_tokens=8, stop=[cut], n=1, seed=3)
    assert reply.choices[0].message.content == text[: text.find(cut)] and reply.choices[0].finish_reason == "stop"
    again = openai_client.chat.completions.create(model=MODEL, messages=[USER], max_tokens=8, seed=3)
    assert again.choices[0].message.content == text  # same seed, same answer (greedy: any seed)


@pytest.mark.parametrize(
    "extra, name",
    [
        ({"temperature": 0.7}, "temperature"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_p": 0.5}, "top_p"),
    ],
)
def test_the_openai_client_gets_a_400_naming_a_refused_parameter(openai_client, extra, name):
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(model=MODEL, messages=[USER], max_tokens=4, **extra)
    assert f"'{name}'" in str(info.value)


# --- response_format "ticket_format": the answer decoded under the format's mask -----------


def test_ticket_format_is_parsed_as_a_constraint():
    assert _parse({"messages": [USER], "response_format": {"type": "ticket_format"}})["constrained"] is True
    assert _parse({"messages": [USER]})["constrained"] is False


def test_ticket_format_on_a_model_that_cannot_write_it_is_a_400(url):
    # The tiny test tokenizer has no token with a space, so "category: " cannot be written.
    reply = _chat(url, {"messages": [USER], "max_tokens": 4, "response_format": {"type": "ticket_format"}})
    assert reply.status == 400 and reply.body["error"]["code"] == "unsupported_parameter"
    assert "ticket_format" in reply.body["error"]["message"] and "category" in reply.body["error"]["message"]
    assert client.request(f"{url}/health").status == 200


def test_ticket_format_constrains_every_answer_and_a_cut_one_stays_a_prefix(tiny_package):
    from slmops_helpers.constrained import TicketFormat, _chain

    service = ChatService(tiny_package, LIMITS)
    texts = service.lm.token_texts()
    # A format this vocabulary can write: the answer must open with one of two words, then ":" .
    service._format = TicketFormat(texts, service.lm.eos_ids, _chain([["billing", "setup"], [":"]]))
    free = "".join(p for p in service.answer([USER], 6) if isinstance(p, str))
    with running(service) as base:
        for max_tokens in (1, 2, 6):
            payload = {"messages": [USER], "max_tokens": max_tokens, "response_format": {"type": "ticket_format"}}
            reply = _chat(base, payload)
            assert reply.status == 200, reply.body
            content = reply.body["choices"][0]["message"]["content"]
            assert content.startswith(("billing", "setup")), (content, free)
            # The word-level test tokenizer decodes with spaces between words; its token texts have none.
            service._format.follow(content.replace(" ", ""))  # raises unless the text stays inside the format
            if max_tokens == 1:
                assert reply.body["choices"][0]["finish_reason"] == "length"


# --- one contract, two runtimes: an ONNX package and a GGUF one behind the same calls ------


@pytest.fixture(scope="module")
def gguf_package(course_gguf, tmp_path_factory):
    """The course model's Q4_0 GGUF, packaged like the ONNX exports."""
    from slmops_helpers import data
    from slmops_helpers.deploy.package import write_package

    out = tmp_path_factory.mktemp("gguf_packages") / "course"
    lineage = {"base_model": "SmolLM2-135M-Instruct", "variant": "gguf_q4_0"}
    return write_package(course_gguf["gguf_q4_0"], out, MODEL, "1.0.0", lineage, system_prompt=data.SYSTEM_PROMPT)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "gguf"])
def test_both_runtimes_answer_the_same_openai_client_calls(runtime, tiny_package, request):
    openai = pytest.importorskip("openai", reason="the openai client is a dev dependency: pip install -e '.[dev]'")
    package = tiny_package if runtime == "onnx" else request.getfixturevalue("gguf_package")
    service = ChatService(package, ServeConfig(max_tokens=16))
    assert service.manifest["runtime"] == runtime and type(service.lm).__name__ in ("OnnxCausalLM", "LlamaCppLM")
    _, expected = _expected(service, [USER], 8)
    text = "".join(expected)
    with running(service) as url:
        api = openai.OpenAI(base_url=url, api_key="not-needed-locally", max_retries=0, timeout=60)
        reply = api.chat.completions.create(model=MODEL, messages=[USER], max_tokens=8, seed=1)
        assert reply.choices[0].message.content == text
        stream = api.chat.completions.create(model=MODEL, messages=[USER], max_tokens=8, stream=True)
        assert [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content] == [
            p for p in expected if p
        ]
        cut = text[len(text) // 2 :][:2] or text[:1]
        stopped = api.chat.completions.create(model=MODEL, messages=[USER], max_tokens=8, stop=[cut])
        assert stopped.choices[0].message.content == text[: text.find(cut)]
        assert stopped.choices[0].finish_reason == "stop"
        with pytest.raises(openai.BadRequestError, match="'temperature'"):
            api.chat.completions.create(model=MODEL, messages=[USER], max_tokens=4, temperature=0.7)
        assert client.request(f"{url.removesuffix('/v1')}/health").status == 200
