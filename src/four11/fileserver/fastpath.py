"""Small answers written to the socket in one piece.

For cached files and the index (200 or 304, HTTP/1.1) the status line and fixed headers
are serialised once per file version (``Heads``) and joined with the Date and
X-Four11-Nodes lines and the body: aiohttp's generic header preparation and serialisation
were about a third of the CPU cost of such an answer. ``protocol.FastHandler`` writes these
bytes itself for most requests; ``Prebuilt`` is the same answer as an aiohttp response,
for such requests that reach the handler (an earlier request on the connection still being
answered, the first request of a file). Everything else (errors, large files, HTTP/1.0)
goes through aiohttp's responses.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from aiohttp import web

JOIN_MAX = 64 * 1024  # above this the body is written on its own instead of copied
HEADS_MAX = 4096  # serialised header blocks kept (one or two per file version)
HTTP11 = (1, 1)


class _Date:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.line = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.line


DATE = _Date()


class Heads:
    """Serialised header blocks per (etag, cache-control, content-type), bounded."""

    def __init__(self) -> None:
        self._blocks: dict[tuple[str, str, str, int], tuple[bytes, bytes]] = {}

    def get(self, etag: str, cc: str, ctype: str, length: int) -> tuple[bytes, bytes]:
        """(headers of the 200, headers of the 304), each ending with the blank line."""
        key = (etag, cc, ctype, length)
        b = self._blocks.get(key)
        if b is None:
            common = f"ETag: {etag}\r\nCache-Control: {cc}\r\n".encode()
            ok = (b"HTTP/1.1 200 OK\r\n", common + f"Content-Type: {ctype}\r\nContent-Length: {length}\r\n"
                  .encode())
            nm = (b"HTTP/1.1 304 Not Modified\r\n", common)
            if len(self._blocks) >= HEADS_MAX:
                self._blocks.clear()
            b = self._blocks[key] = (ok[0] + ok[1], nm[0] + nm[1])
        return b


class Prebuilt(web.StreamResponse):
    """A 200 or 304 whose bytes are ready; ``dynamic`` holds the per-request header lines."""

    def __init__(self, status: int, head: bytes, dynamic: bytes, body: bytes) -> None:
        super().__init__(status=status)
        self._head = head
        self._dynamic = dynamic
        self._payload = body

    async def prepare(self, request: web.BaseRequest):  # type: ignore[override]
        if self._eof_sent:
            return None
        writer = request._payload_writer
        self._req = request
        self._payload_writer = writer
        self._keep_alive = ka = request.keep_alive
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost")
        head = self._head + DATE.get() + self._dynamic + (b"\r\n" if ka else b"Connection: close\r\n\r\n")
        body = self._payload
        if len(body) <= JOIN_MAX:
            transport.write(head + body if body else head)
        else:
            transport.write(head)
            transport.write(body)
        self._eof_sent = True
        await writer.drain()
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        return None
