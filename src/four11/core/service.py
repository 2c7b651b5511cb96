"""Running a service: asyncio loop, SIGTERM/SIGINT to stop, SIGHUP to reload, logging."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

log = logging.getLogger("four11")


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


class Lifecycle:
    """``stopping`` is set on SIGTERM/SIGINT; ``on_reload`` runs on SIGHUP."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.on_reload: Callable[[], None] | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)

    def _reload(self) -> None:
        if self.on_reload is not None:
            try:
                self.on_reload()
            except Exception:  # a bad reload must not kill the service
                log.exception("reload failed; keeping the running configuration")


def run(main: Callable[[Lifecycle], Awaitable[int]], fast_loop: bool = True) -> int:
    """Run ``main(lifecycle)`` on a fresh loop: uvloop when installed and ``fast_loop``
    (the servers' choice; the node agent serves a few sockets and saves uvloop's memory)."""
    if fast_loop:
        try:
            import uvloop  # type: ignore[import-not-found]

            uvloop.install()
        except ImportError:
            pass

    async def wrapper() -> int:
        lc = Lifecycle()
        lc.install()
        return await main(lc)

    return asyncio.run(wrapper())
