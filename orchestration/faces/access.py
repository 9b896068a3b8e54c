"""Who may call and how much: what every face checks before the engine runs.

Below the faces (the MCP server, the OpenAI-style HTTP API, the CLI): loopback binding and the API key, the
Host/Origin allow-lists and their check (the MCP SDK's rule, written here so the engine imports no MCP; the MCP
face hands the same lists to the SDK for its own HTTP transport), a Bearer-token ASGI wrapper, the
prompt-size cap every face applies before anything is tokenized, and uvicorn's HTTP/1.1 protocol with header and
body deadlines and a connection cap (uvicorn has a keep-alive timeout only).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..core.errors import ConfigError, RequestError
from ..core.settings import HttpSettings, Settings
from ..core.types import PatternRequest

__all__ = ["LOOPBACK_HOSTS", "LOOPBACK_ORIGINS", "is_loopback", "api_key", "allowed_hosts", "allowed_origins",
           "allowed", "host_origin_refusal", "require_bearer", "error_body", "one_line", "check_prompt_size", "check_verification", "MAX_JSON_DEPTH", "check_json_tree",
           "http_protocol"]

log = logging.getLogger(__name__)
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
MAX_JSON_DEPTH = 64  # a chat request nests a few levels; tool schemas a few more


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_key(http: HttpSettings, host: str, env: Mapping[str, str]) -> str | None:
    """The API key for a server bound to ``host``: read from ``http.api_key_env``; none off loopback is refused."""
    if http.api_key_env is None:
        if not is_loopback(host):
            raise ConfigError(f"refusing to bind {host} (not loopback) without an API key: set http.api_key_env "
                              "to the name of an environment variable holding one")
        return None
    key = env.get(http.api_key_env)
    if not key:
        raise ConfigError(f"http.api_key_env names {http.api_key_env}, but that environment variable is not set")
    return key


def allowed_hosts(http: HttpSettings) -> list[str]:
    """Host header values allowed: loopback plus ``http.allowed_hosts`` (always enforced)."""
    return LOOPBACK_HOSTS + http.allowed_hosts


def allowed_origins(http: HttpSettings) -> list[str]:
    """Origin header values allowed: loopback plus ``http.allowed_origins`` (always enforced)."""
    return LOOPBACK_ORIGINS + http.allowed_origins


def allowed(value: str, patterns: list[str]) -> bool:
    """Whether ``value`` is one of ``patterns``, or matches one ending in ``:*`` (any port): the MCP SDK's rule
    (``mcp.server.transport_security``), so both HTTP faces let in the same names."""
    return value in patterns or any(p.endswith(":*") and value.startswith(p[:-1]) for p in patterns)


def host_origin_refusal(http: HttpSettings, host: str | None, origin: str | None) -> tuple[int, str, str] | None:
    """Status, message and error code refusing a request's Host (421: a foreign name for this machine, DNS
    rebinding) or Origin (403; none is a same-origin request); None when both are allowed."""
    if not host or not allowed(host, allowed_hosts(http)):
        log.warning("refusing Host header %r", host)
        return 421, "Invalid Host header", "invalid_host"
    if origin and not allowed(origin, allowed_origins(http)):
        log.warning("refusing Origin header %r", origin)
        return 403, "Invalid Origin header", "invalid_origin"
    return None


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape (both HTTP faces answer in it)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def require_bearer(app: Any, key: str) -> Any:
    """An ASGI wrapper refusing HTTP requests without ``Authorization: Bearer key`` (for the MCP HTTP transport)."""
    expected = key.encode()
    body = json.dumps(error_body("missing or wrong API key: send 'Authorization: Bearer KEY'",
                                 "invalid_request_error", code="invalid_api_key")).encode()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), expected):
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded


def one_line(e: ValidationError, prefix: str = "invalid arguments") -> str:
    """pydantic's errors as one line naming each field (no input echo, no docs URL)."""
    problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'value'}: "
                         f"{err['msg'].removeprefix('Value error, ')}" for err in e.errors())
    return f"{prefix}: {problems}"


def check_prompt_size(request: PatternRequest, limit: int) -> None:
    """Refuse a request whose system, context and prompt together exceed ``limit`` characters (before any
    tokenizing: a 20 MB context must not reach the tokenizer)."""
    chars = len(request.prompt) + len(request.context or "") + len(request.system or "")
    if chars > limit:
        raise RequestError(f"the prompt, context and system hold {chars} characters; this server accepts at most "
                           f"{limit} (setting http.max_prompt_chars)")


def check_verification(settings: Settings) -> None:
    """``verify = execute`` in the settings needs a sandbox that works here: refused at start, with what is
    missing, instead of each call quietly falling back to the model's opinion."""
    if settings.verify != "execute":
        return
    from ..checks.verify import sandbox_problem  # probes bubblewrap / sandbox-exec: only when execution is demanded

    problem = sandbox_problem(settings.sandbox)
    if problem is not None:
        raise ConfigError(f"verify = execute, but no sandbox ({settings.sandbox}) can run code here: {problem}")


def check_json_tree(value: Any) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH and strings with lone surrogates (not encodable as UTF-8)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((k, depth) for k in node)
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("a string holds a lone UTF-16 surrogate (e.g. \\ud800), which is not text") from None


def http_protocol(http: HttpSettings) -> type[H11Protocol]:
    """uvicorn's h11 protocol with deadlines: a request's headers within ``header_timeout_s`` of the connection
    (or of the previous response), its body within ``body_timeout_s`` of its headers, and at most
    ``max_connections`` open at once (beyond it a connection is closed at once). A slow client is dropped;
    its run, if one started, is cancelled as for any disconnect."""

    class DeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _waiting_for: str | None = None  # "request headers" or "request body"

        def _arm(self, seconds: float, what: str) -> None:
            self._disarm()
            self._waiting_for = what
            self._deadline = self.loop.call_later(seconds, self._expire, what)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self._waiting_for = None

        def _expire(self, what: str) -> None:
            self._deadline = self._waiting_for = None
            if not self.transport.is_closing():
                log.info("closing the connection from %s: its %s did not arrive in time", self.client, what)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > http.max_connections:
                log.warning("refusing a connection from %s: %d are open (http.max_connections)", self.client,
                            http.max_connections)
                transport.close()
                return
            self._arm(http.header_timeout_s, "request headers")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            super().data_received(data)
            self._follow(before)

        def on_response_complete(self) -> None:
            before = self.cycle
            super().on_response_complete()  # a pipelined request may start here
            if self.cycle is before and not self.transport.is_closing():
                self._arm(http.header_timeout_s, "request headers")  # keep-alive: the next request's headers
            self._follow(before)

        def _follow(self, before: Any) -> None:
            cycle = self.cycle
            if cycle is not before and cycle is not None:  # a request's headers arrived: now its body
                self._disarm()
                if cycle.more_body:
                    self._arm(http.body_timeout_s, "request body")
            elif self._waiting_for == "request body" and cycle is not None and not cycle.more_body:
                self._disarm()

    return DeadlineProtocol
