"""Metrics and health endpoints shared by the services (prometheus-client on aiohttp).

Each service builds its own CollectorRegistry (a fresh one per test) and serves it with
``metrics_app`` on its own port, or mounts ``add_routes`` on an app it already has.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    disable_created_metrics,
    generate_latest,
)

from .. import __version__

# The *_created series double a node's series count and say nothing an admin uses.
disable_created_metrics()

Health = Callable[[], tuple[bool, str]]  # (ready, one-line reason)


def build_info(registry: CollectorRegistry, service: str) -> Gauge:
    g = Gauge("four11_build_info", "four11 version and service, always 1",
              ["version", "service"], registry=registry)
    g.labels(__version__, service).set(1)
    return g


def add_routes(app: web.Application, registry: CollectorRegistry, health: Health) -> None:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        ok, why = health()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)


def metrics_app(registry: CollectorRegistry, health: Health) -> web.Application:
    app = web.Application()
    add_routes(app, registry, health)
    return app


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


async def start_metrics_server(listen: str, registry: CollectorRegistry,
                               health: Health) -> tuple[web.AppRunner, int]:
    """Serve /metrics and /healthz; returns the runner and the bound port (for :0)."""
    runner = web.AppRunner(metrics_app(registry, health), access_log=None)
    await runner.setup()
    host, port = split_listen(listen)
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, bound
