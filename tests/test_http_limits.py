"""The HTTP faces at the door: bad content parts, huge bodies, slow clients and too many connections."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from orchestration.faces.access import http_protocol
from orchestration.patterns.engine import Engine
from orchestration.faces.http_api import build_app
from orchestration.core.settings import HttpSettings
from orchestration.models.testing import FAKE_MODELS, ScriptedBackend, fake_settings, free_port

P = FAKE_MODELS["primary"]


class Served:
    """``build_app`` on uvicorn with our protocol (deadlines, connection cap), as ``mageagent serve`` runs it."""

    def __init__(self, http: HttpSettings) -> None:
        self.fake = ScriptedBackend()
        settings = fake_settings()
        self.port = free_port()
        app = build_app(Engine(settings, {"mlx": self.fake}), http)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    http=http_protocol(http)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            assert time.time() < deadline
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    def post(self, body: bytes, timeout: float = 30) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        conn.close()
        return resp.status, data

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture
def served() -> Iterator[Served]:
    with Served(HttpSettings(header_timeout_s=0.5, body_timeout_s=0.5, max_connections=4)) as s:
        yield s


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (reading whatever it sends first)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def chat(content: object) -> bytes:
    return json.dumps({"model": "mageagent:primary", "messages": [{"role": "user", "content": content}]}).encode()


@pytest.mark.parametrize("text", [5, None, ["a"], {"t": 1}])
def test_a_text_part_that_is_not_a_string_is_a_400(served: Served, text: object) -> None:
    status, data = served.post(chat([{"type": "text", "text": "look:"}, {"type": "text", "text": text}]))
    assert status == 400 and set(data["error"]) == {"message", "type", "param", "code"}, data
    assert data["error"]["param"] == "messages.0.content"
    assert "part 1 is a text part whose 'text' is" in data["error"]["message"]
    assert served.fake.history == []


def test_other_part_types_are_still_ignored(served: Served) -> None:
    served.fake.enqueue("seen", model=P)
    status, data = served.post(chat([{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "hi"}]))
    assert status == 200 and data["choices"][0]["message"]["content"] == "seen"
    assert served.fake.history[0].messages[-1].content == "hi"


def test_a_60_mb_body_gets_413_not_a_reset() -> None:
    with Served(HttpSettings(body_timeout_s=60)) as s:
        body = chat("x" * (60 * 1024 * 1024))
        status, data = s.post(body, timeout=60)  # http.client sends all 60 MB before it reads the answer
    assert status == 413 and data["error"]["code"] == "request_too_large"
    assert s.fake.history == []


def test_slow_headers_and_slow_bodies_are_cut_off(served: Served) -> None:
    silent = served.connect()
    slow_headers = served.connect()
    slow_headers.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    slow_body = served.connect()
    slow_body.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                      b"\r\nContent-Length: 100\r\n\r\n{\"model\":")
    assert closed_within(silent, 3) and closed_within(slow_headers, 3) and closed_within(slow_body, 3)
    assert served.fake.history == []


def test_a_long_run_is_not_cut_off_by_the_deadlines(served: Served) -> None:
    served.fake.enqueue("done", model=P, delay=0.4)  # per chunk: the answer takes longer than both deadlines
    status, data = served.post(chat("hi"))
    assert status == 200 and data["choices"][0]["message"]["content"] == "done"


def test_keep_alive_connections_get_a_header_deadline_again(served: Served) -> None:
    served.fake.enqueue("one", model=P)
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", chat("hi"), {"Content-Type": "application/json"})
    assert conn.getresponse().read()
    conn.sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")  # the next request, trickled
    assert closed_within(conn.sock, 3)


def test_connections_beyond_the_cap_are_closed_at_once() -> None:
    with Served(HttpSettings(max_connections=4, header_timeout_s=30)) as s:
        held = [s.connect() for _ in range(4)]
        time.sleep(0.2)
        extra = s.connect()
        assert closed_within(extra, 2)
        assert not closed_within(held[0], 0.5)
        for sock in held:
            sock.close()
        time.sleep(0.2)
        s.fake.enqueue("ok", model=P)
        assert s.post(chat("hi"))[0] == 200
