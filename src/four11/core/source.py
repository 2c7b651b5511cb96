"""Where a node fetches the index and messages from: a master URL or a local 411 dir.

Both answer ``get(rel, max_size, etag)`` with bounded reads and timeouts, so a slow or
endless answer cannot hang or fill a node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp

from .errors import Refusal

HEADER_NODE = "X-Four11-Node"
HEADER_HAVE = "X-Four11-Have"
HEADER_NODES = "X-Four11-Nodes"


@dataclass
class Fetched:
    status: int  # 200 or 304
    body: bytes = b""
    etag: str | None = None
    nodes: int | None = None  # the fileserver's cluster-size estimate


@dataclass
class Timeouts:
    connect: float = 5.0
    read: float = 30.0


def normalize_master(url: str) -> str:
    """http(s) URLs get the default URL dir when they have no path; paths stay paths."""
    u = urlsplit(url)
    if u.scheme in ("http", "https"):
        path = u.path if u.path not in ("", "/") else "/411.d/"
        return f"{u.scheme}://{u.netloc}{path.rstrip('/')}/"
    if u.scheme == "file":
        return "file://" + os.path.abspath(u.path)
    if u.scheme == "":
        return "file://" + os.path.abspath(url)
    raise Refusal("fetch_failed", f"unsupported master URL {url!r} (http://, https://, file:// or a path)")


class DirSource:
    """A local 411 dir (file:// or a plain path), for 411get before any fileserver."""

    def __init__(self, url: str) -> None:
        self.url = normalize_master(url)
        self.root = Path(self.url[len("file://") :])

    async def get(self, rel: str, max_size: int, etag: str | None = None,
                  headers: dict[str, str] | None = None, wait: int | None = None) -> Fetched:
        p = self.root / rel
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise Refusal("fetch_failed", f"{self.url}/{rel}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise Refusal("too_large", f"{rel} from {self.url} is over the limit of {max_size} bytes")
        return Fetched(200, data)

    async def close(self) -> None:
        pass


class HttpSource:
    """A fileserver. One aiohttp session per source; reads are capped at max_size."""

    def __init__(self, url: str, node_id: str | None = None, timeouts: Timeouts | None = None,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.url = normalize_master(url)
        self.node_id = node_id
        self.timeouts = timeouts or Timeouts()
        self._session = session
        self._own_session = session is None
        self.have: int | None = None  # index version reported in X-Four11-Have

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=4, ttl_dns_cache=60),
                auto_decompress=False,
            )
            self._own_session = True
        return self._session

    async def get(self, rel: str, max_size: int, etag: str | None = None,
                  headers: dict[str, str] | None = None, wait: int | None = None) -> Fetched:
        h = dict(headers or {})
        if self.node_id:
            h[HEADER_NODE] = self.node_id
        if self.have is not None:
            h[HEADER_HAVE] = str(self.have)
        if etag:
            h["If-None-Match"] = etag
        url = self.url + quote(rel)
        if wait is not None:
            url += f"?wait={wait}"
        read = self.timeouts.read if wait is None else self.timeouts.read + 120
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeouts.connect,
                                        sock_read=read)
        try:
            async with self._sess().get(url, headers=h, timeout=timeout,
                                        allow_redirects=False) as r:
                nodes = r.headers.get(HEADER_NODES)
                n = int(nodes) if nodes and nodes.isdigit() else None
                if r.status == 304:
                    return Fetched(304, etag=etag, nodes=n)
                if r.status != 200:
                    raise Refusal("fetch_failed", f"{url}: HTTP {r.status}")
                if (r.content_length or 0) > max_size:
                    raise Refusal("too_large", f"{url} is {r.content_length} bytes, limit {max_size}")
                body = bytearray()
                async for chunk in r.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > max_size:
                        raise Refusal("too_large", f"{url} sent more than the limit of {max_size} bytes")
                return Fetched(200, bytes(body), r.headers.get("ETag"), n)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise Refusal("fetch_failed", f"{url}: {type(e).__name__} {e}".strip()) from None

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()


def open_source(url: str, node_id: str | None = None, timeouts: Timeouts | None = None,
                session: aiohttp.ClientSession | None = None) -> DirSource | HttpSource:
    u = normalize_master(url)
    if u.startswith("file://"):
        return DirSource(u)
    return HttpSource(u, node_id, timeouts, session)
