"""Helpers for the publisher tests: a master in a temp dir, polling, metrics scraping, the CLI."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from four11.core.index import parse_index
from four11.core.keys import load_keyring
from testlib import BIN, until, wait_until  # noqa: F401  (re-exported to the tests)
from testlib import cli as run_cli  # noqa: F401


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class Site:
    """A master in a temp dir: keys, sources, message dir, state dir, files.yaml."""

    def __init__(self, root: Path, keys: Path) -> None:
        self.root = root
        self.keys = keys
        self.src = root / "src"
        self.msgs = root / "msgs"
        self.state = root / "state"
        self.config = root / "files.yaml"
        self.src.mkdir(parents=True, exist_ok=True)

    def settings(self, **over) -> dict:
        base = {"four11_dir": str(self.msgs), "keys_dir": str(self.keys),
                "state_dir": str(self.state), "metrics_listen": "127.0.0.1:0",
                "master_urls": ["http://127.0.0.1:8411/411.d/"], "poll_s": 0.1, "debounce_s": 0.1}
        base.update(over)
        return base

    def write_config(self, files: list, **over) -> Path:
        self.config.write_text(yaml.safe_dump({**self.settings(**over), "files": files}))
        return self.config

    def index(self):
        data = (self.msgs / "index").read_bytes()
        return parse_index(data, load_keyring(self.keys), now=time.time())

    def index_or_none(self):
        try:
            return self.index()
        except FileNotFoundError:
            return None

    def serials(self) -> dict[str, int]:
        return {e.name: e.serial for e in self.index().entries}
