"""``411 export-node-keys --keys DIR --group G... --out DIR``: a node's key bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import EXIT_OK, run
from .keybundle import write_bundle

PROG = "411 export-node-keys"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=PROG, description="Copy the keys a node of the given groups needs (master.pub, "
        "cluster.key and its groups' keys) into a new directory, for /etc/411-security on the node.")
    p.add_argument("--keys", default="/etc/411-security", help="the master's key dir (411 keygen --out)")
    p.add_argument("--group", action="append", default=[], help="411 group of the node (repeatable)")
    p.add_argument("--out", required=True, help="directory to create (mode 0700)")
    p.add_argument("--force", action="store_true", help="replace the contents of --out")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        for f in write_bundle(Path(a.keys), a.group, Path(a.out), a.force):
            print(f)
        return EXIT_OK

    return run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
