"""``411 agent [--config FILE] [flags]``: run the node agent."""

from __future__ import annotations

import argparse
import logging
import sys

from ..core import config as cfgmod
from ..core import nodeconfig
from ..core.errors import ConfigError
from ..core.service import Lifecycle, run, setup_logging
from . import config as agentconfig

PROG = "411 agent"
log = logging.getLogger("four11.agent")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Keep this node's files in line with the masters.")
    p.add_argument("--config", help=f"YAML config (default {nodeconfig.DEFAULT_CONF} if it exists)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    cfgmod.add_flags(p, nodeconfig.SCHEMA)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    setup_logging(a.log_level)
    flags = {k: v for k, v in vars(a).items() if k not in ("config", "log_level")}

    def load() -> dict:
        return agentconfig.load(a.config, flags)

    try:
        cfg = load()
    except ConfigError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2

    async def service(lc: Lifecycle) -> int:
        from .agent import Agent

        try:
            agent = Agent(cfg, load_config=load)
            await agent.start()
        except ConfigError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return 2
        lc.on_reload = agent.reload
        await lc.stopping.wait()
        await agent.stop()
        return 0

    return run(service, fast_loop=False)


if __name__ == "__main__":
    sys.exit(main())
