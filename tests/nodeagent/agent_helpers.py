"""Test parts for the node agent: a master 411 dir, a small HTTP server for it (that can
tamper, hang or go down), the agent as a real process, and UDP senders."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from four11.core.index import peek_version
from four11.core.publish import Four11Dir, PutItem, PutResult, default_apply
from four11.core.source import HEADER_HAVE, HEADER_NODE, HEADER_NODES
from testlib import BIN, wait_until


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


class Master:
    """The master's 411 dir, published into with core's Four11Dir (as the publisher does)."""

    def __init__(self, tmp: Path, keys: Path, urls: list[str] | None = None) -> None:
        self.dir = tmp / "411"
        self.src = tmp / "src"
        self.keys = keys
        self.d = Four11Dir(self.dir, keys, master_urls=urls or ["http://127.0.0.1:9/411.d/"])

    def publish(self, dest: str, content: bytes, group: str = "/", mode: int = 0o644,
                uid: int = 0, gid: int = 0, apply: str | None = None) -> PutResult:
        p = self.src / group.strip("/") / dest.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        item = PutItem(source=p, dest=dest, group=group, uid=uid, gid=gid, perm=mode,
                       apply=apply or default_apply(dest))
        return self.d.put([item])

    def many(self, files: dict[str, bytes]) -> PutResult:
        items = []
        for dest, content in files.items():
            p = self.src / dest.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
            items.append(PutItem(source=p, dest=dest, uid=0, gid=0, perm=0o644, apply="replace"))
        return self.d.put(items)


class StaticServer:
    """A 411 dir over HTTP in a thread, speaking the fileserver contract (ETag/304,
    ?wait= long-poll, X-Four11-Nodes), with a request log and faults on demand:
    ``tamper[rel]`` replaces a file's bytes, ``hang`` never answers."""

    def __init__(self, root: Path, urldir: str = "/411.d/", nodes: int = 1,
                 watch_timeout_s: float = 20.0) -> None:
        self.root = root
        self.urldir = urldir
        self.nodes = nodes
        self.watch_timeout_s = watch_timeout_s
        self.tamper: dict[str, bytes | Callable[[bytes], bytes]] = {}
        self.hang = False
        self.log: list[tuple[str, dict[str, str]]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.urldir}"

    def paths(self) -> list[str]:
        return [p for p, _ in list(self.log)]

    def count(self, rel: str) -> int:
        return sum(1 for p in self.paths() if p == rel)

    def _body(self, rel: str) -> bytes | None:
        try:
            data = (self.root / rel).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        t = self.tamper.get(rel)
        if t is not None:
            data = t(data) if callable(t) else t
        return data

    async def _handle(self, req: web.Request) -> web.StreamResponse:
        rel = req.match_info["rel"]
        self.log.append((rel, dict(req.headers)))
        if self.hang:
            await asyncio.sleep(3600)
        hdr = {HEADER_NODES: str(self.nodes)}
        wait = req.query.get("wait")
        if rel == "index" and wait is not None:
            end = time.monotonic() + self.watch_timeout_s
            while time.monotonic() < end:
                body = self._body(rel)
                if body is not None and peek_version(body) > int(wait):
                    return web.Response(body=body, headers=hdr)
                await asyncio.sleep(0.02)
            return web.Response(status=304, headers=hdr)
        body = self._body(rel)
        if body is None:
            return web.Response(status=404, headers=hdr)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if req.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={**hdr, "ETag": etag})
        return web.Response(body=body, headers={**hdr, "ETag": etag})

    def start(self, port: int = 0) -> StaticServer:
        if not self._thread.is_alive():
            self._thread.start()

        async def up() -> int:
            app = web.Application()
            app.router.add_get(self.urldir + "{rel:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
            await site.start()
            return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        self.port = asyncio.run_coroutine_threadsafe(up(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Close the port: connections are refused from now on."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def node_headers(server: StaticServer) -> list[tuple[str | None, str | None]]:
    return [(h.get(HEADER_NODE), h.get(HEADER_HAVE)) for _, h in list(server.log)]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def send_unicast(data: bytes, port: int, source: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.sendto(data, ("127.0.0.1", port))


def send_multicast(data: bytes, group: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        s.sendto(data, (group, port))


def agent_config(path: Path, *, masters: list[str], keys: Path, root: Path, state: Path,
                 **over) -> Path:
    cfg = {
        "masters": masters, "node_id": "node-1", "keys_dir": str(keys), "state_dir": str(state),
        "root": str(root), "metrics_listen": "127.0.0.1:0", "unicast_port": free_udp_port(),
        "multicast": {"enabled": False}, "watch": False, "poll_mean_s": 3600,
        "connect_timeout_s": 2, "read_timeout_s": 3,
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    path.write_text(yaml.safe_dump(cfg))
    return path


_STARTED = re.compile(r"metrics on port (\d+)")


class AgentProc:
    """``411 agent --config FILE`` as a real process; its log lines are collected."""

    def __init__(self, config: Path, *args: str, env: dict | None = None) -> None:
        self.config = config
        self.cfg = yaml.safe_load(config.read_text())
        self.args = args
        self.env = env
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.metrics_port = 0

    @property
    def unicast_port(self) -> int:
        return int(self.cfg["unicast_port"])

    def start(self, wait: bool = True) -> AgentProc:
        self.lines = []
        self.proc = subprocess.Popen(
            [str(BIN / "411"), "agent", "--config", str(self.config), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(self.env or {})})
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if wait:
            m = wait_until(lambda: self._started() or self._died(), 20, what="agent start")
            assert m is not True, "agent exited at start:\n" + self.text()
            self.metrics_port = int(m.group(1))
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def _started(self):
        for ln in list(self.lines):
            m = _STARTED.search(ln)
            if m:
                return m
        return None

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def text(self) -> str:
        return "\n".join(self.lines)

    def scrape(self) -> dict[tuple[str, frozenset], float]:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out

    def value(self, name: str, **labels: str) -> float:
        return self.scrape().get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum of a metric over every label set that has ``labels``."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.scrape().items() if n == name and want <= set(ls))

    def healthz(self) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("agent did not stop on SIGTERM:\n" + self.text()) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class RealFileServer:
    """The project's own fileserver (four11.fileserver.server.FileServer) in a thread."""

    def __init__(self, root: Path, watch_timeout_s: float = 20.0) -> None:
        from prometheus_client import CollectorRegistry

        from four11.fileserver.server import FileServer

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.registry = CollectorRegistry()
        self.fs = FileServer(root, urldir="/411.d/", watch_timeout_s=watch_timeout_s,
                             registry=self.registry)
        self.port = asyncio.run_coroutine_threadsafe(self.fs.start("127.0.0.1", 0), self._loop).result(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/411.d/"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fs.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
