"""The connection-level fast path (protocol.FastHandler) over real sockets, on the plain asyncio
loop (an in-thread FileServer) and on uvloop (`411 fileserver`): pipelining across the fast and
aiohttp paths, split and repeated requests, a client that does not read, open connections."""

# ruff: noqa: F811  (the fixtures imported from fs_fixtures are redefined as arguments)

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time

import pytest
from fs_fixtures import published, start_server  # noqa: F401  (fixtures, injected by name)
from fs_helpers import CliServer, wait_until
from fs_helpers import request as fetch

from four11.fileserver import protocol


class Conn:
    """One client TCP connection that reads HTTP/1.1 answers off the wire, one by one."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.s.sendall(data)

    def _fill(self) -> bool:
        chunk = self.s.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def answer(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed before an answer; got {self.buf[:200]!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        n = 0 if head_only or status == 304 else int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("closed in a body")
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def quiet_for(self, seconds: float) -> bool:
        """True when nothing more arrives within ``seconds`` (and the connection stays open)."""
        if self.buf:
            return False
        self.s.settimeout(seconds)
        try:
            self._fill()
        except TimeoutError:
            return True
        finally:
            self.s.settimeout(20)
        return False

    def close(self) -> None:
        self.s.close()


def get(path: str, *extra: str, method: str = "GET") -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: t", *extra, "", ""]).encode()


@pytest.fixture(params=["asyncio", "uvloop"])
def srv(request, published, start_server):
    """A fileserver with a 1 s watch timeout: in-thread on asyncio, or `411 fileserver` on uvloop."""
    if request.param == "asyncio":
        s = start_server(four11_dir=published.dir, watch_timeout_s=1.0)
        yield s.port
        return
    cs = CliServer("--411dir", str(published.dir), "--listen", "127.0.0.1:0", "--watch-timeout-s", "1")
    try:
        yield cs.port
        assert cs.terminate() == 0
        assert not any("fast path" in line for line in cs.log), cs.log
    finally:
        cs.kill()


def _message(published) -> str:
    return next(e.file for e in published.index().entries if e.name == "etc.hosts")


def test_the_installed_aiohttp_supports_the_fast_path():
    """The fast path uses private aiohttp state: an upgrade that changes it must fail here."""
    assert protocol.FAST_PATH_OK


def test_pipelined_requests_are_answered_in_order_across_both_paths(srv, published):
    msg = _message(published)
    index = (published.dir / "index").read_bytes()
    body = (published.dir / msg).read_bytes()
    v = published.index().version
    warm = fetch(srv, f"/411.d/{msg}")  # the first GET of a file reads it into the cache
    etag_i, etag_m = fetch(srv, "/411.d/index").h("ETag"), warm.h("ETag")
    c = Conn(srv)
    try:
        c.send(get("/411.d/index") + get("/411.d/index", f"If-None-Match: {etag_i}")
               + get("/status") + get("/411.d/index", "Content-Length: 0", method="POST")
               + get(f"/411.d/{msg}", method="HEAD") + get(f"/411.d/{msg}", f"If-None-Match: {etag_m}")
               + get("/411.d/nothing") + get(f"/411.d/index?wait={v}")  # held 1 s, then 304
               + get(f"/411.d/{msg}") + get("/411.d/index"))
        got = [c.answer(head_only=i == 4) for i in range(10)]
    finally:
        c.close()
    assert [g[0] for g in got] == [200, 304, 200, 405, 200, 304, 404, 304, 200, 200]
    assert got[0][2] == index and got[9][2] == index and got[8][2] == body
    assert got[1][1]["etag"] == etag_i and got[5][1]["etag"] == etag_m
    assert got[2][1]["content-type"].startswith("application/json")
    assert got[4][1]["content-length"] == str(len(body))
    assert all(g[1]["x-four11-nodes"] == "1" and g[1]["date"].endswith("GMT") for g in got)


def test_split_and_repeated_requests_and_a_fragment_that_is_no_request(srv, published):
    etag = fetch(srv, "/411.d/index").h("ETag")
    whole = get("/411.d/index", "X-Four11-Node: n1", f"If-None-Match: {etag}")
    cut = 20
    a = Conn(srv)
    try:
        a.send(whole[:cut])
        time.sleep(0.2)  # a separate read on the server
        a.send(whole[cut:])
        assert a.answer()[0] == 304
        for _ in range(3):  # the same bytes again and again, as a poller sends them
            a.send(whole)
            assert a.answer()[0] == 304
    finally:
        a.close()
    # The tail of that request alone is not a request, whatever was sent before
    b = Conn(srv)
    try:
        b.send(whole[cut:])
        status, _, _ = b.answer()
        assert status == 400
    finally:
        b.close()
    status = fetch(srv, "/status")
    assert status.status == 200 and [n["node"] for n in json.loads(status.body)["nodes"]] == ["n1"]
    text = fetch(srv, "/metrics").body.decode()
    assert re.search(r'four11_fileserver_requests_total\{code="304"\} 4\.0', text)


def test_a_request_sent_as_the_body_of_another_is_not_answered(srv, published):
    index = (published.dir / "index").read_bytes()
    inner = get("/411.d/index")
    c = Conn(srv)
    try:
        c.send(inner)  # answered by the fast path: these bytes are now known
        assert c.answer()[2] == index
        c.send(get("/411.d/index", f"Content-Length: {len(inner)}", method="POST"))
        time.sleep(0.2)
        c.send(inner)  # the POST's body
        assert c.answer()[0] == 405
        assert c.quiet_for(0.5), "the body was answered as a request"
        c.send(inner)
        assert c.answer()[2] == index  # the connection still works
    finally:
        c.close()


def test_a_client_that_pipelines_many_and_reads_late_gets_every_answer(srv, published):
    msg = _message(published)
    body = (published.dir / msg).read_bytes()
    etag = fetch(srv, f"/411.d/{msg}").h("ETag")
    n = 600
    reqs = b"".join(get(f"/411.d/{msg}", *([f"If-None-Match: {etag}"] if i % 3 == 2 else []))
                    for i in range(n))
    c = Conn(srv)
    try:
        sender = threading.Thread(target=c.send, args=(reqs,))
        sender.start()
        time.sleep(1.0)  # the server's socket buffers fill up before this side reads
        got = [c.answer() for _ in range(n)]
        sender.join(10)
    finally:
        c.close()
    assert [g[0] for g in got] == [304 if i % 3 == 2 else 200 for i in range(n)]
    digest = hashlib.sha256(body).digest()
    assert all(hashlib.sha256(g[2]).digest() == digest for g in got if g[0] == 200)


def _metric(port: int, name: str) -> float:
    text = fetch(port, "/metrics").body.decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def test_open_connections_are_counted_with_their_peak(srv):
    conns = [Conn(srv) for _ in range(5)]
    try:
        for c in conns[:2]:  # some have asked something, some have not
            c.send(get("/411.d/index"))
            c.answer()
        # the scrape's own connection is open too
        wait_until(lambda: _metric(srv, "four11_fileserver_connections_open") == 6, what="6 open")
        assert _metric(srv, "four11_fileserver_connections_open_peak") >= 6
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: _metric(srv, "four11_fileserver_connections_open") == 1, what="only the scrape")
    assert _metric(srv, "four11_fileserver_connections_open_peak") >= 6
