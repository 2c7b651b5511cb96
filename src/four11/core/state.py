"""Node-side state: accepted index version, applied serials, master scores.

Written atomically after every change, so rollback is refused across restarts. A corrupt
file raises StateCorrupt; callers report it and start over with a full sync.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .fsutil import atomic_write

STATE_FILE = "state.json"


class StateCorrupt(Exception):
    pass


def _key(group: str, name: str) -> str:
    return f"{group}\t{name}"


@dataclass
class NodeState:
    path: Path
    index_version: int = 0
    index_created: int = 0
    applied: dict[str, int] = field(default_factory=dict)
    masters: dict[str, int] = field(default_factory=dict)  # url -> score (-3..+3)

    @classmethod
    def load(cls, state_dir: Path) -> NodeState:
        path = Path(state_dir) / STATE_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        try:
            d = json.loads(raw)
            st = cls(
                path,
                index_version=int(d.get("index_version", 0)),
                index_created=int(d.get("index_created", 0)),
                applied={str(k): int(v) for k, v in d.get("applied", {}).items()},
                masters={str(k): int(v) for k, v in d.get("masters", {}).items()},
            )
        except (ValueError, TypeError, AttributeError) as e:
            raise StateCorrupt(f"state file {path} is corrupt ({e})") from None
        return st

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"index_version": self.index_version, "index_created": self.index_created,
                "applied": self.applied, "masters": self.masters}
        atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True).encode(), 0o600)

    def applied_serial(self, group: str, name: str) -> int:
        return self.applied.get(_key(group, name), 0)

    def record(self, group: str, name: str, serial: int) -> None:
        self.applied[_key(group, name)] = serial
