"""Unicast targets: host:port entries, DNS names re-resolved to all their addresses.

A headless Service of node agents on host networking resolves to one address per node,
so a name may stand for thousands of targets. A failed lookup keeps the addresses the
name had before, so a DNS hiccup does not silence the alerts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("four11.alerter")

Addr = tuple[int, tuple]  # (address family, sockaddr)


def split_target(t: str) -> tuple[str, int]:
    host, _, port = t.rpartition(":")
    return host.strip("[]"), int(port)


class Targets:
    def __init__(self, entries: list[str],
                 on_error: Callable[[str, str], None] | None = None) -> None:
        self.entries = list(entries)
        self.on_error = on_error
        self._by_entry: dict[str, list[Addr]] = {}

    @property
    def addresses(self) -> list[Addr]:
        seen: dict[Addr, None] = {}
        for t in self.entries:
            for a in self._by_entry.get(t, []):
                seen.setdefault(a, None)
        return list(seen)

    async def resolve(self) -> list[Addr]:
        names = []
        for t in self.entries:
            host, port = split_target(t)
            try:  # a literal address needs no lookup (and thousands of them no thread pool)
                ip = ipaddress.ip_address(host)
            except ValueError:
                names.append(t)
                continue
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            self._by_entry[t] = [(family, (str(ip), port))]
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.getaddrinfo(*split_target(t), type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP)
              for t in names),
            return_exceptions=True)
        for t, res in zip(names, results, strict=True):
            if isinstance(res, BaseException):
                why = str(res) or type(res).__name__
                kept = len(self._by_entry.get(t, []))
                log.warning("cannot resolve unicast target %s (%s); keeping %d known addresses",
                            t, why, kept)
                if self.on_error is not None:
                    self.on_error(t, why)
                continue
            addrs = sorted({(fam, sa[:2]) for fam, _, _, _, sa in res
                            if fam in (socket.AF_INET, socket.AF_INET6)})
            if addrs != self._by_entry.get(t):
                log.info("unicast target %s: %d addresses", t, len(addrs))
            self._by_entry[t] = addrs
        return self.addresses
