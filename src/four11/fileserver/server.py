"""The fileserver: the 411 dir over plain HTTP, long-poll watch, node tracking, metrics.

One aiohttp low-level server (no router, no middleware chain: the URL space is four
prefixes) on uvloop when the process runs under core.service.run. Small files and the
index are answered from memory with precomputed strong ETags; large files are streamed
from an open descriptor (sendfile where the event loop supports it). Keep-alive GET/HEADs
of the index and of cached files are answered inside the connection protocol without
aiohttp's per-request machinery (``fast_answer``, protocol.FastHandler); everything else
goes through ``_handle``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..core.publish import INDEX_FILE
from ..core.source import HEADER_HAVE, HEADER_NODE, HEADER_NODES
from .config import DEFAULT_WATCH_TIMEOUT_S, norm_urldir
from .fastpath import DATE, HTTP11, Heads, Prebuilt
from .metrics import FsMetrics
from .nodes import DEFAULT_MAX_NODES, NodeTracker, parse_have, valid_node_id
from .protocol import FAST_PATH_OK, FastServer, remote_of
from .store import DEFAULT_CACHE_BYTES, Cached, Large, NotFound, Store
from .watch import IndexWatch

log = logging.getLogger("four11.fileserver")

# Messages never change under their name (the serial is part of it): a proxy may keep them.
# The index changes in place: a proxy may store it but must revalidate every time.
CC_MESSAGE = "public, max-age=86400, immutable"
CC_INDEX = "no-cache"
CC_NONE = "no-store"
OCTETS = "application/octet-stream"
CHUNK = 256 * 1024
HOUR_S = 3600.0


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
    if header == etag:
        return True
    for t in header.split(","):
        t = t.strip()
        if t == "*" or t.removeprefix("W/") == etag:
            return True
    return False


def _text(status: int, msg: str, headers: dict[str, str]) -> web.Response:
    return web.Response(status=status, text=msg + "\n", headers={**headers, "Cache-Control": CC_NONE})


class FileServer:
    def __init__(
        self,
        four11_dir: Path | str,
        urldir: str = "/411.d/",
        watch_timeout_s: float = DEFAULT_WATCH_TIMEOUT_S,
        allow_cidrs: list[str] | None = None,
        registry: CollectorRegistry | None = None,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_nodes: int = DEFAULT_MAX_NODES,
        poll_interval_s: float = 0.2,
        shutdown_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = os.path.abspath(four11_dir)
        self.urldir = norm_urldir(urldir)
        self.watch_timeout_s = watch_timeout_s
        self._nets = [ipaddress.ip_network(c, strict=False) for c in allow_cidrs] if allow_cidrs else None
        self._allowed_cache: dict[str, bool] = {}
        self.registry = registry if registry is not None else CollectorRegistry()
        self.clock = clock
        self.store = Store(self.root, cache_bytes)
        self.index = IndexWatch(self.root, poll_interval_s)
        self.nodes = NodeTracker(max_nodes, clock)
        self.metrics = FsMetrics(self.registry)
        self.metrics.gauge("nodes_seen", "Distinct nodes seen in the last 24 h",
                           lambda: self.nodes.count(self.clock()))
        self.metrics.gauge("nodes_behind", "Nodes seen in the last hour holding an older index",
                           lambda: self.behind_count())
        self.metrics.gauge("index_version", "Version of the index being served (0: none)",
                           lambda: self.index.current.version if self.index.current else 0)
        self.shutdown_timeout_s = shutdown_timeout_s
        self._heads = Heads()
        self._nodes_value, self._nodes_bytes = "", b""
        self._tail_date, self._tail_nodes, self._tail_bytes = b"", "", b""
        self._runner: web.ServerRunner | None = None
        self._stopping = False
        self.port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0: any free port); returns the bound port."""
        self.index.start()
        if self.index.error:
            log.warning("not ready yet: %s", self.index.error)
        if not FAST_PATH_OK:
            log.warning("this aiohttp lacks what the fast path needs: every answer goes through "
                        "aiohttp's request cycle (same answers, fewer per second)")
        # handler_cancellation: a watcher whose client went away is released at once
        server = FastServer(self._handle, self.fast_answer, self.metrics, access_log=None,
                            handler_cancellation=True)
        self._runner = web.ServerRunner(server, shutdown_timeout=self.shutdown_timeout_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=4096)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            await self.index.close()
            raise
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        """Graceful: watchers get 304 now, in-flight responses finish, then the sockets close."""
        self._stopping = True
        await self.index.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- health and status -----------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        if not os.access(self.root, os.R_OK | os.X_OK):
            return False, f"411 dir {self.root} is not readable"
        snap = self.index.refresh()
        if snap is None:
            return False, self.index.error or "no index"
        return True, f"ok: index version {snap.version}"

    def behind_count(self, window_s: float = HOUR_S) -> int:
        now = self.clock()
        cur = self.index.current
        if cur is None:
            return 0
        return sum(1 for _, seen, have in self.nodes.items()
                   if seen >= now - window_s and have is not None and have < cur.version)

    def status(self) -> dict:
        now = self.clock()
        cur = self.index.current
        rows = []
        for node, seen, have in self.nodes.items():
            since = self.index.behind_since(have)
            rows.append({"node": node, "version": have, "last_seen": round(seen, 3),
                         "behind": since is not None,
                         "lag_s": round(max(0.0, now - since), 3) if since is not None else 0.0})
        return {"index_version": cur.version if cur else None, "now": round(now, 3),
                "nodes_seen_24h": self.nodes.count(now), "nodes": rows}

    # -- requests --------------------------------------------------------------------------

    def _allowed(self, remote: str | None) -> bool:
        ok = self._allowed_cache.get(remote or "")
        if ok is None:
            try:
                addr = ipaddress.ip_address((remote or "").split("%", 1)[0])
                if getattr(addr, "ipv4_mapped", None):
                    addr = addr.ipv4_mapped  # type: ignore[union-attr]
                ok = any(addr in n for n in self._nets or ())
            except ValueError:
                ok = False
            if len(self._allowed_cache) > 10_000:
                self._allowed_cache.clear()
            self._allowed_cache[remote or ""] = ok
        return ok

    def _track(self, hdrs, now: float) -> None:
        node = hdrs.get(HEADER_NODE)
        if node is not None and valid_node_id(node):
            self.nodes.seen(node, parse_have(hdrs.get(HEADER_HAVE)), now)

    async def _handle(self, req: web.BaseRequest) -> web.StreamResponse:
        m = self.metrics
        t0 = perf_counter()
        m.in_flight += 1
        if m.in_flight > m.in_flight_peak:
            m.in_flight_peak = m.in_flight
        channel, sent = "get", 0
        extra = {HEADER_NODES: "1"}
        try:
            now = self.clock()
            if self._nets is not None and not self._allowed(req.remote):
                extra[HEADER_NODES] = self.nodes.header_value(now)
                resp = _text(403, "forbidden: client address is not in allow_cidrs", extra)
            else:
                self._track(req.headers, now)
                extra[HEADER_NODES] = self.nodes.header_value(now)
                resp, channel, sent = await self._dispatch(req, extra)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("error answering %s %s", req.method, req.raw_path[:200])
            resp = _text(500, "internal error", extra)
        finally:
            m.in_flight -= 1
        m.count(resp.status, sent, channel, perf_counter() - t0)
        return resp

    async def _dispatch(self, req: web.BaseRequest, extra: dict[str, str]
                        ) -> tuple[web.StreamResponse, str, int]:
        method = req.method
        if method != "GET" and method != "HEAD":
            return _text(405, f"method {method} not allowed (GET or HEAD)",
                         {**extra, "Allow": "GET, HEAD"}), "get", 0
        path, _, qs = req.raw_path.partition("?")
        if path == "/status":
            body = json.dumps(self.status()).encode()
            return self._send(req, body, None, CC_NONE, extra, "application/json"), "status", len(body)
        if path == "/healthz":
            ok, why = self.health()
            return _text(200 if ok else 503, why, extra), "status", 0
        if path == "/metrics":
            body = generate_latest(self.registry)
            return self._send(req, body, None, CC_NONE, extra, CONTENT_TYPE_LATEST), "metrics", len(body)
        if not path.startswith(self.urldir):
            return _text(404, "not found", extra), "get", 0
        rel = path[len(self.urldir):]
        if rel == INDEX_FILE:
            return await self._get_index(req, qs, extra)
        try:
            f = self.store.get(rel)
        except NotFound:
            return _text(404, "not found", extra), "get", 0
        if isinstance(f, Cached):
            resp = self._send(req, f.body, f.etag, CC_MESSAGE, extra)
            return resp, "get", (len(f.body) if resp.status == 200 and method == "GET" else 0)
        return await self._send_large(req, f, extra)

    async def _get_index(self, req: web.BaseRequest, qs: str, extra: dict[str, str]
                         ) -> tuple[web.StreamResponse, str, int]:
        wait = None
        if qs:
            for kv in qs.split("&"):
                k, _, v = kv.partition("=")
                if k == "wait":
                    if not v.isdigit() or len(v) > 19:
                        return _text(400, f"bad wait={v[:40]!r}: must be an index version "
                                     "(a non-negative integer)", extra), "get", 0
                    wait = int(v)
        snap = self.index.refresh()
        channel = "get"
        if wait is not None:
            channel = "watch"
            inm = req.headers.get("If-None-Match")
            if snap is not None and inm is not None and etag_matches(inm, snap.etag):
                wait = max(wait, snap.version)  # it holds the current index: wait for the next one
            if snap is None or snap.version <= wait:
                m = self.metrics
                m.watchers += 1
                try:
                    snap = await self.index.wait_newer(wait, self.watch_timeout_s)
                finally:
                    m.watchers -= 1
                extra[HEADER_NODES] = self.nodes.header_value(self.clock())  # fresh after the hold
                if snap is None:
                    result = "shutdown" if self._stopping else "timeout"
                    m.watch_answers[result] += 1
                    h = dict(extra, **{"Cache-Control": CC_INDEX})
                    cur = self.index.current
                    if cur is not None:
                        h["ETag"] = cur.etag
                    return web.Response(status=304, headers=h), channel, 0
                m.watch_answers["changed"] += 1
        if snap is None:
            code = 404 if self.index.missing else 503
            why = "no index yet" if code == 404 else "index unavailable (the reason is on /healthz)"
            return _text(code, why, extra), channel, 0
        resp = self._send(req, snap.body, snap.etag, CC_INDEX, extra)
        return resp, channel, (len(snap.body) if resp.status == 200 and req.method == "GET" else 0)

    def _nodes_line(self, value: str) -> bytes:
        if value != self._nodes_value:
            self._nodes_value = value
            self._nodes_bytes = f"{HEADER_NODES}: {value}\r\n".encode()
        return self._nodes_bytes

    def _prebuilt(self, hdrs, method: str, body: bytes, etag: str, cc: str, ctype: str,
                  nodes: str) -> tuple[int, bytes, bytes, bytes]:
        """(status, status line + fixed headers, X-Four11-Nodes line, body) of a 200 or 304."""
        ok, not_modified = self._heads.get(etag, cc, ctype, len(body))
        dyn = self._nodes_line(nodes)
        inm = hdrs.get("If-None-Match")
        if inm is not None and etag_matches(inm, etag):
            return 304, not_modified, dyn, b""
        return 200, ok, dyn, (b"" if method == "HEAD" else body)

    def _send(self, req: web.BaseRequest, body: bytes, etag: str | None, cc: str,
              extra: dict[str, str], ctype: str = OCTETS) -> web.StreamResponse:
        if etag is not None and req.version == HTTP11 and len(extra) == 1:
            return Prebuilt(*self._prebuilt(req.headers, req.method, body, etag, cc, ctype,
                                            extra[HEADER_NODES]))
        h = {"Cache-Control": cc, **extra}
        if etag is not None:
            h["ETag"] = etag
            inm = req.headers.get("If-None-Match")
            if inm is not None and etag_matches(inm, etag):
                return web.Response(status=304, headers=h)
        h["Content-Type"] = ctype
        return web.Response(body=body, headers=h)

    def fast_answer(self, msg, proto) -> bytes | None:
        """The whole answer to a keep-alive HTTP/1.1 GET/HEAD (no query) of the index or of a
        file in the memory cache, or None to leave the request to ``_handle``.

        Called by protocol.FastHandler from data_received with aiohttp's parsed message: the
        same answer, node tracking and counters as ``_handle`` gives, without a request
        object, a task or a response object per request.
        """
        try:
            method, path = msg.method, msg.path
            if ((method != "GET" and method != "HEAD") or msg.version != HTTP11
                    or not path.startswith(self.urldir) or "?" in path):
                return None
            if self._nets is not None and not self._allowed(remote_of(proto)):
                return None  # _handle answers the 403
            t0 = perf_counter()
            rel = path[len(self.urldir):]
            if rel == INDEX_FILE:
                f, cc = self.index.refresh(), CC_INDEX
            else:
                f, cc = self.store.cached(rel), CC_MESSAGE
            if f is None:
                return None  # 404, 503 or not cached yet: _handle
            hdrs = msg.headers
            now = self.clock()
            self._track(hdrs, now)
            nodes = self.nodes.header_value(now)
            status, head, _, body = self._prebuilt(hdrs, method, f.body, f.etag, cc, OCTETS, nodes)
            m = self.metrics
            if m.in_flight >= m.in_flight_peak:
                m.in_flight_peak = m.in_flight + 1
            m.count(status, len(body), "get", perf_counter() - t0)
            tail = self._tail(nodes)
            return head + tail + body if body else head + tail
        except Exception:  # _handle answers it, and logs what goes wrong there
            return None

    def _tail(self, nodes: str) -> bytes:
        """Date, X-Four11-Nodes and the blank line ending the head: rebuilt when one changes."""
        date = DATE.get()
        if date is not self._tail_date or nodes is not self._tail_nodes:
            self._tail_date, self._tail_nodes = date, nodes
            self._tail_bytes = date + self._nodes_line(nodes) + b"\r\n"
        return self._tail_bytes

    async def _send_large(self, req: web.BaseRequest, f: Large, extra: dict[str, str]
                          ) -> tuple[web.StreamResponse, str, int]:
        fobj = os.fdopen(f.fd, "rb")
        with fobj:
            h = {"Cache-Control": CC_MESSAGE, "ETag": f.etag, **extra}
            inm = req.headers.get("If-None-Match")
            if inm is not None and etag_matches(inm, f.etag):
                return web.Response(status=304, headers=h), "get", 0
            h["Content-Type"] = OCTETS
            resp = web.StreamResponse(headers=h)
            resp.content_length = f.size
            await resp.prepare(req)
            if req.method == "HEAD":
                await resp.write_eof()
                return resp, "get", 0
            loop = asyncio.get_running_loop()
            transport = req.transport
            if transport is None:
                raise ConnectionResetError("connection lost")
            try:
                await loop.sendfile(transport, fobj, 0, f.size)
            except NotImplementedError:  # uvloop: copy in chunks read off the loop
                off = 0
                while off < f.size:
                    chunk = await loop.run_in_executor(None, os.pread, f.fd, min(CHUNK, f.size - off), off)
                    if not chunk:
                        break
                    await resp.write(chunk)
                    off += len(chunk)
            await resp.write_eof()
            return resp, "get", f.size
