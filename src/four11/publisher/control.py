"""``411 commit`` and ``411 restart``: ask the running publisher, or publish directly.

The running publisher is reached over its control socket and answers with what the round
did. When no publisher answers, the same round runs in this process (rounds of both are
serialised by the lock in the state dir), so the commands also work on a master where the
service is not running, like ``make -C /var/411`` did.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from pathlib import Path

from ..cli.common import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, fail
from ..cli.common import run as run_cli
from ..core.errors import ConfigError
from . import config as pconfig
from .engine import Engine, Round

COMMANDS = ("commit", "restart")
HELP = {"commit": "publish what changed now",
        "restart": "re-encrypt and re-sign every file and re-alert (after a key rotation)"}
REPLY_TIMEOUT_S = 600.0  # a restart of thousands of files on a slow disk takes a while


class NoPublisher(Exception):
    pass


def ask(path: Path, cmd: str, timeout: float = REPLY_TIMEOUT_S) -> dict:
    """One command over the control socket; NoPublisher when nothing listens there."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise NoPublisher(str(e)) from None
        s.sendall(cmd.encode() + b"\n")
        s.settimeout(timeout)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    try:
        return json.loads(buf)
    except ValueError:
        raise ConfigError(f"the publisher at {path} sent an unreadable answer") from None


def report(prog: str, reply: dict, via: str) -> int:
    if reply.get("error"):
        return fail(prog, f"failed ({via}): {reply['error']}")
    for line in reply.get("published", []):
        print(f"published {line}", file=sys.stderr)
    for line in reply.get("removed", []):
        print(f"removed {line}", file=sys.stderr)
    for err in reply.get("errors", []):
        print(f"{prog}: {err}", file=sys.stderr)
    rnd = Round(published=reply.get("published", []), unchanged=reply.get("unchanged", 0),
                removed=reply.get("removed", []), errors=reply.get("errors", []),
                index_version=reply.get("index_version"))
    print(f"{rnd.summary()} ({via})", file=sys.stderr)
    return EXIT_OK if rnd.ok else EXIT_REFUSED


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        return fail("411", f"expected one of {', '.join(COMMANDS)}", EXIT_USAGE)
    cmd, rest = argv[0], argv[1:]
    prog = f"411 {cmd}"
    p = argparse.ArgumentParser(prog=prog, description=HELP[cmd].capitalize() + ".")
    p.add_argument("--config", default=pconfig.DEFAULT_CONFIG,
                   help=f"the publisher's files.yaml (default {pconfig.DEFAULT_CONFIG})")
    p.add_argument("--control-socket", help="the running publisher's socket (default from the config)")
    p.add_argument("--direct", action="store_true", help="publish in this process, never ask the service")
    a = p.parse_args(rest)

    def body() -> int:
        cfg = pconfig.load(a.config)
        sock = Path(a.control_socket) if a.control_socket else cfg.control_socket
        if not a.direct:
            try:
                return report(prog, ask(sock, cmd), "running publisher")
            except NoPublisher:
                pass
        logging.basicConfig(level=logging.ERROR, format=f"{prog}: %(message)s")
        try:
            rnd = Engine(cfg).commit(force=cmd == "restart")
        except OSError as e:
            return fail(prog, f"failed: {e}")
        return report(prog, rnd.to_json(), "published directly")

    return run_cli(prog, body)
