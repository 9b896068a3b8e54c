"""Between the SDK's stdio transport and the server: every request answered, and the requests in flight bounded.

The SDK drops a line it cannot parse (a lone surrogate such as ``"\\ud800"``, JSON nested past its parser's limit)
with a debug log and no answer, so the host waits forever; here each gets a JSON-RPC error naming its request id
(a line that is not JSON at all gets JSON-RPC's parse error with id null; a broken notification, nothing).
Parameters nested deeper than the HTTP face allows are refused the same way. And a host that stops reading our
stdout while it keeps writing requests no longer grows the server without bound: past ``max_in_flight``
unanswered requests this layer stops taking lines, the SDK's reader stops reading stdin, and the host's pipe
fills instead of our memory. A line longer than the largest request body is not held either: ``bounded_stdin``
reads it to its end, keeping its first bytes only, and the request gets an error naming its id.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, BinaryIO

import anyio
from mcp.shared.message import SessionMessage
from mcp_types import (INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, JSONRPCNotification,
                       JSONRPCRequest, JSONRPCResponse)
from pydantic import ValidationError

from orchestration.faces.access import MAX_JSON_DEPTH, check_json_tree, one_line

__all__ = ["MAX_IN_FLIGHT", "screened", "request_id", "BoundedLines", "bounded_stdin"]

log = logging.getLogger(__name__)
MAX_IN_FLIGHT = 32  # requests read but not yet answered; the engine's own queue is smaller
OVERSIZED = "mageagent/oversized"  # what stands in for a line too long to hold (never a real method)
HEAD_BYTES = 4096  # of an oversized line, what is kept to find its id


def request_id(raw: Any) -> tuple[bool, Any]:
    """(found, id) of a JSON-RPC message given as text or as parsed JSON; (False, None) when it has none."""
    if isinstance(raw, dict):
        return ("id" in raw and "method" in raw, raw.get("id"))
    if not isinstance(raw, str):
        return False, None
    try:
        value = json.loads(raw)
    except (RecursionError, ValueError):  # nested past Python's limit, or broken further on: the top level only
        return _top_level_id(raw)
    return request_id(value) if isinstance(value, dict) else (False, None)


def _unparseable(raw: Any) -> bool:
    try:
        json.loads(raw)
    except RecursionError:
        return False
    except (TypeError, ValueError):
        return True
    return False


def _top_level_id(text: str) -> tuple[bool, Any]:
    """The ``id`` of the outermost object, reading nothing below the top level, up to the first broken part."""
    decoder = json.JSONDecoder()
    depth, i, found, value, method = 0, 0, False, None, False
    try:
        while i < len(text):
            c = text[i]
            if c == '"':
                key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
                j = i
                while j < len(text) and text[j] in " \t\r\n":
                    j += 1
                if depth == 1 and j < len(text) and text[j] == ":":
                    method = method or key == "method"
                    if key == "id":
                        k = j + 1
                        while k < len(text) and text[k] in " \t\r\n":
                            k += 1
                        value, _ = decoder.raw_decode(text, k)
                        found = isinstance(value, (int, str)) and not isinstance(value, bool)
                continue
            depth += (c in "{[") - (c in "}]")
            i += 1
    except ValueError:  # broken past here: what was read so far stands
        pass
    return found and method, value if found else None


def _refusal(message: Any) -> tuple[int, str] | None:
    """Why a parsed request must not reach the server (parameters nested too deep, lone surrogates), or None."""
    if not isinstance(message, JSONRPCRequest) or message.params is None:
        return None
    if message.method == OVERSIZED:
        return INVALID_REQUEST, (f"the message is {message.params.get('bytes')} bytes; this server reads at most "
                                 f"{message.params.get('limit')} (setting http.max_body_bytes)")
    try:
        check_json_tree(message.params)
    except ValueError as e:
        return INVALID_REQUEST, f"{message.method}: {e}"
    return None


def _why(e: Exception) -> tuple[int, str, Any]:
    """JSON-RPC code, message and the offending input of a line the SDK could not take. Python's own JSON reader
    says what is wrong with it (the SDK's parser stops at lone surrogates and at about 250 levels)."""
    if not (isinstance(e, ValidationError) and e.errors()):
        return PARSE_ERROR, f"unreadable message ({type(e).__name__})", None
    err = e.errors()[0]
    raw = err.get("input")
    if err["type"] != "json_invalid":
        return INVALID_REQUEST, one_line(e, "not a JSON-RPC message"), raw
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except RecursionError:
        return INVALID_REQUEST, f"the JSON nests deeper than {MAX_JSON_DEPTH} levels", raw
    except ValueError as bad:
        return PARSE_ERROR, f"not valid JSON: {bad}", raw
    try:
        check_json_tree(value)
    except ValueError as problem:  # too deep, or a lone surrogate (half of an emoji cut in two)
        return INVALID_REQUEST if "nests deeper" in str(problem) else PARSE_ERROR, str(problem), raw
    return PARSE_ERROR, f"not valid JSON: {err.get('ctx', {}).get('error') or err['msg']}", raw


class _Guard:
    """Counts the requests in flight and answers the ones the server will never see."""

    def __init__(self, read: Any, write: Any, max_in_flight: int) -> None:
        self.inner_read, self.inner_write = read, write
        self.max_in_flight = max_in_flight
        self.in_flight: dict[Any, int] = {}
        self.changed = anyio.Event()

    def count(self) -> int:
        return sum(self.in_flight.values())

    def done(self, rid: Any) -> None:
        n = self.in_flight.get(rid, 0)
        if n <= 1:
            self.in_flight.pop(rid, None)
        else:
            self.in_flight[rid] = n - 1
        self.changed.set()

    async def refuse(self, rid: Any, code: int, message: str) -> None:
        log.warning("refused request %r: %s", rid, message)
        await self.inner_write.send(SessionMessage(JSONRPCError(jsonrpc="2.0", id=rid,
                                                                error=ErrorData(code=code, message=message))))

    async def receive(self) -> Any:
        while True:
            while self.count() >= self.max_in_flight:  # let the host's pipe fill, not our memory
                self.changed = anyio.Event()
                await self.changed.wait()
            item = await self.inner_read.receive()
            if isinstance(item, Exception):
                code, message, raw = _why(item)
                found, rid = request_id(raw)
                if found:
                    await self.refuse(rid, code, message)
                elif code == PARSE_ERROR and _unparseable(raw):  # JSON-RPC: a parse error answers with id null
                    await self.refuse(None, code, message)
                else:  # a notification: nobody waits for an answer
                    log.warning("dropped a notification the SDK cannot read: %s", message)
                continue
            msg = item.message
            refused = _refusal(msg)
            if refused is not None:
                await self.refuse(msg.id, *refused)
                continue
            if isinstance(msg, JSONRPCRequest):
                self.in_flight[msg.id] = self.in_flight.get(msg.id, 0) + 1
            elif isinstance(msg, JSONRPCNotification) and msg.method == "notifications/cancelled":
                rid = (msg.params or {}).get("requestId")
                if rid in self.in_flight:  # a cancelled request may get no answer
                    self.done(rid)
            return item

    async def send(self, item: SessionMessage) -> None:
        await self.inner_write.send(item)  # returns once the writer took it: earlier answers are written
        msg = item.message
        if isinstance(msg, (JSONRPCResponse, JSONRPCError)) and msg.id in self.in_flight:
            self.done(msg.id)


class _Side:
    """One end of the screened pair; closing it closes the transport's stream beneath."""

    def __init__(self, guard: _Guard, inner: Any) -> None:
        self._guard, self._inner = guard, inner

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _ReadSide(_Side):
    @property
    def last_context(self) -> Any:  # the SDK restores the sender's context vars from it
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        return await self._guard.receive()

    def __aiter__(self) -> _ReadSide:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None


class _WriteSide(_Side):
    async def send(self, item: SessionMessage, /) -> None:
        await self._guard.send(item)

    def close(self) -> None:
        self._inner.close()


class BoundedLines:
    """A binary stream as text lines of at most ``limit`` bytes, for the SDK's stdio reader. A longer line is read
    to its end keeping only its head, and stands in as a small ``mageagent/oversized`` request with the same id
    (a notification when no id is found), which the guard refuses."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.limit = stream, limit

    def __aiter__(self) -> BoundedLines:
        return self

    async def __anext__(self) -> str:
        line = await anyio.to_thread.run_sync(self.readline, abandon_on_cancel=True)
        if line is None:
            raise StopAsyncIteration
        return line

    def readline(self) -> str | None:
        chunk = self.stream.readline(self.limit + 1)
        if not chunk:
            return None
        if len(chunk) <= self.limit or chunk.endswith(b"\n"):
            return chunk.decode("utf-8", errors="replace")
        head, size = chunk[:HEAD_BYTES], len(chunk)
        while chunk and not chunk.endswith(b"\n"):  # the rest is read and dropped
            chunk = self.stream.readline(1 << 20)
            size += len(chunk)
        found, rid = _top_level_id(head.decode("utf-8", errors="replace"))
        log.warning("a %d-byte message (limit %d) was read and dropped", size, self.limit)
        stand_in: dict[str, Any] = {"jsonrpc": "2.0", "method": OVERSIZED, "params": {"bytes": size,
                                                                                     "limit": self.limit}}
        return json.dumps({**stand_in, "id": rid} if found else stand_in) + "\n"


@contextmanager
def bounded_stdin(limit: int) -> Iterator[BoundedLines]:
    """The process's stdin as bounded lines. As the SDK does with the stdin it reads, fd 0 points at the null
    device meanwhile (a child reads EOF, never the protocol), and is restored after."""
    wire = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    stream = os.fdopen(wire, "rb", closefd=False)
    try:
        yield BoundedLines(stream, limit)
    finally:
        os.dup2(wire, 0)
        os.close(wire)


@asynccontextmanager
async def screened(read_stream: Any, write_stream: Any,
                   max_in_flight: int = MAX_IN_FLIGHT) -> AsyncIterator[tuple[Any, Any]]:
    """The transport's streams, screened: what the server reads and where it writes."""
    guard = _Guard(read_stream, write_stream, max_in_flight)
    yield _ReadSide(guard, read_stream), _WriteSide(guard, write_stream)
