"""Raw HTTP helpers and an in-thread FileServer runner for the fileserver tests."""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from four11.fileserver.server import FileServer
from testlib import BIN, until, wait_until  # noqa: F401  (re-exported to the tests)

LARGE = 3 * 1024 * 1024 + 17  # above the in-memory limit: streamed from the file


class Running:
    """A FileServer on its own event loop in a thread, as a node would see it over TCP."""

    def __init__(self, **kw) -> None:
        self.registry = CollectorRegistry()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fs: FileServer = self.call(self._make(kw))
        self.port: int = self.call(self.fs.start("127.0.0.1", 0))
        self.stopped = False

    async def _make(self, kw: dict) -> FileServer:
        return FileServer(registry=self.registry, **kw)

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.call(self.fs.stop(), 60)

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def metric(self, name: str, labels: dict | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})



@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def h(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request(port: int, path: str, method: str = "GET", headers: dict | None = None,
            timeout: float = 30.0) -> Answer:
    """One HTTP/1.1 request with the path sent exactly as given (no client normalisation)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        body = r.read()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, body)
    finally:
        c.close()




def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a console script of this package as a user would; stdout/stderr as text."""
    prog, *rest = args
    return subprocess.run([str(BIN / prog), *rest], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


class CliServer:
    """``411 fileserver`` as a subprocess; the bound port is read from its log line."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.proc = subprocess.Popen([str(BIN / "411"), "fileserver", *args], stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, **(env or {})})
        self.log: list[str] = []
        self._port: list[int] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_until(lambda: self._port or self.proc.poll() is not None, 20, "the fileserver to listen")
        if not self._port:
            raise AssertionError(f"fileserver exited {self.proc.returncode}: {''.join(self.log)}")
        self.port = self._port[0]

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"serving .* at http://[^ ]*:(\d+)/", line)
            if m:
                self._port.append(int(m.group(1)))

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
