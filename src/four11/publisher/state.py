"""The publisher's private memory of what it published: one fingerprint per message.

Kept in ``<state_dir>/state.json`` (mode 0600), outside the message directory, because a
hash of /etc/shadow has no business in a file every node can download. A fingerprint
covers what a node would write (content, destination, owner, mode, apply mode, comment)
and the keys involved, but not the mtime: touching a file does not make a new serial.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.envelope import canonical_json
from ..core.fsutil import atomic_write
from ..core.message import FileMeta

log = logging.getLogger("four11.publisher")
STATE_FILE = "state.json"
FORMAT = 1

Key = tuple[str, str]  # (group, message name)


@dataclass
class Published:
    fingerprint: str
    serial: int
    origin: str  # source of the list entry that produced it


def fingerprint(fm: FileMeta, content: bytes, recipient_kid: str, signer_kid: str) -> str:
    meta = {k: v for k, v in fm.to_json().items() if k != "mtime"}
    h = hashlib.sha256(canonical_json({"meta": meta, "to": recipient_kid, "by": signer_kid}))
    h.update(b"\x00")
    h.update(content)
    return h.hexdigest()


def load_state(state_dir: Path) -> dict[Key, Published]:
    """A missing or unreadable state only costs one republish of everything."""
    path = Path(state_dir) / STATE_FILE
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError("unknown format")
        return {
            (e["group"], e["name"]): Published(e["fingerprint"], int(e["serial"]), e["origin"])
            for e in data["entries"]
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable publisher state %s (%s): every file is republished", path, e)
        return {}


def save_state(state_dir: Path, state: dict[Key, Published]) -> None:
    entries = [{"group": g, "name": n, **asdict(p)} for (g, n), p in sorted(state.items())]
    data = json.dumps({"format": FORMAT, "entries": entries}, indent=1).encode()
    atomic_write(Path(state_dir) / STATE_FILE, data, 0o600)
