"""A minimal asyncio HTTP/1.1 client for the bench's load: keep-alive connections, no more.

On a small machine the load generator shares the CPU with the stack it measures. httpx spends
about 2 ms of CPU on a request; this client about 0.2 ms, so the stack keeps the CPU it needs.
It does what the bench needs and does it by the book (RFC 9112):

- one request at a time on a persistent connection, opened on first use;
- a response framed by Content-Length, by `Transfer-Encoding: chunked`, or by the close of the
  connection; 1xx interim responses skipped; `Connection: close` honoured;
- a connection idle longer than `keepalive_expiry` is replaced before it is used, so a
  request does not race the server closing it;
- should the server have closed a reused connection anyway before answering, the request is
  sent again once on a new connection, but only when that is safe: it carries an
  Idempotency-Key, or its method is safe (GET, HEAD, OPTIONS). Otherwise the error surfaces;
- a timeout per request; any failure closes the connection, as its state is then unknown.

No redirects, cookies, compression, proxies or HTTP/2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 60.0
DEFAULT_KEEPALIVE_EXPIRY = 2.0
STREAM_LIMIT = 1 << 20
"""Longest response head (and chunk-size line) accepted, in bytes."""

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")


class HTTPError(Exception):
    """A request that brought no complete answer."""


class ConnectError(HTTPError):
    """The connection could not be opened."""


class ConnectionLost(HTTPError):
    """The server closed or reset the connection before the answer was complete."""


class ProtocolError(HTTPError):
    """The server's answer is not valid HTTP/1.1."""


class RequestTimeout(HTTPError):
    """No complete answer within the timeout."""


class PoolTimeout(HTTPError):
    """No connection of the pool became free within the timeout."""


class _Unanswered(Exception):
    """The connection failed before any byte of the answer: the request may be sent again."""


class Response(NamedTuple):
    status: int
    headers: dict[str, str]
    """Field names in lower case; a repeated field's values joined with ", "."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    authority: str
    """The Host header: the host, and the port unless it is the scheme's default."""

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        default = 443 if parts.scheme == "https" else 80
        port = parts.port or default
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        return cls(parts.scheme, host, port, shown if port == default else f"{shown}:{port}")


def _check_token(text: str, what: str) -> str:
    if not text or any(c in text for c in " \t\r\n\0:"):
        raise ValueError(f"invalid {what}: {text!r}")
    return text


def _check_value(text: str, what: str) -> str:
    if any(c in text for c in "\r\n\0") or text != text.strip(" \t"):
        raise ValueError(f"invalid {what} value: {text!r}")
    return text


class Connection:
    """One persistent HTTP/1.1 connection to the origin of `url`, one request at a time."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.origin = Origin.parse(url)
        self.timeout = timeout
        self.keepalive_expiry = keepalive_expiry
        self._ssl: ssl.SSLContext | None = None
        if self.origin.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._idle_since = 0.0
        self._busy = False
        self.connects = 0
        """How many times a connection was opened (the first time included)."""
        self.retries = 0
        """How many requests were sent again after a reused connection was found closed."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def post(
        self,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        content_type: str = "application/json",
    ) -> Response:
        return await self.request("POST", path, body, headers, content_type=content_type)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        content_type: str | None = None,
    ) -> Response:
        """Send one request and read its whole answer; HTTPError when there is none."""
        if self._busy:
            raise RuntimeError("a Connection carries one request at a time")
        head = self._head(method, path, body, headers or {}, content_type)
        retry_safe = method in _SAFE_METHODS or any(
            name.lower() == "idempotency-key" for name in headers or {}
        )
        self._busy = True
        try:
            async with asyncio.timeout(self.timeout):
                reused = await self._connect()
                try:
                    return await self._exchange(method, head + body)
                except _Unanswered as exc:
                    self._close()
                    if not (reused and retry_safe):
                        raise ConnectionLost(str(exc)) from exc
                self.retries += 1
                await self._connect()
                try:
                    return await self._exchange(method, head + body)
                except _Unanswered as exc:
                    raise ConnectionLost(f"{exc} (on a new connection, after a retry)") from exc
        except TimeoutError:
            self._close()
            raise RequestTimeout(f"no complete answer within {self.timeout:g} s") from None
        except BaseException:
            self._close()
            raise
        finally:
            self._busy = False

    async def aclose(self) -> None:
        writer = self._writer
        self._close()
        if writer is not None:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    def _head(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        content_type: str | None,
    ) -> bytes:
        if not path.startswith("/") or any(c in path for c in " \r\n\0"):
            raise ValueError(f"invalid request target: {path!r}")
        lines = [
            f"{_check_token(method, 'method')} {path} HTTP/1.1",
            f"Host: {self.origin.authority}",
        ]
        if content_type is not None:
            lines.append(f"Content-Type: {_check_value(content_type, 'Content-Type')}")
        if body or method not in _SAFE_METHODS:
            lines.append(f"Content-Length: {len(body)}")
        for name, value in headers.items():
            if name.lower() in _FRAMING_HEADERS or (
                content_type is not None and name.lower() == "content-type"
            ):
                raise ValueError(f"the client sets {name} itself")
            lines.append(f"{_check_token(name, 'header name')}: {_check_value(value, name)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    async def _connect(self) -> bool:
        """Make sure a usable connection is open; True when it is one already used before."""
        reader, writer = self._reader, self._writer
        if reader is not None and writer is not None:
            if (
                not reader.at_eof()
                and not writer.is_closing()
                and time.monotonic() - self._idle_since < self.keepalive_expiry
            ):
                return True
            self._close()
        try:
            self._reader, self._writer = await asyncio.open_connection(
                self.origin.host,
                self.origin.port,
                ssl=self._ssl,
                server_hostname=self.origin.host if self._ssl else None,
                limit=STREAM_LIMIT,
            )
        except OSError as exc:
            raise ConnectError(
                f"{self.origin.host}:{self.origin.port}: {type(exc).__name__}: {exc}"
            ) from exc
        self.connects += 1
        return False

    async def _exchange(self, method: str, request: bytes) -> Response:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise RuntimeError("no open connection")
        try:
            writer.write(request)
            await writer.drain()
            block = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise ConnectionLost(
                    f"the connection closed in the answer's head after {len(exc.partial)} bytes"
                ) from exc
            raise _Unanswered("the server closed the connection without answering") from exc
        except asyncio.LimitOverrunError as exc:
            raise ProtocolError(f"answer head over {STREAM_LIMIT} bytes") from exc
        except OSError as exc:
            raise _Unanswered(f"{type(exc).__name__}: {exc}") from exc
        try:
            version, status, headers = _parse_head(block)
            while 100 <= status < 200:
                if status == 101:
                    raise ProtocolError("101 Switching Protocols to a request without Upgrade")
                version, status, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
            body, framed = await _read_body(reader, method, status, headers)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionLost("the connection closed before the answer was complete") from exc
        except asyncio.LimitOverrunError as exc:
            raise ProtocolError(f"answer line over {STREAM_LIMIT} bytes") from exc
        except OSError as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        options = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep_alive = (
            framed
            and "close" not in options
            and (version == b"HTTP/1.1" or "keep-alive" in options)
        )
        if keep_alive:
            self._idle_since = time.monotonic()
        else:
            self._close()
        return Response(status, headers, body)


def _parse_head(block: bytes) -> tuple[bytes, int, dict[str, str]]:
    """The version, status and header fields of a response head ending in CRLF CRLF."""
    lines = block[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if (
        version not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(code) != 3
        or not _DIGITS.issuperset(code)
        or rest[3:4] not in (b"", b" ")
    ):
        raise ProtocolError(f"invalid status line: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    name = ""
    for raw in lines[1:]:
        if raw[:1] in (b" ", b"\t"):  # obsolete line folding: part of the previous value
            if not name:
                raise ProtocolError(f"invalid header line: {raw[:100]!r}")
            folded = raw.strip(b" \t").decode("latin-1")
            headers[name] = f"{headers[name]} {folded}".strip()
            continue
        field, colon, value = raw.partition(b":")
        if not colon or not field or field != field.strip():
            raise ProtocolError(f"invalid header line: {raw[:100]!r}")
        name = field.decode("latin-1").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return version, int(code), headers


async def _read_body(
    reader: asyncio.StreamReader, method: str, status: int, headers: Mapping[str, str]
) -> tuple[bytes, bool]:
    """The body, and whether it was framed (False: it ran to the close of the connection)."""
    if method == "HEAD" or status in (204, 304):
        return b"", True
    coding = headers.get("transfer-encoding")
    if coding is not None:
        codings = [c.strip().lower() for c in coding.split(",")]
        if codings == ["chunked"]:
            return await _read_chunked(reader), True
        if "chunked" in codings:
            raise ProtocolError(f"unsupported transfer coding: {coding!r}")
        return await reader.read(), False
    length = headers.get("content-length")
    if length is not None:
        values = {v.strip() for v in length.split(",")}
        value = values.pop().encode() if len(values) == 1 else b""
        if not value or not _DIGITS.issuperset(value):
            raise ProtocolError(f"invalid Content-Length: {length!r}")
        return await reader.readexactly(int(value)), True
    return await reader.read(), False


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        digits = size_line[:-2].split(b";", 1)[0].strip(b" \t")
        if not digits or not _HEXDIGITS.issuperset(digits):
            raise ProtocolError(f"invalid chunk size line: {size_line[:100]!r}")
        size = int(digits, 16)
        if size == 0:
            break
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise ProtocolError("a chunk does not end in CRLF")
        parts.append(chunk[:-2])
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields, ignored
        pass
    return b"".join(parts)


class Pool:
    """Up to `size` connections to one origin, each carrying a request at a time: the most
    recently used free connection first (a connection opens on first use), else wait."""

    def __init__(
        self,
        url: str,
        size: int,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs a connection at least")
        self.timeout = timeout
        self.connections = [
            Connection(
                url, timeout=timeout, keepalive_expiry=keepalive_expiry, ssl_context=ssl_context
            )
            for _ in range(size)
        ]
        self._free: asyncio.LifoQueue[Connection] = asyncio.LifoQueue()
        for connection in reversed(self.connections):
            self._free.put_nowait(connection)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def post(
        self,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        content_type: str = "application/json",
    ) -> Response:
        try:
            async with asyncio.timeout(self.timeout):
                connection = await self._free.get()
        except TimeoutError:
            raise PoolTimeout(f"no free connection within {self.timeout:g} s") from None
        try:
            return await connection.post(path, body, headers, content_type=content_type)
        finally:
            self._free.put_nowait(connection)

    async def aclose(self) -> None:
        for connection in self.connections:
            await connection.aclose()
