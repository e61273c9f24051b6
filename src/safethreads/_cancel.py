"""CancelToken: cooperative cancellation shared by threads, pools and groups.

A token is a one-way switch: `cancel()` flips it once, and everyone holding
the token sees it flipped (`cancelled`, `wait()`, `raise_if_cancelled()`) and
has their callbacks run.  Threads cannot be stopped from outside, so the work
itself checks the token at safe points and returns or raises `Cancelled`.

Design notes:

- One lock per token guards its state and its callback table.  `cancel()`
  takes the callbacks out under the lock and runs them after releasing it, so
  a callback may use the token (or cancel other tokens) without deadlocking,
  and each callback runs exactly once, in the cancelling thread.
- A child token is linked to its parent through a callback that holds the
  child weakly.  When the child is garbage-collected, cancelled or closed, the
  link is removed from the parent, so a long-lived parent does not accumulate
  dead children.
- Deadlines cost no thread by default: `cancelled`, `wait()` and
  `raise_if_cancelled()` compare the monotonic clock with the deadline, so a
  deadline is honoured exactly by every check.  Only when a callback is
  registered on a token with a deadline does the token start one small daemon
  thread, which sleeps until the deadline so that the callback runs on time;
  the thread ends as soon as the token is cancelled, or within `_POLL` of
  its collection (the token has no `__del__`: Python swallows a Ctrl-C
  that strikes inside one).
- A child holds its parent strongly, the parent its children weakly: a
  chain `root.child().child()` stays linked as long as its leaf lives, even
  when nobody keeps the tokens in between, and is freed with the leaf.
- Binding: `bind_token(token)` makes `token` the calling thread's token for
  a while (a `ThreadGroup` binds its token in each member).  Every blocking
  library wait made meanwhile raises `Cancelled` once the token is
  cancelled; `_waiting` explains how the waiter is woken.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from typing import TYPE_CHECKING, Final, final

from ._errors import Cancelled
from ._waiting import (
    Parker,
    _binding,
    acquire_parker,
    check_cancel,
    check_timeout,
    raise_if_any_cancelled,
    tokens_in_force,
    unregister_all,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["DEADLINE_REASON", "CancelToken", "bind_token", "current_token"]

# Longest single wait of `wait()`: Ctrl-C is serviced promptly in the main
# thread even where a blocked lock wait is not interruptible (Windows before
# 3.14), and a parent whose cancel() a Ctrl-C cut short is still noticed.
_POLL: Final = 0.25

DEADLINE_REASON: Final = "the deadline expired"


@final
class CancelToken:
    """A thread-safe, one-way cancellation signal for cooperative stopping.

    Pass a token to the work that should be stoppable (a `ResultThread`
    target, a pool task, a `ThreadGroup` member) and have it check the token
    at safe points; cancel the token from anywhere to ask the work to stop:

    ```python
    import threading

    from safethreads import CancelToken, Cancelled, spawn


    def count_until_cancelled(token: CancelToken, started: threading.Event) -> int:
        n = 0
        started.set()
        while not token.cancelled:
            n += 1
            token.wait(0.001)
        return n


    token = CancelToken()
    started = threading.Event()
    t = spawn(count_until_cancelled, token, started)
    started.wait(5)
    token.cancel("enough")
    assert t.result(timeout=5) >= 1
    assert token.reason == "enough"
    try:
        token.raise_if_cancelled()
    except Cancelled as exc:
        assert exc.reason == "enough"
    ```

    Thread safety: every method may be called from any thread, concurrently.
    `cancel()` is atomic and idempotent: the first call wins, sets the reason
    and runs the callbacks; later calls change nothing.  `cancelled` never
    goes back to `False`.

    Callbacks registered with `add_callback()` run exactly once, in the thread
    that cancels the token, after the token's lock is released and in
    registration order; a callback added after cancellation runs at once, in
    the thread adding it.  If callbacks raise, every callback still runs and
    `cancel()` raises a `BaseExceptionGroup` of their exceptions (the token is
    cancelled regardless); a `KeyboardInterrupt` (Ctrl-C striking while the
    callbacks run) is raised as it is, once every callback has run.
    Callbacks run because a deadline expired run in the thread that first
    notices the expiry (a check of `cancelled`, `wait()`, ...) or in the
    token's deadline thread; they have no caller to raise to, so their
    exceptions go to `threading.excepthook`.
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_cancelled",
        "_deadline",
        "_event",
        "_lock",
        "_next_key",
        "_parent",
        "_parent_link",
        "_reason",
        "_timer_stop",
        "_unlinked",
    )

    def __init__(self) -> None:
        """Create a token that is not cancelled and has no deadline."""
        # Guards _cancelled, _reason, _callbacks, _next_key, _parent_link and
        # _timer_stop.  _cancelled is also read without it: a bool that only
        # ever goes from False to True.
        self._lock = threading.Lock()
        self._event = threading.Event()  # set once cancelled; what wait() blocks on
        self._cancelled = False
        self._reason: object = None
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._next_key = 0
        # Monotonic time at which the token cancels itself; written before the
        # token is shared (in after() and child()) and read-only afterwards.
        self._deadline: float | None = None
        self._parent_link: _Registration | None = None
        # The parent, held strongly while linked (the parent holds this token
        # weakly), so that a dropped intermediate token still links its
        # children to its own parent.  Guarded by _lock like _parent_link.
        self._parent: CancelToken | None = None
        self._timer_stop: threading.Event | None = None
        # Keys of collected children whose links could not be dropped at once
        # (see _Registration.unlink_collected); the next child() drops them.
        # Appended to without the lock: list.append is atomic on every build.
        self._unlinked: list[int] = []

    @classmethod
    def after(cls, seconds: float) -> CancelToken:
        """Return a new token that cancels itself `seconds` from now.

        The deadline is measured on the monotonic clock; once it has passed,
        the token is cancelled with the reason `"the deadline expired"`.

        ```python
        from safethreads import CancelToken

        token = CancelToken.after(0.01)
        assert token.wait(timeout=5)  # returns once the deadline has passed
        assert token.reason == "the deadline expired"
        ```

        Args:
            seconds: Delay before the token cancels itself; zero or less gives
                a token that is already expired.

        Returns:
            A token with a deadline and no parent.

        Raises:
            TypeError: if `seconds` is not a number.
            ValueError: if `seconds` is NaN.
        """
        check_timeout(seconds, "seconds", allow_none=False)
        token = cls()
        token._deadline = time.monotonic() + seconds
        return token

    # --- state ----------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """Whether the token has been cancelled (or its deadline has passed).

        Never goes back to `False` once `True`.
        """
        if self._cancelled:
            return True
        parent = self._parent
        if parent is not None and parent._cancelled:
            # The parent's link cancels us; should a Ctrl-C have cut its
            # cancel() short, we still follow it.
            self._cancel(parent.reason, [])
            return True
        deadline = self._deadline
        if deadline is not None and time.monotonic() >= deadline:
            self._expire()
            return True
        return False

    @property
    def reason(self) -> object:
        """The reason given to the winning `cancel()` call, or `None`.

        `None` while the token is not cancelled, and when it was cancelled
        without a reason.
        """
        if not self.cancelled:
            return None
        with self._lock:
            return self._reason

    @property
    def deadline(self) -> float | None:
        """The `time.monotonic()` value at which the token cancels itself, if any.

        A child inherits its parent's deadline when that comes first.
        """
        return self._deadline

    def raise_if_cancelled(self) -> None:
        """Raise `Cancelled` if the token has been cancelled; else do nothing.

        Raises:
            Cancelled: if the token is cancelled; its `reason` attribute is
                the token's reason.
        """
        if self.cancelled:
            raise Cancelled(self.reason)

    def wait(
        self, timeout: float | None = None, *, cancel: CancelToken | None = None
    ) -> bool:
        """Block until the token is cancelled or `timeout` seconds have passed.

        Like every blocking wait of the library, it is itself cancellable:
        if another token in force (`cancel`, or the token bound to the
        calling thread, such as a `ThreadGroup` member's group token) is
        cancelled first, it raises `Cancelled`.  A cancelled token returns
        `True` at once, whatever the other tokens say.

        In the main thread the wait is made of short waits, so that Ctrl-C
        raises `KeyboardInterrupt` promptly on every platform.

        Args:
            timeout: Seconds to wait at most; `None` waits as long as it takes.
            cancel: Another token whose cancellation ends the wait with
                `Cancelled`.

        Returns:
            `True` if the token is cancelled, `False` if the timeout expired
            first.

        Raises:
            Cancelled: if `cancel` or the calling thread's bound token was
                cancelled while this token was not.
            TypeError: if `timeout` is not `None` or a number, or `cancel`
                is not `None` or a `CancelToken`.
            ValueError: if `timeout` is NaN.
        """
        check_timeout(timeout)
        check_cancel(cancel)
        try:
            if cancel is None:
                bound = _binding.token
                if bound is None or bound is self:
                    return self._wait(timeout)
            return self._wait_interruptible(timeout, cancel)
        except (KeyboardInterrupt, Cancelled) as exc:
            # Raised from here: the frames below are the library's plumbing.
            raise exc.with_traceback(None)  # noqa: B904 - the same exception

    def _wait(self, timeout: float | None) -> bool:
        """Wait for this token alone; see `wait()`."""
        now = time.monotonic()
        limit = None if timeout is None else now + timeout
        deadline = self._deadline
        if deadline is not None and (limit is None or deadline < limit):
            limit = deadline
        while not self.cancelled:
            if limit is None:
                chunk = _POLL
            else:
                remaining = limit - now
                if remaining <= 0:
                    return self.cancelled
                chunk = min(remaining, _POLL)
            if self._event.wait(chunk):
                return True
            now = time.monotonic()
        return True

    def _cancelled_now(self) -> bool:
        """`cancelled`, read afresh (type checkers narrow the property)."""
        return self.cancelled

    def _wait_interruptible(
        self, timeout: float | None, cancel: CancelToken | None
    ) -> bool:
        """Wait for this token or for another token in force to be cancelled."""
        if self.cancelled:
            return True
        others = tuple(t for t in tokens_in_force(cancel) if t is not self)
        raise_if_any_cancelled(others)
        limit = None if timeout is None else time.monotonic() + timeout
        deadline = self._deadline
        if deadline is not None and (limit is None or deadline < limit):
            limit = deadline
        if limit is not None and limit <= time.monotonic():
            return self.cancelled
        parker = Parker()
        removers: list[Callable[[], bool]] = []
        try:
            try:
                self._add_callback(parker.release, removers)
                remaining = (
                    None if limit is None else max(0.0, limit - time.monotonic())
                )
                acquire_parker(parker, remaining, others)
            except Cancelled:
                if self._cancelled_now():
                    return True
                raise
            finally:
                unregister_all(removers)
        finally:
            unregister_all(removers)  # finishes what a Ctrl-C cut short
        return self.cancelled

    # --- cancelling -----------------------------------------------------------------

    def cancel(self, reason: object = None) -> bool:
        """Cancel the token and run its callbacks; later calls do nothing.

        Args:
            reason: Why the token is cancelled; kept by the first call only,
                available as `reason` and on the `Cancelled` exceptions.

        Returns:
            `True` if this call cancelled the token, `False` if it was
            cancelled already.

        Raises:
            BaseExceptionGroup: if callbacks raised; it holds their exceptions.
                The token is cancelled and every callback has run.
        """
        # Made here, without a call, so that a Ctrl-C cutting the callbacks
        # short still finds the errors of those that ran.
        errors: list[BaseException] = []
        try:
            if not self._cancel(reason, errors):
                return False
            _raise_interrupt(errors)
            if errors:
                msg = (
                    f"{len(errors)} cancel callback(s) raised; the token is "
                    "cancelled and every callback ran, handle errors inside callbacks"
                )
                raise BaseExceptionGroup(msg, errors)
        except KeyboardInterrupt as ki:
            if not any(e is ki for e in errors):  # else _raise_interrupt noted
                _note_callback_errors(ki, errors)
            raise
        return True

    def _cancel(self, reason: object, errors: list[BaseException]) -> bool:
        """Cancel; return whether this call did, adding callbacks' errors to `errors`.

        A Ctrl-C may strike at any line.  The switch is flipped in one
        statement, and whatever follows it (waking `wait()`, unlinking from
        the parent, running the callbacks) is done by `_deliver`, which a
        second `finally` runs again to finish what an interrupt cut short:
        a waiter is never left asleep on a cancelled token.
        """
        won = False
        try:
            try:
                with self._lock:
                    if not self._cancelled:
                        self._reason, self._cancelled, won = reason, True, True
            finally:
                if won:
                    self._deliver(errors)
        finally:
            if won:
                self._deliver(errors)  # a no-op unless an interrupt cut it short
        return won

    def _deliver(self, errors: list[BaseException]) -> None:
        """Do what follows cancellation; idempotent, so it may run twice."""
        self._event.set()
        with self._lock:
            parent_link, self._parent_link = self._parent_link, None
            self._parent = None
            timer_stop, self._timer_stop = self._timer_stop, None
        if timer_stop is not None:
            timer_stop.set()
        if parent_link is not None:
            parent_link()  # a cancelled child needs no link from its parent
        callbacks = self._callbacks
        while True:
            # One at a time, so that those not yet run stay in the table for
            # a second pass.  The callback is taken out with subscripts, not a
            # call: the interpreter checks for Ctrl-C after calls only, so
            # the one place an interrupt can strike while it is out of the
            # table is the lock's release, and then it goes back in.
            taken: tuple[int, Callable[[], object]] | None = None
            try:
                with self._lock:
                    if not callbacks:
                        return
                    key = next(iter(callbacks))
                    taken = key, callbacks[key]
                    del callbacks[key]
            except BaseException:
                if taken is not None:
                    with self._lock:
                        callbacks[taken[0]] = taken[1]
                raise
            try:
                taken[1]()
            except BaseException as exc:  # every callback runs; errors are kept
                errors.append(exc)

    def _expire(self) -> None:
        """Cancel because the deadline passed; report callback errors."""
        errors: list[BaseException] = []
        self._cancel(DEADLINE_REASON, errors)
        _raise_interrupt(errors)
        for exc in errors:
            threading.excepthook(
                threading.ExceptHookArgs((type(exc), exc, exc.__traceback__, None))
            )

    def add_callback(self, fn: Callable[[], object]) -> Callable[[], bool]:
        """Run `fn()` when the token is cancelled (now, if it already is).

        Args:
            fn: A callable taking no arguments.  It runs once, in the thread
                that cancels the token; its return value is ignored.

        Returns:
            A function that unregisters `fn`; it returns `True` if `fn` was
            removed before it ran, `False` if it has run or is running.

        Raises:
            BaseException: whatever `fn` raises, when the token is already
                cancelled and `fn` is therefore run at once.
        """
        removers: list[Callable[[], bool]] = []
        self._add_callback(fn, removers)
        return removers[0] if removers else _not_registered

    def _add_callback(
        self, fn: Callable[[], object], removers: list[Callable[[], bool]]
    ) -> None:
        """Register `fn`, appending its remover to `removers` first.

        The remover is in the caller's list before `fn` is in the table, so
        a Ctrl-C striking in between leaves nothing the caller cannot undo.
        On a cancelled token `fn` runs at once and nothing is appended.
        """
        if not self.cancelled:
            registered = False
            stop: threading.Event | None = None
            with self._lock:
                if not self._cancelled:
                    key = self._next_key
                    self._next_key += 1
                    removers.append(_Registration(weakref.ref(self), key))
                    self._callbacks[key] = fn
                    registered = True
                    if self._deadline is not None and self._timer_stop is None:
                        stop = self._timer_stop = threading.Event()
            if stop is not None:
                self._start_timer(stop)
            if registered:
                return
        fn()

    def _start_timer(self, stop: threading.Event) -> None:
        deadline = self._deadline
        assert deadline is not None
        timer = threading.Thread(
            target=_sleep_until_deadline,
            args=(weakref.ref(self), stop, deadline),
            name="safethreads-deadline",
            daemon=True,
        )
        timer.start()

    # --- children -------------------------------------------------------------------

    def child(self, *, timeout: float | None = None) -> CancelToken:
        """Return a new token that is cancelled when this one is.

        Cancelling the child does not cancel the parent.  The child's
        deadline is the earlier of the parent's deadline and `timeout`
        seconds from now.  The parent holds the child only weakly, and the
        link is dropped when the child is cancelled, closed or collected.

        ```python
        from safethreads import CancelToken

        parent = CancelToken()
        child = parent.child()
        child.cancel()
        assert not parent.cancelled
        other = parent.child()
        parent.cancel("shutting down")
        assert other.cancelled and other.reason == "shutting down"
        ```

        Args:
            timeout: Seconds after which the child cancels itself, if given.

        Returns:
            The child token (already cancelled if this token is).

        Raises:
            TypeError: if `timeout` is not `None` or a number.
            ValueError: if `timeout` is NaN.
        """
        check_timeout(timeout)
        child = CancelToken()
        deadline = self._deadline
        if timeout is not None:
            own = time.monotonic() + timeout
            deadline = own if deadline is None else min(deadline, own)
        child._deadline = deadline
        parent_ref = weakref.ref(self)
        with self._lock:
            while self._unlinked:
                self._callbacks.pop(self._unlinked.pop(), None)
            key = self._next_key
            self._next_key += 1
            registration = _Registration(parent_ref, key)
            if not self._cancelled:
                # The weak reference's callback unlinks a collected child.
                child_ref = weakref.ref(child, registration.unlink_collected)
                self._callbacks[key] = _ChildLink(parent_ref, child_ref)
                child._parent_link = registration
                child._parent = self
                return child
        child._cancel(self.reason, [])  # a new child has no callbacks to fail
        return child

    def close(self) -> None:
        """Detach the token from its parent; safe to call several times.

        The token stays usable and can still be cancelled directly or by its
        deadline, but the parent's cancellation no longer reaches it.  Call
        it when a child token outlives its purpose but not its parent.
        """
        with self._lock:
            link, self._parent_link = self._parent_link, None
            self._parent = None
        if link is not None:
            link()

    # --- introspection --------------------------------------------------------------

    def __repr__(self) -> str:
        """Show the state and the reason."""
        if self.cancelled:
            return f"<CancelToken cancelled reason={self.reason!r}>"
        return "<CancelToken active>"

    def _check(self) -> None:
        """Assert the invariants of the token's state."""
        with self._lock:
            if self._cancelled:
                assert not self._callbacks, "a cancelled token keeps no callbacks"
                assert self._parent_link is None, "a cancelled token has no link"
                assert self._parent is None, "a cancelled token holds no parent"
                assert self._timer_stop is None, "a cancelled token has no timer"
            else:
                assert self._reason is None, "an active token has no reason"
            assert all(k < self._next_key for k in self._callbacks)
            assert (self._parent is None) == (self._parent_link is None)


@final
class _Registration:
    """Removes one callback from a token; also a collected child's unlinker."""

    __slots__ = ("_key", "_token")

    def __init__(self, token: weakref.ref[CancelToken], key: int) -> None:
        self._token = token
        self._key = key

    def __call__(self) -> bool:
        token = self._token()
        if token is None:
            return False
        with token._lock:
            return token._callbacks.pop(self._key, None) is not None

    def unlink_collected(self, _child: object) -> None:
        """Drop the link of a collected child, never waiting for the lock.

        A collection can start inside any allocation, also one made while
        this thread holds the parent's lock (as `child()` does): waiting for
        it here would deadlock.  If it is taken, the key is left for the
        next `child()` to drop; until then the link only holds a dead weak
        reference, and calling it does nothing.

        The lock is looked at, not tried: CPython drops a Ctrl-C striking
        in a weakref callback, and one striking just after a probing
        `acquire()` returned would leave the parent's lock held for good.
        Taken after the look, the lock is at most waited for briefly: its
        new holder cannot be this thread, and token locks guard only short
        critical sections that wait for nothing.
        """
        token = self._token()
        if token is None:
            return
        lock = token._lock
        if lock.locked():
            token._unlinked.append(self._key)
            return
        with lock:
            token._callbacks.pop(self._key, None)


@final
class _ChildLink:
    """The parent's callback that cancels a child, holding both weakly."""

    __slots__ = ("_child", "_parent")

    def __init__(
        self, parent: weakref.ref[CancelToken], child: weakref.ref[CancelToken]
    ) -> None:
        self._parent = parent
        self._child = child

    def __call__(self) -> None:
        child = self._child()
        parent = self._parent()
        if child is not None:
            child.cancel(None if parent is None else parent.reason)


def _raise_interrupt(errors: list[BaseException]) -> None:
    """Raise a Ctrl-C that struck while callbacks ran, as it is, not grouped.

    The signal is not a callback's failure, and `except KeyboardInterrupt`
    must still catch it; the callbacks' own errors are listed in a note.
    """
    for exc in errors:
        if isinstance(exc, KeyboardInterrupt):
            _note_callback_errors(exc, errors)
            raise exc


def _note_callback_errors(ki: BaseException, errors: list[BaseException]) -> None:
    """Name, on a Ctrl-C that cut `cancel()` short, the callbacks' errors."""
    others = [e for e in errors if e is not ki]
    if others:
        listed = "; ".join(f"{type(e).__name__}: {e}" for e in others)
        # A note is a nicety: an interrupt that refuses notes goes on without.
        with contextlib.suppress(Exception):
            ki.add_note(f"cancel callbacks also raised: {listed}")


def _not_registered() -> bool:
    return False


def _sleep_until_deadline(
    ref: weakref.ref[CancelToken], stop: threading.Event, deadline: float
) -> None:
    """Body of a token's deadline thread: cancel the token at its deadline.

    Ends early when the token is cancelled (`stop` is set) or collected,
    noticed within `_POLL`: the token has no `__del__` to tell the thread,
    since a Ctrl-C striking in a `__del__` would be swallowed.
    """
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if stop.wait(min(remaining, _POLL)):
            return  # the token was cancelled first
        if ref() is None:
            return  # the token was collected
    token = ref()
    if token is not None:
        token._expire()


def current_token() -> CancelToken | None:
    """Return the token bound to the calling thread, or `None`."""
    return _binding.token


@contextlib.contextmanager
def bind_token(token: CancelToken | None) -> Iterator[None]:
    """Bind `token` to the calling thread for the duration of the block.

    Every blocking library wait in the block raises `Cancelled` once the
    token is cancelled.  Bindings nest: the previous token is bound again
    on exit.  `None` unbinds for the duration.
    """
    binding = _binding
    previous = binding.token
    # Bound inside the `try`, and restored twice, so that a Ctrl-C striking
    # anywhere leaves `previous` bound.
    try:
        try:
            binding.token = token
            yield
        finally:
            binding.token = previous
    finally:
        binding.token = previous
