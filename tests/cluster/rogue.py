"""The attacker's tools: UDP senders and an HTTP server inside the attacker namespace."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from four11.core.alert import Alert, encode_alert
from four11.core.keys import SigningKey, load_verify_key
from four11.testing import netns


def forged_alert(version: int, masters: list[str], master_pub: Path | None = None) -> bytes:
    """An alert signed by the attacker's own key; with ``master_pub`` it claims the
    master's key id (so only the signature check can catch it)."""
    priv = ed25519.Ed25519PrivateKey.generate()
    signer = SigningKey.from_private(priv)
    if master_pub is not None:
        signer = SigningKey(priv, load_verify_key(master_pub).kid)
    now = int(time.time())
    return encode_alert(Alert(version, masters, ["/"], now, now + 3600), signer)


def send_udp(ns: str, src: str, data: bytes, dest: tuple[str, int]) -> None:
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            s.bind((src, 0))
            s.sendto(data, dest)

    netns.in_ns(ns, send)


class RogueServer:
    """Serves a 411 tree from inside a namespace, with ``tamper[rel]`` answers; every
    request is logged. ``?wait=`` is answered at once (no long-poll)."""

    def __init__(self, ns: str, addr: str, port: int, root: Path) -> None:
        self.ns, self.addr, self.port, self.root = ns, addr, port, root
        self.tamper: dict[str, Callable[[], bytes]] = {}
        self.log: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _handle(self, req: web.Request) -> web.Response:
        rel = req.match_info["rel"]
        self.log.append(rel)
        if rel in self.tamper:
            return web.Response(body=self.tamper[rel]())
        try:
            return web.Response(body=(self.root / rel).read_bytes())
        except (FileNotFoundError, IsADirectoryError):
            return web.Response(status=404)

    def start(self) -> RogueServer:
        sock = netns.socket_in(self.ns)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.addr, self.port))
        self._thread.start()

        async def up() -> None:
            app = web.Application()
            app.router.add_get("/411.d/{rel:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()

        asyncio.run_coroutine_threadsafe(up(), self._loop).result(10)
        return self

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
