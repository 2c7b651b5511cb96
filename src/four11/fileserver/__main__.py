"""411 fileserver: serve the 411 dir over HTTP (flags > FOUR11_* env > YAML config)."""

from __future__ import annotations

import argparse
import logging
import resource
import sys

from ..cli.common import EXIT_OK, EXIT_REFUSED, fail
from ..cli.common import run as run_cli
from ..core import config as c
from ..core.metrics import split_listen
from ..core.service import Lifecycle, run, setup_logging
from .config import SCHEMA
from .server import FileServer

PROG = "411 fileserver"
log = logging.getLogger("four11.fileserver")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Serve the 411 dir over HTTP.")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--411dir", "--four11-dir", dest="four11_dir", default=None,
                   help=SCHEMA["four11_dir"].help)
    c.add_flags(p, SCHEMA, skip=("four11_dir",))
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    return p


def raise_nofile() -> None:
    """Every held watch is a socket: take the whole hard limit of open files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(sys.argv[1:] if argv is None else argv)
    flags = {k: getattr(a, k) for k in SCHEMA}
    cfg: dict = {}

    def load() -> int:
        cfg.update(c.load(SCHEMA, a.config, flags))
        return EXIT_OK

    rc = run_cli(PROG, load)
    if rc != EXIT_OK:
        return rc
    setup_logging(a.log_level)
    raise_nofile()

    async def serve(lc: Lifecycle) -> int:
        fs = FileServer(cfg["four11_dir"], cfg["urldir"], cfg["watch_timeout_s"],
                        cfg["allow_cidrs"] or None)
        host, port = split_listen(cfg["listen"])
        try:
            bound = await fs.start(host, port)
        except OSError as e:
            return fail(PROG, f"cannot listen on {cfg['listen']}: {e.strerror or e}", EXIT_REFUSED)
        log.info("serving %s at http://%s:%d%s", fs.root, host, bound, fs.urldir)
        await lc.stopping.wait()
        log.info("stopping: answering watchers, finishing in-flight requests")
        await fs.stop()
        return EXIT_OK

    return run(serve)


if __name__ == "__main__":
    sys.exit(main())
