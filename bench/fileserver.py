#!/usr/bin/env python3
"""Fileserver figures: the same ~4 KB message and the same index served by `411 fileserver` and
by nginx (one worker, own config on 127.0.0.1) under wrk, each server pinned to core 0 and wrk
to core 1, for 200 and for 304 answers; then N idle long-poll watchers held open (RSS, CPU)
and the time to answer all of them when a new index appears. --profile adds a cProfile of
the fileserver under the 200 and the 304 load.

Run: .venv/bin/python bench/fileserver.py [--duration 10] [--connections 64] [--watchers 10000]
(installs nginx and wrk with apt-get when missing; needs 2 cores, run as root).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import uvloop

from four11.core.index import peek_version
from four11.core.keys import KEM_X25519, keygen
from four11.core.publish import Four11Dir, PutItem

BIN = Path(sys.executable).parent
SERVER_CPU, CLIENT_CPU = "0", "1"


def ensure_tools() -> None:
    if shutil.which("nginx") and shutil.which("wrk"):
        return
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx", "wrk"]
    if subprocess.run(cmd).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(cmd, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer within {timeout} s")
        time.sleep(0.05)


def head(url: str, etag: str | None = None) -> tuple[int, str, int]:
    req = urllib.request.Request(url, headers={"If-None-Match": etag} if etag else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers["ETag"], len(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers["ETag"], 0


def make_dir(tmp: Path) -> tuple[Path, Four11Dir, str]:
    keys = tmp / "keys"
    keygen(keys, [], KEM_X25519)
    src = tmp / "bench.conf"
    src.write_bytes(os.urandom(3900))  # sealed, the message is about 4 KB
    d = tmp / "411.d"
    pub = Four11Dir(d, keys, master_urls=["http://127.0.0.1/411.d/"])
    res = pub.put([PutItem(src, "/etc/bench.conf")])
    return d, pub, res.entries[0].file


def start_fileserver(d: Path, port: int) -> subprocess.Popen:
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU, str(BIN / "411"), "fileserver", "--411dir", str(d),
                          "--listen", f"127.0.0.1:{port}", "--log-level", "WARNING"])
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return p


NGINX_CONF = """
worker_processes 1;
master_process off;
daemon off;
error_log {tmp}/nginx-error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    open_file_cache max=1000 inactive=60s;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/ngx-body;
    proxy_temp_path {tmp}/ngx-proxy;
    fastcgi_temp_path {tmp}/ngx-fcgi;
    uwsgi_temp_path {tmp}/ngx-uwsgi;
    scgi_temp_path {tmp}/ngx-scgi;
    server {{
        listen 127.0.0.1:{port};
        location /411.d/ {{ alias {dir}/; etag on; }}
    }}
}}
"""


def start_nginx(d: Path, port: int, tmp: Path) -> subprocess.Popen:
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, dir=d))
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU, "nginx", "-c", str(conf), "-p", str(tmp)])
    wait_http(f"http://127.0.0.1:{port}/411.d/index")
    return p


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, duration: int, conns: int, etag: str | None, pid: int | None = None) -> dict:
    """wrk's req/s and latency; with the server's pid also its CPU time per answer, which a
    shared machine disturbs far less than wall-clock rates."""
    cpu0 = cpu(pid) if pid else 0.0
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency"]
    if etag:
        cmd += ["-H", f"If-None-Match: {etag}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        lat[pct] = float(m.group(1)) * _UNITS[m.group(2)]
    n = int(re.search(r"(\d+) requests in", out).group(1))
    per_cpu_s = n / max(cpu(pid) - cpu0, 1e-9) if pid else 0.0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"], "per_cpu_s": per_cpu_s,
            "bad": int(bad.group(1)) if bad else 0, "errors": errs.group(1) if errs else ""}


def throughput(d: Path, msg: str, tmp: Path, duration: int, conns: int) -> None:
    fs_port, ng_port = free_port(), free_port()
    fs, ng = start_fileserver(d, fs_port), start_nginx(d, ng_port, tmp)
    try:
        size = (d / msg).stat().st_size
        print(f"# {duration} s per run, {conns} connections, wrk on core {CLIENT_CPU}, "
              f"each server on core {SERVER_CPU}; message {size} B, index {(d / 'index').stat().st_size} B")
        print("# req/s per CPU-s: answers per second of the server's own CPU time (its capacity on a "
              "whole core, little disturbed by other load)")
        print(f"{'case':13} {'server':11} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}  {'ratio':>5}  "
              f"{'req/s per CPU-s':>15} {'ratio':>5}")
        for what, rel in (("message", msg), ("index", "index")):
            for code in (200, 304):
                res = {}
                for name, port, pid in (("fileserver", fs_port, fs.pid), ("nginx", ng_port, ng.pid)):
                    url = f"http://127.0.0.1:{port}/411.d/{rel}"
                    _, etag, _ = head(url)
                    got, _, _ = head(url, etag if code == 304 else None)
                    assert got == code, f"{name} answered {got}, expected {code}"
                    res[name] = wrk(url, duration, conns, etag if code == 304 else None, pid)
                fsr, ngr = res["fileserver"], res["nginx"]
                for name in ("fileserver", "nginx"):
                    r = res[name]
                    ratio = f"{fsr['rps'] / ngr['rps']:5.2f}" if name == "nginx" else " " * 5
                    cratio = f"{fsr['per_cpu_s'] / ngr['per_cpu_s']:5.2f}" if name == "nginx" else ""
                    note = f"  (non-2xx/3xx {r['bad']}, {r['errors']})" if r["bad"] or r["errors"] else ""
                    print(f"{what + ' ' + str(code):13} {name:11} {r['rps']:7.0f} {r['p50_ms']:7.2f} "
                          f"{r['p99_ms']:7.2f}  {ratio}  {r['per_cpu_s']:15.0f} {cratio}{note}")
    finally:
        for p in (fs, ng):
            p.send_signal(signal.SIGTERM)
            p.wait(30)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _watcher(port: int, version: int, held: list) -> int:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET /411.d/index?wait={version} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
    held.append(1)
    hdr = await r.readuntil(b"\r\n\r\n")
    n = int(re.search(rb"(?i)content-length: (\d+)", hdr).group(1)) if b"ength" in hdr else 0
    body = await r.readexactly(n)
    w.close()
    return peek_version(body) if body else 0


def watchers(d: Path, pub: Four11Dir, n: int) -> None:
    port = free_port()
    fs = start_fileserver(d, port)
    try:
        v = peek_version((d / "index").read_bytes())
        base = rss(fs.pid)

        async def go() -> None:
            held: list = []
            tasks = []
            for i in range(n):
                tasks.append(asyncio.create_task(_watcher(port, v, held)))
                if i % 500 == 499:
                    await asyncio.sleep(0.05)  # do not overflow the listen backlog
            metric = f"four11_fileserver_watchers_open {n}.0"
            t0 = time.monotonic()
            while metric not in await asyncio.to_thread(_metrics, port):
                if time.monotonic() - t0 > 120:
                    raise SystemExit("watchers were not all held")
                await asyncio.sleep(0.2)
            grown = rss(fs.pid) - base
            c0 = cpu(fs.pid)
            await asyncio.sleep(5)
            idle = (cpu(fs.pid) - c0) / 5
            t1 = time.monotonic()
            new = await asyncio.to_thread(lambda: pub.resign().index_version)
            got = await asyncio.gather(*tasks)
            woke = time.monotonic() - t1
            ok = sum(1 for g in got if g == new)
            print(f"{n} idle watchers held: RSS +{grown / 2**20:.1f} MB ({grown / n / 1024:.1f} KB each), "
                  f"server CPU while idle {idle * 100:.2f} % of a core")
            print(f"new index written -> all {n} answered in {woke:.2f} s ({ok} got the new version; "
                  "includes the 0.2 s stat interval and this client's own parsing)")

        uvloop.run(go())  # a fast client, so the figure is the server's more than ours
    finally:
        fs.send_signal(signal.SIGTERM)
        fs.wait(60)


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


PROFILED = """
import asyncio, cProfile, pstats, sys, uvloop
from four11.fileserver.server import FileServer
async def main():
    fs = FileServer(sys.argv[1])
    await fs.start("127.0.0.1", int(sys.argv[2]))
    prof = cProfile.Profile()
    await asyncio.sleep(1.0)
    prof.enable()
    await asyncio.sleep(float(sys.argv[3]))
    prof.disable()
    await fs.stop()
    pstats.Stats(prof).sort_stats("tottime").print_stats(18)
uvloop.run(main())
"""


def profile(d: Path, msg: str, duration: int, conns: int, code: int) -> None:
    port = free_port()
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU, sys.executable, "-c", PROFILED, str(d), str(port),
                          str(duration)], stdout=subprocess.PIPE, text=True)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    url = f"http://127.0.0.1:{port}/411.d/{msg}"
    r = wrk(url, duration + 1, conns, head(url)[1] if code == 304 else None)
    out, _ = p.communicate(timeout=60)
    print(f"# cProfile of the fileserver answering the message with {code}, {r['rps']:.0f} req/s profiled")
    print("\n".join(line for line in out.splitlines() if line.strip())[:6000])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--watchers", type=int, default=10000)
    ap.add_argument("--profile", action="store_true", help="also profile the fileserver under load")
    ap.add_argument("--skip-throughput", action="store_true")
    a = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores (one for the server, one for the load generator)")
    ensure_tools()
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        d, pub, msg = make_dir(tmp)
        if not a.skip_throughput:
            throughput(d, msg, tmp, a.duration, a.connections)
        if a.watchers:
            watchers(d, pub, a.watchers)
        if a.profile:
            for code in (200, 304):
                profile(d, msg, a.duration, a.connections, code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
