"""The alerter's configuration keys (YAML file, FOUR11_* environment, flags)."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..core import config as c

DEFAULT_GROUP = "239.2.11.71"
DEFAULT_PORT = 8411


def _multicast_group(v: Any) -> str | None:
    try:
        ok = ipaddress.IPv4Address(v).is_multicast
    except ValueError:
        ok = False
    return None if ok else f"must be an IPv4 multicast address (224.0.0.0/4), got {v!r}"


def _ipv4(v: Any) -> str | None:
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        return f"must be the IPv4 address of an interface, got {v!r}"
    return None


def _port(v: Any) -> str | None:
    return None if 1 <= v <= 65535 else "must be a UDP port (1-65535)"


def _ttl(v: Any) -> str | None:
    return None if 0 <= v <= 255 else "must be 0-255"


def _targets(v: list) -> str | None:
    for t in v:
        if not isinstance(t, str) or c.host_port(t) or int(t.rpartition(":")[2]) == 0:
            return f"each target must be host:port (IPv6 as [addr]:port), got {t!r}"
    return None


MULTICAST = c.Schema(
    enabled=c.Opt(bool, True, "send alerts to the multicast group"),
    group=c.Opt(str, DEFAULT_GROUP, "multicast group", _multicast_group),
    port=c.Opt(int, DEFAULT_PORT, "UDP port", _port),
    interface=c.Opt(str, "0.0.0.0", "address of the outgoing interface (0.0.0.0: the routing table's)",
                    _ipv4),
    ttl=c.Opt(int, 1, "multicast TTL (1: this subnet only)", _ttl),
)

SCHEMA = c.Schema(
    four11_dir=c.Opt(str, "/var/lib/four11/messages", "message dir; alerts are read from its alerts/"),
    interval_s=c.Opt(float, 10.0, "repeat the active alert this often, seconds", c.positive),
    duration_s=c.Opt(float, 3600.0, "stop repeating this long after the alert was issued", c.positive),
    multicast=c.Opt(MULTICAST),
    unicast=c.Opt(list, [], "host:port targets; DNS names may resolve to many addresses", _targets),
    resolve_s=c.Opt(float, 60.0, "re-resolve unicast DNS names this often, seconds", c.positive),
    max_rate=c.Opt(float, 2000.0, "at most this many unicast datagrams per second", c.positive),
    spool_poll_s=c.Opt(float, 0.5, "look for a new alert this often, seconds", c.positive),
    verify_key=c.Opt(str, None, "master.pub (or a key dir) to verify alerts with; unset: format only"),
    metrics_listen=c.Opt(str, "0.0.0.0:9412", "host:port of /metrics and /healthz", c.host_port),
    log_level=c.Opt(str, "INFO", "DEBUG, INFO, WARNING or ERROR"),
)


def load(file: str | None, flags: dict | None = None, env: dict | None = None) -> dict:
    return c.load(SCHEMA, file, flags, env)
