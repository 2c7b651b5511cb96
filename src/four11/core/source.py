"""Where a node fetches the index and messages from: a master URL or a local 411 dir.

Both answer ``get(rel, max_size, etag)`` with bounded reads and timeouts, so a slow or
endless answer cannot hang or fill a node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from . import httpclient
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

    def close_idle(self) -> None:
        pass

    async def close(self) -> None:
        pass


class HttpSource:
    """A fileserver. Reads are capped at max_size; connections are kept for the requests
    of one sync and closed by ``close_idle`` after it (a node syncs rarely)."""

    def __init__(self, url: str, node_id: str | None = None, timeouts: Timeouts | None = None) -> None:
        self.url = normalize_master(url)
        self.node_id = node_id
        self.timeouts = timeouts or Timeouts()
        u = urlsplit(self.url)
        self._client = httpclient.Client(u.scheme, u.hostname or "", u.port,
                                         self.timeouts.connect, self.timeouts.read)
        self._path = u.path
        self.have: int | None = None  # index version reported in X-Four11-Have

    async def get(self, rel: str, max_size: int, etag: str | None = None,
                  headers: dict[str, str] | None = None, wait: int | None = None) -> Fetched:
        h = dict(headers or {})
        if self.node_id:
            h[HEADER_NODE] = self.node_id
        if self.have is not None:
            h[HEADER_HAVE] = str(self.have)
        if etag:
            h["If-None-Match"] = etag
        tail = quote(rel) + ("" if wait is None else f"?wait={wait}")
        url, target = self.url + tail, self._path + tail
        read = self.timeouts.read if wait is None else self.timeouts.read + 120
        try:
            r = await self._client.get(target, h, max_size, read)
        except httpclient.BodyTooLarge as e:
            raise Refusal("too_large", f"{url} is over the limit: {e}") from None
        except httpclient.HttpError as e:
            raise Refusal("fetch_failed", f"{url}: {e}") from None
        nodes = r.headers.get(HEADER_NODES.lower())
        n = int(nodes) if nodes and nodes.isdigit() else None
        if r.status == 304:
            return Fetched(304, etag=etag, nodes=n)
        if r.status != 200:
            raise Refusal("fetch_failed", f"{url}: HTTP {r.status}")
        return Fetched(200, r.body, r.headers.get("etag"), n)

    def close_idle(self) -> None:
        self._client.close_idle()

    async def close(self) -> None:
        self._client.close_idle()


def open_source(url: str, node_id: str | None = None,
                timeouts: Timeouts | None = None) -> DirSource | HttpSource:
    u = normalize_master(url)
    if u.startswith("file://"):
        return DirSource(u)
    return HttpSource(u, node_id, timeouts)
