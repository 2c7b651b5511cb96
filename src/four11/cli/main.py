"""411: key generation and the services (publisher, fileserver, alerter, agent, ...)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ..core.keys import KEM_HYBRID, KEM_X25519, keygen
from .common import EXIT_OK, EXIT_USAGE, fail, run

PROG = "411"

# subcommand -> module whose main(argv) runs it; each service owns its own flags.
COMMANDS = {
    "publisher": "four11.publisher.__main__",
    "fileserver": "four11.fileserver.__main__",
    "alerter": "four11.alerter.__main__",
    "agent": "four11.nodeagent.__main__",
    "commit": "four11.publisher.control",
    "restart": "four11.publisher.control",
    "status": "four11.fileserver.status",
    "export-node-keys": "four11.cli.export_keys",
    "keygen-secret": "four11.cli.keysecret",
    "demo": "four11.cli.demo",
}


def keygen_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} keygen", description="Create the cluster keys.")
    p.add_argument("--out", required=True, help="directory for the keys")
    p.add_argument("--group", action="append", default=[], help="also make a key for this group")
    p.add_argument("--kem", choices=("mlkem768-x25519", "x25519"), default="mlkem768-x25519",
                   help="HPKE KEM for the encryption keys (default: hybrid post-quantum)")
    p.add_argument("--force", action="store_true", help="replace existing keys")
    a = p.parse_args(argv)

    def body() -> int:
        kem = KEM_X25519 if a.kem == "x25519" else KEM_HYBRID
        for path in keygen(Path(a.out), a.group, kem, a.force):
            print(path)
        return EXIT_OK

    return run(f"{PROG} keygen", body)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = ["keygen", *COMMANDS]
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {PROG} {{{','.join(names)}}} [options]")
        return EXIT_OK if argv else EXIT_USAGE
    cmd, rest = argv[0], argv[1:]
    if cmd == "keygen":
        return keygen_main(rest)
    if cmd not in COMMANDS:
        return fail(PROG, f"unknown command {cmd!r} (one of: {', '.join(names)})", EXIT_USAGE)
    try:
        mod = importlib.import_module(COMMANDS[cmd])
    except ModuleNotFoundError:
        return fail(PROG, f"command {cmd!r} is not available in this installation", EXIT_USAGE)
    if cmd in ("commit", "restart"):
        return mod.main([cmd, *rest])
    return mod.main(rest)


if __name__ == "__main__":
    sys.exit(main())
