"""GET/HEAD of the index and messages: ETag, 304, Cache-Control, 404/403/405, traversal."""

# ruff: noqa: F811  (the fixtures imported from fs_fixtures are redefined as arguments)

from __future__ import annotations

import hashlib
import os

import pytest
from fs_fixtures import published, server, start_server  # noqa: F401  (fixtures, injected by name)
from fs_helpers import LARGE, request


def test_index_has_strong_etag_and_answers_304_when_it_matches(server, published):
    a = request(server.port, "/411.d/index")
    assert a.status == 200
    assert a.body == (published.dir / "index").read_bytes()
    assert int(a.h("Content-Length")) == len(a.body)
    etag = a.h("ETag")
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert a.h("Cache-Control") == "no-cache"  # a proxy may keep it but must revalidate
    assert int(a.h("X-Four11-Nodes")) >= 1
    assert a.h("Date").endswith(" GMT")

    again = request(server.port, "/411.d/index", headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b""
    assert again.h("ETag") == etag
    weak_list = request(server.port, "/411.d/index", headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak_list.status == 304
    other = request(server.port, "/411.d/index", headers={"If-None-Match": '"something-else"'})
    assert other.status == 200 and other.body == a.body


def test_every_message_the_index_names_is_served_byte_exact(server, published):
    idx = published.index()
    assert {e.group for e in idx.entries} == {"/", "/compute"}
    assert any(e.file.startswith("groups/compute/") for e in idx.entries)
    for e in idx.entries:
        a = request(server.port, "/411.d/" + e.file)
        assert a.status == 200, e.file
        assert len(a.body) == e.size == int(a.h("Content-Length"))
        assert hashlib.sha256(a.body).hexdigest() == e.sha256
        assert "immutable" in a.h("Cache-Control") and "public" in a.h("Cache-Control")
        assert a.h("Content-Type") == "application/octet-stream"
        b = request(server.port, "/411.d/" + e.file, headers={"If-None-Match": a.h("ETag")})
        assert b.status == 304 and b.body == b""


def test_a_large_message_is_streamed_whole(server, published):
    e = next(e for e in published.index().entries if e.name == "etc.big")
    assert e.size > LARGE
    a = request(server.port, "/411.d/" + e.file)
    assert a.status == 200 and hashlib.sha256(a.body).hexdigest() == e.sha256
    assert int(a.h("Content-Length")) == e.size


@pytest.mark.parametrize("name", ["index", "etc.hosts", "etc.big"])
def test_head_gives_the_headers_of_get_without_a_body(server, published, name):
    path = "index" if name == "index" else next(e.file for e in published.index().entries if e.name == name)
    get = request(server.port, "/411.d/" + path)
    head = request(server.port, "/411.d/" + path, method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.h("Content-Length") == get.h("Content-Length") == str(len(get.body))
    assert head.h("ETag") == get.h("ETag")


@pytest.fixture
def traps(published, tmp_path):
    """Things that must never be served: a secret outside, links to it, spool, temp files."""
    secret = tmp_path / "secret"
    secret.write_text("TOP-SECRET\n")
    (published.dir / "link-out").symlink_to(secret)
    (published.dir / "dir-out").symlink_to(tmp_path)
    inside = next(e.file for e in published.index().entries if e.group == "/")
    (published.dir / "link-in").symlink_to(published.dir / inside)
    (published.dir / ".tmp-etc.hosts.1234").write_text("half written")
    os.mkfifo(published.dir / "fifo")
    return secret


@pytest.mark.parametrize("path", [
    "/411.d/nothing-here",
    "/411.d/../secret",
    "/411.d/%2e%2e/secret",
    "/411.d/%2E%2E%2Fsecret",
    "/411.d/..%2fsecret",
    "/411.d/groups%2fcompute",
    "/411.d//etc/passwd",
    "/411.d/%2fetc%2fpasswd",
    "/411.d/..%5csecret",
    "/411.d/index%00",
    "/411.d/%ff",
    "/411.d/link-out",
    "/411.d/link-in",
    "/411.d/dir-out/secret",
    "/411.d/.tmp-etc.hosts.1234",
    "/411.d/.lock",
    "/411.d/fifo",
    "/411.d/",
    "/411.d/groups",
    "/411.d/groups/",
    "/411.d/groups/compute/",
    "/411.d/alerts",
    "/411.d/alerts/",
    "/etc/passwd",
    "/",
    "http://127.0.0.1/411.d/../secret",
])
def test_nothing_outside_the_served_files_is_reachable(server, published, traps, path):
    a = request(server.port, path)
    assert a.status == 404, (path, a.status)
    assert b"TOP-SECRET" not in a.body and b"half written" not in a.body
    assert a.body == b"not found\n"


def test_the_alert_spool_is_never_served(server, published):
    alerts = list((published.dir / "alerts").iterdir())
    assert alerts, "the publisher wrote an alert"
    assert request(server.port, f"/411.d/alerts/{alerts[0].name}").status == 404


def test_only_get_and_head(server):
    a = request(server.port, "/411.d/index", method="POST")
    assert a.status == 405 and "GET" in a.h("Allow")
    assert request(server.port, "/411.d/index", method="DELETE").status == 405


def test_clients_outside_allow_cidrs_get_403(published, start_server):
    closed = start_server(four11_dir=published.dir, allow_cidrs=["10.0.0.0/8", "fd00::/8"])
    a = request(closed.port, "/411.d/index")
    assert a.status == 403 and b"allow_cidrs" in a.body
    assert request(closed.port, "/healthz").status == 403
    assert closed.metric("four11_fileserver_requests_total", {"code": "403"}) == 2
    open_ = start_server(four11_dir=published.dir, allow_cidrs=["10.0.0.0/8", "127.0.0.0/8"])
    assert request(open_.port, "/411.d/index").status == 200


def test_a_custom_urldir(published, start_server):
    s = start_server(four11_dir=published.dir, urldir="/files")
    assert request(s.port, "/files/index").status == 200
    assert request(s.port, "/411.d/index").status == 404
    root = start_server(four11_dir=published.dir, urldir="/")
    assert request(root.port, "/index").status == 200
    assert request(root.port, "/status").h("Content-Type").startswith("application/json")


def test_a_message_replaced_during_downloads_is_never_torn(server, published):
    """The publisher replaces by rename: every download is wholly old or wholly new bytes."""
    import threading

    from four11.core.fsutil import atomic_write

    small = [os.urandom(4096), os.urandom(4096)]
    large = [os.urandom(LARGE), os.urandom(LARGE)]
    for name, versions in (("small.1", small), ("large.1", large)):
        atomic_write(published.dir / name, versions[0])
    ok = {name: {hashlib.sha256(v).hexdigest() for v in vs}
          for name, vs in (("small.1", small), ("large.1", large))}
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            atomic_write(published.dir / "small.1", small[i % 2])
            atomic_write(published.dir / "large.1", large[i % 2])

    t = threading.Thread(target=writer)
    t.start()
    seen: dict[str, set[str]] = {"small.1": set(), "large.1": set()}
    try:
        for _ in range(40):
            for name in seen:
                a = request(server.port, "/411.d/" + name)
                assert a.status == 200
                h = hashlib.sha256(a.body).hexdigest()
                assert h in ok[name], f"torn body for {name}"
                assert len(a.body) == int(a.h("Content-Length"))
                seen[name].add(h)
    finally:
        stop.set()
        t.join()
    assert all(len(v) == 2 for v in seen.values()), "both versions were served while replaced"


def _raw(port: int, data: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):  # the server closes: Connection: close / HTTP/1.0
            out += chunk
    return out


def test_keep_alive_connection_close_and_http_1_0(server, published):
    index = (published.dir / "index").read_bytes()
    two = _raw(server.port, b"GET /411.d/index HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"GET /411.d/index HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert two.count(b"HTTP/1.1 200 OK\r\n") == 2 and two.count(index) == 2
    assert two.endswith(index) and b"\r\nConnection: close\r\n" in two
    old = _raw(server.port, b"GET /411.d/index HTTP/1.0\r\n\r\n")
    assert old.startswith(b"HTTP/1.0 200 OK\r\n") and old.endswith(index)
    head, _, _ = old.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(index)}".encode() in head and b"ETag: " in head
