"""How ``ansflow run`` learns that a step's process ended: a pidfd, not a thread.

On Python 3.11 asyncio's default child watcher starts one thread per process
(it blocks in ``waitpid``), and the event loop waits for that thread to start
on every step. Linux (5.3 and later) can instead hand out a file descriptor that
becomes readable when the process exits; asyncio's own ``PidfdChildWatcher``
(public API) polls those descriptors in the event loop: no thread, no wait.
From Python 3.12 on asyncio picks it by itself, so nothing is done there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import warnings
from collections.abc import Iterator


def pidfd_usable() -> bool:
    """This kernel (and its sandbox, if any) hands out process file descriptors."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:  # ENOSYS (older kernel), EPERM (a seccomp filter)
        return False
    os.close(fd)
    return True


@contextlib.contextmanager
def pidfd_child_watcher() -> Iterator[bool]:
    """Within the running loop: child processes are watched by pidfd where that is
    needed and possible (yields whether it is in use); the default watcher after."""
    if sys.version_info >= (3, 12) or not pidfd_usable():
        yield False
        return
    # Only 3.11 gets here; asyncio deprecates setting a watcher from 3.12 on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
    try:
        yield True
    finally:
        with warnings.catch_warnings():
            # A process still running at the very end (killed, being reaped) is
            # no longer watched; the command is exiting.
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            # Closes ours; the next loop gets asyncio's default again.
            asyncio.set_child_watcher(asyncio.ThreadedChildWatcher())
