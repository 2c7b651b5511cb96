"""What every command does the same way: one-line errors and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..core.errors import ConfigError, Refusal

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def fail(prog: str, msg: str, code: int = EXIT_REFUSED) -> int:
    print(f"{prog}: {msg}", file=sys.stderr)
    return code


def run(prog: str, body: Callable[[], int]) -> int:
    """Turn the expected errors into one line on stderr and a non-zero exit."""
    try:
        return body()
    except Refusal as r:
        return fail(prog, f"refused: {r}")
    except ConfigError as e:
        return fail(prog, str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        return fail(prog, "interrupted", 130)
    except BrokenPipeError:
        return EXIT_REFUSED
