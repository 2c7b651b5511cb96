"""Helpers for the alerter tests: signed alerts in a spool, loopback receivers, polling."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from four11.core.alert import Alert, encode_alert
from four11.core.fsutil import atomic_write
from four11.core.keys import SigningKey, load_signing_key
from testlib import BIN, until, wait_until  # noqa: F401  (re-exported to the tests)
from testlib import cli as run_cli  # noqa: F401

GROUP = "239.2.11.71"


def signer(keys: Path) -> SigningKey:
    return load_signing_key(keys / "master.key")


def spool_alert(four11_dir: Path, key: SigningKey, version: int, *, ttl: int = 3600,
                issued: int | None = None, groups=("/",)) -> bytes:
    """Sign an alert like the publisher does and drop it into <411dir>/alerts/."""
    issued = int(time.time()) if issued is None else issued
    data = encode_alert(Alert(version, ["http://127.0.0.1:8411/411.d/"], list(groups), issued,
                              issued + ttl), key)
    write_spool(four11_dir, f"{version}.alert", data)
    return data


def write_spool(four11_dir: Path, name: str, data: bytes) -> None:
    spool = Path(four11_dir) / "alerts"
    spool.mkdir(parents=True, exist_ok=True)
    atomic_write(spool / name, data)


class Receiver:
    """A UDP socket on loopback that records (monotonic time, bytes) from a thread.
    ``multicast=True`` joins the group on 127.0.0.1 only."""

    def __init__(self, multicast: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if multicast:
            self.sock.bind((GROUP, 0))
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                                 socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1"))
        else:
            self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.got: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.got.append((time.monotonic(), data))

    def payloads(self) -> list[bytes]:
        return [d for _, d in self.got]

    def close(self) -> None:
        self._stop.set()
        self._t.join(timeout=5)
        self.sock.close()


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def free_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("FOUR11_")}
