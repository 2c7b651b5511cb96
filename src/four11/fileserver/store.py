"""Safe lookup of files under the 411 dir, with a bounded in-memory cache.

A request path reaches a file only through plain directories and a regular file, each
opened with O_NOFOLLOW relative to its parent: no '..', no encoded '/', no dot-files
(lock, temp files), no symlinks anywhere below the 411 dir, never the alert spool.
Small files are kept in memory keyed by (device, inode, size, mtime); every hit is
revalidated with one lstat, so a replaced file is never served stale. Because the
publisher replaces files by rename, an open descriptor always reads one whole version:
no reader ever sees a torn body.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import unquote

from ..core.publish import ALERT_DIR

SMALL_MAX = 1024 * 1024  # larger files are sent with sendfile, never cached
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

Key = tuple[int, int, int, int]  # dev, ino, size, mtime_ns


class NotFound(Exception):
    """The path does not name a servable file (the client always sees a plain 404)."""


def key_of(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def split_rel(raw: str) -> list[str]:
    """Components of a raw (still percent-encoded) path below the URL dir, or NotFound."""
    parts = []
    for enc in raw.split("/"):
        try:
            p = unquote(enc, errors="strict") if "%" in enc else enc
        except UnicodeDecodeError:
            raise NotFound(raw) from None
        if not p or p.startswith(".") or "/" in p or "\x00" in p or "\\" in p:
            raise NotFound(raw)
        parts.append(p)
    if not parts or parts[0] == ALERT_DIR:
        raise NotFound(raw)
    return parts


def open_below(root: str, parts: list[str]) -> tuple[int, os.stat_result]:
    """An fd of the regular file root/parts..., walking without following any symlink."""
    try:
        dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        raise NotFound(root) from None
    try:
        for p in parts[:-1]:
            nfd = os.open(p, _DIR_FLAGS, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dfd)
    except OSError:
        raise NotFound("/".join(parts)) from None
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotFound("/".join(parts))
    return fd, st


def read_fd(fd: int, size: int) -> bytes:
    chunks = []
    left = size
    while left > 0:
        b = os.read(fd, left)
        if not b:
            break
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def stat_etag(k: Key) -> str:
    return f'"{k[1]:x}-{k[2]:x}-{k[3]:x}"'


@dataclass(slots=True)
class Cached:
    path: str  # absolute path, revalidated with lstat on every hit
    key: Key
    body: bytes
    etag: str


@dataclass(slots=True)
class Large:
    """An open descriptor of a file too large for the cache; the caller closes it."""

    fd: int
    size: int
    etag: str


class Store:
    """Files below ``root``: ``get(raw_rel)`` -> Cached (in memory) or Large (an open fd)."""

    def __init__(self, root: str, cache_bytes: int = DEFAULT_CACHE_BYTES, small_max: int = SMALL_MAX):
        self.root = os.path.abspath(root)
        self.cache_bytes = cache_bytes
        self.small_max = min(small_max, cache_bytes)
        self._cache: OrderedDict[str, Cached] = OrderedDict()
        self._used = 0

    def cached(self, raw_rel: str) -> Cached | None:
        """The cached file if it is still the one on disk (one lstat), else None."""
        c = self._cache.get(raw_rel)
        if c is None:
            return None
        try:
            st = os.stat(c.path, follow_symlinks=False)
        except OSError:
            return None
        if key_of(st) != c.key:
            return None
        self._cache.move_to_end(raw_rel)
        return c

    def get(self, raw_rel: str) -> Cached | Large:
        c = self.cached(raw_rel)
        if c is not None:
            return c
        self._drop(raw_rel)
        parts = split_rel(raw_rel)
        fd, st = open_below(self.root, parts)
        k = key_of(st)
        if st.st_size > self.small_max:
            return Large(fd, st.st_size, stat_etag(k))
        try:
            body = read_fd(fd, st.st_size)
            after = key_of(os.fstat(fd))
        finally:
            os.close(fd)
        if after != k or len(body) != st.st_size:
            # Written in place while we read (the publisher never does): do not cache it.
            return Cached("", after, body, strong_etag(body))
        c = Cached(os.path.join(self.root, *parts), k, body, strong_etag(body))
        self._put(raw_rel, c)
        return c

    def _put(self, raw_rel: str, c: Cached) -> None:
        self._cache[raw_rel] = c
        self._used += len(c.body)
        while self._used > self.cache_bytes and self._cache:
            self._drop(next(iter(self._cache)))

    def _drop(self, raw_rel: str) -> None:
        c = self._cache.pop(raw_rel, None)
        if c is not None:
            self._used -= len(c.body)

    @property
    def cached_bytes(self) -> int:
        return self._used
