"""The running publisher: watches sources and its list, re-signs, answers 411 commit/restart."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from pub_helpers import BIN, Site, run_cli, scrape, until, wait_until

from four11.core.errors import ConfigError
from four11.publisher import config as pconfig
from four11.publisher.service import Publisher


def test_an_edited_source_is_published_within_two_seconds(tmp_path, master_keys):
    site = Site(tmp_path, master_keys)
    hosts = site.src / "hosts"
    hosts.write_text("10.0.0.1 a\n")
    cfg = {**site.settings(poll_s=0.5, debounce_s=0.3),
           "files": [{"source": str(hosts), "dest": "/etc/hosts"}]}

    async def main():
        pub = Publisher(cfg, registry=CollectorRegistry())
        await pub.start()
        try:
            first = site.index()
            m = await asyncio.to_thread(scrape, pub.metrics_port)
            assert m[("four11_publisher_index_version", ())] == first.version
            assert m[("four11_publisher_index_expiry_timestamp_seconds", ())] == first.expires
            assert m[("four11_publisher_messages", ())] == 1
            assert m[("four11_publisher_publishes_total", (("result", "ok"),))] == 1
            assert abs(m[("four11_publisher_last_success_timestamp_seconds", ())] - time.time()) < 10

            hosts.write_text("10.0.0.1 a\n10.0.0.2 b\n")
            t0 = time.monotonic()
            idx = await until(lambda: (i := site.index()).version > first.version and i, 10,
                              what="a new index")
            assert time.monotonic() - t0 < 2.0
            e = idx.find("etc.hosts", "/")
            assert e.serial > first.find("etc.hosts", "/").serial
            assert (site.msgs / e.file).stat().st_size == e.size
            # the alert lands just after the index (message, index, alert): wait, don't race
            await until(lambda: (site.msgs / "alerts" / f"{idx.version}.alert").exists(), 10,
                        what="the alert for the new index")
            reg = pub.metrics.registry  # the gauges follow right after the index is written
            await until(lambda: reg.get_sample_value("four11_publisher_publishes_total",
                                                     {"result": "ok"}) == 2, what="the round's metrics")
            m = await asyncio.to_thread(scrape, pub.metrics_port)
            assert m[("four11_publisher_index_version", ())] == idx.version
            assert m[("four11_publisher_index_expiry_timestamp_seconds", ())] == idx.expires
            assert m[("four11_publisher_publish_duration_seconds_count", ())] == 2

            await asyncio.sleep(1.0)  # nothing changed since: nothing is republished
            assert site.index().version == idx.version
        finally:
            await pub.stop()

    asyncio.run(main())


def test_a_broken_list_edit_is_refused_and_the_old_list_keeps_running(caplog, tmp_path, master_keys):
    site = Site(tmp_path, master_keys)
    a, b = site.src / "a", site.src / "b"
    a.write_text("a1\n")
    b.write_text("b1\n")
    good = [{"source": str(a), "dest": "/etc/a"}]
    broken = [*good, {"source": str(b), "dst": "/etc/b"}]
    path = site.write_config(broken)
    with pytest.raises(ConfigError) as refused_at_start:
        pconfig.load(path, env={})
    site.write_config(good)
    caplog.set_level("INFO", logger="four11.publisher")

    async def main():
        pub = Publisher(pconfig.load(path, env={}), registry=CollectorRegistry())
        await pub.start()
        try:
            first = site.serials()["etc.a"]
            site.write_config(broken)
            reg = pub.metrics.registry
            await until(lambda: reg.get_sample_value("four11_publisher_config_reloads_total",
                                                     {"result": "error"}) == 1, what="the refusal")
            assert (f"refusing the edited file list, keeping the running one: {refused_at_start.value}"
                    in caplog.messages)
            a.write_text("a2\n")  # the old list still runs
            await until(lambda: site.serials()["etc.a"] != first, what="a republished")
            assert "etc.b" not in site.serials()

            site.write_config([*good, {"source": str(b), "dest": "/etc/b"}])
            await until(lambda: "etc.b" in site.serials(), what="the fixed list")
            assert reg.get_sample_value("four11_publisher_config_reloads_total", {"result": "ok"}) == 1
        finally:
            await pub.stop()

    asyncio.run(main())


def test_the_index_is_resigned_before_it_gets_old(tmp_path, master_keys):
    site = Site(tmp_path, master_keys)
    f = site.src / "f"
    f.write_text("x\n")
    cfg = {**site.settings(resign_s=1, index_expiry_s=3600),
           "files": [{"source": str(f), "dest": "/etc/f"}]}

    async def main():
        pub = Publisher(cfg, registry=CollectorRegistry())
        await pub.start()
        try:
            first = site.index()
            idx = await until(lambda: (i := site.index()).version > first.version and i, 10,
                              what="a re-signed index")
            assert idx.entries == first.entries  # same messages, nothing republished
            assert idx.expires > first.expires
            assert idx.expires - idx.created == 3600
        finally:
            await pub.stop()

    asyncio.run(main())


def test_commit_and_restart_reach_the_running_publisher(tmp_path, master_keys):
    site = Site(tmp_path, master_keys)
    hosts = site.src / "hosts"
    hosts.write_text("10.0.0.1 a\n")
    # a long poll interval: only 411 commit can make this publisher notice the edit quickly
    cfg = str(site.write_config([{"source": str(hosts), "dest": "/etc/hosts"}], poll_s=30))
    proc = subprocess.Popen([str(BIN / "411"), "publisher", "--config", cfg],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sock = site.state / "control.sock"
        wait_until(lambda: sock.exists() and (site.msgs / "index").exists(), 20, what="the publisher")
        second = run_cli("411", "publisher", "--config", cfg)
        assert second.returncode == 2
        assert second.stderr == (
            f"411 publisher: another publisher is running (control socket {sock})\n")

        s1 = site.serials()["etc.hosts"]
        hosts.write_text("10.0.0.1 a\n10.0.0.9 z\n")
        r = run_cli("411", "commit", "--config", cfg)
        assert r.returncode == 0, r.stderr
        s2 = site.serials()["etc.hosts"]
        assert s2 > s1
        v = site.index().version
        assert r.stderr.splitlines() == [
            f"published / etc.hosts {s2}",
            f"1 published, 0 unchanged, 0 removed, 0 errors; index version {v} (running publisher)",
        ]
        r = run_cli("411", "restart", "--config", cfg)
        assert r.returncode == 0, r.stderr
        s3 = site.serials()["etc.hosts"]
        assert s3 > s2
        assert r.stderr.endswith("(running publisher)\n")

        hosts.write_text("10.0.0.1 a\n")
        proc.send_signal(signal.SIGUSR1)  # the signal does what 411 commit does
        wait_until(lambda: site.serials()["etc.hosts"] > s3, 15, what="the signalled commit")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not (site.state / "control.sock").exists()


def test_a_failing_publish_is_reported_and_retried(tmp_path, master_keys):
    site = Site(tmp_path, master_keys)
    keys = tmp_path / "keys"
    shutil.copytree(master_keys, keys)
    f = site.src / "f"
    f.write_text("1\n")
    cfg = {**site.settings(keys_dir=str(keys), full_check_s=0.3),
           "files": [{"source": str(f), "dest": "/etc/f"}]}

    async def health(port):
        def get():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()
        return await asyncio.to_thread(get)

    async def main():
        pub = Publisher(cfg, registry=CollectorRegistry())
        await pub.start()
        reg = pub.metrics.registry
        try:
            status, text = await health(pub.metrics_port)
            assert status == 200 and text.startswith("ok: 1 published")
            first = site.serials()["etc.f"]
            # the hourly full check (here every 0.3 s) runs even when nothing changed
            await until(lambda: reg.get_sample_value("four11_publisher_publishes_total",
                                                     {"result": "unchanged"}) >= 2, what="full checks")
            (keys / "cluster.pub").rename(keys / "cluster.pub.away")
            f.write_text("2\n")
            await until(lambda: reg.get_sample_value("four11_publisher_publishes_total",
                                                     {"result": "error"}) >= 1
                        and pub.last_error is not None, what="the failure")
            status, text = await health(pub.metrics_port)
            assert (status, text) == (503, f"last publish failed: key file {keys / 'cluster.pub'} "
                                           "does not exist\n")
            (keys / "cluster.pub.away").rename(keys / "cluster.pub")
            await until(lambda: pub.last_error is None, 15, what="the retry")
            assert site.serials()["etc.f"] > first  # "2" is out after all
            status, _ = await health(pub.metrics_port)
            assert status == 200
        finally:
            await pub.stop()

    asyncio.run(main())
