"""ResultThread: a `threading.Thread` that hands its target's outcome back.

The worker stores the outcome (a value or an exception) in two slots, then
releases `_finished`, a raw lock held since the thread was created.  That
release is the hand-off: everything the worker wrote before it is visible to
every thread that acquires the lock afterwards, with or without a GIL, so the
outcome slots need no lock of their own.  Each waiter acquires the lock and
releases it again at once, passing it on to the next.

Waiting on our own lock rather than on `Thread.join` matters for Ctrl-C: on
3.11 and 3.12, a `join` interrupted by `KeyboardInterrupt` wrongly marks a
live thread as stopped (gh-90882), after which it can never be waited for.
Waits are made of short timed acquires so that the main thread also services
signals promptly on platforms where a blocked acquire is not interruptible.
"""

from __future__ import annotations

import _thread
import contextlib
import contextvars
import os
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Final, Generic, ParamSpec, TypeVar, cast

from ._errors import Cancelled
from ._unobserved import FailureReport
from ._waiting import (
    WAIT_SLICE,
    Parker,
    _binding,
    acquire,
    check_callable,
    check_cancel,
    check_timeout,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from types import TracebackType

    from ._cancel import CancelToken

__all__ = ["ResultThread", "spawn"]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


# How many fork()s this process descends from; a thread started before the
# latest one does not run here.  Only written in a fork child, which has a
# single thread then.
_forks = 0


def _count_fork() -> None:
    global _forks  # noqa: PLW0603 - a process-wide fork counter
    _forks += 1


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_count_fork)


class ResultThread(threading.Thread, Generic[T]):
    """A `threading.Thread` whose target's return value or exception comes back.

    Use it like `threading.Thread`, then call `result()` instead of `join()`:

    ```python
    from safethreads import ResultThread

    def square(x: int) -> int:
        return x * x

    t = ResultThread(target=square, args=(7,))
    t.start()
    assert t.result(timeout=5) == 49
    ```

    Or subclass it and override `compute()`, which returns the result (or
    `run()`, as with `threading.Thread`: what it returns is the result, and
    `super().run()` runs the `target`):

    ```python
    from safethreads import ResultThread

    class Fetch(ResultThread[str]):
        def __init__(self, url: str) -> None:
            super().__init__(name=f"fetch {url}")
            self.url = url

        def compute(self) -> str:
            return f"<contents of {self.url}>"

    t = Fetch("https://example.org")
    t.start()
    assert t.result(timeout=5) == "<contents of https://example.org>"
    ```

    Thread safety: `result()`, `exception()`, `done()` and `as_future()` may be
    called from any number of threads, concurrently and repeatedly; all see the
    same outcome.  Every `BaseException` raised by the target is captured,
    including `SystemExit` and `KeyboardInterrupt`, which `threading.Thread`
    would drop or print.  A failure that nobody retrieves is reported once,
    through `threading.excepthook`, when the thread object is garbage-collected.

    Cancellation: `result()` and `exception()` are cancellable waits.  If the
    thread has to be waited for and a token in force -- `cancel=`, or the
    token bound to the waiting thread (a `ThreadGroup` member's group token)
    -- is cancelled, they raise `Cancelled`; the thread itself keeps running.

    By default the target runs in a copy of the `contextvars` context of the
    thread that called `start()`, on every supported Python and on
    free-threaded builds alike; pass `copy_context=False` to run it in an empty
    context as `threading.Thread` does on GIL builds.
    """

    # Set before _finished is released; read by waiters after acquiring it.
    _value: T
    _exception: BaseException | None
    _traceback: Any
    _report: FailureReport | None

    def __init__(
        self,
        group: None = None,
        target: Callable[..., T] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
        copy_context: bool = True,
    ) -> None:
        """Create a thread that will run `target(*args, **kwargs)` once started.

        The parameters are those of `threading.Thread`, in the same order;
        pass `target` by keyword (`ResultThread(target=f)`), since the first
        positional parameter is threading's reserved `group`.

        Args:
            group: Reserved by `threading.Thread`; must be `None`.
            target: The callable run by the thread; its return value is the
                result.  Without it, the result is what an overriding
                `compute()` or `run()` returns (or `None`).
            name: The thread name; by default one is made as
                `threading.Thread` does.
            args: Positional arguments for `target`.
            kwargs: Keyword arguments for `target`.
            daemon: Whether the thread is a daemon; by default inherited from
                the creating thread.
            copy_context: Run the target in a copy of the context of the
                thread that calls `start()`.

        Raises:
            TypeError: if `target` is given and is not callable, or if
                anything but `None` is passed as `group` (such as a target
                passed positionally).
        """
        # Typed None, but untyped callers (and ResultThread(fn)) pass anything.
        given = cast("object", group)
        if given is not None:
            if callable(given):
                msg = (
                    "the first positional argument of ResultThread is threading's "
                    "reserved group; pass the target by keyword: "
                    "ResultThread(target=fn, args=(...))"
                )
            else:
                msg = f"group must be None, not {type(given).__name__}"
            raise TypeError(msg)
        if target is not None:
            check_callable(target, "target")
        super().__init__(None, target, name, args, kwargs, daemon=daemon)
        self._call = target
        self._call_args = tuple(args)
        self._call_kwargs = dict(kwargs) if kwargs else {}
        self._copy_context = copy_context
        self._context: contextvars.Context | None = None
        # The token bound while the thread runs (a ThreadGroup's); written
        # before start() only.
        self._bound_token: CancelToken | None = None
        self._start_called = False
        self._forks_at_start = 0  # the fork count when start() was called
        self._has_outcome = False
        # Held until the outcome is stored; see the module docstring.
        self._finished = _thread.allocate_lock()
        self._finished.acquire()
        # Set once _finished has been released; what done() reports.
        self._done = False
        self._exception = None
        self._report = None
        # Guards _start_called, _has_outcome, _future, _done_hook and
        # _parkers: one start() wins, exactly one of run() and as_future()
        # completes the future, a hook is either called by run() or refused
        # by _set_done_hook(), and a parked waiter is either woken by run()
        # or sees the outcome.
        self._future_lock = threading.Lock()
        self._future: _ThreadFuture[T] | None = None
        self._done_hook: Callable[[ResultThread[Any]], object] | None = None
        self._parkers: list[Parker] | None = None

    def run(self) -> T:  # type: ignore[override]  # returns the result
        """The thread's body: return `compute()`, which runs the target.

        A subclass may override `run()` as with `threading.Thread`: the
        value it returns is the thread's result and the exception it raises
        is the thread's exception.  An override may call `super().run()` to
        run the `target` given to the constructor.  (Type checkers: mypy
        compares an override with every base class, including
        `threading.Thread.run`, which returns `None`; override `compute()`
        for a result type that mypy accepts without a `type: ignore`.)

        Returns:
            What `compute()` returns.
        """
        return self.compute()

    def compute(self) -> T:
        """Produce the thread's result; the typed way to override.

        The default calls the `target` given to the constructor with its
        `args` and `kwargs` and returns what it returns (`None` without a
        target).

        Returns:
            The thread's result.
        """
        call = self._call
        if call is None:
            # A thread with neither a target nor an override returns None,
            # as threading.Thread.run() does.
            return cast("T", None)
        return call(*self._call_args, **self._call_kwargs)

    def start(self) -> None:
        """Start the thread, capturing the caller's context for the target.

        Raises:
            RuntimeError: if the thread was already started.
        """
        claimed = False
        try:
            # Under the lock, so that of two racing start() calls exactly
            # one wins; claimed in one statement, so that a Ctrl-C cannot
            # strike between claiming and knowing it.
            with self._future_lock:
                if not self._start_called:
                    self._start_called = claimed = True
            if not claimed:
                msg = (
                    f"thread {self.name!r} was already started; a thread runs "
                    "once, create a new ResultThread to run the target again"
                )
                raise RuntimeError(msg)  # noqa: TRY301 - caught only to undo a claim
            if self._copy_context:
                self._context = contextvars.copy_context()
            self._forks_at_start = _forks
            # What threading's bootstrap calls; the class's run() stays
            # reachable for overrides and super().run().  Removed when the
            # thread ends.
            self.run = self._run_and_publish  # type: ignore[method-assign,assignment]
            super().start()
        except BaseException as exc:
            # "can't start new thread", or a Ctrl-C before the thread was
            # launched: it never ran, so allow a retry.  A Ctrl-C while
            # threading waits for a launched thread to begin leaves it
            # running (it is in threading's _limbo or marked started).
            if claimed and (isinstance(exc, Exception) or not self._launched()):
                vars(self).pop("run", None)
                self._context = None
                with self._future_lock:
                    self._start_called = False
            raise

    def _launched(self) -> bool:
        """Whether threading handed this thread to the OS (or may have)."""
        return self._started.is_set() or self in threading._limbo  # type: ignore[attr-defined]

    def _run_and_publish(self) -> None:
        """Body of the thread: run `run()`, store its outcome, publish it."""
        try:
            try:
                run = type(self).run
                context = self._context
                token = self._bound_token
                if token is None:
                    value = run(self) if context is None else context.run(run, self)
                else:
                    value = self._run_bound(run, context, token)
            except BaseException as exc:  # every outcome is delivered, even SystemExit
                tb = _trim(exc.__traceback__)
                exc.__traceback__ = tb
                self._traceback = tb
                self._exception = exc
                self._report = FailureReport(exc, self)
                # A note is a nicety: an exception that refuses notes (its
                # __notes__ is not a list) is delivered without one.
                with contextlib.suppress(Exception):
                    exc.add_note(f"raised in thread {self.name!r}")
            else:
                self._value = value
            finally:
                # Release references to the callable and arguments, as
                # Thread.run does, so that a finished thread does not keep
                # them alive; drop the self -> bound method -> self cycle.
                self._call = None
                self._call_args = ()
                self._call_kwargs = {}
                self._context = None
                self._bound_token = None
                vars(self).pop("run", None)
        finally:
            self._publish()

    def _run_bound(
        self,
        run: Callable[[ResultThread[T]], T],
        context: contextvars.Context | None,
        token: CancelToken,
    ) -> T:
        """Run `run(self)` with `token` bound to this thread."""
        binding = _binding
        binding.token = token
        try:
            return run(self) if context is None else context.run(run, self)
        finally:
            binding.token = None

    def _publish(self) -> None:
        """Make the stored outcome visible and tell everyone who asked."""
        with self._future_lock:
            self._has_outcome = True
            future = self._future
            hook, self._done_hook = self._done_hook, None
            parkers, self._parkers = self._parkers, None
        # `done()` is true before any waiter wakes: without a GIL a waiter
        # woken by the release could otherwise see it still false.
        self._done = True
        self._finished.release()
        try:
            if parkers is not None:
                for parker in parkers:
                    parker.release()
            if hook is not None:
                hook(self)
        finally:
            if future is not None:
                # Runs the future's callbacks (user code), no lock held.
                self._complete_future(future)

    def _set_done_hook(self, hook: Callable[[ResultThread[Any]], object]) -> bool:
        """Have `hook(self)` called in this thread once the outcome is stored.

        Used by `ThreadGroup` to learn of a member's outcome as it happens.
        At most one hook is kept; a second call replaces the first.

        Returns:
            `True` if the hook will be called, `False` if the outcome already
            exists (the caller then handles it itself).
        """
        with self._future_lock:
            if self._has_outcome:
                return False
            self._done_hook = hook
            return True

    # --- waiting ----------------------------------------------------------------

    def _wait(
        self, timeout: float | None, caller: str, cancel: CancelToken | None
    ) -> None:
        """Wait until the outcome exists, or raise the right error."""
        check_timeout(timeout)
        check_cancel(cancel)
        if self._done:  # published: no waiting
            return
        if not self._start_called:
            msg = (
                f"thread {self.name!r} has not been started; "
                f"call start() before {caller}()"
            )
            raise RuntimeError(msg)
        finished = self._finished
        if finished.acquire(blocking=False):  # already finished: no waiting
            finished.release()
            return
        if threading.current_thread() is self:
            msg = (
                f"{caller}() called from inside thread {self.name!r} would wait "
                "for itself forever; return the value from the target instead"
            )
            raise RuntimeError(msg)
        if self._forks_at_start != _forks:
            # Started before a fork() and not done then: in this child
            # process the thread does not exist and will never publish.
            msg = (
                f"thread {self.name!r} was running when the process forked and "
                f"does not run in this process; call {caller}() in the parent"
            )
            raise RuntimeError(msg)
        if cancel is not None or _binding.token is not None:
            finished_in_time = self._wait_cancellable(timeout, cancel)
        else:
            finished_in_time = acquire(finished, timeout)
            if finished_in_time:
                finished.release()
        if not finished_in_time and not self._done:
            msg = (
                f"thread {self.name!r} did not finish within {timeout} seconds; "
                f"it is still running and {caller}() may be called again"
            )
            raise TimeoutError(msg)

    def _wait_cancellable(
        self, timeout: float | None, cancel: CancelToken | None
    ) -> bool:
        """Wait on a parker that run() or a token's cancellation releases."""
        parker = Parker()
        try:
            try:
                return self._park(parker, timeout, cancel)
            finally:
                # However the wait ended, even by Ctrl-C: a parker left
                # listed would be kept until the thread ends.
                self._unpark(parker)
        finally:
            self._unpark(parker)  # finishes what a Ctrl-C cut short

    def _park(
        self, parker: Parker, timeout: float | None, cancel: CancelToken | None
    ) -> bool:
        with self._future_lock:
            parked = not self._has_outcome
            if parked:
                if self._parkers is None:
                    self._parkers = [parker]
                else:
                    self._parkers.append(parker)
        if not parked:
            self._await_publication()
            return True
        try:
            return acquire(parker, timeout, cancel)
        except Cancelled:
            with self._future_lock:
                published = self._has_outcome
            if published:
                # The outcome was stored before the cancellation was seen:
                # it wins, as documented.
                self._await_publication()
                return True
            raise

    def _await_publication(self) -> None:
        """Wait the moment between storing the outcome and releasing it."""
        while not self._done:
            if self._finished.acquire(timeout=WAIT_SLICE):
                self._finished.release()

    def _unpark(self, parker: Parker) -> None:
        with self._future_lock:
            parkers = self._parkers
            if parkers is not None and parker in parkers:
                parkers.remove(parker)

    def _observe(self) -> BaseException | None:
        report = self._report
        if report is not None:
            report.dismiss()
        return self._exception

    def result(
        self, timeout: float | None = None, *, cancel: CancelToken | None = None
    ) -> T:
        """Wait for the thread to finish and return what its target returned.

        Args:
            timeout: Seconds to wait at most; `None` waits as long as it takes.
                A negative value means "do not wait", as for `Thread.join`.
            cancel: A token whose cancellation ends the wait with `Cancelled`,
                in addition to the token bound to the calling thread.

        Returns:
            The value `run()` (by default the target) returned.

        Raises:
            BaseException: the exception the target raised, re-raised as the
                same object with its original traceback and a note naming the
                thread.
            Cancelled: if the thread had not finished and `cancel` or the
                calling thread's bound token was cancelled; the thread keeps
                running and `result()` may be called again.
            TimeoutError: if the thread did not finish within `timeout`; the
                thread keeps running and `result()` may be called again.
            RuntimeError: if the thread was never started, if called from
                inside the thread itself, or in a `fork()` child for a
                thread that was running at the fork.
            TypeError: if `timeout` is not `None` or a number, or `cancel`
                is not `None` or a `CancelToken`.
            ValueError: if `timeout` is NaN.
        """
        try:
            self._wait(timeout, "result", cancel)
        except (KeyboardInterrupt, Cancelled) as interrupted:
            # Raised from here: the frames below are the library's plumbing.
            raise interrupted.with_traceback(None)  # noqa: B904 - the same exception
        exc = self._observe()
        if exc is not None:
            try:
                raise exc.with_traceback(self._traceback)
            finally:
                exc = None  # break the frame -> exception reference cycle
        return self._value

    def exception(
        self, timeout: float | None = None, *, cancel: CancelToken | None = None
    ) -> BaseException | None:
        """Wait for the thread to finish and return the exception it raised.

        Args:
            timeout: Seconds to wait at most; `None` waits as long as it takes.
            cancel: A token whose cancellation ends the wait with `Cancelled`,
                in addition to the token bound to the calling thread.

        Returns:
            The exception raised by the target, or `None` if it returned.

        Raises:
            Cancelled: if the thread had not finished and `cancel` or the
                calling thread's bound token was cancelled.
            TimeoutError: if the thread did not finish within `timeout`.
            RuntimeError: if the thread was never started, if called from
                inside the thread itself, or in a `fork()` child for a
                thread that was running at the fork.
            TypeError: if `timeout` is not `None` or a number, or `cancel`
                is not `None` or a `CancelToken`.
            ValueError: if `timeout` is NaN.
        """
        try:
            self._wait(timeout, "exception", cancel)
        except (KeyboardInterrupt, Cancelled) as interrupted:
            raise interrupted.with_traceback(None)  # noqa: B904 - the same exception
        return self._observe()

    def done(self) -> bool:
        """Return whether the outcome exists, without waiting.

        Once it returns `True`, `result(timeout=0)` returns (or raises the
        thread's exception) without a `TimeoutError`.

        Returns:
            `True` once the target has returned or raised.
        """
        return self._done

    # --- concurrent.futures interop ---------------------------------------------

    def as_future(self) -> Future[T]:
        """Return a `concurrent.futures.Future` that completes with the outcome.

        The same future is returned on every call, including from the
        future's own done-callbacks.  It works with `concurrent.futures.wait`,
        `as_completed` and `asyncio.wrap_future`.  Retrieving a failure
        through the future counts as retrieving it from the thread, so it is
        not reported as unobserved.

        Returns:
            A future holding the thread's result or exception once it ends.
        """
        with self._future_lock:
            future = self._future
            if future is None:
                future = self._future = _ThreadFuture(self)
                future.set_running_or_notify_cancel()
                # Created after the outcome: run() will not complete it.
                complete_now = self._has_outcome
            else:
                complete_now = False
        if complete_now:
            self._complete_future(future)
        return future

    def _complete_future(self, future: _ThreadFuture[T]) -> None:
        """Complete `future`; called once, by run() or as_future(), no lock held."""
        if self._exception is None:
            future.set_result(self._value)
        else:
            future.set_exception(self._exception)


# Frames of the thread's own plumbing, trimmed from the top of a traceback.
_PLUMBING_CODES: Final = frozenset(
    {
        ResultThread._run_and_publish.__code__,
        ResultThread._run_bound.__code__,
        ResultThread.run.__code__,
        ResultThread.compute.__code__,
    }
)


def _trim(tb: TracebackType | None) -> TracebackType | None:
    """Drop the library's leading frames from a traceback."""
    while tb is not None and tb.tb_frame.f_code in _PLUMBING_CODES:
        tb = tb.tb_next
    return tb


class _ThreadFuture(Future[T]):
    """A future that tells its thread when its failure has been seen."""

    def __init__(self, thread: ResultThread[T]) -> None:
        super().__init__()
        self._thread = thread

    def result(self, timeout: float | None = None) -> T:
        try:
            return super().result(timeout)
        finally:
            if self.done():
                self._thread._observe()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        exc = super().exception(timeout)
        self._thread._observe()
        return exc


def spawn(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> ResultThread[R]:
    """Create and start a `ResultThread` that runs `fn(*args, **kwargs)`.

    The thread's result type is inferred from `fn`, and the arguments are
    checked against its signature by type checkers.

    ```python
    from safethreads import spawn

    t = spawn(int, "42")
    assert t.result(timeout=5) == 42
    ```

    Args:
        fn: The callable to run in the new thread.
        *args: Positional arguments for `fn`.
        **kwargs: Keyword arguments for `fn`.

    Returns:
        The started thread.

    Raises:
        TypeError: if `fn` is not callable.
    """
    check_callable(fn, "fn")
    thread: ResultThread[R] = ResultThread(target=fn, args=args, kwargs=kwargs)
    thread.start()
    return thread
