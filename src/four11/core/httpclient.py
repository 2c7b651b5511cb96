"""A small HTTP/1.1 client on asyncio streams, with h11 doing the protocol.

The node agent must stay under 40 MB of RSS; importing aiohttp's client costs about 14 MB,
h11 (a pure-Python HTTP/1.1 state machine) well under one. h11 frames requests and parses
answers; this module only moves bytes, applies the connect and read timeouts, caps the
body, and keeps a few idle connections per server for the requests of one sync.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import h11

READ_CHUNK = 64 * 1024
MAX_HEADERS = 64 * 1024  # an answer whose head is bigger than this is refused
MAX_IDLE = 4  # idle connections kept per server


class HttpError(Exception):
    """Connect, read or protocol failure; the message is one line."""


class BodyTooLarge(HttpError):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADERS)
        self.used = False  # served a request before: the server may have closed it meanwhile

    def close(self) -> None:
        self.writer.close()


class Client:
    """Requests to one server (scheme, host, port). Safe for concurrent requests: each
    takes its own connection."""

    def __init__(self, scheme: str, host: str, port: int | None, connect_timeout: float,
                 read_timeout: float) -> None:
        default = 443 if scheme == "https" else 80
        self.host, self.port = host, port or default
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.ssl = ssl.create_default_context() if scheme == "https" else None
        name = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
        self.authority = name if self.port == default else f"{name}:{self.port}"
        self._idle: list[_Conn] = []

    async def _connect(self) -> _Conn:
        try:
            async with asyncio.timeout(self.connect_timeout):
                r, w = await asyncio.open_connection(self.host, self.port, ssl=self.ssl,
                                                     limit=READ_CHUNK)
        except TimeoutError:
            raise HttpError(f"connect timed out after {self.connect_timeout:g} s") from None
        except (OSError, ssl.SSLError) as e:
            raise HttpError(f"connect failed: {e.strerror or e}") from None
        return _Conn(r, w)

    async def get(self, target: str, headers: dict[str, str], max_size: int,
                  read_timeout: float | None = None) -> Response:
        """GET ``target``; a body over ``max_size`` raises BodyTooLarge unread."""
        while self._idle:
            conn = self._idle.pop()
            try:
                return await self._exchange(conn, target, headers, max_size, read_timeout)
            except _Stale:
                conn.close()  # closed by the server while idle: try the next one
        return await self._exchange(await self._connect(), target, headers, max_size, read_timeout)

    async def _exchange(self, conn: _Conn, target: str, headers: dict[str, str], max_size: int,
                        read_timeout: float | None) -> Response:
        reused, conn.used = conn.used, True
        got_any = False
        limit = read_timeout or self.read_timeout
        try:
            hdrs = [("Host", self.authority), *headers.items()]
            conn.writer.write(conn.h.send(h11.Request(method="GET", target=target, headers=hdrs))
                              + conn.h.send(h11.EndOfMessage()))
            status, rh, body = 0, {}, bytearray()
            async with asyncio.timeout(limit):
                while True:
                    ev = conn.h.next_event()
                    if ev is h11.NEED_DATA:
                        data = await conn.reader.read(READ_CHUNK)
                        if not data and reused and not got_any:
                            raise _Stale
                        got_any = True
                        conn.h.receive_data(data)
                    elif isinstance(ev, h11.Response):
                        status = ev.status_code
                        rh = {k.decode("latin-1"): v.decode("latin-1") for k, v in ev.headers}
                        declared = rh.get("content-length", "")
                        if declared.isdigit() and int(declared) > max_size:
                            raise BodyTooLarge(f"{declared} bytes, limit {max_size}")
                    elif isinstance(ev, h11.Data):
                        body += ev.data
                        if len(body) > max_size:
                            raise BodyTooLarge(f"more than the limit of {max_size} bytes")
                    elif isinstance(ev, h11.EndOfMessage):
                        break
                    elif isinstance(ev, h11.ConnectionClosed):
                        raise HttpError("connection closed before the answer ended")
        except _Stale:
            raise
        except BaseException as e:
            conn.close()
            if reused and not got_any and isinstance(e, OSError):
                raise _Stale from None  # reset while idle
            if isinstance(e, TimeoutError):
                raise HttpError(f"no answer within {limit:g} s") from None
            if isinstance(e, h11.ProtocolError):
                raise HttpError(f"bad HTTP answer: {e}") from None
            if isinstance(e, OSError):
                raise HttpError(f"connection failed: {e.strerror or e}") from None
            raise
        self._keep(conn)
        return Response(status, rh, bytes(body))

    def _keep(self, conn: _Conn) -> None:
        if conn.h.our_state is h11.DONE and conn.h.their_state is h11.DONE \
                and len(self._idle) < MAX_IDLE:
            conn.h.start_next_cycle()
            self._idle.append(conn)
        else:
            conn.close()

    def close_idle(self) -> None:
        """Close the kept connections (requests running now keep theirs)."""
        idle, self._idle = self._idle, []
        for c in idle:
            c.close()


class _Stale(Exception):
    """A kept connection the server had closed; the request is sent again on a new one."""
