"""411 fileserver as a user runs it: config layering, one-line errors, SIGTERM, 411get over it."""

# ruff: noqa: F811  (the fixtures imported from fs_fixtures are redefined as arguments)

from __future__ import annotations

import hashlib
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fs_fixtures import published  # noqa: F401  (fixtures, injected by name)
from fs_helpers import CliServer, cli, request, wait_until

from four11.core.index import peek_version


@pytest.fixture
def cli_server():
    started: list[CliServer] = []

    def start(*args: str, env: dict | None = None) -> CliServer:
        s = CliServer(*args, env=env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def test_flags_beat_env_beat_the_config_file(published, cli_server, tmp_path):
    conf = tmp_path / "fileserver.yaml"
    conf.write_text(f"four11_dir: {published.dir}\nurldir: /from-file/\nlisten: 127.0.0.1:0\n"
                    "watch_timeout_s: 30\n")
    s = cli_server("--config", str(conf), "--urldir", "/from-flag/",
                   env={"FOUR11_URLDIR": "/from-env/", "FOUR11_WATCH_TIMEOUT_S": "1"})
    assert request(s.port, "/from-flag/index").status == 200
    assert request(s.port, "/from-env/index").status == 404
    v = peek_version((published.dir / "index").read_bytes())
    t0 = time.monotonic()
    assert request(s.port, f"/from-flag/index?wait={v}").status == 304
    assert time.monotonic() - t0 < 10  # the env's 1 s, not the file's 30 s
    assert s.terminate() == 0


def test_sigterm_answers_watchers_and_exits_0(published, cli_server):
    s = cli_server("--411dir", str(published.dir), "--listen", "127.0.0.1:0")
    v = peek_version((published.dir / "index").read_bytes())
    with ThreadPoolExecutor(3) as pool:
        futs = [pool.submit(request, s.port, f"/411.d/index?wait={v}") for _ in range(3)]
        wait_until(lambda: b"four11_fileserver_watchers_open 3.0" in request(s.port, "/metrics").body,
                   what="3 watchers held")
        t0 = time.monotonic()
        assert s.terminate() == 0
        assert [f.result(10).status for f in futs] == [304, 304, 304]
    assert time.monotonic() - t0 < 20
    assert any("stopping" in line for line in s.log)


def test_large_message_through_the_default_loop_of_the_service(published, cli_server):
    """The service runs on uvloop, which streams large files in chunks instead of sendfile."""
    s = cli_server("--411dir", str(published.dir), "--listen", "127.0.0.1:0")
    e = next(e for e in published.index().entries if e.name == "etc.big")
    a = request(s.port, "/411.d/" + e.file)
    assert a.status == 200 and hashlib.sha256(a.body).hexdigest() == e.sha256
    head = request(s.port, "/411.d/" + e.file, method="HEAD")
    assert head.body == b"" and head.h("Content-Length") == str(e.size)


@pytest.mark.parametrize(("args", "needle"), [
    (["--config", "{conf}"], "unknown key 'four11_dri'"),
    (["--allow-cidrs", "10.0.0.0/33"], "allow_cidrs"),
    (["--listen", "nowhere"], "listen: must be host:port"),
    (["--watch-timeout-s", "0"], "watch_timeout_s: must be greater than 0"),
    (["--config", "{missing}"], "does not exist"),
])
def test_bad_configuration_is_one_line_and_exit_2(tmp_path, args, needle):
    conf = tmp_path / "bad.yaml"
    conf.write_text("four11_dri: /tmp\n")
    args = [a.format(conf=conf, missing=tmp_path / "nope.yaml") for a in args]
    r = cli("411", "fileserver", *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("411 fileserver: ")


def test_a_port_in_use_is_one_line_and_exit_1(published):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("411", "fileserver", "--411dir", str(published.dir), "--listen", f"127.0.0.1:{port}")
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr


def test_411get_applies_files_fetched_from_the_fileserver(published, cli_server, node_keys, tmp_path):
    s = cli_server("--411dir", str(published.dir), "--listen", "127.0.0.1:0")
    keys = node_keys  # master.pub, cluster.key and the /compute key
    root = tmp_path / "root"
    root.mkdir()
    r = cli("411get", "--master", f"http://127.0.0.1:{s.port}/411.d/", "--keys", str(keys),
            "--group", "/compute", "--state-dir", str(tmp_path / "state"), "--root", str(root), "--all")
    assert r.returncode == 0, r.stderr
    assert (root / "etc/hosts").read_text().endswith("10.1.0.1 frontend\n")
    assert (root / "etc/slurm/slurm.conf").read_text().endswith("ClusterName=test\n")
    assert (root / "etc/big").stat().st_size == 3 * 1024 * 1024 + 17
    import json

    st = json.loads(request(s.port, "/status").body)
    assert [n["node"] for n in st["nodes"]] == [socket.gethostname()]  # 411get names itself
