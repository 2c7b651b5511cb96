"""411put: encrypt, sign and publish files into the 411 dir."""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
from pathlib import Path

from ..core import envelope
from ..core import groups as grp
from ..core.errors import ConfigError
from ..core.keys import load_recipient_key, load_signing_key
from ..core.names import chroot_dest, message_name
from ..core.publish import DEFAULT_URLDIR, Four11Dir, default_master_url, expand
from .common import EXIT_OK, run

PROG = "411put"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Publish files to the cluster nodes.")
    env = os.environ.get
    p.add_argument("--411dir", dest="four11_dir", default=env("FOUR11_FOUR11_DIR", "/etc/411.d"),
                   help="message directory (default /etc/411.d)")
    p.add_argument("--urldir", default=env("FOUR11_URLDIR", DEFAULT_URLDIR),
                   help="URL path the fileserver serves the 411 dir under (default /411.d/)")
    p.add_argument("--keys", default=env("FOUR11_KEYS_DIR", "/etc/411-security"),
                   help="key directory (master.key, cluster.pub, groups/)")
    p.add_argument("--group", default="/", help="411 group, e.g. /compute or 'a space/yellow'")
    ch = p.add_mutually_exclusive_group()
    ch.add_argument("--chroot", help="turn DIR into the destination root")
    ch.add_argument("--chroot-here", action="store_true", help="--chroot=$PWD")
    p.add_argument("--comment", help="comment character for the header line nodes add")
    p.add_argument("--mode", choices=("replace", "merge"),
                   help="apply mode (default: merge for /etc/passwd, group, shadow, gshadow)")
    p.add_argument("--owner", help="override owner as UID:GID")
    p.add_argument("--perm", help="override mode, octal, e.g. 0640")
    p.add_argument("--id-min", type=int, default=1000,
                   help="merge mode: only ids from here up leave the master (default 1000)")
    p.add_argument("--master-url", action="append",
                   help="master URL written into the index and alert (repeatable)")
    p.add_argument("--noalert", action="store_true", help="do not spool an alert")
    p.add_argument("--alert", metavar="HOST:PORT",
                   help="also send the alert datagram once to this UDP channel")
    p.add_argument("--see", action="store_true", help="show the published message on stdout")
    p.add_argument("--411name", dest="show_name", action="store_true",
                   help="print the 411 message name of each file and exit")
    p.add_argument("--pub", help="encrypt to this public key instead of the group's key")
    p.add_argument("--priv", help="master signing key (default <keys>/master.key)")
    p.add_argument("files", nargs="+", metavar="FILE")
    return p


def _owner(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    u, _, g = text.partition(":")
    if not (u.isdigit() and g.isdigit()):
        raise ConfigError(f"--owner must be UID:GID with numbers, got {text!r}")
    return int(u), int(g)


def see(data: bytes) -> str:
    e = envelope.parse(data, envelope.KIND_MESSAGE, len(data))
    return json.dumps({"header": e.meta, "recipients": e.ext, "ciphertext_bytes": len(e.body),
                       "ciphertext_b64_head": base64.b64encode(e.body[:48]).decode()}, indent=1)


def send_alert(channel: str, data: bytes) -> None:
    host, _, port = channel.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"--alert must be HOST:PORT, got {channel!r}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        if host.startswith("127."):
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(host))
        s.sendto(data, (host, int(port)))


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)

    def body() -> int:
        chroot = os.getcwd() if a.chroot_here else (os.path.abspath(a.chroot) if a.chroot else None)
        group = grp.normalize(a.group)
        if a.show_name:
            for f in a.files:
                print(message_name(chroot_dest(os.path.abspath(f), chroot)))
            return EXIT_OK
        uid, gid = _owner(a.owner)
        try:
            perm = int(a.perm, 8) if a.perm else None
        except ValueError:
            raise ConfigError(f"--perm must be octal, got {a.perm!r}") from None
        keys = Path(a.keys)
        signer = load_signing_key(Path(a.priv) if a.priv else keys / "master.key")
        masters = a.master_url or (
            os.environ["FOUR11_MASTER_URLS"].split(",") if os.environ.get("FOUR11_MASTER_URLS")
            else None
        )
        d = Four11Dir(Path(a.four11_dir), keys, signer=signer,
                      master_urls=masters or None)
        if d.current_index() is None and not masters:
            d.master_urls = [default_master_url(a.urldir)]
        if a.pub:
            d.set_recipient(group, load_recipient_key(Path(a.pub)))
        items = expand([Path(f) for f in a.files], chroot, group=group, comment=a.comment,
                       apply=a.mode, uid=uid, gid=gid, perm=perm, id_min=a.id_min)
        res = d.put(items, alert=not a.noalert)
        for e in res.entries:
            print(f"published {e.name} group {e.group} serial {e.serial} ({e.size} bytes)",
                  file=sys.stderr)
            if a.see:
                print(see((d.path / e.file).read_bytes()))
        print(f"index version {res.index_version}", file=sys.stderr)
        if a.alert and res.alert_file is not None:
            send_alert(a.alert, res.alert_file.read_bytes())
        return EXIT_OK

    return run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
