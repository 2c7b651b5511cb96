"""The one error type every check raises, with a reason from a small fixed set.

The reason doubles as a metric label value, so the set must stay small and stable.
"""

from __future__ import annotations

REASONS = (
    "bad_format",  # magic, version, lengths, JSON, fields
    "bad_signature",
    "unknown_key",  # signed by a key we do not trust
    "rollback",  # index version lower than the one accepted
    "expired",  # index or alert past its expiry
    "mismatch",  # message disagrees with the index (hash, size, name, group, serial)
    "stale_serial",  # serial not newer than the applied one
    "too_large",
    "wrong_group",  # not a group this node belongs to
    "no_key",  # node holds no key that can open the message
    "decrypt_failed",
    "bad_path",  # destination outside allowed prefixes, .., NUL, relative, symlink
    "replay",  # alert naming an index version we already have
    "fetch_failed",
    "io_error",
)

# Refusals that are the answering master's fault: another master may serve the same
# sync correctly, so callers fail over and lower that master's score.
MASTER_FAULTS = frozenset({"fetch_failed", "bad_signature", "unknown_key", "bad_format",
                           "rollback", "too_large", "mismatch"})


class Refusal(Exception):
    """Something was refused. ``reason`` is one of REASONS; ``str()`` is a one-line message."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class ConfigError(Exception):
    """A configuration or key-file problem; the message names the key or file and the fix."""
