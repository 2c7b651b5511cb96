"""The connection protocol: aiohttp's RequestHandler plus a synchronous fast path.

aiohttp answers each request by waking the connection's ``start()`` task, building a
request object and a writer, running the handler in a new task and finishing the response:
about a third of the CPU of a small answer, and most of what made a 304 cost nearly as
much as a 200. When the connection is idle (``start()`` waits for a message) this handler
parses the bytes without waking it, answers every keep-alive HTTP/1.1 GET/HEAD the
fileserver can answer from memory at once (``fast(message, protocol)`` returns the whole
answer), and hands the rest to aiohttp in order. Anything unusual (a body, an upgrade,
``Connection: close``, HTTP/1.0, a parse error, a paused writer or reader, a handler still
busy with an earlier request, shutdown) takes aiohttp's own path, unchanged.

Two more savings ride on it: the fast answers of one loop turn are written together at
its end (``Batch``), and a request whose exact bytes were answered before is not parsed
again (``Parsed``).

This relies on private attributes of ``aiohttp.web_protocol.RequestHandler`` (tested with
aiohttp 3.14). ``FAST_PATH_OK`` is false when they are missing; the fileserver then logs a
warning and serves everything through aiohttp (slower, same answers), and
tests/fileserver/test_fileserver_fastpath.py fails so an upgrade cannot break it silently.

The handler also counts open client connections (connection made -> lost).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpRequestParser
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler

from .metrics import FsMetrics

# The private RequestHandler/BaseProtocol state the fast path reads or sets.
_NEEDED = ("_request_count", "_waiter", "_messages", "_force_close", "_close", "_payload_parser",
           "_upgraded", "_paused", "_buffer_paused", "_parser", "_manager", "_keepalive_timeout",
           "_next_keepalive_close_time", "_keepalive_handle")
_SLOTS = frozenset(RequestHandler.__slots__) | frozenset(BaseProtocol.__slots__)
FAST_PATH_OK = (all(n in _SLOTS for n in _NEEDED)
                and callable(getattr(RequestHandler, "_process_keepalive", None))
                and callable(getattr(HttpRequestParser, "message_consumed", None)))

# fast(message, protocol) -> the answer's bytes, or None to let aiohttp answer it
FastAnswer = Callable[[object, "FastHandler"], "bytes | None"]


def remote_of(proto: RequestHandler) -> str:
    """The client address as aiohttp's ``request.remote`` gives it ("" if unknown)."""
    peer = proto.peername
    if isinstance(peer, (list, tuple)):
        return str(peer[0])
    return "" if peer is None else str(peer)


class Batch:
    """Fast answers of one event-loop turn, written after all of that turn's reads.

    Written as each request is parsed, every small answer wakes the client up on its own;
    written together at the end of the turn (one ``write`` each, back to back), a busy client
    is woken once for many and this side's kernel time per answer drops (a quarter to a
    third more answers per CPU-second here). The loop runs ``flush`` after the turn's I/O
    callbacks, and before any task woken in that turn, so a connection's fast answers always
    precede what aiohttp writes on it later.
    """

    def __init__(self, loop) -> None:
        self.loop = loop
        self.pending: list[tuple[object, bytes]] = []

    def add(self, transport, data: bytes) -> None:
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append((transport, data))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for tr, data in pending:
            if not tr.is_closing():  # the client went away in the meantime
                # not contextlib.suppress: this runs once per answer and try is cheaper
                try:  # noqa: SIM105
                    tr.write(data)
                except (OSError, RuntimeError):  # it is going away: its connection_lost cleans up
                    pass


class Parsed:
    """Request bytes -> aiohttp's parse of them, for requests the fast path answered.

    Pollers send the same bytes again and again (a node's conditional GET differs from
    its last one only when its index does), and parsing them (the C parser, the header
    multidict, the URL) was about a tenth of the CPU of a 304. The same bytes fed to a
    parser at a message boundary always parse to the same immutable message, so a
    connection whose parser is at a boundary can take the message from here and leave
    its parser untouched. Bounded; emptied when full.
    """

    MAX_ENTRIES = 16384
    MAX_BYTES = 2048  # longer requests are always parsed

    def __init__(self) -> None:
        self._map: dict[bytes, object] = {}

    def get(self, data: bytes):
        return self._map.get(data)

    def put(self, data: bytes, msg: object) -> None:
        if len(data) <= self.MAX_BYTES:
            if len(self._map) >= self.MAX_ENTRIES:
                self._map.clear()
            self._map[data] = msg


class FastServer(web.Server):
    """aiohttp's low-level server, making FastHandler protocols."""

    def __init__(self, handler, fast: FastAnswer | None, metrics: FsMetrics, **kwargs) -> None:
        super().__init__(handler, **kwargs)
        self.fast = fast if FAST_PATH_OK else None
        self.metrics = metrics
        self.batch = Batch(self._loop)
        self.parsed = Parsed()

    def __call__(self) -> FastHandler:
        return FastHandler(self, loop=self._loop, **self._kwargs)


class FastHandler(RequestHandler):
    __slots__ = ("_at_boundary", "_batch", "_counted", "_fast", "_metrics", "_parsed")

    def __init__(self, manager: FastServer, **kwargs) -> None:
        super().__init__(manager, **kwargs)
        self._fast = manager.fast
        self._metrics = manager.metrics
        self._batch = manager.batch
        self._parsed = manager.parsed
        self._counted = False
        # True only when the parser is known to sit between two messages with nothing
        # buffered: a fresh one, or after a read that ended one request without a body.
        self._at_boundary = True

    def connection_made(self, transport) -> None:
        m = self._metrics
        m.connections += 1
        if m.connections > m.connections_peak:
            m.connections_peak = m.connections
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self._metrics.connections -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        w = self._waiter
        if (self._fast is None or w is None or w.done() or self._messages or self._force_close or self._close
                or self._paused or self._buffer_paused or self._upgraded or self._payload_parser is not None):
            self._at_boundary = False
            super().data_received(data)
            return
        # start() is idle, waiting on w.
        if self._at_boundary:
            msg = self._parsed.get(data)
            if msg is not None:
                out = self._fast(msg, self)
                if out is not None:
                    self._request_count += 1
                    self._batch.add(self.transport, out)
                    self._answered(1)
                    return
        # Hide w so aiohttp's parsing queues the messages without waking start(), answer the
        # leading ones we can, and wake it only for what is left.
        self._waiter = None
        msgs = self._messages
        answered = 0
        # data is one whole request only if the parser also started at a boundary
        whole = self._at_boundary
        try:
            super().data_received(data)
            self._at_boundary = boundary = (
                len(msgs) == 1 and msgs[0][1] is EMPTY_PAYLOAD and hasattr(msgs[0][0], "method")
                and not self._upgraded and data.endswith(b"\r\n\r\n"))
            fast = self._fast
            # A read that filled aiohttp's queue paused reading: its drain and resume logic
            # then handles the whole queue (a client pipelining that much is no poller).
            while msgs and not self._buffer_paused:
                msg, payload = msgs[0]
                # _ErrInfo (a parse error) has no should_close: aiohttp answers it
                if payload is not EMPTY_PAYLOAD or getattr(msg, "should_close", True) or msg.upgrade:
                    break
                tr = self.transport
                out = fast(msg, self)
                if out is None or tr is None:
                    break
                msgs.popleft()
                self._parser.message_consumed()
                self._batch.add(tr, out)
                answered += 1
            if whole and boundary and answered:
                self._parsed.put(data, msg)
        finally:
            self._waiter = w
        if self._force_close or self._close:
            w.cancel()  # as close() would have done
            return
        if msgs:
            w.set_result(None)
        if answered:
            self._answered(answered)

    def _answered(self, n: int) -> None:
        """What start() does after each answer: count it, the idle timeout counts from now."""
        self._manager.requests_count += n
        if self._messages:
            return  # start() takes over
        loop = self._loop
        close_at = loop.time() + self._keepalive_timeout
        self._next_keepalive_close_time = close_at
        if self._keepalive_handle is None:
            self._keepalive_handle = loop.call_at(close_at, self._process_keepalive)
