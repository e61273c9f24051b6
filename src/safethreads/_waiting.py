"""Blocking waits that keep Ctrl-C working and that cancellation reaches.

Every library wait that can block goes through `acquire()`.  Two things can
end such a wait early besides the awaited event:

- Ctrl-C: waits are made of timed acquires of at most `WAIT_SLICE`, so the
  main thread runs signal handlers between two of them even where a blocked
  acquire cannot be interrupted.
- Cancellation: a `CancelToken` bound to the waiting thread (`bind_token`,
  done for every `ThreadGroup` member) or passed explicitly (`cancel=`)
  makes a wait that has to block raise `Cancelled` once the token is
  cancelled.  A wait whose outcome is already there returns it.

How a cancelled waiter is woken without polling: a waiter that may be
cancelled sleeps on a `Parker`, a private one-shot latch, instead of on the
shared lock.  The party that completes the wait releases the parkers it
knows of (`ResultThread` and pool futures keep a list), and the waiter
registers the parker's `release` as a callback on each token in force, so
`cancel()` releases it too.  A parker is released at most once whoever
comes first, so the two wake-ups never collide.  A plain lock that nobody
releases as a parker can still be waited on under a token; the wait then
checks the tokens every `CANCEL_POLL` seconds.

With no token in force nothing of this runs: the wait costs what a timed
acquire costs (one thread-local read, on the blocking path only).
"""

from __future__ import annotations

import _thread
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Final, final

from ._errors import Cancelled

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._cancel import CancelToken

__all__ = [
    "CANCEL_POLL",
    "WAIT_SLICE",
    "Parker",
    "acquire",
    "acquire_parker",
    "check_callable",
    "check_cancel",
    "check_timeout",
    "new_sleeper",
    "raise_if_any_cancelled",
    "release_parked",
    "tokens_in_force",
    "unregister_all",
    "wait_thread_end",
]

# The longest single blocking acquire while waiting.  Signal handlers run in
# the main thread between two acquires, so Ctrl-C is noticed at least this
# often even where a blocked acquire cannot be interrupted (Windows before
# 3.14), or when the kernel delivers SIGINT to another thread.
WAIT_SLICE: Final = 0.25

# How often a wait on a lock that is not a Parker checks its tokens.
CANCEL_POLL: Final = 0.005


class _Binding(threading.local):
    """The token bound to each thread; `None` unless `bind_token` set one."""

    token: CancelToken | None = None


_binding: Final = _Binding()


@final
class Parker:
    """A one-shot latch for one waiter, released by whoever comes first.

    Created held; `release()` opens it once and later calls do nothing, so
    the completer of a wait and a token's cancellation may both release it.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()  # held until released once
        self._lock.acquire()

    def release(self) -> None:
        """Open the latch; a no-op after the first call.

        One call, no step before it: a Ctrl-C cannot leave the latch marked
        released but shut (the waiter takes it back only once, to return).
        """
        try:  # noqa: SIM105 - suppress() would add a frame to interrupt
            self._lock.release()
        except RuntimeError:
            pass  # open already

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Wait until released, as `Lock.acquire` does."""
        return self._lock.acquire(blocking, timeout)


def new_sleeper() -> _thread.LockType | Parker:
    """A held latch for one waiter to sleep on until its waker releases it.

    A `Parker` when a token is bound to the calling thread, so that the
    token's cancellation can wake the waiter too; a plain lock otherwise.
    """
    if _binding.token is None:
        lock = _thread.allocate_lock()
        lock.acquire()
        return lock
    return Parker()


def tokens_in_force(cancel: CancelToken | None) -> tuple[CancelToken, ...]:
    """The tokens whose cancellation ends a wait: `cancel` and the bound one."""
    bound = _binding.token
    if cancel is None:
        return () if bound is None else (bound,)
    if bound is None or bound is cancel:
        return (cancel,)
    return (cancel, bound)


def raise_if_any_cancelled(tokens: tuple[CancelToken, ...]) -> None:
    """Raise `Cancelled` for the first cancelled token of `tokens`."""
    for token in tokens:
        if token.cancelled:
            raise Cancelled(token.reason)


def acquire(
    lock: _thread.LockType | Parker,
    timeout: float | None,
    cancel: CancelToken | None = None,
) -> bool:
    """Acquire `lock` within `timeout` seconds (`None`: no limit), in slices.

    Returns:
        Whether the lock was acquired.  A negative or zero `timeout` tries
        once without blocking.

    Raises:
        Cancelled: if the wait had to block and `cancel` or the token bound
            to the calling thread is (or becomes) cancelled first.
    """
    if lock.acquire(blocking=False):
        return True
    if cancel is not None or _binding.token is not None:
        tokens = tokens_in_force(cancel)
        if isinstance(lock, Parker):
            return acquire_parker(lock, timeout, tokens)
        return _acquire_polling(lock, timeout, tokens)
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


def acquire_parker(
    parker: Parker, timeout: float | None, tokens: tuple[CancelToken, ...]
) -> bool:
    """Wait on `parker`, which the tokens' cancellation also releases."""
    if timeout is not None and timeout <= 0:
        return parker.acquire(blocking=False)
    raise_if_any_cancelled(tokens)
    removers: list[Callable[[], bool]] = []
    try:
        try:
            for token in tokens:
                # A token cancelled meanwhile runs the callback at once.  Each
                # remover is recorded before its callback is stored.
                token._add_callback(parker.release, removers)
            acquired = _acquire_slices(parker, timeout, tokens)
        finally:
            unregister_all(removers)
    finally:
        unregister_all(removers)  # finishes what a Ctrl-C cut short
    raise_if_any_cancelled(tokens)
    return acquired


def release_parked(locks: Iterable[_thread.LockType]) -> None:
    """Wake the waiters parked on `locks` (raw locks each waiter holds).

    A lock may be unlocked already: another waker came first, or a Ctrl-C
    cut its waiter's acquire short.  Releasing a raw lock never blocks, so
    this may run with the lock the waiters were parked under held.
    """
    for lock in locks:
        with contextlib.suppress(RuntimeError):
            lock.release()


def unregister_all(removers: list[Callable[[], bool]]) -> None:
    """Call and drop every remover, last first.

    Callers call it in two nested `finally` clauses: the second finishes
    what a Ctrl-C striking in the first cut short, so a waiter's callbacks
    never stay registered on a long-lived token.
    """
    while removers:
        removers[-1]()
        removers.pop()


def _acquire_polling(
    lock: _thread.LockType | Parker,
    timeout: float | None,
    tokens: tuple[CancelToken, ...],
) -> bool:
    """Wait on a lock only its owner releases, checking the tokens often."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        raise_if_any_cancelled(tokens)
        if deadline is None:
            chunk = CANCEL_POLL
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return lock.acquire(blocking=False)
            chunk = min(remaining, CANCEL_POLL)
        if lock.acquire(timeout=chunk):
            return True


def _acquire_slices(
    lock: Parker, timeout: float | None, tokens: tuple[CancelToken, ...]
) -> bool:
    """Wait on `lock` in slices, stopping early once a token is cancelled.

    The tokens' callbacks release `lock` on cancellation; checking them
    between slices as well bounds the wait even if that wake-up was lost
    (a Ctrl-C striking inside `cancel()` in another thread's main loop).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is None:
            chunk = WAIT_SLICE
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return lock.acquire(blocking=False)
            chunk = min(remaining, WAIT_SLICE)
        if lock.acquire(timeout=chunk):
            return True
        if any(token.cancelled for token in tokens):
            return lock.acquire(blocking=False)


def wait_thread_end(t: threading.Thread, deadline: float | None = None) -> None:
    """Wait out the last instructions of a thread that has done its work.

    For a thread known to be about to end (it released whatever its waiter
    waited on), so that "waited for" also means "no longer alive".  The
    main thread does not block in `Thread.join`: on CPython 3.11 and 3.12 a
    `KeyboardInterrupt` interrupting `join` marks a live thread as finished
    (gh-90882); it yields instead.
    """
    if t is threading.current_thread() or t.ident is None:
        return
    if threading.current_thread() is not threading.main_thread():
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return
    while t.is_alive():
        if deadline is not None and time.monotonic() >= deadline:
            return
        time.sleep(0)


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


def check_cancel(cancel: object) -> None:
    """Raise `TypeError` at the caller if `cancel` is not a token or `None`.

    Raises:
        TypeError: if `cancel` is neither `None` nor a `CancelToken`.
    """
    if cancel is None:
        return
    from ._cancel import CancelToken  # noqa: PLC0415 - _cancel imports this module

    if not isinstance(cancel, CancelToken):
        msg = f"cancel must be a CancelToken or None, not {type(cancel).__name__}"
        raise TypeError(msg)


def check_callable(fn: object, name: str) -> None:
    """Raise `TypeError` at the caller if `fn` cannot be called.

    Raises:
        TypeError: if `fn` is not callable.
    """
    if not callable(fn):
        msg = f"{name} must be callable, not {type(fn).__name__}"
        raise TypeError(msg)
