"""The node agent: one scheduler fed by alerts, a long-poll watch and a poller; every sync
goes through core's Node (the same fetch -> verify -> apply path as ``411get --all``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from ..core import groups as grp
from ..core import nodeconfig
from ..core.errors import MASTER_FAULTS, ConfigError, Refusal
from ..core.index import Index
from ..core.keys import load_keyring, load_node_keys
from ..core.metrics import start_metrics_server
from ..core.publish import INDEX_FILE
from ..core.source import DirSource, HttpSource, Timeouts, open_source
from ..core.state import STATE_FILE, NodeState, StateCorrupt
from ..core.sync import Applied, Node
from . import listener as lis
from .masters import Masters
from .metrics import AgentMetrics
from .postapply import argv_of, run_command
from .ratelimit import VerifyBudget
from .scheduler import Scheduler

log = logging.getLogger("four11.agent")

# Refusals that are the master's (or the network's) fault: try the next master.
RETRY_MAX_S = 300.0
WATCH_RETRY_MAX_S = 30.0
INITIAL_FETCH_S = 0.1  # t in the backoff before anything was measured
STOP_GRACE_S = 10.0


class _Stopping(Exception):
    """Raised between files when SIGTERM arrived: the file just written is complete."""


def load_state(state_dir: Path, metrics: AgentMetrics) -> NodeState:
    try:
        return NodeState.load(state_dir)
    except StateCorrupt as e:
        path = Path(state_dir) / STATE_FILE
        aside = path.with_name(f"{STATE_FILE}.corrupt")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        log.error("%s; moved it to %s and starting over with a full sync", e, aside)
        metrics.state_rebuilt.inc()
        return NodeState(path)


class Agent:
    def __init__(self, cfg: dict, registry: CollectorRegistry | None = None,
                 load_config: Callable[[], dict] | None = None,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = AgentMetrics(self.registry, clock)
        self.load_config = load_config
        self.clock = clock
        self.rng = rng or random.Random()
        self.cfg = cfg
        self.state = load_state(nodeconfig.state_dir(cfg), self.metrics)
        keyring, keys = self._keys(cfg)
        self.node = Node(nodeconfig.policy(cfg), keyring, keys, self.state, clock)
        self.masters = Masters(cfg["masters"], self.state, self.metrics.set_scores, self.rng)
        try:
            self.state.save()
        except OSError as e:
            raise ConfigError(f"state_dir: cannot write {self.state.path}: {e.strerror}") from None
        self.node_id = nodeconfig.node_id(cfg)
        self.post_apply = {p: argv_of(c) for p, c in cfg["post_apply"].items()}
        self.budget = VerifyBudget(cfg["alert_verify_per_source"], cfg["alert_verify_rate"])
        self.gate = lis.AlertGate(keyring, lambda: self.synced_version, self.budget, clock)
        self.sched = Scheduler(self._sync, lambda: self.synced_version)
        self.synced_version = 0  # index version whose messages are all applied (or refused for good)
        self.known_version = 0  # highest verified version seen in an index or alert
        self.clean = False  # last sync applied everything: a conditional GET may say "no change"
        self.frozen = False
        self.applied_expires = 0
        self.last_ok: float | None = None
        self.fetch_ewma = INITIAL_FETCH_S
        self.nodes = 1
        self.stopping = False
        self._retries = 0
        self._sources: dict[str, DirSource | HttpSource] = {}
        self._transports: list[lis.Listener] = []
        self._tasks: dict[str, asyncio.Task] = {}
        self._runner = None
        self.metrics_port = 0
        self.ports: dict[str, int] = {}
        self.metrics.index_version.set(self.state.index_version)
        self.metrics.fetch_ewma.set(self.fetch_ewma)

    @staticmethod
    def _keys(cfg: dict):
        keyring = load_keyring(Path(cfg["keys_dir"]))
        keys = load_node_keys(Path(cfg["keys_dir"]))
        if not keys:
            raise ConfigError(f"keys_dir: {cfg['keys_dir']} holds no decryption key (cluster.key "
                              "or groups/<group>.key)")
        return keyring, keys

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.cfg
        mc = cfg["multicast"]
        socks = []
        if mc["enabled"]:
            socks.append(("multicast", lis.multicast_socket(mc["group"], mc["port"], mc["interface"])))
        if cfg["unicast_port"]:
            socks.append(("unicast", lis.unicast_socket(cfg["unicast_port"])))
        try:
            self._runner, self.metrics_port = await start_metrics_server(
                cfg["metrics_listen"], self.registry, self.health)
        except OSError as e:
            for _, s in socks:
                s.close()
            raise ConfigError(f"metrics_listen: cannot listen on {cfg['metrics_listen']}: "
                              f"{e.strerror}") from None
        for channel, s in socks:
            self.ports[channel] = s.getsockname()[1]
            self._transports.append(await lis.listen(s, channel, self._on_datagram))
        self._tasks["scheduler"] = asyncio.create_task(self.sched.run_forever())
        self._tasks["poller"] = asyncio.create_task(self._poll_loop())
        if cfg["watch"]:
            self._tasks["watch"] = asyncio.create_task(self._watch_loop())
        self.sched.request("start")
        log.info("agent %s started: groups %s, masters %s, metrics on port %d, unicast %s, multicast %s",
                 self.node_id, ", ".join(sorted(self.node.policy.groups)),
                 ", ".join(self.masters.urls), self.metrics_port,
                 f"udp port {self.ports['unicast']}" if "unicast" in self.ports else "off",
                 f"{mc['group']}:{self.ports['multicast']} on {mc['interface']}"
                 if "multicast" in self.ports else "off")

    async def stop(self) -> None:
        self.stopping = True
        for t in self._transports:
            t.close()
        for name in ("poller", "watch"):
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel()
        if self.sched.running:
            # the sync stops after the file it is writing; give it time to get there
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sched.idle.wait(), STOP_GRACE_S)
        self.sched.close()
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks.values(), timeout=STOP_GRACE_S)
        self._tasks.clear()
        for src in self._sources.values():
            await src.close()
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("agent stopped")

    def health(self) -> tuple[bool, str]:
        if self.frozen:
            return False, ("index expired: masters offer no valid index; keeping version "
                           f"{self.synced_version}")
        if self.last_ok is None:
            return False, "no successful sync yet"
        return True, f"ok: index version {self.synced_version} applied"

    # -- configuration reload (SIGHUP) ---------------------------------------------------------

    def reload(self) -> bool:
        if self.load_config is None:
            return False
        try:
            cfg = self.load_config()
            keyring, keys = self._keys(cfg)
            policy = nodeconfig.policy(cfg)
        except ConfigError as e:
            log.error("reload refused, keeping the running configuration: %s", e)
            self.metrics.reloads.labels("failed").inc()
            return False
        for key in ("state_dir", "metrics_listen", "unicast_port", "multicast"):
            if cfg[key] != self.cfg[key]:
                log.warning("reload: %s changed; it takes effect at the next restart", key)
                cfg[key] = self.cfg[key]
        if (cfg["node_id"], cfg["connect_timeout_s"], cfg["read_timeout_s"]) != (
                self.cfg["node_id"], self.cfg["connect_timeout_s"], self.cfg["read_timeout_s"]):
            old, self._sources = self._sources, {}
            for src in old.values():
                asyncio.get_running_loop().create_task(src.close())
        self.cfg = cfg
        self.node_id = nodeconfig.node_id(cfg)
        self.node.policy, self.node.keyring, self.node.keys = policy, keyring, keys
        self.gate.keyring = keyring
        self.budget.per_source, self.budget.total = cfg["alert_verify_per_source"], cfg["alert_verify_rate"]
        self.masters.set_configured(cfg["masters"])
        self.post_apply = {p: argv_of(c) for p, c in cfg["post_apply"].items()}
        watch = self._tasks.get("watch")
        if cfg["watch"] and watch is None and not self.stopping:
            self._tasks["watch"] = asyncio.get_running_loop().create_task(self._watch_loop())
        elif not cfg["watch"] and watch is not None:
            self._tasks.pop("watch").cancel()
        self.metrics.reloads.labels("ok").inc()
        log.info("configuration reloaded")
        self.clean = False  # groups or keys may have changed: look at every message again
        self.sched.request("reload")
        return True

    # -- sync --------------------------------------------------------------------------------

    def _source(self, url: str) -> DirSource | HttpSource:
        src = self._sources.get(url)
        if src is None:
            src = self._sources[url] = open_source(
                url, self.node_id, Timeouts(self.cfg["connect_timeout_s"], self.cfg["read_timeout_s"]))
        if isinstance(src, HttpSource):
            src.have = self.synced_version or None
        return src

    def window(self) -> float:
        """Backoff W = N * t / C, at most one poll interval (the poller would come by then)."""
        w = min(self.nodes * self.fetch_ewma / self.cfg["concurrency"], self.cfg["poll_mean_s"])
        self.metrics.backoff.set(w)
        return w

    async def _post_apply(self, a: Applied) -> None:
        self.metrics.files.labels("applied", "none").inc()
        log.info("applied %s (%s serial %d) owner %d:%d mode %04o", a.meta.path, a.entry.name,
                 a.entry.serial, a.meta.uid, a.meta.gid, a.meta.mode)
        argv = self.post_apply.get(a.meta.path)
        if argv:
            res = await run_command(argv, self.cfg["post_apply_timeout_s"], a.meta.path)
            self.metrics.post_apply.labels(res).inc()
        if self.stopping:
            raise _Stopping

    def _synced(self, idx: Index) -> None:
        self.synced_version = max(self.synced_version, idx.version)
        self.known_version = max(self.known_version, idx.version)
        self.metrics.applied_version.set(self.synced_version)
        self.metrics.applied_created = float(idx.created)
        self.metrics.index_expires.set(idx.expires)
        self.applied_expires = idx.expires

    async def _sync(self, trigger: str, target: int | None) -> bool:
        t0 = time.monotonic()
        # a 304 proves nothing changed, not that the index is still valid: once it expired,
        # fetch it whole so the freeze is noticed and reported
        conditional = (target is None and self.clean and trigger == "poll"
                       and self.applied_expires > self.clock())
        result, reached, fetched, expired, fetch_s = "failed", False, False, 0, 0.0
        urls = self.masters.ordered()
        for url in urls:
            if self.stopping:
                break
            src = self._source(url)
            try:
                rep = await self.node.sync(src, conditional=conditional, post_apply=self._post_apply)
            except _Stopping:
                result = "partial"
                break
            except Refusal as r:
                self.metrics.index_refused.labels(r.reason).inc()
                log.warning("master %s: %s", src.url, r)
                if r.reason == "expired":
                    expired += 1  # the publisher's fault, not this master's
                else:
                    self.masters.failure(url)
                continue
            except Exception:  # never let one bad answer or disk error kill the agent
                log.exception("sync with %s failed", src.url)
                self.masters.failure(url)
                continue
            self.metrics.index_version.set(self.state.index_version)
            fetch_s += rep.fetch_s
            if rep.nodes:
                self.nodes = rep.nodes
                self.metrics.nodes.set(rep.nodes)
            if rep.not_modified:
                if target is not None and target > self.synced_version:
                    continue  # this master has not seen the new version yet
                self.masters.success(url)
                result, reached = "not_modified", True
                break
            fetched = True
            self.frozen = False
            for entry, r in rep.refused:
                self.metrics.files.labels("refused", r.reason).inc()
                log.warning("refused %s (%s) from %s: %s", entry.name, entry.group, src.url, r)
            if any(r.reason in MASTER_FAULTS for _, r in rep.refused):
                self.masters.failure(url)
                result = "partial"
                continue  # what this master got wrong, the next one may serve right
            self.masters.success(url)
            assert rep.index is not None
            self._synced(rep.index)
            self.clean = not rep.refused
            result = "ok" if not rep.refused else "partial"
            if target is None or rep.index.version >= target:
                reached = True
                break
        else:
            if expired and expired == len(urls):
                result = "frozen"
                if not self.frozen:
                    log.error("every master offers an expired index: keeping the current files "
                              "(index version %d); the publisher must re-sign", self.synced_version)
                self.frozen = True
        for src in self._sources.values():
            src.close_idle()  # the next sync may be minutes away: hold nothing on the master
        self.metrics.frozen.set(1 if self.frozen else 0)
        duration = time.monotonic() - t0
        self.metrics.syncs.labels(trigger, result).inc()
        if fetched:
            self.metrics.fetch_seconds.observe(duration)
            # t is the time spent on the master's connection, not the local writes and
            # post_apply commands: the backoff exists to bound the master's concurrency
            self.fetch_ewma = 0.7 * self.fetch_ewma + 0.3 * fetch_s
            self.metrics.fetch_ewma.set(self.fetch_ewma)
        if reached:
            self.last_ok = self.clock()
            self.metrics.last_sync.set(self.last_ok)
            self._retries = 0
        elif not self.stopping:
            delay = min(RETRY_MAX_S, self.cfg["poll_mean_s"], 2.0 ** self._retries)
            self._retries = min(self._retries + 1, 16)
            self.sched.request("retry", target, delay * self.rng.uniform(0.5, 1.5))
        log.debug("sync (%s) %s in %.3f s", trigger, result, duration)
        return reached

    # -- channels ----------------------------------------------------------------------------

    def _on_datagram(self, channel: str, data: bytes, source: str) -> None:
        v = self.gate.check(data, source)
        result, reason = v.result, v.reason
        if result == "dropped" and v.scope:
            self.metrics.dropped(v.scope)
        elif result == "accepted" and v.alert is not None:
            a = v.alert
            added = self.masters.learn(a.masters)
            if added:
                self.metrics.masters_learned.inc(len(added))
            if not self._concerns_me(a.groups):
                result, reason = "ignored", "other_groups"
            elif a.version <= self.known_version and (self.sched.pending or self.sched.running):
                result, reason = "ignored", "duplicate"
            else:
                self.known_version = max(self.known_version, a.version)
                self.sched.request("alert", a.version, self.window())
                log.info("alert for index version %d via %s from %s", a.version, channel, source)
        self.metrics.alert(channel, result, reason)

    def _concerns_me(self, groups: list[str]) -> bool:
        mine = self.node.policy.groups
        for g in groups:
            try:
                if grp.normalize(g) in mine:
                    return True
            except ConfigError:
                continue
        return False

    async def _poll_loop(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.cfg["poll_mean_s"] * self.rng.uniform(0.5, 1.5))
            self.sched.request("poll")

    async def _watch_loop(self) -> None:
        failures = 0
        while not self.stopping:
            url = next((u for u in self.masters.ordered() if u.startswith(("http://", "https://"))), None)
            if url is None:
                log.info("watch: no http master to watch")
                return
            src = self._source(url)
            t0 = time.monotonic()
            quick = False
            try:
                f = await src.get(INDEX_FILE, self.node.policy.max_index, wait=self.known_version)
                if f.nodes:
                    self.nodes = f.nodes
                    self.metrics.nodes.set(f.nodes)
                if f.status == 200:
                    idx = self.node.accept_index(f.body)
                    self.metrics.index_version.set(self.state.index_version)
                    new = idx.version > self.known_version
                    self.known_version = max(self.known_version, idx.version)
                    if idx.version > self.synced_version:
                        self.sched.request("watch", idx.version, self.window())
                    quick = not new
                else:
                    quick = True
                failures = 0
            except Refusal as r:
                self.metrics.watch_errors.inc()
                if r.reason != "expired":
                    self.masters.failure(url)
                log.warning("watch on %s: %s", src.url, r)
                failures += 1
            except Exception:
                self.metrics.watch_errors.inc()
                log.exception("watch on %s failed", src.url)
                failures += 1
            if failures or (quick and time.monotonic() - t0 < 1.0):
                # a server that answers at once without news must not make us spin
                delay = min(WATCH_RETRY_MAX_S, 0.5 * 2.0 ** min(failures, 8))
                await asyncio.sleep(delay * self.rng.uniform(0.5, 1.5))
