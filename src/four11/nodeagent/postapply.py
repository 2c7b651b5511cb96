"""Local post_apply commands: configured on the node per destination path, never sent by
the master. Run without a shell, with a timeout; a failure is logged and counted, and
never undoes the file that was applied."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex

log = logging.getLogger("four11.agent")


def argv_of(cmd: str | list[str]) -> list[str]:
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


async def run_command(argv: list[str], timeout: float, path: str) -> str:
    """Returns "ok", "failed" or "timeout"."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
    except OSError as e:
        log.error("post_apply for %s: cannot run %s: %s", path, argv[0], e.strerror)
        return "failed"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        log.error("post_apply for %s: %s killed after %.0f s", path, argv[0], timeout)
        return "timeout"
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    if proc.returncode != 0:
        tail = out.decode(errors="replace").strip().splitlines()[-1:] if out else []
        log.error("post_apply for %s: %s exited %d%s", path, argv[0], proc.returncode,
                  f": {tail[0]}" if tail else "")
        return "failed"
    log.info("post_apply for %s: %s ok", path, argv[0])
    return "ok"
