"""Path-like 411 group names and the hierarchical match (whole components only)."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import ConfigError

ROOT = "/"


def normalize(group: str) -> str:
    """Canonical form: leading slash, single separators, no trailing slash.

    "Compute/green", "/Compute/green/" -> "/Compute/green"; "" and "/" -> "/".
    Case and inner spaces are kept ("a space/yellow" is valid).
    """
    if not isinstance(group, str) or "\x00" in group:
        raise ConfigError(f"invalid group name {group!r}")
    parts = [p for p in group.split("/") if p != ""]
    for p in parts:
        if p in (".", "..") or p != p.strip():
            raise ConfigError(
                f"invalid group name {group!r}: component {p!r} is '.', '..' or has "
                "leading/trailing spaces"
            )
    return ROOT + "/".join(parts)


def components(group: str) -> list[str]:
    g = normalize(group)
    return [] if g == ROOT else g[1:].split("/")


def ancestors(group: str) -> list[str]:
    """The group and every more general one, most general first: /a/b -> [/, /a, /a/b]."""
    parts = components(group)
    return [ROOT] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def accepted(memberships: Iterable[str]) -> frozenset[str]:
    """Every group a node with these memberships takes (always includes "/")."""
    out = {ROOT}
    for m in memberships:
        out.update(ancestors(m))
    return frozenset(out)


def depth(group: str) -> int:
    return len(components(group))


def key_path_parts(group: str) -> list[str]:
    """Relative path parts of a group's key file under <keys>/groups/ (without suffix)."""
    parts = components(group)
    if not parts:
        raise ConfigError("group '/' uses the cluster key, not a group key")
    return parts
