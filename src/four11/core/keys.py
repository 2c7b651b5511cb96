"""Key generation, key files with safe modes, key ids, and group key selection.

Master signing key: Ed25519. Encryption keys: HPKE, KEM MLKEM768_X25519 (default)
or X25519. A hybrid key is stored as two PEM blocks (ML-KEM-768 then X25519), since
each half serialises on its own.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519

from . import groups as grp
from .errors import ConfigError

KEM_HYBRID = "MLKEM768_X25519"
KEM_X25519 = "X25519"
KEMS = {KEM_HYBRID: hpke.KEM.MLKEM768_X25519, KEM_X25519: hpke.KEM.X25519}

PRIVATE_MODE = 0o400
PUBLIC_MODE = 0o444


def key_id(raw_public: bytes) -> str:
    """16 hex chars: the first 8 bytes of SHA-256 over the raw public key bytes."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    private: ed25519.Ed25519PrivateKey
    kid: str

    @classmethod
    def from_private(cls, private: ed25519.Ed25519PrivateKey) -> SigningKey:
        raw = private.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
        return cls(private, key_id(raw))

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def verify_key(self) -> VerifyKey:
        return VerifyKey.from_public(self.private.public_key())


@dataclass(frozen=True)
class VerifyKey:
    public: ed25519.Ed25519PublicKey
    kid: str

    @classmethod
    def from_public(cls, public: ed25519.Ed25519PublicKey) -> VerifyKey:
        raw = public.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
        return cls(public, key_id(raw))


@dataclass(frozen=True)
class RecipientKey:
    """Public half of an HPKE encryption key."""

    kem: str
    public: object  # hpke.MLKEM768X25519PublicKey or x25519.X25519PublicKey
    kid: str
    pem: bytes = field(repr=False)


@dataclass(frozen=True)
class DecryptionKey:
    """Private half of an HPKE encryption key, with the id of its public half."""

    kem: str
    private: object
    kid: str


Keyring = dict[str, VerifyKey]


def _raw_pub(k: object) -> bytes:
    return k.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)  # type: ignore[attr-defined]


def _pem_priv(k: object) -> bytes:
    return k.private_bytes(  # type: ignore[attr-defined]
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )


def _pem_pub(k: object) -> bytes:
    return k.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


# ---- generation -------------------------------------------------------------------------


def generate_encryption_pair(kem: str = KEM_HYBRID) -> tuple[bytes, bytes]:
    """Return (private PEM, public PEM) for a fresh HPKE key."""
    if kem == KEM_HYBRID:
        m = mlkem.MLKEM768PrivateKey.generate()
        x = x25519.X25519PrivateKey.generate()
        return _pem_priv(m) + _pem_priv(x), _pem_pub(m.public_key()) + _pem_pub(x.public_key())
    if kem == KEM_X25519:
        x = x25519.X25519PrivateKey.generate()
        return _pem_priv(x), _pem_pub(x.public_key())
    raise ConfigError(f"unknown KEM {kem!r}: use {KEM_HYBRID} or x25519")


def generate_signing_pair() -> tuple[bytes, bytes]:
    k = ed25519.Ed25519PrivateKey.generate()
    return _pem_priv(k), _pem_pub(k.public_key())


def _write_key(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def keygen(out: Path, groups: list[str], kem: str = KEM_HYBRID, force: bool = False) -> list[Path]:
    """Write master, cluster and per-group key pairs under ``out``; return written paths."""
    out = Path(out)
    pairs: list[tuple[Path, tuple[bytes, bytes]]] = [
        (out / "master", generate_signing_pair()),
        (out / "cluster", generate_encryption_pair(kem)),
    ]
    for g in groups:
        parts = grp.key_path_parts(g)
        pairs.append((out.joinpath("groups", *parts), generate_encryption_pair(kem)))
    targets = [p.with_name(p.name + s) for p, _ in pairs for s in (".key", ".pub")]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise ConfigError(
            f"refusing to overwrite existing key {existing[0]} (use --force to replace keys)"
        )
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o755)
    for base, (priv, pub) in pairs:
        for suffix, data, mode in ((".key", priv, PRIVATE_MODE), (".pub", pub, PUBLIC_MODE)):
            target = base.with_name(base.name + suffix)
            if target.exists():
                os.chmod(target, 0o600)
            _write_key(target, data, mode)
    return targets


# ---- loading ----------------------------------------------------------------------------


def check_mode(path: Path, private: bool) -> None:
    """Refuse key files that others may write, or (private) that others may read."""
    st = os.stat(path)
    mode = stat.S_IMODE(st.st_mode)
    if private and mode & 0o077:
        raise ConfigError(
            f"unsafe key file {path}: mode {mode:04o} lets group/others read a private key; "
            f"run chmod 0400 {path}"
        )
    if mode & 0o022:
        raise ConfigError(
            f"unsafe key file {path}: mode {mode:04o} lets group/others write a key; "
            f"run chmod {'0400' if private else '0444'} {path}"
        )


def _pem_blocks(data: bytes, path: Path) -> list[bytes]:
    blocks, cur = [], []
    for line in data.splitlines(keepends=True):
        cur.append(line)
        if line.startswith(b"-----END "):
            blocks.append(b"".join(cur))
            cur = []
    if not blocks:
        raise ConfigError(f"key file {path} holds no PEM block")
    return blocks


def _read_checked(path: Path, private: bool) -> bytes:
    try:
        check_mode(path, private)
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"key file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"key file {path} is not readable by this user") from None


def load_signing_key(path: Path) -> SigningKey:
    path = Path(path)
    try:
        k = ser.load_pem_private_key(_read_checked(path, True), None)
    except ValueError as e:
        raise ConfigError(f"key file {path} is not a PEM private key: {e}") from None
    if not isinstance(k, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"key file {path} is not an Ed25519 signing key")
    return SigningKey.from_private(k)


def load_verify_key(path: Path) -> VerifyKey:
    path = Path(path)
    try:
        k = ser.load_pem_public_key(_read_checked(path, False))
    except ValueError as e:
        raise ConfigError(f"key file {path} is not a PEM public key: {e}") from None
    if not isinstance(k, ed25519.Ed25519PublicKey):
        raise ConfigError(f"key file {path} is not an Ed25519 public key")
    return VerifyKey.from_public(k)


def load_recipient_key(path: Path) -> RecipientKey:
    path = Path(path)
    data = _read_checked(path, False)
    try:
        halves = [ser.load_pem_public_key(b) for b in _pem_blocks(data, path)]
    except ValueError as e:
        raise ConfigError(f"key file {path} is not a PEM public key: {e}") from None
    return _recipient_from_halves(halves, path, data)


def _recipient_from_halves(halves: list, path: Path, pem: bytes) -> RecipientKey:
    if len(halves) == 2 and isinstance(halves[0], mlkem.MLKEM768PublicKey) and isinstance(
        halves[1], x25519.X25519PublicKey
    ):
        pub = hpke.MLKEM768X25519PublicKey(halves[0], halves[1])
        return RecipientKey(
            KEM_HYBRID, pub, key_id(halves[0].public_bytes_raw() + _raw_pub(halves[1])), pem
        )
    if len(halves) == 1 and isinstance(halves[0], x25519.X25519PublicKey):
        return RecipientKey(KEM_X25519, halves[0], key_id(_raw_pub(halves[0])), pem)
    raise ConfigError(f"key file {path} is not an HPKE encryption key (ML-KEM-768+X25519 or X25519)")


def load_decryption_key(path: Path) -> DecryptionKey:
    path = Path(path)
    data = _read_checked(path, True)
    try:
        halves = [ser.load_pem_private_key(b, None) for b in _pem_blocks(data, path)]
    except ValueError as e:
        raise ConfigError(f"key file {path} is not a PEM private key: {e}") from None
    return decryption_key_from_halves(halves, path)


def decryption_key_from_halves(halves: list, path: Path | str = "<memory>") -> DecryptionKey:
    if len(halves) == 2 and isinstance(halves[0], mlkem.MLKEM768PrivateKey) and isinstance(
        halves[1], x25519.X25519PrivateKey
    ):
        m, x = halves
        kid = key_id(m.public_key().public_bytes_raw() + _raw_pub(x.public_key()))
        return DecryptionKey(KEM_HYBRID, hpke.MLKEM768X25519PrivateKey(m, x), kid)
    if len(halves) == 1 and isinstance(halves[0], x25519.X25519PrivateKey):
        return DecryptionKey(KEM_X25519, halves[0], key_id(_raw_pub(halves[0].public_key())))
    raise ConfigError(f"key file {path} is not an HPKE encryption key (ML-KEM-768+X25519 or X25519)")


def recipient_for_group(keys_dir: Path, group: str) -> RecipientKey:
    """The public key a message of ``group`` is encrypted to: the group's own key, else the
    nearest ancestor's, else the cluster key."""
    keys_dir = Path(keys_dir)
    for g in reversed(grp.ancestors(group)):
        if g == grp.ROOT:
            return load_recipient_key(keys_dir / "cluster.pub")
        p = keys_dir.joinpath("groups", *grp.key_path_parts(g))
        p = p.with_name(p.name + ".pub")
        if p.exists():
            return load_recipient_key(p)
    raise AssertionError("unreachable: ancestors always end with '/'")


def load_node_keys(keys_dir: Path) -> dict[str, DecryptionKey]:
    """Every decryption key a node holds (cluster.key and groups/**/*.key), by key id."""
    keys_dir = Path(keys_dir)
    found: dict[str, DecryptionKey] = {}
    candidates = [keys_dir / "cluster.key", *sorted((keys_dir / "groups").rglob("*.key"))]
    for p in candidates:
        if p.is_file():
            k = load_decryption_key(p)
            found[k.kid] = k
    return found


def load_keyring(keys_dir: Path) -> Keyring:
    """Trusted master verify keys: master.pub, plus master-*.pub kept during a rotation."""
    keys_dir = Path(keys_dir)
    paths = sorted(keys_dir.glob("master*.pub"))
    if not paths:
        raise ConfigError(f"no master public key: {keys_dir / 'master.pub'} does not exist")
    ring: Keyring = {}
    for p in paths:
        k = load_verify_key(p)
        ring[k.kid] = k
    return ring
