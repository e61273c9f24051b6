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
import contextvars
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast

from ._unobserved import FailureReport
from ._waiting import acquire, check_callable, check_timeout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ["ResultThread", "spawn"]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


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

    Or subclass it and override `compute()` (not `run()`), which returns the
    thread's result:

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

    By default the target runs in a copy of the `contextvars` context of the
    thread that called `start()`, on every supported Python and on
    free-threaded builds alike; pass `copy_context=False` to run it in an empty
    context as `threading.Thread` does on GIL builds.

    Args:
        group: Reserved by `threading.Thread`; must be `None`.
        target: The callable run by the thread; its return value is the result.
        name: The thread name; by default one is made as `threading.Thread` does.
        args: Positional arguments for `target`.
        kwargs: Keyword arguments for `target`.
        daemon: Whether the thread is a daemon; by default inherited from the
            creating thread.
        copy_context: Run the target in a copy of the context of the thread
            that calls `start()`.

    Raises:
        TypeError: if `target` is given and is not callable.
    """

    # Set by run() before it releases _finished; read by waiters after it.
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
        if target is not None:
            check_callable(target, "target")
        super().__init__(group, target, name, args, kwargs, daemon=daemon)
        self._call = target
        self._call_args = tuple(args)
        self._call_kwargs = dict(kwargs) if kwargs else {}
        self._copy_context = copy_context
        self._context: contextvars.Context | None = None
        self._start_called = False
        self._has_outcome = False
        # Held until the outcome is stored; see the module docstring.
        self._finished = _thread.allocate_lock()
        self._finished.acquire()
        self._exception = None
        self._report = None
        # Guards _start_called, _has_outcome, _future and _done_hook: one
        # start() wins, exactly one of run() and as_future() completes the
        # future, and a hook is either called by run() or refused by
        # _set_done_hook().
        self._future_lock = threading.Lock()
        self._future: _ThreadFuture[T] | None = None
        self._done_hook: Callable[[ResultThread[Any]], object] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse subclasses that override `run()`, which would lose the result."""
        super().__init_subclass__(**kwargs)
        if "run" in cls.__dict__:
            msg = (
                f"{cls.__qualname__} overrides run(); a ResultThread subclass "
                "overrides compute() and returns its result from it"
            )
            raise TypeError(msg)

    def compute(self) -> T:
        """Produce the thread's result; override this in a subclass.

        The default calls the `target` given to the constructor with its
        `args` and `kwargs` and returns what it returns.

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
        # Under the lock, so that of two racing start() calls exactly one wins.
        with self._future_lock:
            already = self._start_called
            self._start_called = True
        if already:
            msg = (
                f"thread {self.name!r} was already started; a thread runs once, "
                "create a new ResultThread to run the target again"
            )
            raise RuntimeError(msg)
        if self._copy_context:
            self._context = contextvars.copy_context()
        try:
            super().start()
        except BaseException:
            # The thread never ran (e.g. "can't start new thread"): allow a retry.
            self._start_called = False
            self._context = None
            raise

    def run(self) -> None:
        """Run `compute()` and store its outcome; not to be overridden."""
        try:
            context = self._context
            value = self.compute() if context is None else context.run(self.compute)
        except BaseException as exc:  # every outcome is delivered, even SystemExit
            # Drop this frame from the traceback: it shows only plumbing.
            tb = exc.__traceback__
            if tb is not None and tb.tb_frame.f_code is _RUN_CODE:
                tb = tb.tb_next
            exc.__traceback__ = tb
            exc.add_note(f"raised in thread {self.name!r}")
            self._traceback = tb
            self._exception = exc
            self._report = FailureReport(exc, self)
        else:
            self._value = value
        finally:
            # Release references to the callable and arguments, as Thread.run
            # does, so that they are not kept alive by a finished thread.
            self._call = None
            self._call_args = ()
            self._call_kwargs = {}
            self._context = None
        with self._future_lock:
            self._has_outcome = True
            future = self._future
            hook, self._done_hook = self._done_hook, None
        self._finished.release()
        if future is not None:
            self._complete_future()
        if hook is not None:
            hook(self)

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

    def _wait(self, timeout: float | None, caller: str) -> None:
        """Wait until the outcome exists, or raise the right error."""
        check_timeout(timeout)
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
        if not acquire(finished, timeout):
            msg = (
                f"thread {self.name!r} did not finish within {timeout} seconds; "
                f"it is still running and {caller}() may be called again"
            )
            raise TimeoutError(msg)
        finished.release()

    def _observe(self) -> BaseException | None:
        report = self._report
        if report is not None:
            report.dismiss()
        return self._exception

    def result(self, timeout: float | None = None) -> T:
        """Wait for the thread to finish and return what its target returned.

        Args:
            timeout: Seconds to wait at most; `None` waits as long as it takes.
                A negative value means "do not wait", as for `Thread.join`.

        Returns:
            The value the target (or `compute()`) returned.

        Raises:
            BaseException: the exception the target raised, re-raised as the
                same object with its original traceback and a note naming the
                thread.
            TimeoutError: if the thread did not finish within `timeout`; the
                thread keeps running and `result()` may be called again.
            RuntimeError: if the thread was never started, or if called from
                inside the thread itself.
            TypeError: if `timeout` is not `None` or a number.
            ValueError: if `timeout` is NaN.
        """
        self._wait(timeout, "result")
        exc = self._observe()
        if exc is not None:
            try:
                raise exc.with_traceback(self._traceback)
            finally:
                exc = None  # break the frame -> exception reference cycle
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the thread to finish and return the exception it raised.

        Args:
            timeout: Seconds to wait at most; `None` waits as long as it takes.

        Returns:
            The exception raised by the target, or `None` if it returned.

        Raises:
            TimeoutError: if the thread did not finish within `timeout`.
            RuntimeError: if the thread was never started, or if called from
                inside the thread itself.
            TypeError: if `timeout` is not `None` or a number.
            ValueError: if `timeout` is NaN.
        """
        self._wait(timeout, "exception")
        return self._observe()

    def done(self) -> bool:
        """Return whether the outcome exists, without waiting.

        Returns:
            `True` once the target has returned or raised.
        """
        return self._has_outcome

    # --- concurrent.futures interop ---------------------------------------------

    def as_future(self) -> Future[T]:
        """Return a `concurrent.futures.Future` that completes with the outcome.

        The same future is returned on every call.  It works with
        `concurrent.futures.wait`, `as_completed` and `asyncio.wrap_future`.
        Retrieving a failure through the future counts as retrieving it from
        the thread, so it is not reported as unobserved.

        Returns:
            A future holding the thread's result or exception once it ends.
        """
        with self._future_lock:
            future = self._future
            if future is None:
                future = self._future = _ThreadFuture(self)
                future.set_running_or_notify_cancel()
                complete_now = self._has_outcome
            else:
                complete_now = False
        if complete_now:
            self._complete_future()
        return future

    def _complete_future(self) -> None:
        with self._future_lock:
            future = self._future
            # Whoever gets here first completes the future; the other returns.
            if future is None or future.done():
                return
            if self._exception is None:
                future.set_result(self._value)
            else:
                future.set_exception(self._exception)


_RUN_CODE = ResultThread.run.__code__


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
    """
    thread: ResultThread[R] = ResultThread(target=fn, args=args, kwargs=kwargs)
    thread.start()
    return thread
