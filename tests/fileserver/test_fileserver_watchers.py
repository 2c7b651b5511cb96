"""2,000 idle long-poll watchers on one `411 fileserver`: all held, all woken by one new index."""

# ruff: noqa: F811  (the fixtures imported from fs_fixtures are redefined as arguments)

from __future__ import annotations

import asyncio
import time

from fs_fixtures import published  # noqa: F401  (fixtures, injected by name)
from fs_helpers import CliServer, request, wait_until

from four11.core.index import peek_version

N = 2000


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _watch(port: int, version: int, opened: list) -> tuple[int, int]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET /411.d/index?wait={version} HTTP/1.1\r\nHost: t\r\nX-Four11-Node: n{len(opened)}\r\n"
            f"X-Four11-Have: {version}\r\n\r\n".encode())
    opened.append(1)
    head = await r.readuntil(b"\r\n\r\n")
    status = int(head.split()[1])
    length = 0
    for line in head.decode().split("\r\n"):
        if line.lower().startswith("content-length:"):
            length = int(line.split(":")[1])
    body = await r.readexactly(length)
    w.close()
    return status, peek_version(body) if body else 0


def test_2000_idle_watchers_are_held_and_all_woken(published):
    s = CliServer("--411dir", str(published.dir), "--listen", "127.0.0.1:0")
    try:
        v = published.index().version
        pid = s.proc.pid
        rss0 = rss_bytes(pid)

        async def run() -> tuple[list, dict]:
            opened: list = []
            tasks = [asyncio.create_task(_watch(s.port, v, opened)) for _ in range(N)]
            deadline = time.monotonic() + 60
            while (await asyncio.to_thread(request, s.port, "/metrics")).body.find(
                    f"four11_fileserver_watchers_open {N}.0".encode()) < 0:
                assert time.monotonic() < deadline, "watchers were not all held"
                await asyncio.sleep(0.2)
            fig = {"rss_growth_mb": (rss_bytes(pid) - rss0) / 2**20}
            cpu0 = cpu_seconds(pid)
            await asyncio.sleep(2.0)
            fig["idle_cpu_s_per_s"] = (cpu_seconds(pid) - cpu0) / 2.0
            assert not any(t.done() for t in tasks), "a watcher was answered without a change"
            t0 = time.monotonic()
            new = await asyncio.to_thread(lambda: published.pub.resign().index_version)
            results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
            fig["wake_all_s"] = time.monotonic() - t0
            fig["new"] = new
            return results, fig

        results, fig = asyncio.run(run())
        print(f"\n{N} idle watchers: RSS +{fig['rss_growth_mb']:.1f} MB, idle CPU "
              f"{fig['idle_cpu_s_per_s']:.3f} s/s, all answered {fig['wake_all_s']:.2f} s after the write")
        assert results == [(200, fig["new"])] * N
        assert fig["rss_growth_mb"] < 256, "an idle watcher must cost little memory"
        wait_until(lambda: b"four11_fileserver_watchers_open 0.0" in request(s.port, "/metrics").body)
        assert b"four11_fileserver_nodes_seen 2000.0" in request(s.port, "/metrics").body
        assert s.terminate() == 0
    finally:
        s.kill()
