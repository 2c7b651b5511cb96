"""The alerter service: repeats the newest pre-signed alert until it is old.

It holds no key and never changes a byte of an alert: it only decides when and where to
send the bytes the publisher signed. The active alert is sent at once, then every
``interval_s`` until ``min(expires, issued + duration_s)``; a newer one (higher index
version) replaces it immediately. Each round goes to the multicast group and to every
unicast address, the unicast sends spread over the first half of the interval and capped
at ``max_rate`` per second, so thousands of targets never see a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..core import config as c
from ..core.errors import Refusal
from ..core.metrics import MetricsServer, build_info, start_metrics_server
from .config import SCHEMA
from .spool import Spool, SpooledAlert, load_verify
from .targets import Addr, Targets

log = logging.getLogger("four11.alerter")
CHANNELS = ("multicast", "unicast")
RESULTS = ("ok", "error")
REJECT_REASONS = ("bad_format", "bad_signature", "unknown_key", "expired", "too_large", "io_error")
SPREAD = 0.5  # unicast sends of a round fill this fraction of the interval
TICK_S = 0.02


class AlerterMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        build_info(r, "alerter")
        self.sent = Counter("four11_alerter_datagrams_sent_total", "Alert datagrams sent",
                            ["channel", "result"], registry=r)
        self.version = Gauge("four11_alerter_active_index_version",
                             "Index version the active alert announces", registry=r)
        self.expiry = Gauge("four11_alerter_active_expiry_timestamp_seconds",
                            "When the alerter stops repeating the active alert", registry=r)
        self.targets = Gauge("four11_alerter_targets_resolved", "Destinations of each round",
                             ["channel"], registry=r)
        self.rejected = Counter("four11_alerter_spool_rejected_total",
                                "Spooled alert files refused (never sent)", ["reason"], registry=r)
        self.resolve_errors = Counter("four11_alerter_resolve_errors_total",
                                      "Failed lookups of unicast target names", registry=r)
        self.activated = Counter("four11_alerter_alerts_activated_total",
                                 "New alerts taken from the spool", registry=r)
        for ch in CHANNELS:
            self.targets.labels(ch)
            for res in RESULTS:
                self.sent.labels(ch, res)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)


class Alerter:
    """``Alerter(cfg)`` with cfg a dict of the alerter's config keys (defaults fill the
    rest); ``await start()``, ``await stop()``."""

    def __init__(self, cfg: Mapping[str, Any], registry: CollectorRegistry | None = None,
                 loaded: bool = False) -> None:
        self.cfg = dict(cfg) if loaded else c.from_mapping(SCHEMA, cfg)
        self.metrics = AlerterMetrics(registry)
        self.spool = Spool(Path(self.cfg["four11_dir"]), load_verify(self.cfg["verify_key"]),
                           on_reject=self._rejected)
        self.targets = Targets(self.cfg["unicast"], on_error=lambda *_: self.metrics.resolve_errors.inc())
        self.active: SpooledAlert | None = None
        self.metrics_port: int | None = None
        self._changed = asyncio.Event()
        self._socks: dict[int, socket.socket] = {}
        self._tasks: list[asyncio.Task] = []
        self._runner: MetricsServer | None = None
        self._counters = {(ch, res): self.metrics.sent.labels(ch, res)  # no label lookup per datagram
                          for ch in CHANNELS for res in RESULTS}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._socks[socket.AF_INET] = self._socket(socket.AF_INET)
        mc = self.cfg["multicast"]
        self.metrics.targets.labels("multicast").set(1 if mc["enabled"] else 0)
        if self.targets.entries:
            await self._resolve()
        self._runner, self.metrics_port = await start_metrics_server(
            self.cfg["metrics_listen"], self.metrics.registry, self.health)
        self._poll_spool()
        self._tasks = [asyncio.create_task(self._send_loop(), name="alerter-send"),
                       asyncio.create_task(self._spool_loop(), name="alerter-spool")]
        if self.targets.entries:
            self._tasks.append(asyncio.create_task(self._resolve_loop(), name="alerter-resolve"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for s in self._socks.values():
            s.close()
        self._socks.clear()

    def health(self) -> tuple[bool, str]:
        a = self.active
        if a is None:
            return True, "ok: no active alert"
        return True, f"ok: repeating the alert for index {a.alert.version} until {int(self.stop_at(a))}"

    # -- spool -----------------------------------------------------------------------------

    def _rejected(self, name: str, r: Refusal) -> None:
        self.metrics.rejected.labels(r.reason if r.reason in REJECT_REASONS else "bad_format").inc()

    def _poll_spool(self) -> None:
        new = self.spool.newest()
        if new is None or (self.active is not None and new.alert.version <= self.active.alert.version):
            return
        self.active = new
        self.metrics.activated.inc()
        self.metrics.version.set(new.alert.version)
        self.metrics.expiry.set(self.stop_at(new))
        log.info("new alert for index %d (%s): sending until %d", new.alert.version, new.file,
                 int(self.stop_at(new)))
        self._changed.set()

    async def _spool_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg["spool_poll_s"])
            try:
                self._poll_spool()
            except Exception:  # a strange spool must not stop the alerts
                log.exception("error reading the alert spool")

    def stop_at(self, s: SpooledAlert) -> float:
        return min(s.alert.expires, s.alert.issued + self.cfg["duration_s"])

    # -- targets ---------------------------------------------------------------------------

    async def _resolve(self) -> None:
        addrs = await self.targets.resolve()
        self.metrics.targets.labels("unicast").set(len(addrs))

    async def _resolve_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg["resolve_s"])
            try:
                await self._resolve()
            except Exception:
                log.exception("error resolving unicast targets")

    # -- sending ---------------------------------------------------------------------------

    def _socket(self, family: int) -> socket.socket:
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setblocking(False)
        if family == socket.AF_INET:
            mc = self.cfg["multicast"]
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, mc["ttl"])
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)  # agents on this host
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(mc["interface"]))
        return s

    def _send(self, channel: str, family: int, addr: tuple, data: bytes) -> None:
        try:
            s = self._socks.get(family)
            if s is None:
                s = self._socks[family] = self._socket(family)
            s.sendto(data, addr)
        except OSError as e:  # one bad target must not stop the others
            self._counters[channel, "error"].inc()
            log.debug("send to %s failed: %s", addr, e)
            return
        self._counters[channel, "ok"].inc()

    async def _round(self, a: SpooledAlert) -> None:
        mc = self.cfg["multicast"]
        if mc["enabled"]:
            self._send("multicast", socket.AF_INET, (mc["group"], mc["port"]), a.data)
        addrs: list[Addr] = self.targets.addresses
        if not addrs:
            return
        loop = asyncio.get_running_loop()
        window = self.cfg["interval_s"] * SPREAD
        per_tick = min(max(1, math.ceil(len(addrs) * TICK_S / window)),
                       max(1, int(self.cfg["max_rate"] * TICK_S)))
        t0 = loop.time()
        for k, i in enumerate(range(0, len(addrs), per_tick), 1):
            if self.active is not a:
                return  # replaced: the new alert goes out now
            for family, sa in addrs[i:i + per_tick]:
                self._send("unicast", family, sa, a.data)
            if i + per_tick < len(addrs):
                await asyncio.sleep(max(0.0, t0 + k * TICK_S - loop.time()))

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            a = self.active
            if a is None or time.time() >= self.stop_at(a):
                await self._changed.wait()
                continue
            start = loop.time()
            try:
                await self._round(a)
            except Exception:
                log.exception("error sending alert")
            if self.active is not a:
                continue
            delay = start + self.cfg["interval_s"] - loop.time()
            if delay <= 0:  # a round longer than the interval: still let the loop breathe
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), delay)
