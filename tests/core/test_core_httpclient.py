"""The node side's HTTP client and the small metrics server, against real sockets."""

from __future__ import annotations

import asyncio
import functools
import socket
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, Counter

from four11.core.httpclient import BodyTooLarge, Client, HttpError
from four11.core.metrics import start_metrics_server


def aio(fn):
    """Run an async test on a fresh loop (no pytest plugin needed)."""
    @functools.wraps(fn)
    def run(*a, **kw):
        return asyncio.run(fn(*a, **kw))
    return run


class RawServer:
    """A TCP server on 127.0.0.1:0 whose answers the test writes byte for byte."""

    def __init__(self, answer) -> None:
        self.answer = answer  # async (reader, writer, n) -> None; n counts connections
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.answer(self, r, w)
        finally:
            w.close()

    async def read_request(self, r: asyncio.StreamReader) -> bytes:
        head = await r.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        return head

    async def __aexit__(self, *exc) -> None:
        self.server.close()


def client(port: int, read: float = 2.0) -> Client:
    return Client("http", "127.0.0.1", port, connect_timeout=2.0, read_timeout=read)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e1\"\r\nX-Four11-Nodes: 3\r\n\r\nhello"


@aio
async def test_keeps_the_connection_and_sends_node_headers() -> None:
    async def answer(srv, r, w):
        for _ in range(2):
            await srv.read_request(r)
            w.write(OK)

    async with RawServer(answer) as srv:
        c = client(srv.port)
        a = await c.get("/411.d/index", {"X-Four11-Node": "n1"}, 100)
        b = await c.get("/411.d/index", {}, 100)
        assert (a.status, a.body, a.headers["etag"]) == (200, b"hello", '"e1"')
        assert a.headers["x-four11-nodes"] == "3"
        assert b.body == b"hello"
        assert srv.connections == 1
        assert b"X-Four11-Node: n1\r\n" in srv.requests[0]
        assert srv.requests[0].startswith(b"GET /411.d/index HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{srv.port}".encode() in srv.requests[0]
        c.close_idle()


@aio
async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async def answer(srv, r, w):
        await srv.read_request(r)
        w.write(OK)
        await w.drain()  # then close: the client still holds it as idle

    async with RawServer(answer) as srv:
        c = client(srv.port)
        await c.get("/a", {}, 100)
        await asyncio.sleep(0.1)
        assert (await c.get("/b", {}, 100)).body == b"hello"
        assert srv.connections == 2


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",  # declared too big: not read
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"100\r\n" + b"x" * 256 + b"\r\n" * 1,
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"y" * 300,  # until EOF, too long
])
@aio
async def test_a_body_over_the_limit_is_refused(reply: bytes) -> None:
    async def answer(srv, r, w):
        await srv.read_request(r)
        w.write(reply)
        await asyncio.sleep(1)

    async with RawServer(answer) as srv:
        with pytest.raises(BodyTooLarge, match=r"limit of 100 bytes|limit 100"):
            await client(srv.port).get("/x", {}, 100)


@aio
async def test_silent_server_times_out_and_garbage_is_a_protocol_error() -> None:
    async def silent(srv, r, w):
        await asyncio.sleep(5)

    async with RawServer(silent) as srv:
        with pytest.raises(HttpError, match=r"no answer within 0.3 s"):
            await client(srv.port, read=0.3).get("/x", {}, 100)

    async def garbage(srv, r, w):
        await srv.read_request(r)
        w.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    async with RawServer(garbage) as srv:
        with pytest.raises(HttpError, match="bad HTTP answer"):
            await client(srv.port).get("/x", {}, 100)


@aio
async def test_refused_connection_is_one_line() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(HttpError, match="connect failed") as e:
        await client(port).get("/x", {}, 100)
    assert "\n" not in str(e.value)


@aio
async def test_metrics_server_answers_scrapes_health_and_errors() -> None:
    reg = CollectorRegistry()
    Counter("four11_test_things", "things", registry=reg).inc(3)
    healthy = [False]
    server, port = await start_metrics_server("127.0.0.1:0", reg,
                                              lambda: (healthy[0], "ok" if healthy[0] else "no sync yet"))
    try:
        c = client(port)
        m = await c.get("/metrics", {}, 1 << 20)
        assert m.status == 200 and b"four11_test_things_total 3.0" in m.body
        assert m.headers["content-type"].startswith("text/plain; version=")
        h = await c.get("/healthz", {}, 1000)
        assert (h.status, h.body) == (503, b"no sync yet\n")
        healthy[0] = True
        assert (await c.get("/healthz", {}, 1000)).status == 200
        assert (await c.get("/nope", {}, 1000)).status == 404
        # one keep-alive connection served all four; a HEAD and a POST on a raw socket
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nPOST /metrics HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 0\r\n\r\n")
        head = await r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        second = await r.readuntil(b"\r\n\r\n")  # HEAD sent no body, so this is the POST's answer
        assert second.startswith(b"HTTP/1.1 405")
        w.close()
        c.close_idle()
    finally:
        await server.cleanup()


def test_the_agent_imports_no_aiohttp() -> None:
    # aiohttp costs the agent 14 MB of its 40 MB budget (docs/agent.md)
    code = "import sys, four11.nodeagent.__main__; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
