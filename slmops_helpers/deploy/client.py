"""Talk to ``slmops serve`` from Python: start it, chat, load-test it, try to break it.

Only standard-library HTTP, so it works where the ``openai`` package is not installed;
the server speaks the same protocol, so ``openai.OpenAI(base_url=url)`` works too.
All traffic goes to the loopback address the server was started on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    seconds: float


def request(url: str, payload: Any = None, raw: bytes | None = None, timeout: float = 300) -> Reply:
    """POST ``payload`` (or ``raw`` bytes) to ``url``, or GET it when both are None."""
    data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read()
    seconds = time.perf_counter() - start
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = {"raw": text.decode(errors="replace")}
    return Reply(status, body, seconds)


def stream_chat(url: str, payload: dict[str, Any], timeout: float = 300) -> list[str]:
    """POST a streaming chat request; return the content pieces as they arrived."""
    req = urllib.request.Request(
        f"{url}/chat/completions",
        data=json.dumps(payload | {"stream": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    pieces = []
    with urllib.request.urlopen(req, timeout=timeout) as response:
        for line in response:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"]
            if delta.get("content"):
                pieces.append(delta["content"])
    return pieces


class ServerProcess:
    """``slmops serve`` in a child process, for the length of a ``with`` block.

    >>> with ServerProcess(package) as url:            # doctest: +SKIP
    ...     request(f"{url}/models").body
    """

    def __init__(self, package: Path, port: int = 0, startup_s: float = 120) -> None:
        self.package, self.port, self.startup_s = Path(package), port, startup_s

    def __enter__(self) -> str:
        command = [sys.executable, "-m", "slmops_helpers.cli", "serve", str(self.package), "--port", str(self.port)]
        # The server's output goes to a file, not a pipe: an unread pipe fills and stalls it.
        self.log = tempfile.NamedTemporaryFile("w+", prefix="slmops-serve.", suffix=".log", delete=False)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline and self.process.poll() is None:
            for line in Path(self.log.name).read_text().splitlines():
                if line.startswith("Serving "):
                    return line.split(" at ")[-1].strip()
            time.sleep(0.1)
        output = Path(self.log.name).read_text()
        self.__exit__()
        raise RuntimeError(f"The server did not start:\n{output[-2000:]}")

    def output(self) -> str:
        """What the server printed so far (errors included)."""
        return Path(self.log.name).read_text()

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def ticket_schema(categories: Sequence[str], reply_chars: int = 120) -> dict[str, Any]:
    """The course's answer as a JSON schema, for ``response_format`` ``json_schema``: a category
    from ``categories``, an error code shaped like the dataset's, and a reply of at most
    ``reply_chars`` characters (a bound that also lets every answer end within ``max_tokens``)."""
    return {
        "type": "object",
        "properties": {
            "category": {"enum": list(categories)},
            "error_code": {"type": "string", "pattern": "^(none|E-[0-9]{3})$"},
            "reply": {"type": "string", "maxLength": reply_chars},
        },
        "required": ["category", "error_code", "reply"],
        "additionalProperties": False,
    }


def json_format(schema: dict[str, Any], name: str = "ticket") -> dict[str, Any]:
    """``response_format`` asking for JSON that follows ``schema``."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def follows_schema(content: str, schema: dict[str, Any]) -> bool:
    """Whether ``content`` parses as JSON and validates against ``schema``."""
    import jsonschema

    try:
        jsonschema.validate(json.loads(content), schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def load_test(url: str, payloads: list[dict[str, Any]], concurrency: int) -> list[Reply]:
    """Send ``payloads`` with ``concurrency`` requests in flight; replies in order."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda p: request(f"{url}/chat/completions", p), payloads))


def malformed_requests(model: str, n: int = 50) -> list[bytes]:
    """``n`` broken request bodies, cycling through the mistakes clients make."""
    good = {"role": "user", "content": "hi"}
    kinds = [
        b"{not json",
        b"[]",
        json.dumps({"model": model}).encode(),
        json.dumps({"model": model, "messages": []}).encode(),
        json.dumps({"model": model, "messages": "hello"}).encode(),
        json.dumps({"model": model, "messages": [{"role": "wizard", "content": "hi"}]}).encode(),
        json.dumps({"model": model, "messages": [{"role": "user", "content": 42}]}).encode(),
        json.dumps({"model": model, "messages": [good], "max_tokens": 0}).encode(),
        json.dumps({"model": model, "messages": [good], "max_tokens": 10**6}).encode(),
        json.dumps({"model": model, "messages": [good], "max_tokens": "ten"}).encode(),
        json.dumps({"model": model, "messages": [good], "stream": "yes"}).encode(),
        json.dumps({"model": "gpt-unknown", "messages": [good]}).encode(),
        json.dumps({"model": model, "messages": [{"role": "user", "content": "word " * 5000}]}).encode(),
        "\udcff".encode("utf-8", "surrogateescape"),
        json.dumps({"model": model, "messages": [good], "temperature": -1}).encode(),
        json.dumps({"model": model, "messages": [good], "top_p": 0}).encode(),
        json.dumps({"model": model, "messages": [good], "n": 99}).encode(),
        json.dumps({"model": model, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).encode(),
    ]
    return [kinds[i % len(kinds)] for i in range(n)]
