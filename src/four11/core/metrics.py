"""Metrics and health endpoints shared by the services (prometheus-client).

Each service builds its own CollectorRegistry (a fresh one per test) and serves it with
``start_metrics_server`` on its own port; the fileserver mounts the same two paths on its
own aiohttp server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import h11
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    disable_created_metrics,
    generate_latest,
)

from .. import __version__

READ_CHUNK = 64 * 1024
MAX_REQUEST_HEAD = 16 * 1024
IDLE_TIMEOUT_S = 120.0  # a scraper comes back every 15-60 s; a silent client is dropped

# The *_created series double a node's series count and say nothing an admin uses.
disable_created_metrics()

Health = Callable[[], tuple[bool, str]]  # (ready, one-line reason)


def build_info(registry: CollectorRegistry, service: str) -> Gauge:
    g = Gauge("four11_build_info", "four11 version and service, always 1",
              ["version", "service"], registry=registry)
    g.labels(__version__, service).set(1)
    return g


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer:
    """GET/HEAD /metrics and /healthz over HTTP/1.1 (h11), keep-alive for scrapers.

    Not aiohttp: the node agent shares this server and must stay small (see httpclient).
    """

    def __init__(self, registry: CollectorRegistry, health: Health) -> None:
        self.registry, self.health = registry, health
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    async def start(self, listen: str) -> int:
        host, port = split_listen(listen)
        self._server = await asyncio.start_server(self._serve, host, port, limit=READ_CHUNK)
        return self._server.sockets[0].getsockname()[1]

    def _answer(self, req: h11.Request) -> tuple[int, str, bytes]:
        path = req.target.split(b"?", 1)[0]
        if req.method not in (b"GET", b"HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET and HEAD\n"
        if path == b"/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == b"/healthz":
            ok, why = self.health()
            return (200 if ok else 503), "text/plain; charset=utf-8", why.encode() + b"\n"
        return 404, "text/plain; charset=utf-8", b"not found: /metrics or /healthz\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        try:
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    async with asyncio.timeout(IDLE_TIMEOUT_S):
                        conn.receive_data(await reader.read(READ_CHUNK))
                elif isinstance(ev, h11.Request):
                    status, ctype, body = self._answer(ev)
                    head = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
                    out = conn.send(h11.Response(status_code=status, headers=head))
                    if ev.method != b"HEAD":
                        out += conn.send(h11.Data(data=body))
                    writer.write(out + conn.send(h11.EndOfMessage()))
                    await writer.drain()
                elif isinstance(ev, h11.EndOfMessage):
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        break
                    conn.start_next_cycle()
                else:  # ConnectionClosed, a body we do not read, ...
                    break
        except (h11.ProtocolError, TimeoutError, OSError):
            pass  # a bad or idle client only loses its own connection
        finally:
            self._conns.discard(writer)
            writer.close()

    async def cleanup(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.close()
            await self._server.wait_closed()
            self._server = None


async def start_metrics_server(listen: str, registry: CollectorRegistry,
                               health: Health) -> tuple[MetricsServer, int]:
    """Serve /metrics and /healthz; returns the server and the bound port (for :0)."""
    server = MetricsServer(registry, health)
    port = await server.start(listen)
    return server, port
