"""files.yaml: a malformed list is refused with the line and the reason; good entries expand."""

from __future__ import annotations

import os
import re

import pytest
import yaml
from pub_helpers import Site, run_cli

from four11.core.errors import ConfigError
from four11.publisher import config as pconfig
from four11.publisher.filelist import expand_spec

KNOWN = "chroot, comment, dest, group, mode, owner, perm, source"

# (files.yaml body after the settings, expected error after "<path> ")
CASES = [
    ("files:\n  - source: {src}/hosts\n  - sorce: {src}/passwd\n",
     f"line 3: files[1]: unknown key 'sorce' (known: {KNOWN})"),
    ("files:\n  - source: etc/hosts\n",
     "line 2: files[0]: source must be an absolute path, got 'etc/hosts'"),
    ("files:\n  - {{}}\n  - dest: /etc/hosts\n",
     "line 2: files[0]: missing key 'source'"),
    ("files:\n  - source: {src}/hosts\n    dest: /etc/hosts\n    chroot: {src}\n",
     "line 2: files[0]: give either 'dest' or 'chroot', not both"),
    ("files:\n  - source: {src}/hosts\n    mode: append\n",
     "line 2: files[0]: mode must be one of replace, merge, got 'append'"),
    ("files:\n  - source: {src}/hosts\n  -   source: {src}/hosts\n      perm: 0999\n",
     "line 3: files[1]: perm must be an octal mode such as \"0644\", got '0999'"),
    ("files:\n  - source: {src}/hosts\n    dest: /etc/hosts\n    mode: merge\n",
     "line 2: files[0]: mode merge is only for passwd, group, shadow, gshadow, not /etc/hosts"),
    ("files:\n  - source: {src}/hosts\n    dest: /etc/hosts\n  - source: {src}/passwd\n"
     "    dest: /etc/hosts\n",
     "line 4: files[1]: /etc/hosts in group / is already published by the entry at line 2"),
    ("files:\n  - source: {src}/hosts\n    owner: nosuchuser411:root\n",
     "line 2: files[0]: owner: unknown user 'nosuchuser411' on this master"),
    ("files:\n  - source: {src}/hosts\n    group: /compute/../nas\n",
     "line 2: files[0]: invalid group name '/compute/../nas': component '..' is '.', '..' or has "
     "leading/trailing spaces"),
    ("files:\n  - 42\n",
     "line 2: files[0]: an entry must be a mapping with at least 'source', got int"),
    ("files:\n  - source: {src}/etc/hosts\n    chroot: /elsewhere\n",
     "line 2: files[0]: source {src}/etc/hosts is not below the chroot /elsewhere"),
    ("files:\n  - source: {src}/hosts\n    dest: /etc/../hosts\n",
     "line 2: files[0]: dest must not contain '..', got '/etc/../hosts'"),
    ("files: 42\n", ": files must be of type list, got 42"),
    ("files:\n  - source: [unclosed\n",
     "line 3: not valid YAML (expected ',' or ']', but got '<stream end>')"),
    ("flies: []\n", f": unknown key 'flies' (known: {', '.join(sorted(pconfig.SCHEMA))})"),
]


def _head(site) -> str:
    settings = {k: v for k, v in site.settings().items() if k != "master_urls"}
    return yaml.safe_dump(settings)


def _write(site, body: str):
    site.config.write_text(_head(site) + body.format(src=site.src))
    return site.config


def _expected(site, tail: str) -> str:
    tail = tail.format(src=site.src)
    if tail.startswith("line "):  # lines in CASES count from the start of the body
        n, rest = tail[5:].split(":", 1)
        offset = _head(site).count("\n")
        rest = re.sub(r"at line (\d+)", lambda m: f"at line {int(m[1]) + offset}", rest)
        tail = f" line {int(n) + offset}:{rest}"
    return f"{site.config}{tail}"


@pytest.mark.parametrize("body,tail", CASES, ids=[t.split(":")[-1].strip()[:40] for _, t in CASES])
def test_malformed_list_is_refused_with_line_and_reason(body, tail, tmp_path, master_keys):
    site = Site(tmp_path, master_keys)
    _write(site, body)
    with pytest.raises(ConfigError) as e:
        pconfig.load(site.config, env={})
    assert str(e.value) == _expected(site, tail)


def test_cli_refuses_malformed_list_at_start_with_exact_text(tmp_path, master_keys):
    site = Site(tmp_path, master_keys)
    _write(site, CASES[0][0])
    r = run_cli("411", "publisher", "--config", str(site.config))
    assert r.returncode == 2
    assert r.stderr == f"411 publisher: {_expected(site, CASES[0][1])}\n"
    assert not site.msgs.exists()  # nothing was published
    r = run_cli("411", "commit", "--config", str(site.config))
    assert r.returncode == 2
    assert r.stderr == f"411 commit: {_expected(site, CASES[0][1])}\n"


def test_entries_expand_to_destinations(tmp_path, master_keys):
    site = Site(tmp_path, master_keys)
    (site.src / "etc").mkdir()
    (site.src / "etc" / "hosts").write_text("h\n")
    tree = site.src / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a").write_text("a\n")
    (tree / "sub" / "b").write_text("b\n")
    os.symlink(tree / "a", tree / "link")  # symlinks are not published
    (site.src / "passwd").write_text("u:x:1000:1000::/home/u:/bin/sh\n")
    _write(site, (
        "files:\n"
        "  - {src}/etc/hosts\n"
        "  - source: {src}/etc/hosts\n    chroot: {src}\n    group: compute\n    comment: '#'\n"
        "  - source: {src}/tree\n    dest: /etc/tree\n    perm: 0640\n    owner: '0:0'\n"
        "  - source: {src}/passwd\n    dest: /etc/passwd\n"
    ))
    cfg = pconfig.load(site.config, env={})
    got = [[(it.dest, it.group, it.comment, it.apply, it.perm, it.uid) for it in expand_spec(s)]
           for s in cfg.files]
    assert got == [
        [(f"{site.src}/etc/hosts", "/", None, "replace", None, None)],
        [("/etc/hosts", "/compute", "#", "replace", None, None)],
        [("/etc/tree/a", "/", None, "replace", 0o640, 0),
         ("/etc/tree/sub/b", "/", None, "replace", 0o640, 0)],
        [("/etc/passwd", "/", None, "merge", None, None)],
    ]
    offset = _head(site).count("\n")
    assert [s.line - offset for s in cfg.files] == [2, 3, 7, 11]
