"""Publisher and alerter together on loopback, and the alerter as an admin runs it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest
import yaml
from alert_helpers import BIN, Receiver, run_cli, signer, spool_alert, until, wait_until
from prometheus_client import CollectorRegistry

from four11.alerter.service import Alerter
from four11.core.alert import parse_alert
from four11.core.index import parse_index
from four11.core.keys import load_keyring
from four11.publisher.service import Publisher


def _index(msgs, keys):
    try:
        return parse_index((msgs / "index").read_bytes(), load_keyring(keys), now=time.time())
    except FileNotFoundError:
        return None


def test_edit_a_source_and_a_multicast_listener_hears_it_twice(tmp_path, master_keys):
    msgs, src = tmp_path / "msgs", tmp_path / "hosts"
    src.write_text("10.0.0.1 a\n")
    pub_cfg = {"four11_dir": str(msgs), "keys_dir": str(master_keys), "state_dir": str(tmp_path / "st"),
               "metrics_listen": "127.0.0.1:0", "master_urls": ["http://127.0.0.1:8411/411.d/"],
               "poll_s": 0.5, "debounce_s": 0.3, "files": [{"source": str(src), "dest": "/etc/hosts"}]}
    mc = Receiver(multicast=True)
    alert_cfg = {"four11_dir": str(msgs), "metrics_listen": "127.0.0.1:0", "interval_s": 1.5,
                 "spool_poll_s": 0.2, "verify_key": str(master_keys / "master.pub"),
                 "multicast": {"interface": "127.0.0.1", "port": mc.port}}
    ring = load_keyring(master_keys)

    async def main():
        pub = Publisher(pub_cfg, registry=CollectorRegistry())
        await pub.start()
        al = Alerter(alert_cfg, registry=CollectorRegistry())
        await al.start()
        try:
            v1 = _index(msgs, master_keys).version
            await until(lambda: mc.got, 10, what="the first alert")
            src.write_text("10.0.0.1 a\n10.0.0.2 b\n")
            t0 = time.monotonic()
            idx = await until(lambda: (i := _index(msgs, master_keys)).version > v1 and i, 10,
                              what="a new index")
            assert time.monotonic() - t0 < 2.0
            assert (msgs / idx.find("etc.hosts", "/").file).exists()

            def heard():
                return [(t, a) for t, d in mc.got if (a := parse_alert(d, ring, now=time.time())).version
                        == idx.version]

            await until(lambda: len(heard()) >= 2, 10, what="the new alert twice")
            got = heard()
            assert got[0][0] - t0 < 3.0
            assert 1.0 < got[1][0] - got[0][0] < 3.0  # the repeat, on the cadence
            assert got[0][1].masters == ["http://127.0.0.1:8411/411.d/"]
            assert got[0][1].groups == ["/"]
        finally:
            await al.stop()
            await pub.stop()
            mc.close()

    asyncio.run(main())


def _alerter_cmd(tmp_path, mc: Receiver, *extra: str) -> list[str]:
    return [str(BIN / "411"), "alerter", "--411dir", str(tmp_path), "--multicast-interface", "127.0.0.1",
            "--multicast-port", str(mc.port), "--metrics-listen", "127.0.0.1:0", "--spool-poll-s", "0.1",
            *extra]


def test_alerter_cli_sends_and_stops_on_sigterm(tmp_path, master_keys):
    data = spool_alert(tmp_path, signer(master_keys), 100)
    cfgfile = tmp_path / "alerter.yaml"
    cfgfile.write_text(yaml.safe_dump({"interval_s": 0.5, "verify_key": str(master_keys / "master.pub")}))
    mc = Receiver(multicast=True)
    proc = subprocess.Popen(_alerter_cmd(tmp_path, mc, "--config", str(cfgfile)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(mc.got) >= 2, 20, what="two datagrams")
        assert set(mc.payloads()) == {data}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        mc.close()
    assert proc.returncode == 0, err
    assert b"new alert for index 100" in err

    r = run_cli("411", "alerter", "--411dir", str(tmp_path), "--multicast-group", "10.1.2.3")
    assert r.returncode == 2
    assert r.stderr == ("411 alerter: command line: multicast.group: must be an IPv4 "
                                 "multicast address (224.0.0.0/4), got '10.1.2.3'\n")
    r = run_cli("411", "alerter", "--411dir", str(tmp_path), "--verify-key", str(tmp_path / "nope.pub"))
    assert r.returncode == 2
    assert r.stderr == f"411 alerter: key file {tmp_path / 'nope.pub'} does not exist\n"


@pytest.mark.slow
def test_the_default_cadence_is_ten_seconds(tmp_path, master_keys):
    data = spool_alert(tmp_path, signer(master_keys), 100)
    mc = Receiver(multicast=True)
    proc = subprocess.Popen(_alerter_cmd(tmp_path, mc), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(mc.got) >= 2, 30, what="two datagrams")
        assert mc.payloads()[:2] == [data, data]
        gap = mc.got[1][0] - mc.got[0][0]
        assert 9.5 < gap < 11.5, gap
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        mc.close()
    assert proc.returncode == 0
