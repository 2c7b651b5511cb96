"""411get: list, print, or apply (--all) the messages a master offers this node."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from ..core import config as cfgmod
from ..core import nodeconfig
from ..core.errors import MASTER_FAULTS, ConfigError, Refusal
from ..core.source import open_source
from ..core.state import StateCorrupt
from ..core.sync import Node, node_from_dirs, select
from .common import EXIT_OK, EXIT_REFUSED, fail, run

PROG = "411get"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Fetch, verify and apply 411 messages.")
    p.add_argument("--master", action="append",
                   help="master URL, file:// URL or 411 dir path (repeatable; tried in order)")
    p.add_argument("--conf", help=f"node config (default {nodeconfig.DEFAULT_CONF} if it exists)")
    p.add_argument("--keys", dest="keys_dir", help="key dir (master.pub and group .key files)")
    p.add_argument("--group", dest="groups", action="append", help="411 group (repeatable)")
    p.add_argument("--state-dir", dest="state_dir", help="applied serials and index version")
    p.add_argument("--root", help="write destinations under this prefix (default /)")
    p.add_argument("--all", action="store_true", help="apply every message of this node's groups")
    p.add_argument("name", nargs="?", help="message name to print, e.g. etc.passwd")
    return p


def load_config(a: argparse.Namespace) -> dict:
    conf = a.conf or (nodeconfig.DEFAULT_CONF if os.path.exists(nodeconfig.DEFAULT_CONF) else None)
    flags = {"keys_dir": a.keys_dir, "groups": a.groups, "state_dir": a.state_dir, "root": a.root}
    cfg = cfgmod.load(nodeconfig.SCHEMA, conf, flags)
    if a.master:
        cfg["masters"] = list(a.master)
    if not cfg["masters"]:
        raise ConfigError("no master: give --master URL or set masters in the config file")
    return cfg


async def _with_failover(node: Node, masters: list[str], node_id: str, action) -> int:
    """Try masters in order; a refusal that is the master's fault moves on to the next."""
    last: Refusal | None = None
    for url in masters:
        src = open_source(url, node_id)
        try:
            return await action(src)
        except Refusal as r:
            last = r
            # an expired index may be one master's stale copy: the next may be fresh
            if r.reason in MASTER_FAULTS or r.reason == "expired":
                if len(masters) > 1:
                    print(f"{PROG}: {src.url}: {r}", file=sys.stderr)
                continue
            raise
        finally:
            await src.close()
    assert last is not None
    raise last


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)

    def body() -> int:
        cfg = load_config(a)
        try:
            node = node_from_dirs(nodeconfig.policy(cfg), Path(cfg["keys_dir"]),
                                  nodeconfig.state_dir(cfg))
        except StateCorrupt as e:
            return fail(PROG, f"{e}; remove it to start over with a full sync")
        nid = nodeconfig.node_id(cfg)

        async def list_(src) -> int:
            idx, _ = await node.fetch_index(src)
            mine = {id(e) for e in select(idx, node.policy.groups).values()}
            print(f"# index version {idx.version} from {src.url}")
            print(f"{'NAME':40} {'GROUP':20} {'SERIAL':>15} {'SIZE':>10}  MINE")
            for e in sorted(idx.entries, key=lambda e: (e.group, e.name)):
                print(f"{e.name:40} {e.group:20} {e.serial:>15} {e.size:>10}  "
                      f"{'yes' if id(e) in mine else 'no'}")
            return EXIT_OK

        async def print_(src) -> int:
            idx, _ = await node.fetch_index(src)
            entry = node.find(idx, a.name)
            fm, content = await node.fetch_message(src, entry)
            sys.stdout.buffer.write(node.render(fm, content))
            sys.stdout.flush()
            return EXIT_OK

        async def all_(src) -> int:
            rep = await node.sync(src)
            for ap in rep.applied:
                m = ap.meta
                print(f"applied {m.path} ({ap.entry.name} serial {ap.entry.serial}) "
                      f"owner {m.uid}:{m.gid} mode {m.mode:04o}", file=sys.stderr)
            for entry, r in rep.refused:
                print(f"{PROG}: refused {entry.name} ({entry.group}): {r}", file=sys.stderr)
            print(f"index version {rep.index.version if rep.index else '?'}: {len(rep.applied)} "
                  f"applied, {rep.unchanged} unchanged, {len(rep.refused)} refused", file=sys.stderr)
            return EXIT_OK if rep.ok else EXIT_REFUSED

        if a.all:  # a fresh --root prefix (e.g. a demo dir) is created like any missing parent
            os.makedirs(cfg["root"], mode=0o755, exist_ok=True)
        action = all_ if a.all else print_ if a.name else list_
        return asyncio.run(_with_failover(node, cfg["masters"], nid, action))

    return run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
