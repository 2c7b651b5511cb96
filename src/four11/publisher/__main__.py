"""``411 publisher --config /etc/411/files.yaml [flags]``: run the publisher service."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from ..cli.common import fail
from ..cli.common import run as run_cli
from ..core import config as c
from ..core.service import Lifecycle, run, setup_logging
from . import config as pconfig
from .service import Publisher

PROG = "411 publisher"
log = logging.getLogger("four11.publisher")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Publish the file list and keep it current.")
    p.add_argument("--config", default=pconfig.DEFAULT_CONFIG,
                   help=f"files.yaml: settings and the file list (default {pconfig.DEFAULT_CONFIG})")
    c.add_flags(p, pconfig.SCHEMA, skip=("files",))
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    flags = {k: v for k, v in vars(a).items() if k in pconfig.SCHEMA and v is not None}

    def body() -> int:
        cfg = pconfig.load(a.config, flags)
        setup_logging(cfg.settings["log_level"])

        async def serve(lc: Lifecycle) -> int:
            pub = Publisher(cfg, flags=flags)
            await pub.start()
            lc.on_reload = pub.reload
            loop = asyncio.get_running_loop()
            tasks: set[asyncio.Task] = set()

            def spawn(force: bool) -> None:
                t = loop.create_task(pub.commit(force))
                tasks.add(t)
                t.add_done_callback(done)

            def done(t: asyncio.Task) -> None:
                tasks.discard(t)
                if not t.cancelled() and t.exception() is not None:
                    log.error("signalled publish failed: %s", t.exception())

            loop.add_signal_handler(signal.SIGUSR1, spawn, False)  # like 411 commit
            loop.add_signal_handler(signal.SIGUSR2, spawn, True)  # like 411 restart
            log.info("publisher running: %d list entries, metrics on port %s",
                     len(cfg.files), pub.metrics_port)
            await lc.stopping.wait()
            await pub.stop()
            return 0

        try:
            return run(serve)
        except OSError as e:  # e.g. the metrics port is taken
            return fail(PROG, f"cannot start: {e}")

    return run_cli(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
