"""411 message names and destination path rules."""

from __future__ import annotations

import posixpath

from . import groups as grp
from .errors import Refusal

RESERVED = frozenset({"index", "alerts", "groups", "status", "healthz", "metrics"})


def message_name(dest: str) -> str:
    """The original 411 name: path without the leading slash, '.' doubled, '/' -> '.'.

    /etc/auto.home -> etc.auto..home ; /etc/passwd -> etc.passwd
    """
    check_dest(dest)
    return dest[1:].replace(".", "..").replace("/", ".")


def check_dest(dest: str) -> str:
    """A destination must be absolute, normalised, free of NUL, '.' and '..' components."""
    if not isinstance(dest, str) or not dest:
        raise Refusal("bad_path", "destination path is empty")
    if "\x00" in dest:
        raise Refusal("bad_path", f"destination {dest!r} contains NUL")
    if not dest.startswith("/"):
        raise Refusal("bad_path", f"destination {dest!r} is a relative path")
    parts = dest.split("/")[1:]
    if any(p in ("", ".", "..") for p in parts):
        raise Refusal("bad_path", f"destination {dest!r} has an empty, '.' or '..' component")
    return dest


def check_allowed(dest: str, allow_prefixes: list[str]) -> None:
    check_dest(dest)
    for prefix in allow_prefixes:
        p = prefix if prefix.endswith("/") else prefix + "/"
        if dest.startswith(p) or dest == prefix.rstrip("/"):
            return
    raise Refusal(
        "bad_path", f"destination {dest} is outside the allowed prefixes {', '.join(allow_prefixes)}"
    )


def message_file(group: str, name: str, serial: int) -> str:
    """Relative path of a message inside the 411 dir (and under the URL dir).

    Group "/" messages sit at the top; other groups under groups/<components>/. The serial
    in the file name lets a new message land before the index names it (crash safety).
    """
    if name in RESERVED or name.startswith("."):
        raise Refusal("bad_path", f"message name {name!r} is reserved")
    parts = grp.components(group)
    base = f"{name}.{serial}"
    return posixpath.join("groups", *parts, base) if parts else base


def chroot_dest(source: str, chroot: str | None) -> str:
    """Destination of ``source`` when published with --chroot DIR."""
    src = posixpath.normpath(source)
    if not chroot:
        return src
    root = posixpath.normpath(chroot)
    if root == "/":
        return src
    if not src.startswith(root + "/"):
        raise Refusal("bad_path", f"{source} is not below the chroot {chroot}")
    return src[len(root) :]
