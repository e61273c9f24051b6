"""Blocking on a raw lock in a way that keeps Ctrl-C working everywhere."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import _thread

__all__ = ["WAIT_SLICE", "acquire"]

# The longest single blocking acquire while waiting.  Signal handlers run in
# the main thread between two acquires, so Ctrl-C is noticed at least this
# often even where a blocked acquire cannot be interrupted (Windows before
# 3.14), or when the kernel delivers SIGINT to another thread.
WAIT_SLICE: Final = 0.25


def acquire(lock: _thread.LockType, timeout: float | None) -> bool:
    """Acquire `lock` within `timeout` seconds (`None`: no limit), in slices.

    Returns:
        Whether the lock was acquired.  A negative or zero `timeout` tries
        once without blocking.
    """
    if lock.acquire(blocking=False):
        return True
    if timeout is None:
        while not lock.acquire(timeout=WAIT_SLICE):
            pass
        return True
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return lock.acquire(blocking=False)
        if lock.acquire(timeout=min(remaining, WAIT_SLICE)):
            return True
