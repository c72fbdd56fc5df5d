"""The OpenAI-compatible server on a tiny package: request validation (every malformed
kind and its status), then a real server on a loopback port answering models, chat,
streaming chat, sampling, logprobs, usage, JSON by grammar, concurrent load, malformed
floods (4xx, still healthy), a full queue (429) and prompts that do not fit the tiny
model's 128-token context; the real ``openai`` client on each parameter; and, marked slow,
the course model's ONNX and GGUF packages behind the same calls."""

from __future__ import annotations

import http.client
import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from slmops_helpers.decoding import SamplingParams
from slmops_helpers.deploy import client
from slmops_helpers.deploy.chat_api import ChatRequest, RequestError, ServeConfig, parse_chat_request
from slmops_helpers.deploy.package import fill_prompt
from slmops_helpers.deploy.serve import ChatService, running, serve

MODEL = "tiny-assistant"
LIMITS = ServeConfig(max_tokens=16, max_prompt_tokens=100, max_body_bytes=64_000)
USER = {"role": "user", "content": "the hub is offline"}


# --- request validation, no server ----------------------------------------------------


def _parse(request, limits=LIMITS):
    body = request if isinstance(request, bytes) else json.dumps(request).encode()
    return parse_chat_request(body, MODEL, limits)


def test_parse_a_good_request_with_defaults():
    defaults = ChatRequest(messages=[USER], max_tokens=16)
    assert _parse({"messages": [USER]}) == defaults and defaults.sampling.greedy
    parsed = _parse({"model": MODEL, "messages": [USER], "max_tokens": 3, "stream": True, "stop": "\n"})
    assert parsed == ChatRequest(messages=[USER], max_tokens=3, stream=True, stop=("\n",))
    assert _parse({"messages": [USER], "max_completion_tokens": 5}).max_tokens == 5  # the newer OpenAI name
    roles = [{"role": r, "content": "x"} for r in ("system", "user", "assistant")]
    assert _parse({"messages": roles}).messages == roles


def test_parse_todays_message_format():
    parts = [{"type": "text", "text": "the hub"}, {"type": "text", "text": "is offline"}]
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": parts, "name": "ann"}]
    parsed = _parse({"messages": messages, "user": "customer-42"})
    assert parsed.messages == [
        {"role": "system", "content": "Be brief."},  # developer is OpenAI's newer name for system
        {"role": "user", "content": "the hub\nis offline"},
    ]


def test_parse_sampling_logprobs_n_usage_and_formats():
    parsed = _parse(
        {
            "messages": [USER],
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": -1,
            "min_p": 0.05,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "seed": 3,
            "n": 2,
            "logprobs": True,
            "top_logprobs": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert parsed.sampling == SamplingParams(
        temperature=0.7, top_p=0.9, min_p=0.05, presence_penalty=0.5, frequency_penalty=-0.5, top_logprobs=2
    )
    assert (parsed.seed, parsed.n, parsed.logprobs, parsed.include_usage) == (3, 2, True, True)
    assert _parse({"messages": [USER], "logprobs": True}).sampling.top_logprobs == 0
    assert _parse({"messages": [USER], "logprobs": False}).sampling.greedy
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}
    assert (_parse({"messages": [USER], "response_format": fmt}).schema) == schema
    assert _parse({"messages": [USER], "response_format": {"type": "json_object"}}).response_format == "json_object"


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
        ({"messages": [{"role": "user", "content": []}]}, 400, "invalid_messages"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}, 400, "invalid_messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "unsupported_content_part"),
        ({"messages": [{"role": "user", "content": ["hi"]}]}, 400, "unsupported_content_part"),
        ({"messages": [USER, {"role": "tool", "content": "x"}]}, 400, "invalid_messages"),
        ({"messages": [USER | {"tool_calls": []}]}, 400, "unsupported_parameter"),
        ({"messages": [USER], "max_tokens": 0}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": -1}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": 17}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": 10**6}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": "ten"}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": 4.0}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": True}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_tokens": 4, "max_completion_tokens": 5}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "max_completion_tokens": 99}, 400, "invalid_max_tokens"),
        ({"messages": [USER], "stream": "yes"}, 400, "invalid_stream"),
        ({"messages": [USER], "stream": 1}, 400, "invalid_stream"),
        ({"messages": [USER], "stop": 3}, 400, "invalid_stop"),
        ({"messages": [USER], "stop": [""]}, 400, "invalid_stop"),
        ({"messages": [USER], "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_stop"),
        ({"messages": [USER], "seed": "x"}, 400, "invalid_seed"),
        ({"messages": [USER], "seed": 1.5}, 400, "invalid_seed"),
        ({"messages": [USER], "temperature": -0.1}, 400, "invalid_temperature"),
        ({"messages": [USER], "temperature": 2.5}, 400, "invalid_temperature"),
        ({"messages": [USER], "temperature": "hot"}, 400, "invalid_temperature"),
        ({"messages": [USER], "top_p": 0}, 400, "invalid_top_p"),
        ({"messages": [USER], "top_p": 1.01}, 400, "invalid_top_p"),
        ({"messages": [USER], "top_k": -2}, 400, "invalid_top_k"),
        ({"messages": [USER], "top_k": 2.5}, 400, "invalid_top_k"),
        ({"messages": [USER], "min_p": 2}, 400, "invalid_min_p"),
        ({"messages": [USER], "presence_penalty": 2.5}, 400, "invalid_presence_penalty"),
        ({"messages": [USER], "frequency_penalty": -3}, 400, "invalid_frequency_penalty"),
        ({"messages": [USER], "n": 0}, 400, "invalid_n"),
        ({"messages": [USER], "n": 5}, 400, "invalid_n"),  # above ServeConfig.max_n
        ({"messages": [USER], "n": True}, 400, "invalid_n"),
        ({"messages": [USER], "logprobs": "yes"}, 400, "invalid_logprobs"),
        ({"messages": [USER], "logprobs": True, "top_logprobs": 21}, 400, "invalid_top_logprobs"),
        ({"messages": [USER], "top_logprobs": 2}, 400, "invalid_top_logprobs"),  # without logprobs
        ({"messages": [USER], "stream_options": {"include_usage": True}}, 400, "invalid_stream_options"),
        ({"messages": [USER], "stream": True, "stream_options": {"x": 1}}, 400, "invalid_stream_options"),
        ({"messages": [USER], "user": 7}, 400, "invalid_user"),
        ({"messages": [USER], "response_format": {"type": "json_schema"}}, 400, "invalid_response_format"),
        (
            {"messages": [USER], "response_format": {"type": "json_schema", "json_schema": {"schema": "x"}}},
            400,
            "invalid_response_format",
        ),
        ({"messages": [USER], "response_format": {"type": "text", "x": 1}}, 400, "invalid_response_format"),
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
    with pytest.raises(RequestError, match=r"messages\[1\] needs 'role' in \['system', 'developer', 'user'"):
        _parse({"messages": [USER, {"role": "bot", "content": "x"}]})
    with pytest.raises(RequestError, match=r"'temperature' must be a number between 0 and 2 \(0 decodes greedily\)"):
        _parse({"messages": [USER], "temperature": -1})
    with pytest.raises(RequestError, match=r"'top_p' must be a number in \(0, 1\]"):
        _parse({"messages": [USER], "top_p": 0})
    with pytest.raises(RequestError, match=r"'n' must be an integer in \[1, 4\]"):
        _parse({"messages": [USER], "n": 9})
    with pytest.raises(RequestError, match=r"messages\[0\].content\[1\] has type 'image_url'.*text"):
        _parse({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}]})


@pytest.mark.parametrize("field", ["max_tokens", "max_prompt_tokens", "max_body_bytes", "max_waiting", "max_n"])
def test_serve_limits_must_be_positive(field):
    with pytest.raises(ValueError, match=f"ServeConfig.{field} must be >= 1"):
        ServeConfig(**{field: 0})


def test_serve_refuses_a_non_loopback_host(tmp_path):
    with pytest.raises(ValueError, match="not loopback"):
        serve(tmp_path, host="0.0.0.0")


@pytest.mark.parametrize("port", [99999, 65536, -1])
def test_a_port_out_of_range_is_one_clear_error(tmp_path, port):
    with pytest.raises(ValueError, match=rf"^Port {port} is out of range. Fix: pass --port from 1 to 65535"):
        serve(tmp_path, port=port)


def test_slmops_serve_with_a_port_out_of_range_prints_one_line(tmp_path, capsys):
    from slmops_helpers.cli import main

    assert main(["serve", str(tmp_path), "--port", "99999"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Port 99999 is out of range") and err.count("\n") == 1 and "Traceback" not in err


def test_client_malformed_requests_cycle_through_every_kind():
    bodies = client.malformed_requests(MODEL, 50)
    assert len(bodies) == 50 and len(set(bodies)) == 18
    passed = []
    for body in set(bodies):
        try:
            passed.append(_parse(body, ServeConfig(max_tokens=256)))
        except RequestError as err:
            assert 400 <= err.status < 500
    # all but one fail validation; that one is a prompt far over any max_prompt_tokens
    assert len(passed) == 1 and len(passed[0].messages[0]["content"].split()) == 5000


# --- a real server on a loopback port -------------------------------------------------


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
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]] == expected
    assert all("usage" not in c for c in chunks)  # only with stream_options.include_usage
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
    assert {"invalid_temperature", "invalid_top_p", "invalid_n", "unsupported_content_part"} <= codes
    assert client.request(f"{url.removesuffix('/v1')}/health").status == 200
    assert _chat(url, {"messages": [USER], "max_tokens": 2}).status == 200


def _raw_post(url, headers: dict[str, str], parse: bool = True) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").removesuffix("/v1").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/v1/chat/completions", skip_accept_encoding=True)
    for key, value in headers.items():
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    status, payload = response.status, json.loads(response.read()) if parse else response.read()
    conn.close()
    return status, payload


def test_bad_body_sizes_and_headers_are_4xx(url, service):
    status, body = _raw_post(url, {"Content-Length": "0"})
    assert status == 413 and body["error"]["code"] == "bad_body_size"
    # refused from the header alone, before reading the body (so none is sent here: a body the
    # server never reads would make its close a connection reset, racing the client's read)
    status, body = _raw_post(url, {"Content-Length": "70000"})
    assert status == 413 and "64000" in body["error"]["message"]
    # A Content-Length that is not a number breaks HTTP itself: the HTTP layer answers 400
    # before any route runs, and the server carries on.
    for bad in ("-5", "twelve"):
        status, _ = _raw_post(url, {"Content-Length": bad}, parse=False)
        assert status == 400
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

    def stream(self, ids, max_tokens, constraint=None, sampler=None):
        from slmops_helpers.decoding import StreamedToken

        assert constraint is None and sampler is None  # these tests ask for neither a format nor sampling

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
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
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
        assert _next_event(response)["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        # The model is blocked after its first token: a server that buffers the answer
        # would send nothing more until release, and this read would time out.
        first = _next_event(response)
        assert first["choices"][0]["delta"] == {"content": "hub"} and not release.is_set()
        release.set()
        rest = [_next_event(response) for _ in range(4)]
        conn.close()
    assert [e["choices"][0]["delta"].get("content") for e in rest[:2]] == [" is", " down"]
    assert rest[2]["choices"][0]["finish_reason"] == "stop" and rest[3] == "[DONE]"


def test_a_client_that_leaves_mid_stream_gives_the_turn_back(tiny_package):
    release = threading.Event()
    service = ChatService(tiny_package, LIMITS)
    service.lm = ScriptedLM(service.lm, texts=["hub", " is", " down"], release=release)
    with running(service) as url:
        conn, response = _open_stream(url)
        _next_event(response), _next_event(response)  # the role, then "hub": the model now waits
        conn.close()  # the client leaves while its answer holds the model
        release.set()
        deadline = time.monotonic() + 20
        while service._turn.locked() or service._slots._value < LIMITS.max_waiting + 1:
            assert time.monotonic() < deadline, "the abandoned answer kept the model's turn"
            time.sleep(0.02)
        reply = _chat(url, {"messages": [USER], "max_tokens": 8}, timeout=20)
    assert reply.status == 200 and reply.body["choices"][0]["message"]["content"] == "hub is down"


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
    {"stream": True, "stream_options": {"include_usage": True}},
    {"stop": "\n"},
    {"stop": ["\n", "reply:"]},
    {"n": 2},
    {"seed": 7},
    {"temperature": 0.7},
    {"top_p": 0.9},
    {"top_k": 20},
    {"min_p": 0.1},
    {"logprobs": True, "top_logprobs": 3},
    {"logprobs": False, "top_logprobs": 0},  # what some clients send by default
    {"n": None, "seed": None},
    {"frequency_penalty": 0.5},
    {"presence_penalty": -1},
    {"user": "alice"},
    {"response_format": {"type": "text"}},
    {"response_format": {"type": "ticket_format"}},
    {"response_format": {"type": "json_object"}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "object"}}}},
    {"temperature": None},
    {"max_tokens": None, "stream": None, "stop": None},  # null is "not given", as in OpenAI's API
    {"max_tokens": 4, "max_completion_tokens": 4},
]
REFUSED = [
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"logit_bias": {"1": 5}}, "logit_bias"),
    ({"audio": {"voice": "alloy"}}, "audio"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"temprature": 0}, "temprature"),  # a typo is refused too, not ignored
]


@pytest.mark.parametrize("extra", SERVED, ids=lambda e: "+".join(e))
def test_openai_parameters_the_server_serves(extra):
    assert _parse({"messages": [USER], **extra}).messages == [USER]


@pytest.mark.parametrize("extra, name", REFUSED, ids=[n for _, n in REFUSED])
def test_openai_parameters_the_server_refuses_by_name(extra, name):
    with pytest.raises(RequestError) as info:
        _parse({"messages": [USER], **extra})
    assert info.value.status == 400 and info.value.code == "unsupported_parameter"
    assert f"'{name}'" in str(info.value)


def test_at_least_twelve_openai_parameters_are_served_or_refused_by_name():
    names = {n for e in SERVED for n in e} | {n for _, n in REFUSED}
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
    from slmops_helpers.decoding import StreamedToken
    from slmops_helpers.deploy.chat_api import cut_at_stop

    out = cut_at_stop((StreamedToken(i, p, 0.0) for i, p in enumerate(pieces)), stops)
    got = []
    while True:
        try:
            got.append(next(out))
        except StopIteration as end:
            assert end.value is stopped
            break
    whole = "".join(pieces)
    assert [text for text, _ in got] == expected and "".join(t for t, _ in got) == (
        whole.split(stops[0])[0] if stops else whole
    )
    # each token goes with the piece its text starts in, and never twice
    ids = [t.id for _, tokens in got for t in tokens]
    assert ids == sorted(set(ids))


def test_cut_at_stop_keeps_the_tokens_that_start_before_the_stop():
    from slmops_helpers.decoding import StreamedToken
    from slmops_helpers.deploy.chat_api import cut_at_stop

    tokens = [StreamedToken(i, t, 0.0) for i, t in enumerate(["ab", "c.", "de", "f"])]
    got = list(cut_at_stop(iter(tokens), ["."]))
    # "c." ends in the stop: its "c" is kept, with the token; "de" and "f" come after the stop
    assert [(text, [t.id for t in tokens]) for text, tokens in got] == [("ab", [0]), ("c", [1])]


def test_stop_ends_the_answer_before_the_string_with_finish_reason_stop(tiny_package):
    texts = ["category", ": billing", "\nerror", "_code: none"]
    with scripted_server(tiny_package, texts=texts) as url:
        reply = _chat(url, {"messages": [USER], "max_tokens": 8, "stop": ["\n"]})
        streamed = client.stream_chat(url, {"messages": [USER], "max_tokens": 8, "stop": "\n"})
        plain = _chat(url, {"messages": [USER], "max_tokens": 8})
    assert reply.body["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "category: billing"},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert "".join(streamed) == "category: billing"
    assert plain.body["choices"][0]["message"]["content"] == "".join(texts)  # without stop: the whole answer


def test_a_refused_parameter_is_a_400_from_the_running_server(url):
    reply = _chat(url, {"messages": [USER], "tools": [{"type": "function"}]})
    assert reply.status == 400 and reply.body["error"]["code"] == "unsupported_parameter"
    assert reply.body["error"]["param"] == "tools" and "'tools'" in reply.body["error"]["message"]
    assert client.request(f"{url}/health").status == 200


def test_the_openapi_description_lists_the_served_parameters(url):
    from slmops_helpers.deploy.chat_api import PARAMETERS

    root = url.removesuffix("/v1")
    spec = client.request(f"{root}/openapi.json").body
    body = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == set(PARAMETERS) and body["additionalProperties"] is False
    assert {"/v1/models", "/health"} <= set(spec["paths"])


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
    openai = pytest.importorskip("openai", reason="the openai client is a course dependency: pip install -e .")
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
    again = openai_client.chat.completions.create(model=MODEL, messages=[USER], max_tokens=8, seed=3, n=2)
    assert [c.message.content for c in again.choices] == [text, text]  # greedy: every seed and answer the same
    assert [c.index for c in again.choices] == [0, 1] and again.usage.completion_tokens == 2 * len(expected)


def _sampled(api, seed, **extra):
    kwargs = {"temperature": 1.5, "top_p": 0.95, "max_tokens": 10} | extra
    reply = api.chat.completions.create(model=MODEL, messages=[USER], seed=seed, **kwargs)
    return [c.message.content for c in reply.choices]


def test_the_openai_client_samples_reproducibly_with_a_seed(openai_client, service):
    assert _sampled(openai_client, 11) == _sampled(openai_client, 11)
    answers = {tuple(_sampled(openai_client, seed)) for seed in range(6)}
    greedy = "".join(_expected(service, [USER], 10)[1])
    assert len(answers) > 1 and answers != {(greedy,)}  # sampling is not greedy decoding under another name
    three = _sampled(openai_client, 5, n=3)
    assert len(three) == 3 and three == _sampled(openai_client, 5, n=3) and len(set(three)) > 1


def test_the_openai_client_streams_sampled_answers_with_usage(openai_client):
    stream = openai_client.chat.completions.create(
        model=MODEL, messages=[USER], max_tokens=10, temperature=1.5, seed=11, n=2, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    texts = {0: "", 1: ""}
    for chunk in chunks[:-1]:
        assert chunk.usage is None
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > chunks[-1].usage.completion_tokens > 0
    assert [texts[0], texts[1]] == _sampled(openai_client, 11, n=2, top_p=1.0)


def test_the_openai_client_gets_the_models_logprobs(openai_client, service):
    import numpy as np

    ids, expected = _expected(service, [USER], 4)
    reply = openai_client.chat.completions.create(
        model=MODEL, messages=[USER], max_tokens=4, logprobs=True, top_logprobs=3
    )
    content = reply.choices[0].logprobs.content
    assert reply.choices[0].message.content == "".join(expected)  # greedy, whatever logprobs asks
    assert [c.token for c in content] == [service.token_text(t.id) for t in service.lm.stream(ids, 4)]
    logits = service.lm.logits(ids)[-1].astype(np.float64)
    first = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
    assert content[0].logprob == pytest.approx(first.max(), abs=1e-4)
    assert all(len(c.top_logprobs) == 3 and c.top_logprobs[0].token == c.token for c in content)
    assert all(c.top_logprobs[0].logprob >= c.top_logprobs[1].logprob >= c.top_logprobs[2].logprob for c in content)
    plain = openai_client.chat.completions.create(model=MODEL, messages=[USER], max_tokens=4)
    assert plain.choices[0].logprobs is None


def test_the_openai_client_passes_penalties_top_k_and_min_p(openai_client, service):
    from slmops_helpers.decoding import Sampler

    repeats = [{"role": "user", "content": "the the"}]  # its greedy answer repeats "none your"
    ids, greedy = _expected(service, repeats, 10)
    sampler = Sampler(SamplingParams(presence_penalty=2.0, frequency_penalty=1.0))
    penalised = "".join(t.text for t in service.lm.stream(ids, 10, sampler=sampler))
    reply = openai_client.chat.completions.create(
        model=MODEL, messages=repeats, max_tokens=10, presence_penalty=2.0, frequency_penalty=1.0
    )
    assert reply.choices[0].message.content == penalised != "".join(greedy)
    # top_k=1 and min_p=1 leave only the most likely token: greedy at any temperature and seed
    for extra in ({"top_k": 1}, {"min_p": 1.0}):
        replies = [_sampled(openai_client, seed, extra_body=extra)[0] for seed in range(3)]
        assert replies == ["".join(_expected(service, [USER], 10)[1])] * 3, extra


def test_the_openai_client_sends_todays_message_format(openai_client, service):
    plain = openai_client.chat.completions.create(model=MODEL, messages=[USER], max_completion_tokens=6, user="u-1")
    parts = [{"type": "text", "text": "the hub"}, {"type": "text", "text": "is offline"}]
    split = openai_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": parts}], max_completion_tokens=6
    )
    joined = [{"role": "user", "content": "the hub\nis offline"}]
    assert split.choices[0].message.content == "".join(_expected(service, joined, 6)[1])
    assert plain.choices[0].message.content == "".join(_expected(service, [USER], 6)[1])
    developer = [{"role": "developer", "content": "reply : none"}, USER]
    reply = openai_client.chat.completions.create(model=MODEL, messages=developer, max_tokens=6)
    as_system = [{"role": "system", "content": "reply : none"}, USER]
    assert reply.choices[0].message.content == "".join(_expected(service, as_system, 6)[1])


@pytest.mark.parametrize(
    "extra, name",
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 9}, "n"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "image_url"),
    ],
)
def test_the_openai_client_gets_a_400_naming_a_refused_parameter(openai_client, extra, name):
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(**({"model": MODEL, "messages": [USER], "max_tokens": 4} | extra))
    assert f"'{name}'" in str(info.value)


# --- response_format "ticket_format": the answer decoded under the format's mask -----------


def test_ticket_format_is_parsed_as_a_constraint():
    assert _parse({"messages": [USER], "response_format": {"type": "ticket_format"}}).response_format == "ticket_format"
    assert _parse({"messages": [USER]}).response_format == "text"


def test_ticket_format_on_a_model_that_cannot_write_it_is_a_400(url):
    # The tiny test tokenizer has no token with a space, so "category: " cannot be written.
    reply = _chat(url, {"messages": [USER], "max_tokens": 4, "response_format": {"type": "ticket_format"}})
    assert reply.status == 400 and reply.body["error"]["code"] == "unsupported_parameter"
    assert "ticket_format" in reply.body["error"]["message"] and "category" in reply.body["error"]["message"]
    assert client.request(f"{url}/health").status == 200


def test_ticket_format_constrains_every_answer_and_a_cut_one_stays_a_prefix(tiny_package):
    from slmops_helpers.decoding.constrained import TicketFormat, _chain

    service = ChatService(tiny_package, LIMITS)
    texts = service.lm.token_texts()
    # A format this vocabulary can write: the answer must open with one of two words, then ":" .
    service._format = TicketFormat(texts, service.lm.eos_ids, _chain([["billing", "setup"], [":"]]))
    free = "".join(p.text for p in service.answer(ChatRequest([USER], 6)) if hasattr(p, "text"))
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


# --- response_format json_object / json_schema: JSON by grammar ---------------------------


class ByteLM:
    """A stand-in runtime over the byte-level tokenizer in ``folder`` whose logits are a fixed
    random function of the last token, decoded by the shared loop: fast, and free to wander
    anywhere a mask lets it."""

    def __init__(self, folder):
        from tokenizers import Tokenizer

        from slmops_helpers.decoding import greedy_stream

        self.folder, self.tokenizer = folder, Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.eos_ids, self.context_length = {self.vocab_size - 1}, 512
        self.table = np.random.default_rng(0).normal(0, 3, (self.vocab_size, self.vocab_size))
        self._loop = greedy_stream

    def encode(self, prompt):
        return self.tokenizer.encode(prompt).ids or [0]

    def decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def chat_prompt(self, messages):
        return " ".join(m["content"] for m in messages)

    def token_texts(self):
        return [self.decode([i]) for i in range(self.vocab_size)]

    def stream(self, ids, max_new_tokens, stop_at_eos=True, constraint=None, sampler=None):
        step = lambda new: self.table[new[-1]]  # noqa: E731
        return self._loop(step, ids, max_new_tokens, self.eos_ids, self.decode, constraint, sampler)


TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"enum": ["billing", "setup", "wifi"]},
        "error_code": {"type": "string", "pattern": "^(none|E-[0-9]{3})$"},
        "urgent": {"type": "boolean"},
        "steps": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9}, "maxItems": 3},
    },
    "required": ["category", "error_code", "urgent", "steps"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def json_url(tiny_package, byte_tokenizer_dir):
    service = ChatService(tiny_package, ServeConfig(max_tokens=200, max_prompt_tokens=100))
    service.lm = ByteLM(byte_tokenizer_dir)
    with running(service) as base:
        yield base


def _json_format(schema, name="ticket"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def test_json_schema_answers_parse_and_validate_greedy_and_sampled(json_url):
    import jsonschema

    openai = pytest.importorskip("openai", reason="the openai client is a course dependency: pip install -e .")
    api = openai.OpenAI(base_url=json_url, api_key="local", max_retries=0, timeout=60)
    fmt = _json_format(TICKET_SCHEMA)
    free = api.chat.completions.create(model=MODEL, messages=[USER], max_tokens=40, seed=0)
    with pytest.raises(json.JSONDecodeError):  # without the grammar this model writes bytes, not JSON
        json.loads(free.choices[0].message.content)
    answers = []
    for seed in range(5):
        reply = api.chat.completions.create(
            model=MODEL, messages=[USER], max_tokens=200, response_format=fmt, temperature=1.0, seed=seed, n=4
        )
        for choice in reply.choices:
            assert choice.finish_reason == "stop", choice.message.content
            answers.append(json.loads(choice.message.content))
            jsonschema.validate(answers[-1], TICKET_SCHEMA)
    assert len(answers) == 20 and len({json.dumps(a) for a in answers}) > 1
    greedy = api.chat.completions.create(model=MODEL, messages=[USER], max_tokens=200, response_format=fmt)
    jsonschema.validate(json.loads(greedy.choices[0].message.content), TICKET_SCHEMA)


def test_json_object_is_a_json_object_and_a_cut_one_says_length(json_url):
    reply = _chat(json_url, {"messages": [USER], "max_tokens": 200, "response_format": {"type": "json_object"}})
    choice = reply.body["choices"][0]
    assert reply.status == 200 and choice["finish_reason"] in ("stop", "length")
    if choice["finish_reason"] == "stop":
        assert isinstance(json.loads(choice["message"]["content"]), dict)
    cut = {"messages": [USER], "max_tokens": 3, "response_format": _json_format(TICKET_SCHEMA)}
    short = _chat(json_url, cut)
    assert short.body["choices"][0]["finish_reason"] == "length"
    assert short.body["choices"][0]["message"]["content"].startswith('{"')  # a prefix of a valid answer


def test_json_schema_streams_incrementally(json_url):
    payload = {"messages": [USER], "max_tokens": 200, "response_format": _json_format(TICKET_SCHEMA)}
    pieces = client.stream_chat(json_url, payload)
    assert len(pieces) > 10 and json.loads("".join(pieces))["category"] in ("billing", "setup", "wifi")


@pytest.mark.parametrize(
    "schema, why",
    [
        ({"type": "string", "pattern": "(unclosed"}, "unclosed group"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "missing"),
        ({"type": "nonsense"}, "nonsense"),
    ],
)
def test_a_schema_the_grammar_cannot_compile_is_a_400_saying_why(json_url, schema, why):
    reply = _chat(json_url, {"messages": [USER], "max_tokens": 8, "response_format": _json_format(schema)})
    assert reply.status == 400 and reply.body["error"]["code"] == "invalid_schema", reply.body
    assert "cannot be compiled" in reply.body["error"]["message"] and why in reply.body["error"]["message"]
    assert client.request(f"{json_url.removesuffix('/v1')}/health").status == 200


# --- one contract, two runtimes: the course model's ONNX and GGUF packages, the same calls ----

COURSE_ONNX = "onnx_int8"  # a fast export to build for the untuned model (the tuned one's is built at setup)


def _package(variant_dir, tmp_path_factory, label):
    from slmops_helpers import data
    from slmops_helpers.deploy.package import write_package

    out = tmp_path_factory.mktemp("course_packages") / label
    lineage = {"base_model": "SmolLM2-135M-Instruct", "variant": label}
    return write_package(variant_dir, out, MODEL, "1.0.0", lineage, system_prompt=data.SYSTEM_PROMPT)


@pytest.fixture(scope="module")
def gguf_package(course_gguf, tmp_path_factory):
    """The course model's Q4_0 GGUF, packaged like the ONNX exports."""
    return _package(course_gguf["gguf_q4_0"], tmp_path_factory, "gguf_q4_0")


@pytest.fixture(scope="module")
def onnx_package(course_source, tmp_path_factory):
    """The course model's int8 ONNX export (cached; `make model` builds it), packaged."""
    from slmops_helpers.deploy.export import build_variant

    return _package(build_variant(course_source, COURSE_ONNX), tmp_path_factory, COURSE_ONNX)


@pytest.fixture(scope="module")
def untuned_package(tmp_path_factory):
    """The untuned base model's int8 ONNX export, packaged (built once, then cached)."""
    from slmops_helpers.deploy.export import build_variant
    from slmops_helpers.models import DEFAULT_MODEL, prepare_model

    return _package(build_variant(Path(prepare_model(DEFAULT_MODEL)), COURSE_ONNX), tmp_path_factory, "untuned")


def course_ticket_schema():
    from slmops_helpers.data import CATEGORIES

    return client.ticket_schema(CATEGORIES, reply_chars=80)  # a short reply: every answer can end in max_tokens


def test_the_ticket_schema_accepts_a_dataset_answer_and_refuses_others():
    from slmops_helpers.data import CATEGORIES

    schema = client.ticket_schema(CATEGORIES, reply_chars=20)
    good = {"category": CATEGORIES[0], "error_code": "E-104", "reply": "Restart the hub."}
    assert client.follows_schema(json.dumps(good), schema)
    for bad in (
        good | {"category": "weather"},
        good | {"error_code": "E-1045"},
        good | {"reply": "x" * 21},
        good | {"extra": 1},
        {k: v for k, v in good.items() if k != "reply"},
    ):
        assert not client.follows_schema(json.dumps(bad), schema), bad
    assert not client.follows_schema(json.dumps(good)[:-1], schema)  # cut short: not JSON
    assert client.json_format(schema) == {"type": "json_schema", "json_schema": {"name": "ticket", "schema": schema}}


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "gguf"])
def test_both_runtimes_answer_every_openai_parameter(runtime, request):
    import jsonschema

    openai = pytest.importorskip("openai", reason="the openai client is a course dependency: pip install -e .")
    service = ChatService(request.getfixturevalue(f"{runtime}_package"), ServeConfig(max_tokens=96))
    assert service.manifest["runtime"] == runtime and type(service.lm).__name__ in ("OnnxCausalLM", "LlamaCppLM")
    ticket = [{"role": "user", "content": "My hub shows E-104 after the update. What now?"}]
    ids, expected = _expected(service, ticket, 12)
    text = "".join(expected)
    with running(service) as url:
        api = openai.OpenAI(base_url=url, api_key="not-needed-locally", max_retries=0, timeout=120)

        def create(**extra):
            return api.chat.completions.create(**({"model": MODEL, "messages": ticket, "max_tokens": 12} | extra))

        # greedy, streamed, stopped: the runtime's own answer
        assert create(seed=1).choices[0].message.content == text
        stream = create(stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        assert chunks[-1].usage.prompt_tokens == len(ids) and chunks[-1].usage.completion_tokens == len(expected)
        cut = text[len(text) // 2 :][:2] or text[:1]
        stopped = create(stop=[cut])
        assert (
            stopped.choices[0].message.content == text[: text.find(cut)] and stopped.choices[0].finish_reason == "stop"
        )
        # sampling: a seed reproduces, seeds differ, n answers
        sampled = dict(temperature=0.9, top_p=0.95, presence_penalty=0.3, frequency_penalty=0.3, n=2)
        first = [c.message.content for c in create(seed=7, **sampled).choices]
        assert first == [c.message.content for c in create(seed=7, **sampled).choices] and len(first) == 2
        others = {tuple(c.message.content for c in create(seed=s, **sampled).choices) for s in range(8, 11)}
        assert len(others | {tuple(first)}) > 1
        assert [c.message.content for c in create(seed=3, temperature=1.0, extra_body={"top_k": 1}).choices] == [text]
        assert create(seed=3, temperature=1.0, extra_body={"min_p": 0.1}).choices[0].finish_reason in ("stop", "length")
        # logprobs, today's message format, usage
        scored = create(max_tokens=4, logprobs=True, top_logprobs=2)
        content = scored.choices[0].logprobs.content
        assert len(content) == scored.usage.completion_tokens and all(c.logprob <= 0 for c in content)
        assert all(c.top_logprobs[0].token == c.token for c in content)  # greedy: the most likely token
        parts = [{"role": "developer", "content": "Answer briefly."}, {"role": "user", "content": [
            {"type": "text", "text": ticket[0]["content"]}]}]  # fmt: skip
        modern = create(messages=parts, max_tokens=None, max_completion_tokens=8, user="learner-1")
        as_system = [{"role": "system", "content": "Answer briefly."}, ticket[0]]
        assert modern.choices[0].message.content == "".join(_expected(service, as_system, 8)[1])
        # JSON by grammar
        schema = course_ticket_schema()
        fmt = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": schema}}
        answer = create(max_tokens=96, response_format=fmt, temperature=0.7, seed=0)
        assert answer.choices[0].finish_reason == "stop", answer.choices[0].message.content
        jsonschema.validate(json.loads(answer.choices[0].message.content), schema)
        anything = create(max_tokens=64, response_format={"type": "json_object"}).choices[0]
        if anything.finish_reason == "stop":
            assert isinstance(json.loads(anything.message.content), dict)
        else:  # cut by max_tokens: still the start of an object
            assert anything.message.content.startswith("{")
        with pytest.raises(openai.BadRequestError, match="'tools'"):
            create(tools=[{"type": "function", "function": {"name": "f"}}])
        assert client.request(f"{url.removesuffix('/v1')}/health").status == 200


@pytest.mark.slow
@pytest.mark.parametrize("model", ["untuned", "tuned"])
def test_json_schema_answers_validate_in_twenty_sampled_tries(model, request):
    """20 sampled answers (5 seeds x n=4) of the course model under the ticket schema: each one
    ends on its own, parses and validates."""
    import jsonschema

    openai = pytest.importorskip("openai", reason="the openai client is a course dependency: pip install -e .")
    from slmops_helpers.finetune import tuned_dir
    from slmops_helpers.models import is_prepared

    if model == "tuned" and not is_prepared(tuned_dir()):
        pytest.skip("the tuned model is not prepared (`make model` trains it)")
    package = request.getfixturevalue("untuned_package" if model == "untuned" else "onnx_package")
    schema = course_ticket_schema()
    fmt = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": schema}}
    messages = [{"role": "user", "content": "The app says E-231 and my hub will not pair. Help?"}]
    with running(ChatService(package, ServeConfig(max_tokens=200))) as url:
        api = openai.OpenAI(base_url=url, api_key="not-needed-locally", max_retries=0, timeout=300)
        answers = []
        for seed in range(5):
            reply = api.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=200, response_format=fmt, temperature=0.8, seed=seed, n=4
            )
            for choice in reply.choices:
                assert choice.finish_reason == "stop", choice.message.content
                answers.append(json.loads(choice.message.content))
                jsonschema.validate(answers[-1], schema)
    assert len(answers) == 20
