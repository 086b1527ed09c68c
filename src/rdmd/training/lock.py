"""One process per run folder: an advisory ``flock`` on ``<out>/.rdmd.lock``.

Two ``train-teacher``/``distill`` processes writing one ``--out`` interleave their logs and
leave a ``config.json`` that disagrees with the model, both exiting 0. The lock refuses the
second one at once, naming the holder. The operating system releases a ``flock`` when its
process dies, however it dies, so a SIGKILL leaves no stale lock: a leftover lock file is
just a file, and the next run takes it.

The lock file is removed on release (while still held). A process that opened the old file
just before could then lock a file no longer in the folder, so after locking the acquirer
checks that the path still names the file it locked, and otherwise tries again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from rdmd.errors import RdmdError

LOCK_FILE = ".rdmd.lock"


def _holder_line(text: str) -> str:
    """The holder as one line, from what it wrote into the lock file."""
    try:
        h = json.loads(text)
        return (f"pid {h['pid']} on {h['host']}, started {h['started']}: "
                f"{h['command']}")
    except (json.JSONDecodeError, KeyError, TypeError):
        return "a process that has not yet written its details"


def _program() -> str:
    """``rdmd`` for the CLI (also run as ``python -m rdmd.cli`` or under torchrun)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return "rdmd" if name in ("rdmd", "cli.py") else name


class RunLock:
    """An exclusive lock on a run folder, held from :meth:`acquire` to :meth:`release`.

    ``created`` tells whether acquiring made the folder; :meth:`release` then removes it again
    if the run left nothing in it, so a refused or failed fresh run leaves no folder behind.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_FILE
        self.fd: int | None = None
        self.created = False

    def acquire(self) -> None:
        for _ in range(20):
            if not self.out_dir.is_dir():
                try:
                    self.out_dir.mkdir(parents=True)
                    self.created = True
                except FileExistsError:
                    pass
                except OSError as e:
                    raise RdmdError(f"cannot create run folder {self.out_dir}: "
                                    f"{e.strerror}") from None
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the folder was removed by a releasing holder
                continue
            except OSError as e:
                raise RdmdError(f"cannot create lock file {self.path}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 4096).decode(errors="replace")
                os.close(fd)
                raise RdmdError(f"{self.out_dir} is in use by another rdmd run "
                                f"({_holder_line(text)}); wait for it to end or choose "
                                "another --out") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # locked a file its holder had just removed: try again
                os.close(fd)
                continue
            self.fd = fd
            self._write_holder()
            return
        raise RdmdError(f"could not lock {self.path} (it keeps being replaced)")

    def _write_holder(self) -> None:
        assert self.fd is not None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "command": shlex.join([_program(), *sys.argv[1:]])}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, (json.dumps(info) + "\n").encode(), 0)

    def release(self) -> None:
        """Remove the lock file (still holding it), unlock, and remove the folder if this lock
        created it and it is empty."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None
        if self.created:  # not empty (the run wrote files) or already gone: left as it is
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()
