"""Reading the alert spool (<411dir>/alerts/*.alert) that the publisher fills.

Each file is checked with core.alert.parse_alert: the signature when a verify key is
configured, else at least the format and the expiry. A file that fails is reported once
(log line and a metric with the reason) and never sent. Files are re-read only when their
name, size or mtime changes, so a poll costs one directory listing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.alert import MAX_ALERT, Alert, parse_alert
from ..core.errors import Refusal
from ..core.keys import Keyring, load_keyring, load_verify_key
from ..core.publish import ALERT_DIR, ALERT_SUFFIX

log = logging.getLogger("four11.alerter")


@dataclass(frozen=True)
class SpooledAlert:
    alert: Alert
    data: bytes  # the exact bytes to send
    file: str


def load_verify(path: str | None) -> Keyring | None:
    """master.pub, or a key dir (master.pub plus master-*.pub kept during a rotation)."""
    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        return load_keyring(p)
    k = load_verify_key(p)
    return {k.kid: k}


class Spool:
    def __init__(self, four11_dir: Path, keyring: Keyring | None,
                 on_reject: Callable[[str, Refusal], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(four11_dir) / ALERT_DIR
        self.keyring = keyring
        self.on_reject = on_reject
        self.clock = clock
        self._seen: dict[str, tuple] = {}  # file name -> (size, mtime_ns, ino)
        self._valid: dict[str, SpooledAlert] = {}

    def check(self, data: bytes) -> Alert:
        return parse_alert(data, self.keyring or {}, now=self.clock(), verify=self.keyring is not None)

    def newest(self) -> SpooledAlert | None:
        """The valid, unexpired alert with the highest index version, or None."""
        try:
            entries = {e.name: e for e in os.scandir(self.dir)
                       if e.name.endswith(ALERT_SUFFIX) and not e.name.startswith(".")}
        except FileNotFoundError:
            entries = {}
        for name in list(self._seen):
            if name not in entries:
                self._seen.pop(name)
                self._valid.pop(name, None)
        for name, e in entries.items():
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            sig = (st.st_size, st.st_mtime_ns, st.st_ino)
            if self._seen.get(name) == sig:
                continue
            self._seen[name] = sig
            self._valid.pop(name, None)
            self._read(name, st.st_size)
        now = self.clock()
        live = [s for s in self._valid.values() if s.alert.expires > now]
        return max(live, key=lambda s: s.alert.version, default=None)

    def _read(self, name: str, size: int) -> None:
        path = self.dir / name
        try:
            if size > MAX_ALERT:  # do not even read an oversized file
                raise Refusal("too_large", f"{size} bytes, an alert is at most {MAX_ALERT}")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                data = f.read(MAX_ALERT + 1)
            a = self.check(data)
        except FileNotFoundError:
            self._seen.pop(name, None)
            return
        except OSError as e:
            self._reject(name, Refusal("io_error", f"cannot read: {e.strerror}"))
            return
        except Refusal as r:
            self._reject(name, r)
            return
        self._valid[name] = SpooledAlert(a, data, name)

    def _reject(self, name: str, r: Refusal) -> None:
        if r.reason == "expired":
            log.info("spooled alert %s is expired; not sent", name)
        else:
            log.warning("refusing spooled alert %s: %s; not sent", name, r)
        if self.on_reject is not None:
            self.on_reject(name, r)
