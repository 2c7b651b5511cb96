"""The alerter: repeats the newest valid spooled alert, byte for byte, to every target."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from alert_helpers import Receiver, scrape, signer, spool_alert, until, write_spool
from prometheus_client import CollectorRegistry

from four11.alerter.service import Alerter
from four11.core.errors import ConfigError
from four11.core.keys import keygen


def _cfg(four11_dir, mc: Receiver | None, unicast=(), **over) -> dict:
    cfg = {"four11_dir": str(four11_dir), "metrics_listen": "127.0.0.1:0", "spool_poll_s": 0.05,
           "multicast": {"enabled": mc is not None, "interface": "127.0.0.1",
                         "port": mc.port if mc else 8411},
           "unicast": list(unicast)}
    cfg.update(over)
    return cfg


@contextlib.contextmanager
def receivers(n_unicast: int = 1):
    rs = [Receiver(multicast=True)] + [Receiver() for _ in range(n_unicast)]
    try:
        yield rs
    finally:
        for r in rs:
            r.close()


def _run(cfg: dict, body):
    async def main():
        a = Alerter(cfg, registry=CollectorRegistry())
        await a.start()
        try:
            await body(a)
        finally:
            await a.stop()

    asyncio.run(main())


def test_newest_alert_is_repeated_byte_for_byte_to_every_target(tmp_path, master_keys):
    key = signer(master_keys)
    spool_alert(tmp_path, key, 100)
    newest = spool_alert(tmp_path, key, 200, ttl=1800)
    with receivers(2) as (mc, u1, u2):
        cfg = _cfg(tmp_path, mc, [f"127.0.0.1:{u1.port}", f"localhost:{u2.port}"], interval_s=1.0,
                   verify_key=str(master_keys / "master.pub"))

        async def body(a: Alerter):
            await until(lambda: all(len(r.got) >= 2 for r in (mc, u1, u2)), 10, what="two rounds")
            sent = a.metrics.registry.get_sample_value
            await until(lambda: sent("four11_alerter_datagrams_sent_total",
                                     {"channel": "unicast", "result": "ok"}) >= 4, what="the counters")
            for r in (mc, u1, u2):
                assert set(r.payloads()) == {newest}
            gap = mc.got[1][0] - mc.got[0][0]
            assert 0.7 < gap < 2.5, gap
            m = await asyncio.to_thread(scrape, a.metrics_port)
            assert m[("four11_alerter_active_index_version", ())] == 200
            issued = a.active.alert.issued
            assert m[("four11_alerter_active_expiry_timestamp_seconds", ())] == issued + 1800
            assert m[("four11_alerter_targets_resolved", (("channel", "unicast"),))] == 2
            assert m[("four11_alerter_targets_resolved", (("channel", "multicast"),))] == 1
            sent_mc = m[("four11_alerter_datagrams_sent_total", (("channel", "multicast"), ("result", "ok")))]
            sent_uc = m[("four11_alerter_datagrams_sent_total", (("channel", "unicast"), ("result", "ok")))]
            assert sent_mc >= 2 and sent_uc >= 4
            assert m[("four11_alerter_datagrams_sent_total",
                      (("channel", "unicast"), ("result", "error")))] == 0

        _run(cfg, body)


def test_a_newer_alert_replaces_the_active_one_at_once(tmp_path, master_keys):
    key = signer(master_keys)
    old = spool_alert(tmp_path, key, 100)
    with receivers(1) as (mc, u1):
        cfg = _cfg(tmp_path, mc, [f"127.0.0.1:{u1.port}"], interval_s=60.0)

        async def body(a: Alerter):
            await until(lambda: mc.got and u1.got, 10, what="the first alert")
            t0 = time.monotonic()
            new = spool_alert(tmp_path, key, 101)
            await until(lambda: len(mc.got) >= 2 and len(u1.got) >= 2, 10, what="the new alert")
            assert mc.got[1][0] - t0 < 2.0  # long before the 60 s cadence
            assert mc.payloads() == [old, new] and u1.payloads() == [old, new]
            spool_alert(tmp_path, key, 99)  # an older version never replaces a newer one
            await asyncio.sleep(0.5)
            assert a.active.alert.version == 101 and len(mc.got) == 2

        _run(cfg, body)


def test_forged_and_truncated_alerts_are_not_sent_and_are_reported(tmp_path, master_keys):
    key = signer(master_keys)
    good = spool_alert(tmp_path, key, 100)
    other = tmp_path / "otherkeys"
    keygen(other, [])
    spool_alert(tmp_path, signer(other), 500)  # signed by a key the alerter does not trust
    forged = bytearray(spool_alert(tmp_path, key, 400))
    forged[-1] ^= 1  # same key id, bad signature
    write_spool(tmp_path, "400.alert", bytes(forged))
    write_spool(tmp_path, "600.alert", spool_alert(tmp_path, key, 600)[:-10])  # truncated
    write_spool(tmp_path, "700.alert", b"not an alert at all")
    write_spool(tmp_path, "800.alert", good + b"x" * 1200)  # too large
    spool_alert(tmp_path, key, 300, issued=int(time.time()) - 7200, ttl=3600)  # expired
    with receivers(0) as (mc,):
        cfg = _cfg(tmp_path, mc, interval_s=0.5, verify_key=str(master_keys / "master.pub"))

        async def body(a: Alerter):
            await until(lambda: len(mc.got) >= 2, 10, what="two rounds")
            assert set(mc.payloads()) == {good}
            reg = a.metrics.registry
            rejected = {r: reg.get_sample_value("four11_alerter_spool_rejected_total", {"reason": r})
                        for r in ("unknown_key", "bad_signature", "bad_format", "too_large", "expired")}
            assert rejected == {"unknown_key": 1, "bad_signature": 1, "bad_format": 2,
                                "too_large": 1, "expired": 1}

        _run(cfg, body)

    # Without a verify key the format is still checked: the truncated file is never sent.
    for p in (tmp_path / "alerts").iterdir():
        if p.name not in ("600.alert", "100.alert"):
            p.unlink()
    with receivers(0) as (mc,):
        cfg = _cfg(tmp_path, mc, interval_s=0.5)

        async def body2(a: Alerter):
            await until(lambda: len(mc.got) >= 2, 10, what="two rounds")
            assert set(mc.payloads()) == {good}
            assert a.metrics.registry.get_sample_value("four11_alerter_spool_rejected_total",
                                                       {"reason": "bad_format"}) == 1

        _run(cfg, body2)


def test_repeats_stop_after_the_duration(tmp_path, master_keys):
    spool_alert(tmp_path, signer(master_keys), 100)
    with receivers(0) as (mc,):
        cfg = _cfg(tmp_path, mc, interval_s=0.3, duration_s=1.5)

        async def body(a: Alerter):
            await asyncio.sleep(3.0)
            n = len(mc.got)
            assert 2 <= n <= 7, n
            await asyncio.sleep(1.0)
            assert len(mc.got) == n  # silent since the duration ended

        _run(cfg, body)


def test_one_failing_target_does_not_stop_the_others(tmp_path, master_keys):
    data = spool_alert(tmp_path, signer(master_keys), 100)
    with receivers(1) as (mc, u1):
        # a broadcast address without SO_BROADCAST fails to send; a name that does not resolve
        cfg = _cfg(tmp_path, mc, ["255.255.255.255:9", "no-such-host.invalid:8411",
                                  f"127.0.0.1:{u1.port}"], interval_s=0.5)

        async def body(a: Alerter):
            await until(lambda: len(u1.got) >= 2 and len(mc.got) >= 2, 10, what="two rounds")
            assert set(u1.payloads()) == {data}
            reg = a.metrics.registry
            assert reg.get_sample_value("four11_alerter_datagrams_sent_total",
                                        {"channel": "unicast", "result": "error"}) >= 2
            assert reg.get_sample_value("four11_alerter_resolve_errors_total") == 1
            assert reg.get_sample_value("four11_alerter_targets_resolved", {"channel": "unicast"}) == 2

        _run(cfg, body)


def test_unicast_sends_are_spread_over_the_interval(tmp_path, master_keys):
    spool_alert(tmp_path, signer(master_keys), 100)
    with receivers(2) as (mc, first, last):
        filler = [f"127.0.0.{2 + i // 250}:{20000 + i % 250}" for i in range(398)]
        targets = [f"127.0.0.1:{first.port}", *filler, f"127.0.0.1:{last.port}"]
        cfg = _cfg(tmp_path, mc, targets, interval_s=2.0, max_rate=5000)

        async def body(a: Alerter):
            await until(lambda: last.got, 10, what="the last target")
            spread = last.got[0][0] - first.got[0][0]
            assert 0.6 < spread < 1.8, spread  # about half the interval, not one burst
            assert a.metrics.registry.get_sample_value(
                "four11_alerter_targets_resolved", {"channel": "unicast"}) == 400

        _run(cfg, body)


def test_the_send_rate_is_capped(tmp_path, master_keys):
    spool_alert(tmp_path, signer(master_keys), 100)
    with receivers(2) as (mc, first, last):
        filler = [f"127.0.0.2:{20000 + i}" for i in range(98)]
        targets = [f"127.0.0.1:{first.port}", *filler, f"127.0.0.1:{last.port}"]
        # 100 targets would fit in 0.5 s, but 100 datagrams/s stretches them to about 1 s
        cfg = _cfg(tmp_path, mc, targets, interval_s=1.0, max_rate=100)

        async def body(a: Alerter):
            await until(lambda: last.got, 10, what="the last target")
            spread = last.got[0][0] - first.got[0][0]
            assert 0.8 < spread < 2.5, spread

        _run(cfg, body)


def test_rounds_longer_than_the_interval_do_not_starve_the_service(tmp_path, master_keys):
    key = signer(master_keys)
    spool_alert(tmp_path, key, 100)
    with receivers(1) as (mc, u1):
        # 200 targets take longer to send than the 1 ms interval
        filler = [f"127.0.0.2:{20000 + i}" for i in range(199)]
        cfg = _cfg(tmp_path, mc, [f"127.0.0.1:{u1.port}", *filler], interval_s=0.001, max_rate=1e9)

        async def body(a: Alerter):
            await until(lambda: len(u1.got) >= 10, 10, what="rounds")
            m = await asyncio.to_thread(scrape, a.metrics_port)  # /metrics still answers
            assert m[("four11_alerter_active_index_version", ())] == 100
            new = spool_alert(tmp_path, key, 101)  # and the spool is still watched
            await until(lambda: u1.got[-1][1] == new, 10, what="the new alert")

        _run(cfg, body)


def test_bad_settings_are_refused_with_the_key_named(tmp_path):
    with pytest.raises(ConfigError) as e:
        Alerter(_cfg(tmp_path, None, multicast={"group": "10.0.0.1"}))
    assert str(e.value) == ("configuration: multicast.group: must be an IPv4 multicast address "
                            "(224.0.0.0/4), got '10.0.0.1'")
    with pytest.raises(ConfigError) as e:
        Alerter(_cfg(tmp_path, None, intervall_s=3))
    assert str(e.value).startswith("configuration: unknown key 'intervall_s' (known: ")
