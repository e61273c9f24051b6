"""Blocking on a raw lock in a way that keeps Ctrl-C working everywhere."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import _thread

__all__ = ["WAIT_SLICE", "acquire", "check_callable", "check_timeout"]

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


def check_timeout(
    timeout: object, name: str = "timeout", *, allow_none: bool = True
) -> None:
    """Raise if `timeout` is neither `None` nor a number of seconds.

    Raises:
        TypeError: if `timeout` is not `None`, an `int` or a `float` (or
            another real number); `bool` is refused.
        ValueError: if `timeout` is NaN.
    """
    if timeout is None and allow_none:
        return
    # `int` and `float` skip the imports below, kept off `import safethreads`.
    if type(timeout) is float or type(timeout) is int:
        is_nan = timeout != timeout  # noqa: PLR0124 - only NaN is unequal to itself
    else:
        import math  # noqa: PLC0415
        import numbers  # noqa: PLC0415

        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
            allowed = "None or a number" if allow_none else "a number"
            msg = f"{name} must be {allowed} of seconds, not {type(timeout).__name__}"
            raise TypeError(msg)
        is_nan = math.isnan(timeout)
    if is_nan:
        msg = f"{name} must be a number of seconds, not NaN"
        raise ValueError(msg)


def check_callable(fn: object, name: str) -> None:
    """Raise `TypeError` at the caller if `fn` cannot be called.

    Raises:
        TypeError: if `fn` is not callable.
    """
    if not callable(fn):
        msg = f"{name} must be callable, not {type(fn).__name__}"
        raise TypeError(msg)
