"""Publisher and alerter figures: publish rounds, change detection, alert send rounds.

Usage: python bench/publisher.py [--files N] [--targets N]

Prints the time of a first publish of N files, of a round where nothing changed (the
fingerprint check), of one stat-poll snapshot, of a round after one file changed, of a
restart (re-encrypt everything), and how long the alerter needs to send one alert to N
unicast targets on loopback with the rate cap lifted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from four11.alerter.service import Alerter
from four11.core.alert import Alert, encode_alert
from four11.core.fsutil import atomic_write
from four11.core.keys import keygen, load_signing_key
from four11.publisher import config as pconfig
from four11.publisher.engine import Engine, snapshot


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_publisher(root: Path, n: int) -> None:
    keys = root / "keys"
    keygen(keys, [])
    tree = root / "tree"
    tree.mkdir()
    for i in range(n):
        (tree / f"f{i:05}").write_bytes(os.urandom(512))
    cfg = pconfig.from_dict({"four11_dir": str(root / "msgs"), "keys_dir": str(keys),
                             "state_dir": str(root / "state"), "master_urls": ["http://m/411.d/"],
                             "files": [{"source": str(tree), "dest": "/etc/bench"}]})
    eng = Engine(cfg)
    rnd, t_first = timed(eng.commit)
    assert len(rnd.published) == n
    rnd, t_same = timed(eng.commit)
    assert rnd.unchanged == n
    _, t_snap = timed(lambda: snapshot(cfg))
    (tree / "f00000").write_bytes(b"changed")
    rnd, t_one = timed(eng.commit)
    assert len(rnd.published) == 1
    rnd, t_restart = timed(lambda: eng.commit(force=True))
    print(f"publisher, {n} files of 512 B, hybrid ML-KEM-768+X25519 keys, fsync on:")
    print(f"  first publish        {t_first:8.3f} s  ({t_first / n * 1000:.2f} ms/file)")
    print(f"  nothing changed      {t_same:8.3f} s")
    print(f"  stat-poll snapshot   {t_snap * 1000:8.1f} ms")
    print(f"  one file changed     {t_one:8.3f} s")
    print(f"  restart (all files)  {t_restart:8.3f} s")


def bench_alerter(root: Path, n: int) -> None:
    keys = root / "keys"
    spool = root / "amsgs" / "alerts"
    spool.mkdir(parents=True)
    now = int(time.time())
    data = encode_alert(Alert(1, ["http://m/411.d/"], ["/"], now, now + 3600),
                        load_signing_key(keys / "master.key"))
    atomic_write(spool / "1.alert", data)
    targets = [f"127.0.{2 + i // 60000}.{1 + (i // 250) % 240}:{20000 + i % 250}" for i in range(n)]

    async def main() -> float:
        a = Alerter({"four11_dir": str(root / "amsgs"), "metrics_listen": "127.0.0.1:0",
                     "multicast": {"enabled": False}, "unicast": targets, "interval_s": 0.04,
                     "max_rate": 1e9}, registry=CollectorRegistry())
        await a.start()
        reg = a.metrics.registry
        t0 = time.perf_counter()
        while (reg.get_sample_value("four11_alerter_datagrams_sent_total",
                                    {"channel": "unicast", "result": "ok"}) or 0) < n:
            await asyncio.sleep(0.001)
        dt = time.perf_counter() - t0
        await a.stop()
        return dt

    dt = asyncio.run(main())
    print(f"alerter, one alert ({len(data)} B) to {n} unicast targets, no rate cap:")
    print(f"  round                {dt:8.3f} s  ({n / dt:,.0f} datagrams/s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--targets", type=int, default=10000)
    a = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="four11-bench-"))
    try:
        bench_publisher(root, a.files)
        bench_alerter(root, a.targets)
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
