"""Node key bundles and Kubernetes Secret items made from a `411 keygen` key dir.

A node's key dir holds master.pub, cluster.key and the .key files of its own groups (and of
their ancestors that have a key), so a node can read only its groups' files.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..core import groups as grp
from ..core.errors import ConfigError
from ..core.keys import PRIVATE_MODE, PUBLIC_MODE, check_mode

_UNSAFE_ITEM = re.compile(r"[^-._a-zA-Z0-9]")


def group_key_base(keys_dir: Path, group: str) -> Path:
    """<keys>/groups/a/b for group /a/b (without the .key/.pub suffix)."""
    return Path(keys_dir).joinpath("groups", *grp.key_path_parts(group))


def secret_item(group: str) -> str:
    """Secret item name of a group key, without suffix: "/compute/light" -> "group.compute.light".

    The Helm chart's "four11.groupItem" helper maps names the same way.
    """
    return _UNSAFE_ITEM.sub("_", "group." + ".".join(grp.key_path_parts(group)))


def node_key_files(keys_dir: Path, groups: list[str]) -> list[tuple[Path, str]]:
    """(source file, path inside the bundle) of every key a node of ``groups`` needs."""
    keys_dir = Path(keys_dir)
    out = [(keys_dir / "master.pub", "master.pub"), (keys_dir / "cluster.key", "cluster.key")]
    for f, _ in out:
        if not f.is_file():
            raise ConfigError(f"{f} does not exist (is {keys_dir} a `411 keygen` key dir?)")
    seen: set[str] = set()
    for g in groups:
        for a in grp.ancestors(grp.normalize(g)):
            if a == grp.ROOT or a in seen:
                continue
            seen.add(a)
            base = group_key_base(keys_dir, a)
            key = base.with_name(base.name + ".key")
            if key.is_file():
                out.append((key, str(key.relative_to(keys_dir))))
    return out


def write_bundle(keys_dir: Path, groups: list[str], out: Path, force: bool = False) -> list[Path]:
    """Copy a node's keys to ``out`` (dir 0700, private keys 0400, master.pub 0444)."""
    files = node_key_files(keys_dir, groups)
    for src, _ in files:
        check_mode(src, src.suffix == ".key")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"refusing to write into non-empty {out} (use --force to replace it)")
    if out.exists() and force:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    written = []
    for src, rel in files:
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(dst.parent, 0o700)
        mode = PRIVATE_MODE if dst.suffix == ".key" else PUBLIC_MODE
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, src.read_bytes())
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        written.append(dst)
    return written


def secret_data(keys_dir: Path) -> dict[str, bytes]:
    """Every key of a key dir as Secret items: master.key, cluster.pub, group.<a>.<b>.key, ..."""
    keys_dir = Path(keys_dir)
    data: dict[str, bytes] = {}
    for name in ("master.key", "master.pub", "cluster.key", "cluster.pub"):
        p = keys_dir / name
        if not p.is_file():
            raise ConfigError(f"{p} does not exist (is {keys_dir} a `411 keygen` key dir?)")
        data[name] = p.read_bytes()
    gdir = keys_dir / "groups"
    for p in sorted(gdir.rglob("*")) if gdir.is_dir() else []:
        if p.is_file() and p.suffix in (".key", ".pub"):
            group = "/" + str(p.relative_to(gdir).with_suffix(""))
            item = f"{secret_item(group)}{p.suffix}"
            if item in data:
                raise ConfigError(f"groups {group!r} and another map to the same Secret item {item}")
            data[item] = p.read_bytes()
    return data
