"""``merge`` apply mode for passwd, group, shadow and gshadow.

Entries at or above UID_MIN/GID_MIN come from the master; the node's own system entries
(below the minimum) are kept, so a node's service accounts survive. shadow/gshadow have
no ids, so their system names come from the node's passwd/group.
"""

from __future__ import annotations

from .errors import Refusal

MERGEABLE = {"passwd": 7, "group": 4, "shadow": 9, "gshadow": 4}
ID_SOURCE = {"shadow": "passwd", "gshadow": "group"}


def kind_of(dest: str) -> str:
    base = dest.rsplit("/", 1)[-1]
    if base not in MERGEABLE:
        raise Refusal("bad_format", f"merge mode is only for {', '.join(MERGEABLE)}, not {dest}")
    return base


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def parse_entries(kind: str, text: str, who: str) -> list[list[str]]:
    out = []
    for n, ln in enumerate(_lines(text), 1):
        f = ln.split(":")
        if len(f) != MERGEABLE[kind]:
            raise Refusal(
                "bad_format", f"{who} {kind} line {n} has {len(f)} fields, expected {MERGEABLE[kind]}"
            )
        if kind in ("passwd", "group") and not f[2].isdigit():
            raise Refusal("bad_format", f"{who} {kind} line {n} has a non-numeric id")
        out.append(f)
    return out


def system_names(id_file_kind: str, text: str, id_min: int) -> set[str]:
    """Names whose id is below the minimum in a passwd or group text."""
    return {f[0] for f in parse_entries(id_file_kind, text, "local") if int(f[2]) < id_min}


def filter_master(kind: str, text: str, id_min: int, id_text: str | None = None) -> str:
    """Publisher side: keep only the entries nodes take from the master, so the master's
    own system accounts (and root's hash) never leave it."""
    entries = parse_entries(kind, text, "source")
    if kind in ("passwd", "group"):
        keep = [f for f in entries if int(f[2]) >= id_min]
    else:
        if id_text is None:
            raise Refusal("bad_format", f"cannot filter {kind} without its {ID_SOURCE[kind]} file")
        sys = system_names(ID_SOURCE[kind], id_text, id_min)
        keep = [f for f in entries if f[0] not in sys]
    return "".join(":".join(f) + "\n" for f in keep)


def merge(kind: str, local: str, master: str, id_min: int, local_ids: str | None) -> str:
    """Node side: local system entries first, then the master's entries."""
    master_entries = parse_entries(kind, master, "master")
    if kind in ("passwd", "group"):
        local_entries = [f for f in parse_entries(kind, local, "local") if int(f[2]) < id_min]
        master_entries = [f for f in master_entries if int(f[2]) >= id_min]
    else:
        sys = system_names(ID_SOURCE[kind], local_ids or "", id_min)
        local_entries = [f for f in parse_entries(kind, local, "local") if f[0] in sys]
        master_entries = [f for f in master_entries if f[0] not in sys]
    kept = {f[0] for f in local_entries}
    merged = local_entries + [f for f in master_entries if f[0] not in kept]
    return "".join(":".join(f) + "\n" for f in merged)
