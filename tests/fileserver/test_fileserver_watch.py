"""Long-poll watch (?wait=V): at once when newer, wake on a new index, 304 at the timeout,
304 to every watcher on a graceful stop while in-flight downloads finish."""

# ruff: noqa: F811  (the fixtures imported from fs_fixtures are redefined as arguments)

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fs_fixtures import published, server, start_server  # noqa: F401  (fixtures, injected by name)
from fs_helpers import request, wait_until

from four11.core.index import peek_version
from four11.core.publish import Four11Dir


def test_wait_for_an_older_version_answers_at_once(server, published):
    v = published.index().version
    t0 = time.monotonic()
    a = request(server.port, f"/411.d/index?wait={v - 1}")
    assert time.monotonic() - t0 < 5  # not held for the 55 s watch timeout
    assert a.status == 200 and peek_version(a.body) == v
    assert a.h("ETag") == request(server.port, "/411.d/index").h("ETag")


def test_a_watcher_wakes_within_a_second_of_a_new_index(server, published, tmp_path):
    v = published.index().version
    # Sign the next index aside, so the moment it appears is one rename (no signing or fsync).
    staging = tmp_path / "staging"
    shutil.copytree(published.dir, staging)
    new = Four11Dir(staging, published.keys).resign().index_version

    def timed_watch() -> tuple[float, object]:
        a = request(server.port, f"/411.d/index?wait={v}")
        return time.monotonic(), a

    with ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(timed_watch) for _ in range(3)]
        wait_until(lambda: server.metric("four11_fileserver_watchers_open") == 3, what="3 watchers held")
        assert not any(f.done() for f in futs)
        written = time.monotonic()
        os.replace(staging / "index", published.dir / "index")
        results = [f.result(10) for f in futs]
    woke = max(t for t, _ in results) - written
    assert woke < 1.0, f"watchers answered {woke:.2f} s after the new index"
    assert new > v
    for _, a in results:
        assert a.status == 200 and peek_version(a.body) == new
        assert a.body == (published.dir / "index").read_bytes()
    assert server.metric("four11_fileserver_watch_answers_total", {"result": "changed"}) == 3
    assert server.metric("four11_fileserver_watchers_open") == 0


def test_without_a_change_the_watch_ends_with_304_at_the_timeout(published, start_server):
    s = start_server(four11_dir=published.dir, watch_timeout_s=1.0)
    v = published.index().version
    t0 = time.monotonic()
    a = request(s.port, f"/411.d/index?wait={v}")
    held = time.monotonic() - t0
    assert a.status == 304 and a.body == b""
    assert 0.9 <= held < 5, held
    assert a.h("ETag") == request(s.port, "/411.d/index").h("ETag")
    assert s.metric("four11_fileserver_watch_answers_total", {"result": "timeout"}) == 1


def test_a_bad_wait_value_is_a_400_with_the_reason(server):
    a = request(server.port, "/411.d/index?wait=yesterday")
    assert a.status == 400 and b"wait" in a.body and b"integer" in a.body
    assert request(server.port, "/411.d/index?wait=-3").status == 400


def test_a_watch_before_any_index_wakes_when_the_first_one_is_written(master_keys, tmp_path, start_server):
    d = tmp_path / "empty"
    d.mkdir()
    s = start_server(four11_dir=d)
    assert request(s.port, "/411.d/index").status == 404
    with ThreadPoolExecutor(1) as pool:
        f = pool.submit(request, s.port, "/411.d/index?wait=0")
        wait_until(lambda: s.metric("four11_fileserver_watchers_open") == 1, what="watcher held")
        v = Four11Dir(d, master_keys).resign().index_version
        a = f.result(10)
    assert a.status == 200 and peek_version(a.body) == v


def _slow_download(port: int, path: str, started: threading.Event) -> tuple[bytes, dict]:
    """Read a large body in small sips so it is still in flight when the server stops."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    size = int(headers["Content-Length"])
    started.set()
    while len(body) < size:
        time.sleep(0.002)
        chunk = sock.recv(16384)
        if not chunk:
            break
        body += chunk
    sock.close()
    return body, headers


def test_graceful_stop_answers_watchers_304_and_finishes_downloads(published, start_server):
    s = start_server(four11_dir=published.dir, watch_timeout_s=55.0)
    v = published.index().version
    big = next(e for e in published.index().entries if e.name == "etc.big")
    started = threading.Event()
    with ThreadPoolExecutor(6) as pool:
        watchers = [pool.submit(request, s.port, f"/411.d/index?wait={v}") for _ in range(4)]
        download = pool.submit(_slow_download, s.port, "/411.d/" + big.file, started)
        wait_until(lambda: s.metric("four11_fileserver_watchers_open") == 4, what="4 watchers held")
        assert started.wait(10)
        assert s.metric("four11_fileserver_requests_in_flight") == 5, "the download is still in flight"
        t0 = time.monotonic()
        s.stop()
        stopped = time.monotonic() - t0
        answers = [w.result(10) for w in watchers]
        body, _ = download.result(30)
    assert [a.status for a in answers] == [304] * 4
    assert stopped < 30
    assert hashlib.sha256(body).hexdigest() == big.sha256, "the in-flight download finished whole"
    assert s.metric("four11_fileserver_watch_answers_total", {"result": "shutdown"}) == 4
    try:
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    assert refused, "no new connections after stop"


def test_a_watcher_that_hangs_up_is_released(server, published):
    v = published.index().version
    socks = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(f"GET /411.d/index?wait={v} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(s)
    wait_until(lambda: server.metric("four11_fileserver_watchers_open") == 5, what="5 watchers held")
    for s in socks[:3]:
        s.close()
    wait_until(lambda: server.metric("four11_fileserver_watchers_open") == 2, what="3 released")
    assert server.metric("four11_fileserver_requests_in_flight") == 2
    published.pub.resign()
    for s in socks[3:]:
        assert s.recv(100).startswith(b"HTTP/1.1 200 ")
        s.close()


def test_a_watcher_holding_the_current_index_waits_even_with_an_old_wait_value(published, start_server):
    """If-None-Match naming the current index means the node has it: hold, do not answer 304 at once
    (an agent that reported a stale version would otherwise spin)."""
    s = start_server(four11_dir=published.dir, watch_timeout_s=1.0)
    cur = request(s.port, "/411.d/index")
    v = peek_version(cur.body)
    t0 = time.monotonic()
    a = request(s.port, f"/411.d/index?wait={v - 5}", headers={"If-None-Match": cur.h("ETag")})
    assert a.status == 304 and time.monotonic() - t0 >= 0.9
    with ThreadPoolExecutor(1) as pool:
        f = pool.submit(request, s.port, f"/411.d/index?wait={v - 5}",
                        headers={"If-None-Match": cur.h("ETag")})
        wait_until(lambda: s.metric("four11_fileserver_watchers_open") == 1, what="watcher held")
        new = published.pub.resign().index_version
        b = f.result(10)
    assert b.status == 200 and peek_version(b.body) == new
