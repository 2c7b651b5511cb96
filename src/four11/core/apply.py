"""Writing a file on a node: safe path walk, temp file, owner/mode, fsync, rename, fsync dir.

Every directory from the root prefix down is opened with O_NOFOLLOW relative to its
parent's descriptor, so a symlink anywhere in the path is refused and cannot be swapped
in between the check and the write. A reader sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator

from .errors import Refusal
from .names import check_dest

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
TMP_MARK = ".four11-"


@contextlib.contextmanager
def parent_dir(root: str, dest: str, create: bool = True) -> Iterator[int]:
    """Yield an fd of dest's parent directory below ``root`` (walked without following
    symlinks), creating missing directories (0755) when ``create``."""
    check_dest(dest)
    parts = dest.split("/")[1:-1]
    try:
        fd = os.open(root or "/", _DIR_FLAGS)
    except OSError as e:
        raise Refusal("io_error", f"cannot open root {root}: {e.strerror}") from None
    try:
        walked = root.rstrip("/")
        for part in parts:
            walked += "/" + part
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    kind = "a symlink" if _is_link(part, fd) else "not a directory"
                    raise Refusal("bad_path", f"parent {walked} of {dest} is {kind}") from None
                raise
            os.close(fd)
            fd = nfd
        yield fd
    finally:
        os.close(fd)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _check_final(name: str, dir_fd: int, dest: str) -> os.stat_result | None:
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise Refusal("bad_path", f"destination {dest} is a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise Refusal("bad_path", f"destination {dest} exists and is not a regular file")
    return st


def read_current(root: str, dest: str) -> bytes | None:
    """Current content of dest below root, or None when it does not exist."""
    name = dest.rsplit("/", 1)[1]
    try:
        with parent_dir(root, dest, create=False) as dfd:
            if _check_final(name, dfd, dest) is None:
                return None
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            with os.fdopen(fd, "rb") as f:
                return f.read()
    except FileNotFoundError:
        return None


def write_atomic(root: str, dest: str, content: bytes, *, uid: int, gid: int, mode: int,
                 mtime: int | None = None) -> None:
    """Replace dest below root with content, owner uid:gid and mode, atomically."""
    name = dest.rsplit("/", 1)[1]
    try:
        with parent_dir(root, dest) as dfd:
            _check_final(name, dfd, dest)
            _remove_stale_temps(name, dfd)
            tmp = f".{name}{TMP_MARK}{secrets.token_hex(6)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dfd)
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view):]
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)  # after fchown: chown clears setuid bits
                if mtime is not None:
                    os.utime(fd, (mtime, mtime))
                os.fsync(fd)
                os.close(fd)
                fd = -1
                os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                raise
            os.fsync(dfd)
    except OSError as e:
        raise Refusal("io_error", f"cannot write {dest}: {e.strerror or e}") from None


def _remove_stale_temps(name: str, dfd: int) -> None:
    """Temp files a killed writer left for this name (never the file itself)."""
    prefix = f".{name}{TMP_MARK}"
    for entry in os.listdir(dfd):
        if entry.startswith(prefix):
            with contextlib.suppress(OSError):
                os.unlink(entry, dir_fd=dfd)
