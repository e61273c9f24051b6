"""WorkerPool: a reusable pool of worker threads that is a real `Executor`.

Design
======

Where the time goes.  A thread pool's per-task cost is almost entirely the
future: `concurrent.futures.Future` builds a `threading.Condition` per task,
and every state change and every wait goes through it.  The pool hands out
`PoolFuture` objects instead (see `_future.py`): one raw lock each, a waiter
parks on a raw lock of its own made only when it really blocks, and the
`Condition` that `wait()`/`as_completed()` need is built lazily over the same
lock.  The future is also the work item (it holds the callable, its
arguments and the captured context), so a task costs one future, one lock,
the argument tuple and, by default, one `contextvars.Context`.

The queue.  Futures travel through a `queue.SimpleQueue`, whose `put` and
`get` are single C calls: a worker takes its next task with `get_nowait()`
without touching the pool's lock, which is what lets one submitting thread
and several workers share the GIL (or run side by side without it) with
little contention.  (An earlier design popped a `deque` under the pool lock
and handed tasks directly to parked workers; measured, it was about half as
fast, because every pop contended with `submit` for the same lock.)

Every other piece of state (the worker count, the idle count, the pending
count, the shutdown and broken flags) lives under one raw lock, `_lock`.
`submit` takes it once and also puts the future while holding it, so a
future can never land behind the stop signals that `shutdown` queues (one
`None` per worker, also under the lock).  Under the lock, `submit` decides:
if a worker is idle and not already promised a task, it promises it this one
(`_reserved += 1`) and no thread is started; otherwise, below
`max_workers`, it starts a thread whose first task is this future; otherwise
the future waits in the queue, subject to `max_pending`.  A worker that
finds the queue empty counts itself idle under the lock and blocks in
`get()`; when it wakes it uncounts itself and consumes one promise.  Idle
workers are counted exactly; the promises are exact too, except that a busy
worker finishing its task may take a promised future first, leaving the
idle worker counted as promised until the next task wakes it: then a
thread may be started although a worker is idle, never more than
`max_workers` in all.  (The standard library's idle semaphore had a
counting bug in that spot, gh-88354; here every count changes under the
lock.)

Claiming.  Whoever runs a task first moves its future PENDING -> RUNNING
under the future's lock; a worker that pops a cancelled or already-claimed
future skips it.  That one atomic claim makes cancellation and work-helping
simple: when a worker of this pool calls `result()` or `exception()` on a
future of this pool that is still PENDING, it claims and runs it inline
instead of blocking, so a task waiting on a subtask can never deadlock the
pool, even with one worker.

Backpressure.  `max_pending` bounds the futures that wait for a busy
worker.  The count (`_queued`, only kept when there is a bound) is changed
under the pool lock by whoever takes a future out of the "queued" state: the
worker that dequeues it, `cancel()`, or a helping worker; the future's
`_in_queue` flag (also under the pool lock) makes sure exactly one of them
does, so a cancelled task frees its place at once.  Futures promised to an
idle worker or given to a new thread are not counted, which also makes
`max_pending=0` a hand-off.  Submitters blocked on a full pool wait on a
`Condition` over the pool lock, notified (only when somebody is blocked)
whenever room may have appeared: a future was dequeued or cancelled, a
worker became idle or exited, or the pool shut down or broke.  A worker
that would block on its own full pool runs the task inline instead.

Shutdown, Ctrl-C and exit.  `shutdown()` flips `_shutdown` and queues one
stop signal per worker, under the lock; workers drain the futures ahead of
the signals, then exit.  `cancel_futures=True` first empties the queue and
cancels what it held.  Workers are daemon threads; the pool registers
with `threading._register_atexit` (the hook the standard executors use, run
before non-daemon threads are joined) a function that lets every live pool
finish its queued work (it calls `shutdown(wait=True)`), so a program that never calls
`shutdown()` still completes its work and exits cleanly.  Daemon threads let
a pool whose waiting was interrupted by a second Ctrl-C be abandoned at
exit instead of holding the process.  All waits (joins, a future's
`result()`, a `submit` blocked on a full queue) are loops of timed waits so
that signals are serviced on every platform.

Fork.  `os.register_at_fork` marks every pool inherited by a child process
as broken: its locks are replaced, its queued and running futures fail with
`BrokenWorkerPool`, and `submit` raises it.  No thread of the parent exists
in the child, so this is the only answer that cannot hang.

Free-threading.  Nothing relies on the GIL: every check-then-act happens
under the pool lock or a future's lock, and counters shared between threads
are only changed under a lock (per-worker counters are written by their own
worker only).  Reads without a lock are limited to a future's `_state`,
written last, under the future's lock, when the outcome is published (a
reader that sees a terminal state then reads the outcome stored before it),
and to statistics documented as snapshots.
"""

from __future__ import annotations

import _queue as queue  # the C module: `queue` also imports heapq
import _thread
import collections
import contextvars
import itertools
import os
import threading
import time
import weakref
from concurrent.futures import Executor, Future
from concurrent.futures._base import PENDING, RUNNING
from typing import TYPE_CHECKING, Any, Final, Literal, ParamSpec, TypeVar, final

from ._errors import BrokenWorkerPool, PoolFull
from ._future import PoolFuture
from ._waiting import check_callable, check_timeout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import TracebackType
    from typing import Self

    from ._stats import WorkerPoolStats

__all__ = ["OnFull", "WorkerPool"]

R = TypeVar("R")
T = TypeVar("T")
P = ParamSpec("P")

OnFull = Literal["block", "raise", "caller_runs"]
"""What `submit` does when `max_pending` tasks are already queued.

`"block"` waits for room, `"raise"` raises `PoolFull`, and `"caller_runs"`
runs the task in the submitting thread.  Give it to `WorkerPool(on_full=...)`.
"""
_ON_FULL: Final[tuple[str, ...]] = ("block", "raise", "caller_runs")

_allocate_lock = _thread.allocate_lock
_copy_context = contextvars.copy_context
_PENDING: Final = PENDING
_RUNNING: Final = RUNNING

# How long one timed wait lasts in loops that must stay responsive to signals.
_POLL_SECONDS: Final = 0.25

# Which pool, if any, the current thread works for (work-helping, nested
# submits).  Set once per worker thread.
_local = threading.local()

# Every pool with live workers, for the exit hook and the fork hook.
_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()
# Guards _pools (WeakSet is not safe to mutate and iterate concurrently).
_pools_lock = threading.Lock()
_pool_counter = itertools.count(1)


class _Worker:
    """One worker thread's bookkeeping."""

    __slots__ = ("completed", "current", "failed", "thread")

    def __init__(self) -> None:
        # Written by the worker thread only; read for statistics.
        self.current: PoolFuture[Any] | None = None
        self.completed = 0
        self.failed = 0
        self.thread: threading.Thread | None = None


def _default_max_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


@final
class WorkerPool(Executor):
    """A pool of reusable worker threads: a faster `ThreadPoolExecutor`.

    It is a `concurrent.futures.Executor` and can replace a
    `ThreadPoolExecutor` anywhere; what it adds:

    - backpressure: `max_pending` bounds the queued tasks, and `on_full`
      chooses what a full pool does (`"block"`, `"raise"` or `"caller_runs"`);
      `try_submit` never blocks;
    - `map(..., buffersize=N)` with Python 3.14's lazy, bounded semantics on
      every supported version, and `imap_unordered`;
    - nested waits do not deadlock: a worker waiting on a queued task of its
      own pool runs it itself;
    - each task runs in a copy of the submitter's `contextvars` context;
    - a failed task whose future nobody looks at is reported when the future
      is garbage-collected;
    - Ctrl-C in a `with` block cancels the queued tasks and waits for the
      running ones; a second Ctrl-C stops the wait;
    - `stats()`; a pool inherited through `os.fork()` fails predictably.

    ```python
    from safethreads import WorkerPool

    with WorkerPool(max_workers=4, max_pending=100) as pool:
        future = pool.submit(pow, 2, 10)
        assert future.result(timeout=5) == 1024
        assert list(pool.map(abs, [-1, -2, 3], buffersize=2)) == [1, 2, 3]
    ```

    Thread safety: every method may be called from any thread, including the
    pool's own workers, concurrently.

    Args:
        max_workers: The most worker threads; by default
            `min(32, os.cpu_count() + 4)`, as for `ThreadPoolExecutor`.
        max_pending: The most tasks queued and not started; `None` for no
            bound.  `0` means a task is accepted only by an idle worker or a
            new thread (a hand-off, like Java's `SynchronousQueue`).
        on_full: What `submit` does when `max_pending` tasks are queued:
            `"block"` waits for room, `"raise"` raises `PoolFull`,
            `"caller_runs"` runs the task in the submitting thread.
        thread_name_prefix: Worker threads are named `"{prefix}_{i}"`; by
            default `"WorkerPool-{n}"`.
        initializer: Called with `initargs` at the start of every worker
            thread; if it raises, the pool is broken.
        initargs: Arguments for `initializer`.
        copy_context: Run each task in a copy of the `contextvars` context of
            the thread that submitted it.

    Raises:
        ValueError: if `max_workers` is not positive, `max_pending` is
            negative, or `on_full` is not one of the three policies.
        TypeError: if an argument has the wrong type.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        max_pending: int | None = None,
        on_full: OnFull = "block",
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        copy_context: bool = True,
    ) -> None:
        if max_workers is None:
            max_workers = _default_max_workers()
        _check_int("max_workers", max_workers)
        if max_workers <= 0:
            msg = f"max_workers must be greater than 0, got {max_workers}"
            raise ValueError(msg)
        if max_pending is not None:
            _check_int("max_pending", max_pending)
            if max_pending < 0:
                msg = f"max_pending must be None or >= 0, got {max_pending}"
                raise ValueError(msg)
        if on_full not in _ON_FULL:
            choices = ", ".join(map(repr, _ON_FULL))
            msg = f"on_full must be one of {choices}, got {on_full!r}"
            raise ValueError(msg)
        prefix: object = thread_name_prefix
        if not isinstance(prefix, str):
            msg = f"thread_name_prefix must be a str, got {type(prefix).__name__}"
            raise TypeError(msg)
        init: object = initializer
        if init is not None and not callable(init):
            msg = "initializer must be callable or None"
            raise TypeError(msg)
        self._max_workers: Final = max_workers
        self._max_pending: Final = max_pending
        self._on_full: Final = on_full
        self._prefix: Final = thread_name_prefix or f"WorkerPool-{next(_pool_counter)}"
        self._initializer: Final = initializer
        self._initargs: Final = tuple(initargs)
        self._copy_context: Final = copy_context

        # The work queue: futures, then one None per worker at shutdown.
        # Workers take from it without the pool lock; submitters put into
        # it while holding the lock, so nothing lands after the sentinels.
        self._queue: queue.SimpleQueue[PoolFuture[Any] | None] = queue.SimpleQueue()
        # Guards everything below, and each queued future's `_in_queue`.
        self._lock = _allocate_lock()
        # Submitters blocked on a full queue wait here (over `_lock`).
        self._not_full = threading.Condition(self._lock)
        self._queued = 0  # with max_pending: futures queued with _in_queue set
        self._idle = 0  # workers blocked on the empty queue
        self._reserved = 0  # idle workers already promised a queued future
        self._sentinels = 0  # stop signals queued and not yet taken
        self._workers: list[_Worker] = []
        # Every worker thread started and not yet seen dead by a join.
        self._threads: list[threading.Thread] = []
        self._blocked = 0  # submitters waiting on _not_full
        self._thread_count = 0  # workers started and not yet exited
        self._started = 0  # for thread names
        self._shutdown = False
        self._abandoned = False  # a second Ctrl-C: do not wait at exit
        self._broken: str | None = None
        self._broken_cause: BaseException | None = None
        # Tasks run outside worker loops (caller_runs, helping), and the
        # counts of workers that exited.
        self._extra_running = 0
        self._extra_completed = 0
        self._extra_failed = 0
        self._cancelled = 0

    # --- submitting ---------------------------------------------------------------

    def submit(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]:
        """Schedule `fn(*args, **kwargs)` and return its future.

        Args:
            fn: The callable to run in a worker.
            *args: Positional arguments for `fn`.
            **kwargs: Keyword arguments for `fn`.

        Returns:
            A `concurrent.futures.Future` for the call.

        Raises:
            RuntimeError: if the pool has been shut down (also when it is
                shut down while `submit` waits for room).
            BrokenWorkerPool: if the pool is broken (a worker initializer
                raised, or the pool was inherited through `os.fork()`).
            PoolFull: if the queue is full and `on_full="raise"`.
            TypeError: if `fn` is not callable.
        """
        given: object = fn  # typed callable, but checked at runtime
        if not callable(given):
            check_callable(given, "fn")
        future: PoolFuture[R] = PoolFuture(
            self,
            fn,
            args,
            kwargs or None,
            _copy_context() if self._copy_context else None,
        )
        self._place(future, self._on_full)
        return future

    def try_submit(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R] | None:
        """Schedule `fn(*args, **kwargs)` if there is room now; never block.

        Like Java's `offer`: a full queue is an expected outcome, so it is a
        return value rather than an exception, whatever `on_full` says.

        Args:
            fn: The callable to run in a worker.
            *args: Positional arguments for `fn`.
            **kwargs: Keyword arguments for `fn`.

        Returns:
            The future, or `None` if `max_pending` tasks are already queued
            (the task is then not scheduled at all).

        Raises:
            RuntimeError: if the pool has been shut down.
            BrokenWorkerPool: if the pool is broken.
            TypeError: if `fn` is not callable.
        """
        given: object = fn  # typed callable, but checked at runtime
        if not callable(given):
            check_callable(given, "fn")
        future: PoolFuture[R] = PoolFuture(
            self,
            fn,
            args,
            kwargs or None,
            _copy_context() if self._copy_context else None,
        )
        if self._place(future, None):
            return future
        return None

    def _submit_args(self, fn: Callable[..., R], args: tuple[Any, ...]) -> Future[R]:
        """`submit(fn, *args)` without repacking the arguments (for map)."""
        future: PoolFuture[R] = PoolFuture(
            self, fn, args, None, _copy_context() if self._copy_context else None
        )
        self._place(future, self._on_full)
        return future

    def _closed_error(self) -> BaseException:
        # With the lock held.
        if self._broken is not None:
            exc = BrokenWorkerPool(self._broken)
            exc.__cause__ = self._broken_cause
            return exc
        return RuntimeError("cannot schedule new futures after shutdown")

    def _place(self, future: PoolFuture[Any], policy: str | None) -> bool:  # noqa: C901 - one critical section, on purpose
        """Queue `future` or start a worker for it; apply `policy` when full."""
        start = run_here = False
        with self._lock:
            if self._shutdown or self._broken is not None:
                raise self._closed_error()
            if self._idle > self._reserved:
                # An idle worker will take it: no new thread, not "pending".
                self._reserved += 1
            elif self._thread_count < self._max_workers:
                self._thread_count += 1
                start = True
            elif self._max_pending is not None:
                if self._queued < self._max_pending:
                    future._in_queue = True
                    self._queued += 1
                elif policy is None:
                    return False
                elif policy == "block" and not self._is_own_worker():
                    start = self._wait_for_room(future)
                elif policy == "raise":
                    msg = (
                        f"the pool's queue is full ({self._max_pending} tasks "
                        "pending); retry later, or choose on_full='block' or "
                        "'caller_runs'"
                    )
                    raise PoolFull(msg)
                else:
                    # caller_runs, or "block" from one of the pool's own
                    # workers, which would otherwise risk every worker
                    # waiting for room that only a worker can make.
                    run_here = True
            if not (start or run_here):
                self._queue.put(future)
                return True
        if run_here:
            self._run_here(future)
        else:
            self._start_worker(future)
        return True

    def _wait_for_room(self, future: PoolFuture[Any]) -> bool:
        """Wait (lock held) until `future` can be placed; True: start a thread."""
        assert self._max_pending is not None
        self._blocked += 1
        try:
            while True:
                # Timed, so that a waiting main thread services Ctrl-C; the
                # loop re-checks the state after every wake-up anyway.
                self._not_full.wait(_POLL_SECONDS)
                if self._shutdown or self._broken is not None:
                    raise self._closed_error()  # noqa: TRY301 - under the lock
                if self._idle > self._reserved:
                    self._reserved += 1
                    return False
                if self._thread_count < self._max_workers:
                    self._thread_count += 1
                    return True
                if self._queued < self._max_pending:
                    future._in_queue = True
                    self._queued += 1
                    return False
        except BaseException:
            # Pass on a wake-up this submitter may have consumed.
            if self._blocked > 1:
                self._not_full.notify()
            raise
        finally:
            self._blocked -= 1

    def _start_worker(self, first: PoolFuture[Any]) -> None:
        """Start a worker thread whose first task is `first` (counted already)."""
        worker = _Worker()
        with self._lock:
            self._started += 1
            name = f"{self._prefix}_{self._started - 1}"
            thread = threading.Thread(
                target=self._work, args=(worker, first), name=name, daemon=True
            )
            worker.thread = thread
            self._workers.append(worker)
            self._threads.append(thread)
        with _pools_lock:
            _pools.add(self)
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._thread_count -= 1
                self._workers.remove(worker)
                self._threads.remove(thread)
                # A stop signal queued for this thread by a concurrent
                # shutdown stays in the queue, harmless, but is not owed.
                self._sentinels = min(self._sentinels, self._thread_count)
                if self._blocked:
                    self._not_full.notify()
            first.cancel()
            raise

    def _is_own_worker(self) -> bool:
        return getattr(_local, "pool", None) is self

    # --- running ------------------------------------------------------------------

    def _work(  # noqa: C901, PLR0912, PLR0915 - the hot loop is inlined on purpose
        self, worker: _Worker, first: PoolFuture[Any] | None
    ) -> None:
        """The worker thread's loop."""
        _local.pool = self
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except BaseException as exc:
                self._break(
                    "a worker initializer raised; the pool is broken, "
                    "create a new pool with a working initializer",
                    exc,
                    first,
                )
                self._worker_exit(worker, stopped=False)
                return
        lock = self._lock
        get_nowait = self._queue.get_nowait
        bounded = self._max_pending is not None
        future = first
        while True:
            if future is not None:
                # Claim PENDING -> RUNNING; cancelled or helped futures are skipped.
                with future._lock:
                    claimed = future._state is _PENDING
                    if claimed:
                        future._state = _RUNNING
                if claimed:
                    worker.current = future
                    fn = future._fn
                    args = future._args
                    kwargs = future._kwargs
                    context = future._context
                    future._fn = future._args = future._kwargs = future._context = None
                    try:
                        if context is not None:
                            if kwargs is None:
                                value = context.run(fn, *args)  # type: ignore[arg-type,misc]
                            else:
                                value = context.run(fn, *args, **kwargs)  # type: ignore[arg-type,misc]
                        elif kwargs is None:
                            value = fn(*args)  # type: ignore[misc]
                        else:
                            value = fn(*args, **kwargs)  # type: ignore[misc]
                    except BaseException as exc:
                        _trim(exc)
                        future._complete(None, exc)
                        worker.failed += 1
                    else:
                        future._complete(value, None)
                        worker.completed += 1
                    worker.current = None
                    del fn, args, kwargs, context
                    value = None
            try:
                future = get_nowait()
            except queue.Empty:
                future = self._wait_for_work()
            if future is None:  # a stop signal
                break
            if bounded and future._in_queue:
                with lock:
                    if future._in_queue:
                        future._in_queue = False
                        self._queued -= 1
                        if self._blocked:
                            self._not_full.notify()
        self._worker_exit(worker, stopped=True)

    def _wait_for_work(self) -> PoolFuture[Any] | None:
        """Block on the empty queue, counted as idle."""
        with self._lock:
            self._idle += 1
            if self._blocked:
                self._not_full.notify()
        try:
            return self._queue.get()
        finally:
            with self._lock:
                self._idle -= 1
                if self._reserved:
                    self._reserved -= 1

    def _worker_exit(self, worker: _Worker, *, stopped: bool) -> None:
        with self._lock:
            self._thread_count -= 1
            if stopped:
                self._sentinels -= 1
            if worker in self._workers:
                self._workers.remove(worker)
            self._extra_completed += worker.completed
            self._extra_failed += worker.failed
            worker.completed = worker.failed = 0
            if self._blocked:
                self._not_full.notify_all()

    def _run_here(self, future: PoolFuture[Any]) -> None:
        """Claim and run `future` in the calling thread, if still pending."""
        if not future._claim():
            return
        fn = future._fn
        args = future._args or ()
        kwargs = future._kwargs or {}
        context = future._context
        future._drop_work()
        assert fn is not None
        with self._lock:
            self._extra_running += 1
        ok = False
        try:
            if context is not None:
                value = context.run(fn, *args, **kwargs)
            else:
                value = fn(*args, **kwargs)
        except BaseException as exc:
            _trim(exc)
            future._complete(None, exc)
        else:
            ok = True
            future._complete(value, None)
        finally:
            with self._lock:
                self._extra_running -= 1
                if ok:
                    self._extra_completed += 1
                else:
                    self._extra_failed += 1

    def _help(self, future: PoolFuture[Any]) -> None:
        """Run a still-queued future of this pool in the waiting worker."""
        if not self._is_own_worker():
            return
        with self._lock:
            if future._in_queue:
                future._in_queue = False
                self._queued -= 1
                if self._blocked:
                    self._not_full.notify()
        self._run_here(future)

    def _cancelled_one(self, future: PoolFuture[Any]) -> None:
        """Account for a future cancelled before it started."""
        with self._lock:
            self._cancelled += 1
            if future._in_queue:
                future._in_queue = False
                self._queued -= 1
                if self._blocked:
                    self._not_full.notify()

    def _break(
        self, reason: str, cause: BaseException | None, first: PoolFuture[Any] | None
    ) -> None:
        """Mark the pool broken and fail every future that will never run."""
        with self._lock:
            if self._broken is None:
                self._broken = reason
                self._broken_cause = cause
            drained = self._drain_locked()
            self._not_full.notify_all()
        if first is not None:
            drained.insert(0, first)
        for f in drained:
            exc = BrokenWorkerPool(reason)
            exc.__cause__ = cause
            f._fail_pending(exc)

    def _drain_locked(self) -> list[PoolFuture[Any]]:
        """Empty the queue and queue fresh stop signals (lock held)."""
        drained = []
        get_nowait = self._queue.get_nowait
        while True:
            try:
                f = get_nowait()
            except queue.Empty:
                break
            if f is not None:
                f._in_queue = False
                drained.append(f)
        self._queued = 0
        self._sentinels = 0
        self._stop_workers_locked()
        return drained

    def _stop_workers_locked(self) -> None:
        # One stop signal per worker that has none coming yet.
        put = self._queue.put
        while self._sentinels < self._thread_count:
            put(None)
            self._sentinels += 1

    # --- map -------------------------------------------------------------------

    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[R]:
        """Return an iterator of `fn(*args)` over `zip(*iterables)`, in order.

        Python 3.14's semantics, on every supported version.  Without
        `buffersize`, every input is submitted before this returns (the
        input must be finite).  With `buffersize=N`, the first N inputs are
        submitted at once, and one more each time a result is taken, so at
        most N tasks are in flight and endless inputs work.  (3.14 submits
        the next input before waiting for the oldest result, briefly holding
        N + 1; this pool submits it right after, so the bound is exact; the
        inputs consumed by the time each result is yielded are the same.)

        If the consumer stops early (closes or drops the iterator), a task
        fails, or the deadline passes, every task not yet started is
        cancelled.

        Args:
            fn: Called with one item of each iterable.
            *iterables: The inputs, zipped.
            timeout: Seconds from this call until the last result must be
                available; one deadline for the whole iteration.
            chunksize: Accepted for compatibility and ignored by thread
                pools, as in `ThreadPoolExecutor`; must be >= 1.
            buffersize: The most tasks in flight, or `None` for eager
                submission.

        Returns:
            An iterator of the results in input order.

        Raises:
            ValueError: if `buffersize` or `chunksize` is less than 1, or
                `timeout` is NaN.
            TypeError: if `fn` is not callable, `buffersize` or `chunksize`
                is not an int, or `timeout` is not a number.
            TimeoutError: from the iterator, if the deadline passes.
            BaseException: from the iterator, the exception a task raised.
        """
        check_callable(fn, "fn")
        check_timeout(timeout)
        _check_chunksize(chunksize)
        _check_buffersize(buffersize)
        deadline = None if timeout is None else time.monotonic() + timeout
        args_iter = zip(*iterables, strict=False)
        first = (
            args_iter if buffersize is None else itertools.islice(args_iter, buffersize)
        )
        futures: collections.deque[Future[R]] = collections.deque()
        submit = self._submit_args
        try:
            for args in first:
                futures.append(submit(fn, args))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return self._map_results(
            futures,
            None if buffersize is None else args_iter,
            fn,
            deadline,
            weakref.ref(self),
        )

    @staticmethod
    def _map_results(
        futures: collections.deque[Future[R]],
        args_iter: Iterator[tuple[Any, ...]] | None,
        fn: Callable[..., R],
        deadline: float | None,
        pool_ref: weakref.ref[WorkerPool],
    ) -> Iterator[R]:
        try:
            while futures:
                future = futures.popleft()
                try:
                    if deadline is None:
                        value = future.result()
                    else:
                        value = future.result(deadline - time.monotonic())
                except BaseException:
                    # A late task is not left to run (one that failed is done).
                    future.cancel()
                    raise
                del future
                if args_iter is not None:
                    pool = pool_ref()
                    args = next(args_iter, None)
                    if pool is not None and args is not None:
                        futures.append(pool._submit_args(fn, args))
                    del pool
                yield value
                del value
        finally:
            _abandon(futures)

    def imap_unordered(
        self,
        fn: Callable[[T], R],
        iterable: Iterable[T],
        *,
        timeout: float | None = None,
        buffersize: int | None = None,
    ) -> Iterator[R]:
        """Return an iterator of `fn(item)` for each item, in completion order.

        Submission works as for `map`: eager without `buffersize`, otherwise
        at most `buffersize` tasks in flight, the next input submitted each
        time a result is yielded.  Early stop, a failure or the deadline
        cancel every task not yet started.

        Args:
            fn: Called with each item.
            iterable: The inputs.
            timeout: Seconds from this call until the last result must be
                available.
            buffersize: The most tasks in flight, or `None` for eager
                submission.

        Returns:
            An iterator of results, each as soon as its task finishes.

        Raises:
            ValueError: if `buffersize` is less than 1, or `timeout` is NaN.
            TypeError: if `fn` is not callable, `buffersize` is not an int,
                or `timeout` is not a number.
            TimeoutError: from the iterator, if the deadline passes.
            BaseException: from the iterator, the exception a task raised.
        """
        check_callable(fn, "fn")
        check_timeout(timeout)
        _check_buffersize(buffersize)
        deadline = None if timeout is None else time.monotonic() + timeout
        done: queue.SimpleQueue[Future[R]] = queue.SimpleQueue()
        inputs = iter(iterable)
        in_flight: set[Future[R]] = set()
        first = inputs if buffersize is None else itertools.islice(inputs, buffersize)
        try:
            for item in first:
                future = self.submit(fn, item)
                in_flight.add(future)
                future.add_done_callback(done.put)
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
        return self._unordered_results(
            done,
            in_flight,
            None if buffersize is None else inputs,
            fn,
            deadline,
            weakref.ref(self),
        )

    @staticmethod
    def _unordered_results(  # noqa: PLR0917 - private plumbing of imap_unordered
        done: queue.SimpleQueue[Future[R]],
        in_flight: set[Future[R]],
        inputs: Iterator[T] | None,
        fn: Callable[[T], R],
        deadline: float | None,
        pool_ref: weakref.ref[WorkerPool],
    ) -> Iterator[R]:
        sentinel = object()
        try:
            while in_flight:
                if deadline is None:
                    future = done.get()
                else:
                    try:
                        future = done.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        msg = f"{len(in_flight)} tasks unfinished at the deadline"
                        raise TimeoutError(msg) from None
                in_flight.discard(future)
                value = future.result()
                del future
                if inputs is not None:
                    item = next(inputs, sentinel)
                    pool = pool_ref()
                    if item is not sentinel and pool is not None:
                        nxt = pool.submit(fn, item)  # type: ignore[arg-type]
                        in_flight.add(nxt)
                        nxt.add_done_callback(done.put)
                        del nxt
                    del pool, item
                yield value
                del value
        finally:
            _abandon(in_flight)

    # --- shutdown --------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; optionally cancel the queued ones and wait.

        Idempotent and safe to call from several threads, and from a task
        (a worker never waits for itself).

        Args:
            wait: Return only after every worker thread has exited, i.e. all
                queued (not cancelled) and running tasks are done.
            cancel_futures: Cancel every task not yet started.
        """
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                drained = self._drain_locked()
            else:
                drained = []
                self._stop_workers_locked()
            self._not_full.notify_all()
        for f in drained:
            f.cancel()
        if wait:
            self._join_workers()

    def _join_workers(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                threads = [t for t in self._threads if t is not me]
            if not threads:
                return
            for thread in threads:
                while thread.is_alive():
                    thread.join(_POLL_SECONDS)
            with self._lock:
                self._threads = [t for t in self._threads if t not in threads]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        """Shut down; on Ctrl-C cancel queued tasks and wait for running ones.

        A second Ctrl-C while waiting stops the wait (the running tasks are
        abandoned and do not delay interpreter exit); the first
        `KeyboardInterrupt` propagates.  A Ctrl-C during a normal exit's wait
        cancels the queued tasks and propagates at once.
        """
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            try:
                self.shutdown(wait=False, cancel_futures=True)
                self._join_workers()
            except KeyboardInterrupt:
                # The second Ctrl-C: stop waiting, and do not wait at exit.
                self._abandoned = True
                self.shutdown(wait=False, cancel_futures=True)
            return None
        try:
            self.shutdown(wait=True)
        except KeyboardInterrupt:
            self.shutdown(wait=False, cancel_futures=True)
            self._abandoned = True
            raise
        return None

    # --- introspection ---------------------------------------------------------

    def stats(self) -> WorkerPoolStats:
        """Return a snapshot of the pool's workers and task counts.

        Taken under the pool lock; the per-worker counters are written by the
        workers without it, so on a busy pool the snapshot may be a task or
        two behind.  Exact once the pool is quiet.

        Returns:
            A frozen `WorkerPoolStats`.
        """
        from ._stats import WorkerPoolStats  # noqa: PLC0415 - slow to import

        with self._lock:
            workers = self._workers
            return WorkerPoolStats(
                workers=self._thread_count,
                idle=self._idle,
                queued=self._queued
                if self._max_pending is not None
                else max(0, self._queue.qsize() - self._sentinels),
                running=sum(w.current is not None for w in workers)
                + self._extra_running,
                completed=sum(w.completed for w in workers) + self._extra_completed,
                failed=sum(w.failed for w in workers) + self._extra_failed,
                cancelled=self._cancelled,
            )

    def _check(self) -> None:
        """Assert the pool's invariants (for tests)."""
        with self._lock:
            assert 0 <= self._idle <= self._thread_count <= self._max_workers
            assert 0 <= self._reserved <= self._idle
            assert self._queued >= 0
            assert self._blocked >= 0
            assert 0 <= self._sentinels <= self._thread_count
            if self._max_pending is not None:
                assert self._queued <= self._max_pending
            else:
                assert self._queued == 0
            if not self._shutdown and self._broken is None:
                assert self._sentinels == 0
            assert len(self._workers) == self._thread_count

    def __repr__(self) -> str:
        s = self.stats()
        state = (
            "broken"
            if self._broken is not None
            else "shut down"
            if self._shutdown
            else "running"
        )
        return (
            f"<WorkerPool {self._prefix!r} {state} workers={s.workers} "
            f"idle={s.idle} queued={s.queued}>"
        )

    # --- exit and fork ---------------------------------------------------------

    def _drain_at_exit(self) -> None:
        """Finish the queued work and join the workers (interpreter exit)."""
        if not self._abandoned:
            self.shutdown(wait=True)

    def _after_fork_in_child(self) -> None:
        """Make an inherited pool fail predictably: nothing of it runs here."""
        self._lock = _allocate_lock()
        self._not_full = threading.Condition(self._lock)
        old, self._queue = self._queue, queue.SimpleQueue()
        futures: list[PoolFuture[Any]] = []
        while True:
            try:
                f = old.get_nowait()
            except queue.Empty:
                break
            if f is not None:
                futures.append(f)
        me = threading.current_thread()
        futures.extend(
            w.current
            for w in self._workers
            if w.current is not None and w.thread is not me
        )
        self._queued = self._idle = self._reserved = self._sentinels = 0
        self._blocked = 0
        self._workers = [w for w in self._workers if w.thread is me]
        self._threads = [t for t in self._threads if t is me]
        self._thread_count = len(self._workers)
        reason = (
            "this WorkerPool was inherited through os.fork(); its threads do not "
            "exist in the child process, create a new pool there"
        )
        self._broken = reason
        self._broken_cause = None
        for f in futures:
            f._lock = _allocate_lock()
            f._cond = None
            f._waiter_list = None
            f._in_queue = False
            f._fail_pending(BrokenWorkerPool(reason))


def _abandon(futures: Iterable[Future[Any]]) -> None:
    """Cancel what has not started; nobody will look at the rest's outcome."""
    for future in futures:
        if not future.cancel() and isinstance(future, PoolFuture):
            future._silence()


def _trim(exc: BaseException) -> None:
    """Drop the pool's own frame from the top of a task's traceback."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code in _PLUMBING:
        exc.__traceback__ = tb.tb_next


_PLUMBING = frozenset({WorkerPool._work.__code__, WorkerPool._run_here.__code__})


def _check_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        msg = f"{name} must be an int, got {type(value).__name__}"
        raise TypeError(msg)


def _check_buffersize(buffersize: int | None) -> None:
    if buffersize is None:
        return
    _check_int("buffersize", buffersize)
    if buffersize < 1:
        msg = f"buffersize must be None or >= 1, got {buffersize}"
        raise ValueError(msg)


def _check_chunksize(chunksize: int) -> None:
    _check_int("chunksize", chunksize)
    if chunksize < 1:
        msg = f"chunksize must be >= 1, got {chunksize}"
        raise ValueError(msg)


def _at_exit() -> None:
    with _pools_lock:
        pools = list(_pools)
    try:
        for pool in pools:
            pool._drain_at_exit()
    except KeyboardInterrupt:
        # Ctrl-C while the interpreter waits for queued work: stop waiting;
        # the daemon workers end with the process.
        for pool in pools:
            pool._abandoned = True


def _after_fork_in_child() -> None:
    global _pools_lock  # noqa: PLW0603 - the parent's lock may be held by a thread gone here
    _pools_lock = threading.Lock()
    for pool in list(_pools):
        pool._after_fork_in_child()


_register_atexit: Callable[[Callable[[], object]], None] | None = getattr(
    threading, "_register_atexit", None
)
if _register_atexit is not None:
    _register_atexit(_at_exit)
else:  # pragma: no cover - every supported CPython has the hook
    import atexit

    atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
