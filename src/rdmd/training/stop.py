"""SIGINT and SIGTERM while a run steps: stop at a step boundary with a checkpoint.

Ctrl-C sends SIGINT; cluster schedulers send SIGTERM before they kill (``torchrun`` forwards
either to every rank, and then sends its own). While the loop steps, a signal is only noted
(:attr:`StopSignals.signum`); the loop finishes the current step, writes a checkpoint at it
and raises :class:`rdmd.errors.RunInterrupted`. Further signals meanwhile are ignored;
SIGKILL still stops the process at once, and the checkpoints survive it. Outside the steps
(loading data, RDMD's OT start, the final evaluation) a signal stops the process at once,
as Ctrl-C does: nothing trained is lost there. SIGTERM is made to raise there too
(:func:`raise_on_sigterm`; by default it would end the process without unwinding), so
:func:`rdmd.training.rundir.claim_run` can remove a run that never reached its first
checkpoint and end with the same one line either way.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from rdmd.errors import RunInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Handlers for SIGINT and SIGTERM while the loop steps (a context manager).

    Handlers can only be installed from the main thread; elsewhere (a run started in a
    thread) this does nothing and the signals keep their usual effect. A signal the process
    ignores (SIGINT in a background job of a script) stays ignored.
    """

    def __init__(self, announce: bool = True) -> None:
        self.announce = announce  # rank 0 says it is stopping; the other ranks stay quiet
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if self._old:
            raise RuntimeError("StopSignals is already installed")
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:  # ignored stays ignored
                    self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        """Restore the handlers it replaced; a no-op when not installed (safe to repeat)."""
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            if not self.announce:
                return
            # os.write, not print: a handler may run in the middle of another write to stderr
            os.write(2, f"\nrdmd: {signal.Signals(signum).name}: stopping after this step "
                        "with a checkpoint (SIGKILL stops at once)\n".encode())


def raise_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM raise :class:`RunInterrupted` (as SIGINT raises ``KeyboardInterrupt``)
    until the returned function is called, which restores the old handler. Does nothing off
    the main thread or where SIGTERM is ignored."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = signal.getsignal(signal.SIGTERM)
    if old is signal.SIG_IGN:
        return lambda: None

    def handle(signum: int, frame: FrameType | None) -> None:
        raise RunInterrupted(signum, "SIGTERM")

    signal.signal(signal.SIGTERM, handle)
    return lambda: signal.signal(signal.SIGTERM, old)
