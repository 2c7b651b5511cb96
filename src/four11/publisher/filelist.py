"""The publisher's file list (the ``files`` key of files.yaml), the successor of Files.mk.

Each entry is checked on its own and an error names the file, the line of the entry and
the reason, so an admin can fix a broken edit without guessing. Shorthand: a bare string
entry is ``{source: <string>}`` (publish the file at its own path).
"""

from __future__ import annotations

import dataclasses
import grp as unix_grp
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..core import groups as grp
from ..core import merge as mergemod
from ..core.errors import ConfigError, Refusal
from ..core.names import chroot_dest, message_name
from ..core.publish import PutItem, default_apply, expand

KEYS = ("source", "dest", "chroot", "group", "comment", "mode", "owner", "perm")
APPLY_MODES = ("replace", "merge")


@dataclass(frozen=True)
class FileSpec:
    """One checked entry of the list."""

    line: int  # 1-based line of the entry in files.yaml (0: not from a file)
    source: str
    dest: str | None = None
    chroot: str | None = None
    group: str = grp.ROOT
    comment: str | None = None
    mode: str | None = None  # apply mode; None: merge for /etc/passwd & co, else replace
    uid: int | None = None
    gid: int | None = None
    perm: int | None = None


def entry_lines(text: str) -> tuple[list[int], dict[int, dict[str, tuple[int, str]]]]:
    """Line of each ``files`` entry, and per entry each key's (line, raw scalar text).

    The raw text matters for ``perm``: YAML 1.1 reads 0644 as 420 and 644 as 644, so the
    mode is taken from what the admin typed, not from the parsed number.
    """
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return [], {}
    lines: list[int] = []
    raw: dict[int, dict[str, tuple[int, str]]] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines, raw
    for k, v in root.value:
        if getattr(k, "value", None) != "files" or not isinstance(v, yaml.SequenceNode):
            continue
        for i, item in enumerate(v.value):
            lines.append(item.start_mark.line + 1)
            if isinstance(item, yaml.MappingNode):
                raw[i] = {
                    str(kk.value): (vv.start_mark.line + 1, vv.value)
                    for kk, vv in item.value
                    if isinstance(vv, yaml.ScalarNode)
                }
    return lines, raw


def _owner(text: Any) -> tuple[int, int]:
    if not isinstance(text, str) or text.count(":") != 1:
        raise ValueError(f"owner must be USER:GROUP (names or numbers), got {text!r}")
    u, g = text.split(":")
    try:
        uid = int(u) if u.isdigit() else pwd.getpwnam(u).pw_uid
    except KeyError:
        raise ValueError(f"owner: unknown user {u!r} on this master") from None
    try:
        gid = int(g) if g.isdigit() else unix_grp.getgrnam(g).gr_gid
    except KeyError:
        raise ValueError(f"owner: unknown group {g!r} on this master") from None
    return uid, gid


def _perm(raw: str) -> int:
    text = raw.strip()
    if text.startswith("0o"):
        text = text[2:]
    if not text or len(text) > 4 or any(c not in "01234567" for c in text):
        raise ValueError(f"perm must be an octal mode such as \"0644\", got {raw!r}")
    return int(text, 8)


def _abs(key: str, v: Any) -> str:
    if not isinstance(v, str) or not v.startswith("/") or "\x00" in v:
        raise ValueError(f"{key} must be an absolute path, got {v!r}")
    if ".." in v.split("/"):
        raise ValueError(f"{key} must not contain '..', got {v!r}")
    return os.path.normpath(v)


def parse_entry(d: Any, line: int, raw: Mapping[str, tuple[int, str]] | None = None) -> FileSpec:
    """Check one entry; raises ValueError with the reason (without the location)."""
    if isinstance(d, str):
        d = {"source": d}
    if not isinstance(d, Mapping):
        raise ValueError(f"an entry must be a mapping with at least 'source', got {type(d).__name__}")
    unknown = [k for k in d if k not in KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
    if "source" not in d:
        raise ValueError("missing key 'source'")
    source = _abs("source", d["source"])
    if d.get("dest") is not None and d.get("chroot") is not None:
        raise ValueError("give either 'dest' or 'chroot', not both")
    dest = _abs("dest", d["dest"]) if d.get("dest") is not None else None
    chroot = _abs("chroot", d["chroot"]) if d.get("chroot") is not None else None
    group = d.get("group", grp.ROOT)
    if not isinstance(group, str):
        raise ValueError(f"group must be a string, got {group!r}")
    try:
        group = grp.normalize(group)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    comment = d.get("comment")
    if comment is not None and (not isinstance(comment, str) or not comment or "\n" in comment
                                or len(comment) > 8):
        raise ValueError(f"comment must be a short one-line string such as '#', got {comment!r}")
    mode = d.get("mode")
    if mode is not None and mode not in APPLY_MODES:
        raise ValueError(f"mode must be one of {', '.join(APPLY_MODES)}, got {mode!r}")
    uid = gid = perm = None
    if d.get("owner") is not None:
        uid, gid = _owner(d["owner"])
    if d.get("perm") is not None:
        text = raw["perm"][1] if raw and "perm" in raw else d["perm"]
        perm = _perm(str(text) if not isinstance(text, str) else text)
    spec = FileSpec(line, source, dest, chroot, group, comment, mode, uid, gid, perm)
    if chroot is not None and source != chroot and not source.startswith(chroot.rstrip("/") + "/"):
        raise ValueError(f"source {source} is not below the chroot {chroot}")
    if not os.path.isdir(source):  # a directory's destinations are only known when it is read
        target = single_dest(spec)
        try:
            message_name(target)
        except Refusal as r:
            raise ValueError(r.message) from None
        if mode == "merge" and target.rsplit("/", 1)[-1] not in mergemod.MERGEABLE:
            raise ValueError(
                f"mode merge is only for {', '.join(mergemod.MERGEABLE)}, not {target}"
            )
    return spec


def single_dest(spec: FileSpec) -> str:
    """Destination of an entry whose source is one file."""
    if spec.dest is not None:
        return spec.dest
    return chroot_dest(spec.source, spec.chroot)


def parse_files(entries: Any, origin: str, text: str | None = None) -> list[FileSpec]:
    """Check the whole list; the first error raises ConfigError naming origin, line, entry."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{origin}: files must be a list of entries")
    lines, raw = entry_lines(text) if text is not None else ([], {})
    specs: list[FileSpec] = []
    seen: dict[tuple[str, str], FileSpec] = {}
    for i, d in enumerate(entries):
        line = lines[i] if i < len(lines) else 0
        where = f"{origin} line {line}: files[{i}]" if line else f"{origin}: files[{i}]"
        try:
            spec = parse_entry(d, line, raw.get(i))
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
        if not os.path.isdir(spec.source):
            key = (spec.group, single_dest(spec))
            if key in seen:
                first = seen[key]
                raise ConfigError(
                    f"{where}: {key[1]} in group {key[0]} is already published by the entry "
                    f"at line {first.line}"
                )
            seen[key] = spec
        specs.append(spec)
    return specs


def load_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from None


def expand_spec(spec: FileSpec) -> list[PutItem]:
    """The PutItems of an entry now (a directory yields every regular file below it).

    Raises Refusal (io_error, bad_path, bad_format) when the entry cannot be read."""
    src = Path(spec.source)
    kw = dict(group=spec.group, comment=spec.comment, apply=spec.mode, uid=spec.uid,
              gid=spec.gid, perm=spec.perm)
    if spec.dest is not None:
        if src.is_dir():
            base = spec.dest.rstrip("/")
            items = [dataclasses.replace(it, dest=base + it.dest)
                     for it in expand([src], str(src), **kw)]
        else:
            items = [dataclasses.replace(it, dest=spec.dest) for it in expand([src], None, **kw)]
    else:
        items = expand([src], spec.chroot, **kw)
    out = []
    for it in items:
        message_name(it.dest)  # bad_path for names no node could accept
        out.append(dataclasses.replace(it, apply=spec.mode or default_apply(it.dest)))
    return out
