"""One command at a time per output directory: an exclusive lock, refused rather than awaited.

Two runs on one output directory would interleave writes to its SQLite ML Metadata store,
restage each other's data under the first run's feet, race on the serving directory and
overwrite each other's ``run_summary.json``. ``tfxkfp run`` and ``tfxkfp rollback`` hold
``<output>/.lock`` for their whole duration; a second command fails at once with one line
saying who holds it, having touched nothing but the lock file. The lock is ``flock(2)``:
the kernel releases it when its holder exits, however it exits (SIGKILL included), so there
is never a stale lock to clean up. The file itself stays; it only carries the holder's pid
for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import InputError

LOCK_FILE = ".lock"


class LockedError(InputError):
    """Another command holds the directory; the message is one line."""


@contextlib.contextmanager
def exclusive(directory: Path, command: str) -> Iterator[None]:
    """Holds ``directory``'s lock for the block, or raises ``LockedError`` at once."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    # Opened without truncating: the holder's pid stays readable until the lock is ours.
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip()
            raise LockedError(
                f"{directory}: another tfxkfp command ({holder or 'unknown'}) is using this "
                "output directory; wait for it to finish or choose another --output"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{command}, pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
