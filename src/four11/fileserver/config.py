"""The fileserver's configuration schema (YAML file, FOUR11_* environment, flags)."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..core import config as c
from ..core.publish import DEFAULT_URLDIR

DEFAULT_DIR = "/var/lib/four11/messages"
DEFAULT_LISTEN = "0.0.0.0:8411"
DEFAULT_WATCH_TIMEOUT_S = 55.0


def cidrs(v: Any) -> str | None:
    for x in v:
        try:
            ipaddress.ip_network(str(x), strict=False)
        except ValueError:
            return f"{x!r} is not an address or CIDR block (e.g. 10.1.0.0/16)"
    return None


def urldir_ok(v: Any) -> str | None:
    s = str(v)
    if not s.startswith("/") or any(p in (".", "..") for p in s.split("/")) or "?" in s or "%" in s:
        return "must be an absolute URL path such as /411.d/"
    return None


SCHEMA = c.Schema(
    four11_dir=c.Opt(str, DEFAULT_DIR, "message directory written by the publisher (read-only here)"),
    urldir=c.Opt(str, DEFAULT_URLDIR, "URL path the 411 dir is served under", urldir_ok),
    listen=c.Opt(str, DEFAULT_LISTEN, "host:port to serve HTTP on", c.host_port),
    allow_cidrs=c.Opt(list, [], "client networks allowed (empty: everyone)", cidrs),
    watch_timeout_s=c.Opt(float, DEFAULT_WATCH_TIMEOUT_S, "longest hold of a ?wait= request, seconds",
                          c.positive),
)


def norm_urldir(urldir: str) -> str:
    """'/411.d' and '411.d/' -> '/411.d/'; '/' stays '/'."""
    inner = urldir.strip("/")
    return f"/{inner}/" if inner else "/"
