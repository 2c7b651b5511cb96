#!/usr/bin/env python3
"""Crypto path figures: 411put and 411get of a 6 MB passwd-like file, per-message overhead of a
1 KB file, and AEAD throughput, with the raw AES-256-GCM time for the same bytes as the peer.

Run: .venv/bin/python bench/crypto.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from four11.core.keys import (
    KEM_HYBRID,
    KEM_X25519,
    keygen,
    load_keyring,
    load_node_keys,
    load_signing_key,
    recipient_for_group,
)
from four11.core.message import FileMeta, decrypt_message, parse_message, seal_message
from four11.core.publish import Four11Dir, PutItem
from four11.core.source import DirSource
from four11.core.sync import NodePolicy, node_from_dirs

REPEAT = 7


def passwd_like(users: int) -> bytes:
    return "".join(f"user{i:06d}:x:{10000 + i}:{10000 + i}:User {i},,,:/home/user{i:06d}:/bin/bash\n"
                   for i in range(users)).encode()


def best(fn, n: int = REPEAT) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def run(kem: str) -> None:
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        keygen(t / "keys", [], kem)
        big = t / "src" / "passwd"
        big.parent.mkdir()
        content = passwd_like(100_000)
        big.write_bytes(content)
        small = t / "src" / "small"
        small.write_bytes(os.urandom(512).hex().encode())
        d = Four11Dir(t / "411", t / "keys", master_urls=["http://m/411.d/"])
        # replace mode: the whole 6 MB travels (merge would filter by uid first)
        put_big = lambda: d.put([PutItem(big, "/etc/bigfile")], alert=True)  # noqa: E731
        put_small = lambda: d.put([PutItem(small, "/etc/small")], alert=True)  # noqa: E731
        put_best, put_med = best(put_big)
        small_best, _ = best(put_small, 20)

        (t / "node").mkdir()
        nk = t / "nodekeys"
        nk.mkdir()
        for f in ("master.pub", "cluster.key"):
            os.link(t / "keys" / f, nk / f)
        src = DirSource(str(t / "411"))
        idx = d.current_index()
        entry = idx.find("etc.bigfile", "/")

        def get_big() -> None:
            node = node_from_dirs(NodePolicy(root=str(t / "node")), nk, t / "state")
            asyncio.run(node.fetch_message(src, entry))

        get_best, get_med = best(get_big)
        signer = load_signing_key(t / "keys" / "master.key")
        rk = recipient_for_group(t / "keys", "/")
        dks = load_node_keys(nk)
        ring = load_keyring(nk)
        fm = FileMeta("/etc/bigfile", 0, 0, "root", "root", 0o644, 0)

        def seal() -> bytes:
            return seal_message(name="etc.bigfile", group="/", serial=1, created=0, file=fm,
                                content=content, recipients=[rk], signer=signer)

        sealed = seal()
        seal_best, _ = best(seal, 15)
        open_best, _ = best(lambda: decrypt_message(parse_message(sealed, ring), dks), 15)
        key, nonce = os.urandom(32), os.urandom(12)
        aes = AESGCM(key)
        raw_best, _ = best(lambda: aes.encrypt(nonce, content, b"aad"), 20)
        ct = aes.encrypt(nonce, content, b"aad")
        raw_dec, _ = best(lambda: aes.decrypt(nonce, ct, b"aad"), 20)
        mb = len(content) / 1e6
        print(f"\nKEM {kem}: file {mb:.2f} MB ({len(content):,} bytes, 100,000 users)")
        print(f"  411put 6 MB end to end (read, seal, sign, write+fsync message, index, alert):"
              f" best {put_best * 1e3:7.1f} ms  median {put_med * 1e3:7.1f} ms   target < 150 ms")
        print(f"  411get 6 MB fetch+verify+decrypt (file source):            "
              f" best {get_best * 1e3:7.1f} ms  median {get_med * 1e3:7.1f} ms")
        print(f"  raw AES-256-GCM encrypt of the same bytes:                  best {raw_best * 1e3:7.1f} ms"
              f"  ({mb / raw_best:,.0f} MB/s); decrypt {raw_dec * 1e3:.1f} ms ({mb / raw_dec:,.0f} MB/s)")
        print(f"  seal in memory (HPKE wrap, AES-GCM, SHA-256, Ed25519):      best {seal_best * 1e3:7.1f} ms"
              f"   = {seal_best / raw_best:4.1f}x raw AES-GCM   (target within 3x)")
        print(f"  open in memory (verify, SHA-256, unwrap, AES-GCM):          best {open_best * 1e3:7.1f} ms"
              f"   = {open_best / raw_dec:4.1f}x raw AES-GCM decrypt")
        print(f"  end to end with disk: put {put_best / raw_best:5.1f}x, get {get_best / raw_dec:5.1f}x"
              " raw AES-GCM (file write + fsync of message, index and alert dominate)")
        print(f"  per-message 1 KB 411put (whole publish incl. fsyncs): {small_best * 1e3:.2f} ms")


def main() -> None:
    print("four11 crypto benchmark (best of runs; fsync included where the real path does it)")
    for kem in (KEM_HYBRID, KEM_X25519):
        run(kem)


if __name__ == "__main__":
    main()
