"""The future handed out by `WorkerPool`: a `concurrent.futures.Future`, lighter.

A stock `Future` builds a `threading.Condition` (a Python object holding a
reentrant lock, a deque and half a dozen bound methods) the moment it is
created, and every state change goes through it.  `PoolFuture` keeps one raw
lock per future and parks a waiter on a private raw lock of its own, created
only when somebody really has to wait.  The `Condition` exists only for the
callers that need it: `concurrent.futures.wait`, `as_completed` and any other
code reaching for the private `_condition` and `_waiters` attributes, which
this class provides as lazily built properties over the same lock, so that
those functions keep their atomicity (they hold `_condition` while they look
at `_state` and install a waiter; the completing thread holds the same lock
while it changes `_state` and notifies the installed waiters).

The future is also the pool's work item: it carries the callable, its
arguments and the captured context until a worker claims it, which is the
atomic transition PENDING -> RUNNING under the future's lock.
"""

from __future__ import annotations

import _thread
import threading
import weakref
from concurrent.futures import CancelledError, Future, InvalidStateError
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    LOGGER,
    PENDING,
    RUNNING,
)
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._errors import BrokenWorkerPool
from ._unobserved import FailureReport
from ._waiting import acquire, check_timeout, new_sleeper

if TYPE_CHECKING:
    import contextvars
    from collections.abc import Callable

    from ._worker_pool import WorkerPool

__all__ = ["PoolFuture"]

R = TypeVar("R")

_allocate_lock = _thread.allocate_lock
_DONE_STATES = (FINISHED, CANCELLED_AND_NOTIFIED, CANCELLED)
_CANCELLED_STATES = (CANCELLED_AND_NOTIFIED, CANCELLED)

# Guards the lazy creation of `_cond` and `_waiter_list` on every future.  It
# is a separate lock because `_condition` may be first touched by a caller
# that already holds the future's own lock; creation is rare, so one lock
# shared by all futures costs nothing.
_LAZY_LOCK = threading.Lock()

_STATE_NAMES = {
    PENDING: "pending",
    RUNNING: "running",
    CANCELLED: "cancelled",
    CANCELLED_AND_NOTIFIED: "cancelled",
    FINISHED: "finished",
}


def _with_item(holder: Any, item: Any) -> Any:
    """Add `item` to a holder that is `None`, one item, or a list of items.

    Most futures have no waiter and no callback, and few have more than one,
    so the holder only becomes a list at the second item.
    """
    if holder is None:
        return item
    if type(holder) is list:
        holder.append(item)
        return holder
    return [holder, item]


class _ObservedCondition(threading.Condition):
    """The `Condition` of a `PoolFuture`, for `wait()` and `as_completed()`.

    Those functions acquire it to look at the future's state, and return
    every future they find done in their `done` set (or yield it).  A failed
    future they look at has therefore been seen by the caller: acquiring it
    marks the failure as observed, so it is never reported as unobserved.
    """

    def __init__(self, future: PoolFuture[Any]) -> None:
        super().__init__(future._lock)
        # `Condition.__init__` binds the lock's own `acquire` on the instance;
        # drop it so that the method below is used.
        del self.acquire
        self._future_ref = weakref.ref(future)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire the future's lock; a failure seen under it is observed."""
        got = bool(self._lock.acquire(blocking, timeout))  # type: ignore[attr-defined]
        if got:
            future = self._future_ref()
            if future is not None and future._state is FINISHED:
                report = future._report
                if report is not None:
                    report.dismiss()
        return got


class PoolFuture(Future[R]):
    """A `concurrent.futures.Future` whose common path avoids the `Condition`.

    Fully interchangeable with a stock future: every public method behaves the
    same, and `wait`, `as_completed` and `asyncio.wrap_future` work on it.
    Two differences are improvements: a future cancelled before it started
    counts as done for `wait` and `as_completed` at once (a stock future waits
    for its executor to notice), and a failure nobody retrieves is reported
    through `threading.excepthook` when the future is garbage-collected.
    """

    # `Future.__init__` is deliberately not called: it would build the
    # Condition this class exists to avoid.  Everything a stock future keeps
    # in its `__dict__` lives in these slots or is built on first use.
    __slots__ = (
        "_args",
        "_context",
        "_fn",
        "_kwargs",
        "_lock",
        "_pool",
        "_result",
        "_state",
        "_submitted_at",
    )

    # Rarely set; the class attribute is the default, so a future that never
    # needs them does not pay for storing them.  `_cond` and `_waiter_list`
    # are created together under `_LAZY_LOCK`; the others are guarded by
    # `_lock` (`_in_queue` and `_counted_here` by the pool's lock).
    _cond: threading.Condition | None = None
    _waiter_list: list[Any] | None = None
    _exception: BaseException | None = None
    _report: FailureReport | None = None
    # None, one parked waiter's lock, or a list of them.
    _sleepers: Any = None
    # None, one callback, or a list of them, in the order added.
    _callbacks: Any = None
    # Still counted as queued by a pool with `max_pending`.
    _in_queue: bool = False
    # Counted as running in the calling thread by its pool (caller_runs or
    # a waiter running it); guarded by the pool's lock.
    _counted_here: bool = False
    # cancel(): the waiters of wait()/as_completed() told of it, and whether
    # a pass of what follows the cancellation ran to its end.
    _told: dict[int, Any] | None = None
    _cancel_delivered: bool = False
    # Accepted by its pool (counted as submitted); guarded by the pool's lock.
    _placed: bool = False
    # Its owner gave up on the outcome: a failure is not worth reporting.
    _quiet: bool = False
    # set_running_or_notify_cancel() has reported the cancellation.
    _notified: bool = False
    # Logged by its pool's watchdog as running late (once); guarded by the
    # pool observer's lock.  On the future, not in a set of the watchdog's,
    # so that nothing holds a finished task.
    _reported_late: bool = False

    _state: str
    _result: Any
    _fn: Callable[..., Any] | None
    _args: tuple[Any, ...] | None
    _kwargs: dict[str, Any] | None
    _context: contextvars.Context | None
    _pool: WorkerPool | None
    # When its pool accepted it; set only by a pool that times its tasks.
    _submitted_at: float

    def __init__(
        self,
        pool: WorkerPool | None,
        fn: Callable[..., R] | None,
        args: tuple[Any, ...] | None,
        kwargs: dict[str, Any] | None,
        context: contextvars.Context | None,
    ) -> None:
        # Guards _state, _result, _exception, _sleepers, _callbacks, _report,
        # _cond's waiters; it is also the lock inside `_condition`.
        self._lock = _allocate_lock()
        self._state = PENDING
        self._result = None
        # The work item: dropped as soon as the task is claimed or cancelled.
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._context = context
        self._pool = pool

    # --- what wait() and as_completed() touch -----------------------------------

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            pool = self._pool
            if pool is not None and pool._fork_child:
                # In a forked child, `wait()` must not sleep on a task whose
                # thread did not survive the fork.
                self._fail_if_orphaned(pool)
            with _LAZY_LOCK:
                cond = self._cond
                if cond is None:
                    self._waiter_list = []
                    # The Condition is over the future's own lock, so holding
                    # it excludes every state change.
                    cond = self._cond = _ObservedCondition(self)
        return cond

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        self._condition  # noqa: B018 - builds the list together with the Condition
        waiters = self._waiter_list
        assert waiters is not None
        return waiters

    # --- state queries (never block) --------------------------------------------

    def cancelled(self) -> bool:
        """Return whether the future was cancelled."""
        return self._state in _CANCELLED_STATES

    def running(self) -> bool:
        """Return whether the task is running now."""
        return self._state is RUNNING

    def done(self) -> bool:
        """Return whether the future finished or was cancelled."""
        return self._state in _DONE_STATES

    def __repr__(self) -> str:
        state = self._state
        text = f"<{type(self).__name__} at {id(self):#x} state={_STATE_NAMES[state]}"
        if state is FINISHED:
            exc = self._exception
            if exc is not None:
                return f"{text} raised {type(exc).__name__}>"
            return f"{text} returned {type(self._result).__name__}>"
        return text + ">"

    # --- waiting ----------------------------------------------------------------

    def _wait(self, timeout: float | None) -> None:
        """Return once FINISHED; raise CancelledError or TimeoutError otherwise."""
        check_timeout(timeout)
        pool = self._pool
        compensated = False
        if pool is not None:
            if pool._fork_child:
                self._fail_if_orphaned(pool)
            elif self._state is PENDING:
                if timeout is None:
                    # Work-helping: a worker of any pool runs the task itself
                    # rather than block on a queue somebody must drain.
                    pool._help(self)
                elif timeout > 0:
                    # Running it could outlast the timeout: the pool may
                    # start one more thread for the length of the wait.
                    compensated = pool._compensate_begin()
        try:
            self._park(timeout)
        finally:
            if compensated:
                assert pool is not None
                pool._compensate_end()

    def _park(self, timeout: float | None) -> None:
        """Wait, without helping, until done or `timeout` passes."""
        lock = self._lock
        with lock:
            state = self._state
            if state is FINISHED:
                return
            if state in _CANCELLED_STATES:
                raise CancelledError
            if timeout is not None and timeout <= 0:
                raise self._timeout_error(timeout)
            sleeper = new_sleeper()  # a Parker if a token is bound: see _waiting
            self._sleepers = _with_item(self._sleepers, sleeper)
        woken = False
        try:
            woken = acquire(sleeper, timeout)
        finally:
            if not woken:
                self._forget(sleeper)
        with lock:
            state = self._state
            if state is FINISHED:
                return
            if state in _CANCELLED_STATES:
                raise CancelledError
        raise self._timeout_error(timeout)

    def _timeout_error(self, timeout: float | None) -> TimeoutError:
        fn = self._fn
        if fn is None:
            what = "the task"
        else:
            name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
            what = f"task {name if isinstance(name, str) else repr(fn)}"
        return TimeoutError(
            f"{what} did not finish within {timeout} seconds; it is still "
            f"{_STATE_NAMES[self._state]}, wait again or cancel it"
        )

    def _fail_if_orphaned(self, pool: WorkerPool) -> None:
        """In a forked child, fail a future whose runner did not survive."""
        if any(w.forked is self for w in pool._workers):
            return  # the task the forking worker still runs in this process
        reason = pool._broken_reason or "the pool was inherited through os.fork()"
        self._fail_pending(BrokenWorkerPool(reason))

    def _forget(self, sleeper: Any) -> None:
        """Remove a waiter that stopped waiting (timeout or interrupt)."""
        with self._lock:
            sleepers = self._sleepers
            if sleepers is sleeper:
                self._sleepers = None
            elif type(sleepers) is list and sleeper in sleepers:
                sleepers.remove(sleeper)

    def result(self, timeout: float | None = None) -> R:
        """Return the task's result, waiting for it if needed.

        Called from a worker of the same pool on a task still queued, the
        worker runs that task itself instead of waiting (work-helping), so
        nested waits cannot deadlock.

        Args:
            timeout: Seconds to wait at most; `None` waits as long as it takes.

        Returns:
            What the task returned.

        Raises:
            CancelledError: if the future was cancelled.
            TimeoutError: if the future did not finish within `timeout`.
            BaseException: the exception the task raised.
        """
        if self._state is not FINISHED:
            self._wait(timeout)
        report = self._report
        if report is not None:
            report.dismiss()
        exc = self._exception
        if exc is not None:
            try:
                raise exc
            finally:
                # Break the frame -> exception -> frame reference cycle.
                exc = None
                self = None  # type: ignore[assignment]  # noqa: PLW0642
        return cast("R", self._result)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Return the exception the task raised, or `None`, waiting if needed.

        Args:
            timeout: Seconds to wait at most; `None` waits as long as it takes.

        Returns:
            The task's exception, or `None` if it returned.

        Raises:
            CancelledError: if the future was cancelled.
            TimeoutError: if the future did not finish within `timeout`.
        """
        if self._state is not FINISHED:
            self._wait(timeout)
        report = self._report
        if report is not None:
            report.dismiss()
        return self._exception

    # --- callbacks ---------------------------------------------------------------

    def add_done_callback(self, fn: Callable[[Future[R]], object]) -> None:
        """Call `fn(future)` when the future is done (now, if it already is).

        Callbacks run in the thread that completes or cancels the future, in
        the order they were added; an exception they raise is logged, as
        `concurrent.futures` does, and does not affect the future.
        """
        with self._lock:
            if self._state not in _DONE_STATES:
                self._callbacks = _with_item(self._callbacks, fn)
                return
        self._run_callback(fn)

    def _run_callback(self, fn: Callable[[Future[R]], object]) -> None:
        try:
            fn(self)
        except Exception:
            LOGGER.exception("exception calling callback for %r", self)

    def _after_done(self, sleepers: Any, callbacks: Any) -> None:
        """Wake the parked waiters, then run the callbacks (no lock held).

        A callback that raises a `BaseException` that is not an `Exception`
        (`KeyboardInterrupt`, `SystemExit`) does not stop the others: it is
        raised once they all ran, in the thread that completed the future
        (a pool worker logs it and goes on).
        """
        if sleepers is not None:
            if type(sleepers) is list:
                for sleeper in sleepers:
                    sleeper.release()
            else:
                sleepers.release()
        if callbacks is not None:
            if type(callbacks) is not list:
                self._run_callback(callbacks)
                return
            escaped: BaseException | None = None
            for fn in callbacks:
                try:
                    self._run_callback(fn)
                except BaseException as exc:
                    if escaped is None:
                        escaped = exc
            if escaped is not None:
                try:
                    raise escaped
                finally:
                    escaped = None

    # --- completion --------------------------------------------------------------

    def _claim(self) -> bool:
        """Move PENDING -> RUNNING atomically; return whether this caller won."""
        with self._lock:
            if self._state is not PENDING:
                return False
            self._state = RUNNING
            return True

    def _complete(self, value: Any, exc: BaseException | None) -> None:
        """Store the outcome of a task this pool ran; a no-op if already done."""
        with self._lock:
            if self._state is not RUNNING:
                # Failed by the pool meanwhile (fork, broken pool): keep that.
                return
            self._fn = self._pool = None
            if exc is None:
                self._result = value
                self._state = FINISHED
                sleepers = self._sleepers
                callbacks = self._callbacks
                if sleepers is None and callbacks is None and self._cond is None:
                    return
            sleepers, callbacks = self._finish_locked(value, exc)
        self._after_done(sleepers, callbacks)

    def _finish_locked(self, value: Any, exc: BaseException | None) -> tuple[Any, Any]:
        # With the lock held: publish the outcome, detach waiters and callbacks.
        if exc is None:
            self._result = value
        else:
            self._exception = exc
            if not self._quiet:
                self._report = FailureReport(exc, threading.current_thread())
        self._state = FINISHED
        sleepers, callbacks = self._detach_locked()
        if self._cond is not None:
            self._notify_waiters(ok=exc is None)
        return sleepers, callbacks

    def _notify_waiters(self, ok: bool) -> None:
        # Called with the lock held, once `_condition` exists.
        waiters = self._waiters
        if not ok and waiters:
            # A `wait()` or `as_completed()` call is handed the failure.
            report = self._report
            if report is not None:
                report.dismiss()
        for waiter in waiters:
            if ok:
                waiter.add_result(self)
            else:
                waiter.add_exception(self)
        cond = self._cond
        assert cond is not None
        cond.notify_all()

    def _fail_pending(self, exc: BaseException) -> bool:
        """Fail a future that will never run (broken pool); return whether done."""
        with self._lock:
            if self._state not in (PENDING, RUNNING):
                return False
            self._exception = exc
            self._state = FINISHED
            self._drop_work()
            sleepers, callbacks = self._detach_locked()
            if self._cond is not None:
                self._notify_waiters(ok=False)
        self._after_done(sleepers, callbacks)
        return True

    def _silence(self) -> None:
        """Never report this future's failure as unobserved (owner gave up)."""
        with self._lock:
            self._quiet = True
            report = self._report
        if report is not None:
            report.dismiss()

    def _detach_locked(self) -> tuple[Any, Any]:
        """With the lock held: take the parked waiters and callbacks to run.

        Only an attribute that was set is reset, so that a future which never
        had any keeps using the class-level default.
        """
        sleepers = self._sleepers
        callbacks = self._callbacks
        if sleepers is not None:
            self._sleepers = None
        if callbacks is not None:
            self._callbacks = None
        return sleepers, callbacks

    def _drop_work(self) -> None:
        self._fn = self._args = self._kwargs = self._context = self._pool = None

    def _reset_after_fork(self) -> None:
        """In a forked child: a fresh lock; the parent's waiters are gone."""
        self._lock = _allocate_lock()
        self._cond = None
        self._waiter_list = None
        self._sleepers = None

    def cancel(self) -> bool:
        """Cancel the task if it has not started.

        A cancelled future is done at once, also for `wait` and
        `as_completed`.

        Returns:
            `True` if the future is cancelled now (or already was), `False`
            if the task is running or finished.
        """
        state = self._state
        if state is not PENDING:
            # Final: a future never goes back to PENDING.
            return state in _CANCELLED_STATES
        # Set until the future leaves PENDING.  Its pool's lock is taken
        # first (the order `_run_here` takes both in), so that the state
        # change and the pool's count of it are one step: no `stats()` and
        # no `shutdown(wait=True)` sees the future cancelled but uncounted.
        pool = self._pool
        outer = _allocate_lock() if pool is None else pool._lock
        lock = self._lock
        won = False
        try:
            while True:
                with outer:
                    # Not waited for with the pool's lock held: its holder
                    # may be waiting for the pool's lock itself (a garbage
                    # collection inside its critical section runs a
                    # finalizer that cancels another of the pool's tasks).
                    # Looked at, not tried: a Ctrl-C just after a probing
                    # acquire() returned would leave it held for good.
                    if not lock.locked():
                        with lock:
                            state = self._state
                            if state in _CANCELLED_STATES:
                                return True
                            if state is not PENDING:
                                return False
                            # Straight to the notified state: the pool skips
                            # cancelled items without calling
                            # set_running_or_notify_cancel().  From here to
                            # `won`, plain loads and stores only: a Ctrl-C
                            # (raised after calls) cannot split the change
                            # from what must follow.
                            self._state = CANCELLED_AND_NOTIFIED
                            self._fn = self._args = self._kwargs = None
                            self._context = self._pool = None
                            won = True
                            if pool is not None:
                                pool._cancelled_one_locked(self)
                            break
                with lock:
                    pass  # its holder is done: look again, from the start
        finally:
            if won:
                # What follows is idempotent and run twice, so that a Ctrl-C
                # cutting the first pass short loses no count, waiter or
                # callback (the second pass is a no-op otherwise).
                try:
                    self._deliver_cancel(pool)
                finally:
                    self._deliver_cancel(pool)
        return True

    def _deliver_cancel(self, pool: Any) -> None:  # noqa: C901, PLR0912 - one pass an interrupt can cut and the next resumes
        """Finish the pool's count, wake the waiters, run the callbacks.

        The pool counts the cancellation in `cancel()`'s critical section;
        the call here finishes a count that a Ctrl-C cut short.  Each waiter
        is woken and each callback taken out under the lock by plain loads
        and stores, one at a time, so that an interrupt leaves the rest in
        place for the next pass; a callback whose taking is cut short at the
        lock's release goes back in.
        """
        if self._cancel_delivered:
            return  # the first pass ran to its end
        if pool is not None:
            pool._cancelled_one(self)
        self._notify_cancelled()
        self._wake_parked()
        escaped: BaseException | None = None
        while True:
            taken = None
            try:
                with self._lock:
                    callbacks = self._callbacks
                    if callbacks is None:
                        break
                    if type(callbacks) is list:
                        taken = callbacks[0]
                        del callbacks[0]
                        if not callbacks:
                            self._callbacks = None
                    else:
                        taken = callbacks
                        self._callbacks = None
            except BaseException:
                if taken is not None:
                    with self._lock:
                        self._put_back_callback(taken)
                raise
            try:
                taken(self)  # directly: no frame of ours to interrupt first
            except Exception:
                LOGGER.exception("exception calling callback for %r", self)
            except BaseException as exc:
                if escaped is None:
                    escaped = exc
        self._cancel_delivered = True
        if escaped is not None:
            try:
                raise escaped
            finally:
                escaped = None

    def _notify_cancelled(self) -> None:
        """Hand the cancellation to `wait()` / `as_completed()` waiters.

        Idempotent: a waiter already told is skipped, so a pass cut short by
        Ctrl-C is finished by the next one.
        """
        waiters = self._waiter_list
        if waiters is None:
            return
        with self._lock:
            told = self._told
            if told is None:
                told = self._told = {}
            for waiter in waiters:
                key = id(waiter)
                if key not in told:
                    # Recorded, then told, with no call in between for a
                    # Ctrl-C to follow: told twice, as_completed() would
                    # yield the future twice (and fail).
                    told[key] = waiter
                    waiter.add_cancelled(self)
            cond = self._cond
            if cond is not None:
                cond.notify_all()

    def _wake_parked(self) -> None:
        """Wake the parked waiters, each under the lock as it is taken out.

        A waiter whose wake-up an interrupt may have cut short (a `Parker`
        runs Python code) goes back in for the next pass; waking it twice
        does no harm.
        """
        while True:
            sleeper = None
            try:
                with self._lock:
                    sleepers = self._sleepers
                    if sleepers is None:
                        return
                    if type(sleepers) is list:
                        sleeper = sleepers[-1]
                        del sleepers[-1]
                        if not sleepers:
                            self._sleepers = None
                    else:
                        sleeper = sleepers
                        self._sleepers = None
                    try:  # noqa: SIM105 - suppress() would add a frame to interrupt
                        sleeper.release()
                    except RuntimeError:
                        pass  # released already, by an earlier pass
                    sleeper = None
            except BaseException:
                if sleeper is not None:
                    with self._lock:
                        self._put_back_sleeper(sleeper)
                raise

    def _put_back_sleeper(self, sleeper: Any) -> None:
        """With the lock held: return a sleeper taken out to be woken."""
        sleepers = self._sleepers
        if sleepers is None:
            self._sleepers = sleeper
        elif type(sleepers) is list:
            sleepers.append(sleeper)
        else:
            self._sleepers = [sleepers, sleeper]

    def _put_back_callback(self, fn: Any) -> None:
        """With the lock held: return a callback taken out, first in line."""
        callbacks = self._callbacks
        if callbacks is None:
            self._callbacks = fn
        elif type(callbacks) is list:
            callbacks.insert(0, fn)
        else:
            self._callbacks = [fn, callbacks]

    # --- the executor-side API of concurrent.futures.Future ------------------------

    def set_running_or_notify_cancel(self) -> bool:
        """Mark the future running, or report that it was cancelled.

        For executor implementations; the pool itself does not need it.

        Returns:
            `False` if the future was cancelled, `True` otherwise.

        Raises:
            RuntimeError: if the future is already running or finished.
        """
        with self._lock:
            state = self._state
            if state in _CANCELLED_STATES and not self._notified:
                # Once only, as for a stock future: the second call raises.
                self._notified = True
                return False
            if state is PENDING:
                self._state = RUNNING
                return True
        msg = "Future in unexpected state"
        raise RuntimeError(msg)

    def set_result(self, result: R) -> None:
        """Set the result, as an executor does.

        Raises:
            InvalidStateError: if the future is already done.
        """
        self._set(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        """Set the exception, as an executor does.

        Raises:
            InvalidStateError: if the future is already done.
        """
        self._set(None, exception)

    def _set(self, value: Any, exc: BaseException | None) -> None:
        with self._lock:
            state = self._state
            if state in _DONE_STATES:
                msg = f"{state}: {self!r}"
                raise InvalidStateError(msg)
            self._drop_work()
            sleepers, callbacks = self._finish_locked(value, exc)
        self._after_done(sleepers, callbacks)
