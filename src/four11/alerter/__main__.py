"""``411 alerter --411dir DIR [flags]``: repeat the newest spooled alert to the nodes."""

from __future__ import annotations

import argparse
import logging
import sys

from ..cli.common import fail
from ..cli.common import run as run_cli
from ..core import config as c
from ..core.service import Lifecycle, run, setup_logging
from . import config as aconfig
from .service import Alerter

PROG = "411 alerter"
log = logging.getLogger("four11.alerter")
MC_FLAGS = (("group", str), ("port", int), ("interface", str), ("ttl", int))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Repeat the newest pre-signed alert.")
    p.add_argument("--config", help="YAML config file (e.g. /etc/411/alerter.yaml)")
    p.add_argument("--411dir", dest="four11_dir", help="message dir (same as --four11-dir)")
    c.add_flags(p, aconfig.SCHEMA)
    for key, typ in MC_FLAGS:
        p.add_argument(f"--multicast-{key}", dest=f"mc_{key}", type=typ,
                       help=aconfig.MULTICAST[key].help)
    p.add_argument("--multicast", dest="mc_enabled", default=None,
                   action=argparse.BooleanOptionalAction, help="send to the multicast group")
    return p


def flags_of(a: argparse.Namespace) -> dict:
    flags = {k: v for k, v in vars(a).items() if k in aconfig.SCHEMA and v is not None}
    mc = {k[3:]: v for k, v in vars(a).items() if k.startswith("mc_") and v is not None}
    if mc:
        flags["multicast"] = mc
    return flags


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)

    def body() -> int:
        cfg = aconfig.load(a.config, flags_of(a))
        setup_logging(cfg["log_level"])

        async def serve(lc: Lifecycle) -> int:
            alerter = Alerter(cfg, loaded=True)
            await alerter.start()
            mc = cfg["multicast"]
            log.info("alerter running: spool %s/alerts, multicast %s, %d unicast targets, "
                     "metrics on port %s", cfg["four11_dir"],
                     f"{mc['group']}:{mc['port']}" if mc["enabled"] else "off",
                     len(alerter.targets.addresses), alerter.metrics_port)
            await lc.stopping.wait()
            await alerter.stop()
            return 0

        try:
            return run(serve)
        except OSError as e:  # e.g. the metrics port is taken
            return fail(PROG, f"cannot start: {e}")

    return run_cli(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
