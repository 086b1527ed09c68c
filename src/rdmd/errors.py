"""The one exception users see: a one-line message, a non-zero exit, nothing half-written."""

from __future__ import annotations


class RdmdError(Exception):
    """Bad input or a failed run; the CLI prints ``rdmd: error: <message>`` and exits 2."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM; the message says where its checkpoint is and how
    to continue. A ``KeyboardInterrupt``, so ``except Exception`` does not swallow it; the CLI
    prints ``rdmd: interrupted: <message>`` and exits ``128 + signum`` (130, 143)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.message = message

    def __str__(self) -> str:
        return self.message
