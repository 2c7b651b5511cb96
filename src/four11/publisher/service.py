"""The publisher service: keeps the file list published without anyone running ``make``.

Stat-polls the sources and files.yaml, publishes within about a second of a change,
checks everything every ``full_check_s`` anyway (the original's hourly cron) and re-signs
the index before it gets old. ``411 commit``/``411 restart`` reach it over a unix socket
(or SIGUSR1/SIGUSR2); SIGHUP re-reads files.yaml. Blocking work (crypto, fsync) runs in a
worker thread so /metrics and the control socket stay responsive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from ..core.errors import ConfigError
from ..core.metrics import MetricsServer, start_metrics_server
from . import config as pconfig
from .engine import Engine, Round, snapshot
from .metrics import PublisherMetrics

log = logging.getLogger("four11.publisher")
COMMANDS = ("commit", "restart")
MAX_RETRY_S = 60.0
RESTART_ONLY = ("four11_dir", "keys_dir", "state_dir", "control_socket", "metrics_listen")


class Publisher:
    """``Publisher(cfg)`` with cfg a dict of config keys (or a loaded PublisherConfig);
    ``await start()`` publishes once and starts watching; ``await stop()``."""

    def __init__(self, cfg: Mapping[str, Any] | pconfig.PublisherConfig,
                 registry: CollectorRegistry | None = None,
                 flags: Mapping[str, Any] | None = None) -> None:
        self.config = cfg if isinstance(cfg, pconfig.PublisherConfig) else pconfig.from_dict(cfg)
        self.flags = dict(flags or {})  # re-applied over the file on reload
        self.metrics = PublisherMetrics(registry)
        self.engine = Engine(self.config, self.metrics)
        self.metrics_port: int | None = None
        self.last_round: Round | None = None
        self.last_error: str | None = None
        self._lock = asyncio.Lock()
        self._dirty = False
        self._task: asyncio.Task | None = None
        self._runner: MetricsServer | None = None
        self._control: asyncio.AbstractServer | None = None
        self._config_stat: tuple | None = None

    @property
    def settings(self) -> dict:
        return self.config.settings

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.engine.four11dir()  # bad keys or an unreadable index stop the start, loudly
        self.engine.observe()
        self._config_stat = self._stat_config()
        await self._start_control()
        self._runner, self.metrics_port = await start_metrics_server(
            self.settings["metrics_listen"], self.metrics.registry, self.health)
        try:
            await self.commit()
        except Exception as e:  # keep running: the loop retries with backoff
            log.error("first publish failed: %s", e)
        self._task = asyncio.create_task(self._watch(), name="publisher-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._control is not None:
            self._control.close()
            await self._control.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                self.config.control_socket.unlink()
        if self._runner is not None:
            await self._runner.cleanup()
        async with self._lock:  # let a round in its worker thread finish
            pass

    def health(self) -> tuple[bool, str]:
        if self.last_error:
            return False, f"last publish failed: {self.last_error}"
        if self.last_round is None:
            return False, "not published yet"
        return True, f"ok: {self.last_round.summary()}"

    # -- rounds ----------------------------------------------------------------------------

    async def commit(self, force: bool = False) -> Round:
        async with self._lock:
            try:
                rnd = await asyncio.to_thread(self.engine.commit, force)
            except Exception as e:
                self.last_error = str(e)
                raise
            self.last_error = None
            self.last_round = rnd
            return rnd

    async def restart(self) -> Round:
        """Re-encrypt and re-sign everything and re-alert (after a key rotation)."""
        return await self.commit(force=True)

    def request_commit(self) -> None:
        self._dirty = True

    # -- configuration ---------------------------------------------------------------------

    def _stat_config(self) -> tuple | None:
        if self.config.path is None:
            return None
        try:
            st = os.stat(self.config.path)
        except OSError as e:
            return (e.errno,)
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def reload(self) -> bool:
        """Re-read files.yaml; a broken edit is refused and the running list stays."""
        if self.config.path is None:
            return False
        try:
            new = pconfig.load(self.config.path, self.flags)
        except ConfigError as e:
            self.metrics.reloads.labels("error").inc()
            log.error("refusing the edited file list, keeping the running one: %s", e)
            return False
        for k in RESTART_ONLY:
            if new.settings[k] != self.settings[k]:
                log.warning("%s changed in %s: takes effect at the next start", k, self.config.path)
                new.settings[k] = self.settings[k]
        self.config.settings, self.config.files = new.settings, new.files
        self.metrics.reloads.labels("ok").inc()
        log.info("file list reloaded: %d entries", len(new.files))
        self._dirty = True
        return True

    # -- the watch loop --------------------------------------------------------------------

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        snap = await asyncio.to_thread(snapshot, self.config)
        next_full = loop.time() + self.settings["full_check_s"]
        failures = 0
        retry_at = 0.0
        while True:
            await asyncio.sleep(self.settings["poll_s"])
            try:
                cs = self._stat_config()
                if cs != self._config_stat:
                    self._config_stat = cs
                    self.reload()
                new = await asyncio.to_thread(snapshot, self.config)
                now = loop.time()
                due = new != snap or self._dirty or now >= next_full or (failures and now >= retry_at)
                if due:
                    if new != snap and self.settings["debounce_s"]:
                        await asyncio.sleep(self.settings["debounce_s"])  # let the editor finish
                        new = await asyncio.to_thread(snapshot, self.config)
                    snap, self._dirty = new, False
                    next_full = loop.time() + self.settings["full_check_s"]
                    try:
                        await self.commit()
                        failures = 0
                    except Exception as e:
                        failures += 1
                        retry_at = loop.time() + min(MAX_RETRY_S, 2.0 ** failures)
                        log.error("publish failed (retry in %.0f s): %s", retry_at - loop.time(), e)
                if time.time() >= self.engine.resign_due:  # cheap test; the engine re-checks
                    async with self._lock:
                        await asyncio.to_thread(self.engine.resign_if_due)
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must never die
                log.exception("publisher loop error")

    # -- control socket --------------------------------------------------------------------

    async def _start_control(self) -> None:
        path = self.config.control_socket
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise ConfigError(f"control socket {path} exists and is not a socket")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(str(path))
                except OSError:
                    path.unlink()  # left behind by a killed publisher
                else:
                    raise ConfigError(f"another publisher is running (control socket {path})")
        old = os.umask(0o077)  # only root (the publisher's user) may commit
        try:
            self._control = await asyncio.start_unix_server(self._handle, path=str(path))
        finally:
            os.umask(old)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            cmd = line.decode(errors="replace").strip()
            if cmd not in COMMANDS:
                reply: dict = {"ok": False, "error": f"unknown command {cmd[:40]!r}"}
            else:
                t0 = time.monotonic()
                try:
                    cs = self._stat_config()
                    if cmd == "commit" and cs != self._config_stat:  # an edit not yet seen
                        self._config_stat = cs
                        self.reload()
                    rnd = await self.commit(force=cmd == "restart")
                    reply = rnd.to_json()
                except Exception as e:
                    reply = {"ok": False, "error": str(e)}
                log.info("%s over the control socket: %s (%.2f s)", cmd,
                         reply.get("error") or "done", time.monotonic() - t0)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

