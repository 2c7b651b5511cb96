"""Node tracking (X-Four11-Node / X-Four11-Have), /status, /healthz, /metrics, 411 status."""

# ruff: noqa: F811  (the fixtures imported from fs_fixtures are redefined as arguments)

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

from fs_fixtures import published, server, start_server  # noqa: F401  (fixtures, injected by name)
from fs_helpers import cli, request, wait_until

from four11.core.fsutil import atomic_write
from four11.fileserver.nodes import NodeTracker


def _as(node: str, have: int | None, port: int, path: str = "/411.d/index"):
    h = {"X-Four11-Node": node}
    if have is not None:
        h["X-Four11-Have"] = str(have)
    return request(port, path, headers=h)


def test_every_answer_carries_the_distinct_nodes_seen(server, published):
    assert request(server.port, "/411.d/index").h("X-Four11-Nodes") == "1"  # never 0
    v = published.index().version
    for n in ("n1", "n2", "n3", "n2"):
        _as(n, v, server.port)
    for path in ("/411.d/index", "/411.d/nothing", "/healthz", "/metrics", "/status"):
        assert request(server.port, path).h("X-Four11-Nodes") == "3", path
    assert server.metric("four11_fileserver_nodes_seen") == 3


def test_bad_node_headers_are_ignored_not_fatal(server, published):
    assert _as("x" * 300, 5, server.port).status == 200  # too long: not tracked
    a = request(server.port, "/411.d/index", headers={"X-Four11-Node": "n1", "X-Four11-Have": "many"})
    assert a.status == 200
    st = json.loads(request(server.port, "/status").body)
    assert [(r["node"], r["version"]) for r in st["nodes"]] == [("n1", None)]


def test_the_node_table_is_bounded():
    t = NodeTracker(max_nodes=3)
    for i in range(5):
        t.seen(f"n{i}", i, now=1000.0 + i)
    assert [n for n, _, _ in t.items()] == ["n2", "n3", "n4"]
    t.seen("n2", None, now=2000.0)  # seen again: kept, keeps its version
    t.seen("n5", 5, now=2001.0)
    assert [(n, v) for n, _, v in t.items()] == [("n4", 4), ("n2", 2), ("n5", 5)]
    assert t.count(now=2000.0 + 86400 - 0.5) == 2  # n4 (seen at 1004) is over a day old


def test_status_reports_versions_and_lag(server, published):
    old = published.index().version
    new = published.pub.resign().index_version
    wait_until(lambda: json.loads(request(server.port, "/status").body)["index_version"] == new,
               what="the server to see the new index")
    _as("behind", old, server.port)
    _as("current", new, server.port)
    st = json.loads(request(server.port, "/status").body)
    rows = {r["node"]: r for r in st["nodes"]}
    assert rows["current"]["behind"] is False and rows["current"]["lag_s"] == 0
    assert rows["behind"]["behind"] is True and rows["behind"]["version"] == old
    assert 0 <= rows["behind"]["lag_s"] < 60
    assert server.metric("four11_fileserver_nodes_behind") == 1
    assert server.metric("four11_fileserver_index_version") == new


def test_healthz_follows_the_index(published, start_server, tmp_path):
    s = start_server(four11_dir=published.dir)
    a = request(s.port, "/healthz")
    assert a.status == 200 and str(published.index().version).encode() in a.body
    good = (published.dir / "index").read_bytes()
    atomic_write(published.dir / "index", b"F411 not an index at all")
    a = request(s.port, "/healthz")
    assert a.status == 503 and b"does not parse" in a.body
    assert request(s.port, "/411.d/index").status == 503
    (published.dir / "index").unlink()
    a = request(s.port, "/healthz")
    assert a.status == 503 and b"no index" in a.body
    assert request(s.port, "/411.d/index").status == 404
    atomic_write(published.dir / "index", good)
    assert request(s.port, "/healthz").status == 200
    missing = start_server(four11_dir=tmp_path / "does-not-exist")
    a = request(missing.port, "/healthz")
    assert a.status == 503 and b"not readable" in a.body


def test_metrics_count_codes_bytes_in_flight_and_watchers(server, published):
    v = published.index().version
    body = request(server.port, "/411.d/index").body
    request(server.port, "/411.d/nope")
    with ThreadPoolExecutor(3) as pool:
        futs = [pool.submit(request, server.port, f"/411.d/index?wait={v}") for _ in range(2)]
        wait_until(lambda: server.metric("four11_fileserver_watchers_open") == 2, what="watchers")
        text = request(server.port, "/metrics").body.decode()
        assert "four11_fileserver_watchers_open 2.0" in text
        assert re.search(r"four11_fileserver_requests_in_flight 3\.0", text)  # 2 watchers + this one
        published.pub.resign()
        for f in futs:
            assert f.result(10).status == 200
    m = server.metric
    assert m("four11_fileserver_requests_total", {"code": "200"}) >= 4
    assert m("four11_fileserver_requests_total", {"code": "404"}) == 1
    assert m("four11_fileserver_requests_total", {"code": "503"}) == 0  # created at start
    assert m("four11_fileserver_response_bytes_total") >= len(body)
    assert m("four11_fileserver_requests_in_flight_peak") >= 3
    assert m("four11_fileserver_request_duration_seconds_count", {"channel": "watch"}) == 2
    assert m("four11_fileserver_request_duration_seconds_count", {"channel": "get"}) >= 2
    assert m("four11_build_info", {"version": "0.1.0", "service": "fileserver"}) == 1


def test_411_status_lists_nodes_behind_first_and_fails_on_long_lag(published, start_server):
    """Three nodes: one on an index replaced two hours ago, one just behind, one current."""
    v1 = published.index().version
    two_hours_ago = time.time() - 7200
    os.utime(published.dir / "index", (two_hours_ago, two_hours_ago))
    v0 = v1 - 1000  # an index this server never saw: behind at least since v1 was written
    s = start_server(four11_dir=published.dir)
    v2 = published.pub.resign().index_version
    url = f"http://127.0.0.1:{s.port}/411.d/"
    wait_until(lambda: json.loads(request(s.port, "/status").body)["index_version"] == v2, what="v2")
    _as("node-c", v2, s.port)
    _as("node-a", v0, s.port)
    _as("node-b", v1, s.port)

    r = cli("411", "status", "--master", url)
    out = r.stdout.splitlines()
    assert r.returncode == 1, r.stderr
    assert out[0] == f"index version {v2}, 3 nodes seen in 24 h"
    assert out[1].split() == ["NODE", "VERSION", "LAST", "SEEN", "BEHIND", "FOR"]
    assert [line.split()[0] for line in out[2:]] == ["node-a", "node-b", "node-c"]
    assert out[2].split()[1] == str(v0) and out[2].split()[-1].startswith("2h")
    assert out[4].split()[1] == str(v2) and out[4].split()[-1] == "-"
    err = r.stderr.strip()
    assert err == "411 status: 1 node(s) behind for more than 10m00s: node-a"

    r = cli("411", "status", "--master", url, "--threshold-s", "10800")
    assert r.returncode == 0 and r.stderr == ""

    _as("node-a", v2, s.port)
    r = cli("411", "status", "--master", url, "--json")
    assert r.returncode == 0
    st = json.loads(r.stdout)
    assert {n["node"]: n["version"] for n in st["nodes"]} == {"node-a": v2, "node-b": v1, "node-c": v2}


def test_411_status_when_the_master_cannot_be_asked(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = cli("411", "status", "--master", f"http://127.0.0.1:{port}/411.d/")
    assert r.returncode == 3
    assert r.stderr.startswith(f"411 status: http://127.0.0.1:{port}/status:")
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli("411", "status", "--master", "ftp://frontend/")
    assert r.returncode == 2 and "not an http:// URL" in r.stderr
