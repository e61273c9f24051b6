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

Two ways to a worker.  A busy pool queues futures in a `queue.SimpleQueue`,
whose `put` and `get_nowait` are single C calls: a worker that finishes a
task takes the next one without touching the pool lock.  A worker that finds
the queue empty takes the pool lock, looks again (submitters put while
holding it, so an empty queue under the lock is really empty), and then
pushes itself on the idle stack and parks on a raw lock of its own.
`submit`, under the pool lock, pops an idle worker, stores the future in the
worker's hand-off slot and releases its lock: the task goes to exactly that
worker, so no other worker can take it and no promise can go stale (the
earlier design counted "promised" idle workers that a busy worker could rob).
Otherwise, below `max_workers`, `submit` starts a thread whose first task is
the future; otherwise the future is queued, subject to `max_pending`.

Every piece of pool state (the live workers, the idle stack, the pending
count, the counters, the shutdown and broken flags) lives under one raw lock,
`_lock`.  A worker is one `_Worker` record in `_workers`; the record is the
only count of threads, so the count and the set of threads can never
disagree.  A thread is started under the lock, after its record is in the
list; if starting fails or is interrupted (Ctrl-C inside `Thread.start`),
the record is marked abandoned and removed in the same critical section, and
a thread that did start sees the mark under the lock and leaves without
running anything.

Claiming.  Whoever runs a task first moves its future PENDING -> RUNNING
under the future's lock; a worker that pops a cancelled or already-claimed
future skips it.  That one atomic claim makes cancellation and work-helping
simple: when a worker of any `WorkerPool` calls `result()` or `exception()`
without a timeout on a future of any `WorkerPool` that is still PENDING, it
claims and runs it inline instead of blocking, so tasks waiting on each
other's subtasks, across pools too, cannot deadlock.  A call with a timeout
never helps: running the task could take longer than the caller allowed.
Instead, for as long as such a timed wait lasts, the task's pool may run
one thread beyond `max_workers` (`_compensating`), which leaves when it
finds the queue empty and the wait over.

Backpressure.  `max_pending` bounds the futures that wait in the queue.  The
count (`_queued`, only kept when there is a bound) is changed under the pool
lock by whoever takes a future out of the "queued" state: the worker that
dequeues it, `cancel()`, or a helping worker; the future's `_in_queue` flag
(also under the pool lock) makes sure exactly one of them does.  Futures
handed to an idle worker or to a new thread are never queued, which also
makes `max_pending=0` an exact hand-off.  A submitter blocked on a full pool
parks on a raw lock of its own (through `_waiting.acquire`, in slices), in a
list that whoever makes room (a dequeue, a cancel, a parked or exiting
worker, shutdown) pops and releases.  A worker that would block on its own
full pool runs the task inline instead.

Shutdown and exit.  `shutdown()` sets `_shutdown` and hands a stop (`None`)
to every idle worker, under the lock; busy workers drain the queue and,
finding it empty under the lock with `_shutdown` set, leave.  Waiting for
them is a wait on a latch (a raw lock released when the last worker record
is removed), through `_waiting.acquire`, never `Thread.join`, which on
3.11/3.12 corrupts a thread's state when Ctrl-C interrupts it (gh-90882).
Every pool registers at construction; the exit hook (run by `threading`
before it joins non-daemon threads, like the standard executors') marks the
interpreter as exiting, then shuts down every live pool and waits for it.
A pool created or submitted to after that point refuses the task with
`RuntimeError`, as `ThreadPoolExecutor` does: a task is run or refused, never
accepted and dropped.

Dropped pools.  Workers never hold their pool while parked: they keep only
a weak reference, whose callback, when the pool is collected, hands a stop
to every idle worker.  A busy worker holds the pool until it goes idle, so a
pool with work left lives until the work is done.

Fork.  `os.register_at_fork` marks every pool inherited by a child process
as broken: its locks are replaced, every future it can see (queued, in a
hand-off slot, running in a dead thread) fails with `BrokenWorkerPool`, and
`submit` raises it; a future it cannot see (taken off the queue an instant
before the fork) fails when the child waits for it.  A worker that forked
finishes its task in the child and then ends the child process as a main
thread would (exit handlers, flushed streams, the task's `SystemExit` code).

Free-threading.  Nothing relies on the GIL: every check-then-act happens
under the pool lock or a future's lock.  The only values written without the
pool lock are a worker's progress record, one tuple replaced whole, so a
snapshot reads each worker's counts consistently; `stats()` derives `queued`
from the others, so its counts always add up to `submitted`.
"""

from __future__ import annotations

import _queue as queue  # the C module: `queue` also imports heapq
import _thread
import atexit
import contextlib
import contextvars
import functools
import itertools
import logging
import os
import sys
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures._base import FINISHED, PENDING, RUNNING
from typing import TYPE_CHECKING, Any, Final, Literal, ParamSpec, TypeVar, final

from ._errors import BrokenWorkerPool, PoolFull
from ._fanout import executor_imap_unordered, executor_map
from ._future import PoolFuture
from ._observe import (
    _CALL_CODE,
    RunningTask,
    TaskInfo,
    _Observed,
    _Observer,
    running_in_workers,
    start_watchdog,
)
from ._waiting import acquire, check_callable, check_timeout, wait_thread_end

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator
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
_monotonic = time.monotonic
_copy_context = contextvars.copy_context
_PENDING: Final = PENDING
_RUNNING: Final = RUNNING
_FINISHED: Final = FINISHED
_LOGGER: Final = logging.getLogger("concurrent.futures")

# How long one timed wait lasts in loops that must stay responsive to signals.
_POLL_SECONDS: Final = 0.25


@final
class _Held:
    """A block that releases a lock taken before it (by a probing acquire)."""

    __slots__ = ("_release",)

    def __init__(self, lock: _thread.LockType) -> None:
        self._release = lock.release

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc_info: object) -> None:
        self._release()


# Per thread: `pool_ref`, a weak reference to the pool the thread works for
# (set once per worker thread; work-helping and nested submits read it).
_local = threading.local()

# Every pool not yet collected, for the exit hook and the fork hook.
_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()
# Guards _pools (a WeakSet is not safe to mutate and iterate concurrently)
# and _exiting.
_pools_lock = threading.Lock()
# Set once by the exit hook: pools created from then on refuse every task.
_exiting = False
_pool_counter = itertools.count(1)

_EXIT_MSG: Final = "cannot schedule new futures after interpreter shutdown"


class _Worker:
    """One worker thread's bookkeeping."""

    __slots__ = ("abandoned", "forked", "handoff", "progress", "sleeper", "thread")

    def __init__(self, first: PoolFuture[Any] | None) -> None:
        # The next task, put here by `submit` (or a stop, None) before it
        # releases `sleeper`; the first task is put here before the start.
        self.handoff: PoolFuture[Any] | None = first
        # Held while the worker does not sleep; the worker parks on it.
        self.sleeper = _allocate_lock()
        self.sleeper.acquire()
        # (completed, failed, running future or None, its start time in an
        # observed pool or 0.0): written by the worker only, replaced whole
        # so that a reader sees one consistent record.
        self.progress: tuple[int, int, PoolFuture[Any] | None, float] = (
            0,
            0,
            None,
            0.0,
        )
        self.thread: threading.Thread | None = None
        # Set under the pool lock: the start failed, the thread must not run.
        self.abandoned = False
        # In a child process, on the worker that called os.fork(): the
        # future it was running (or True).
        self.forked: PoolFuture[Any] | bool = False

    def take(self) -> PoolFuture[Any] | None:
        """Return and clear the hand-off slot (the worker itself calls it)."""
        future = self.handoff
        self.handoff = None
        return future


def _default_max_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


def _wake_idle(box: list[_thread.LockType], idle: list[_Worker], _ref: object) -> None:
    """Weak-reference callback: the pool was collected; stop its idle workers.

    `box` holds the pool's lock (replaced in a child process after a fork).
    """
    with box[0]:
        while idle:
            worker = idle.pop()
            worker.handoff = None
            worker.sleeper.release()


@final
class WorkerPool(ThreadPoolExecutor):
    """A pool of reusable worker threads: a faster `ThreadPoolExecutor`.

    It is a `concurrent.futures.ThreadPoolExecutor` (a subclass that shares
    none of its machinery) and can replace one anywhere, including
    `asyncio`'s `loop.set_default_executor()`; what it adds:

    - backpressure: `max_pending` bounds the queued tasks, and `on_full`
      chooses what a full pool does (`"block"`, `"raise"` or `"caller_runs"`);
      `try_submit` never blocks;
    - `map(..., buffersize=N)` with Python 3.14's lazy, bounded semantics on
      every supported version, and `imap_unordered`;
    - nested waits do not deadlock: a worker of any `WorkerPool` that waits
      without a timeout on a queued task of any `WorkerPool` runs it itself;
    - each task runs in a copy of the submitter's `contextvars` context;
    - a failed task whose future nobody looks at is reported when the future
      is garbage-collected;
    - Ctrl-C in a `with` block cancels the queued tasks and waits for the
      running ones; a second Ctrl-C stops the wait;
    - `stats()`; a pool inherited through `os.fork()` fails predictably;
      a pool dropped without `shutdown()` lets its idle workers exit.

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
        metrics: Time every task: `stats()` then reports queue-wait and
            run-time percentiles over the last 1024 tasks, and `running()`
            how long each task has run.  Off by default; it costs three
            clock reads per task and takes no lock.
        before_task: Called with a `TaskInfo` in the thread that runs each
            task, just before it runs (inside the task's context).
        after_task: Called with the `TaskInfo` and the task's exception (or
            `None`) just after each task, before its future is done.  A hook
            that raises is logged (logger `"safethreads"`) and ignored: the
            task's outcome stays its own (a Ctrl-C in the main thread, which
            runs a task itself with `"caller_runs"` or while waiting for it,
            propagates).  Neither hook is called for a task cancelled before
            it started.
        watchdog: Log (logger `"safethreads"`, level WARNING, with the
            task's stack) each task that has been running for this many
            seconds, once per task; the check runs in a daemon thread that
            does not keep the pool alive and leaves with it.

    Raises:
        ValueError: if `max_workers` is not positive, `max_pending` is
            negative, `on_full` is not one of the three policies, or
            `watchdog` is not positive.
        TypeError: if an argument has the wrong type.
    """

    # `ThreadPoolExecutor.__init__` is deliberately not called: none of its
    # machinery (work queue, thread set, exit registration) is used.

    def __init__(  # noqa: C901, PLR0915 - validation, then one attribute per piece of state
        self,
        max_workers: int | None = None,
        *,
        max_pending: int | None = None,
        on_full: OnFull = "block",
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        copy_context: bool = True,
        metrics: bool = False,
        before_task: Callable[[TaskInfo], object] | None = None,
        after_task: Callable[[TaskInfo, BaseException | None], object] | None = None,
        watchdog: float | None = None,
    ) -> None:
        _check_observing(before_task, after_task, watchdog)
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
        self._max_workers = max_workers
        self._max_pending: Final = max_pending
        self._on_full: Final = on_full
        self._prefix: Final = thread_name_prefix or f"WorkerPool-{next(_pool_counter)}"
        self._init = initializer
        self._init_args = tuple(initargs)
        self._copy_context: Final = copy_context

        # The work queue: futures only.  Workers take from it without the
        # pool lock; submitters put into it while holding the lock, so a
        # worker that finds it empty under the lock knows it is empty.
        self._queue: queue.SimpleQueue[PoolFuture[Any]] = queue.SimpleQueue()
        # Guards everything below, each queued future's `_in_queue`, and
        # each worker's `handoff`, `abandoned` and `forked`.
        self._lock = _allocate_lock()
        self._queued = 0  # with max_pending: futures queued with _in_queue set
        self._idle_workers: list[_Worker] = []  # parked workers, a stack
        self._workers: list[_Worker] = []  # every worker thread not yet exited
        # shutdown(wait=True) callers: (workers allowed to remain, inline
        # tasks allowed to remain, latch); the caller's own are allowed.
        self._exit_waiters: list[tuple[int, int, _thread.LockType]] = []
        # Threads of exited workers that may still be running their last
        # instructions: shutdown(wait=True) waits them out too.
        self._ending: list[threading.Thread] = []
        # Submitters blocked on a full pool, each parked on its own lock.
        self._blocked: list[_thread.LockType] = []
        # Workers (of any pool) blocked in a timed wait on a queued future of
        # this pool: each may add one thread above max_workers.
        self._compensating = 0
        self._started = 0  # for thread names
        self._shutdown = False
        self._exit_refused = False  # shut down by the interpreter's exit hook
        self._abandoned = False  # a second Ctrl-C: do not wait at exit
        self._broken_reason: str | None = None
        self._broken_cause: BaseException | None = None
        self._fork_child = False  # inherited through os.fork()
        # Task counts not kept by live workers: tasks run outside worker
        # loops (caller_runs, helping), those of workers that exited, and
        # those failed by the pool itself.
        self._submitted = 0
        self._extra_running = 0
        self._extra_completed = 0
        self._extra_failed = 0
        self._cancelled = 0
        # Observability (see _observe.py), all under _lock: refused submits,
        # tasks failed by the pool before they started, high-water marks.
        self._rejected = 0
        self._failed_unstarted = 0
        self._peak_workers = 0
        self._peak_queued = 0
        self._observer: _Observer | None = None
        if metrics or before_task or after_task or watchdog is not None:
            self._observer = _Observer(
                metrics=bool(metrics),
                before=before_task,
                after=after_task,
            )
        # Workers hold only this; when the pool is collected, its callback
        # stops the idle workers.
        self._box = [self._lock]
        self._ref = weakref.ref(
            self, functools.partial(_wake_idle, self._box, self._idle_workers)
        )
        with _pools_lock:
            _pools.add(self)
            if _exiting:
                self._shutdown = self._exit_refused = True
        if watchdog is not None and self._observer is not None:
            start_watchdog(self, self._observer, watchdog)

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
                shut down while `submit` waits for room), or the interpreter
                is exiting.
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

    def _submit_owned(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        own: Callable[[Future[R]], object],
    ) -> Future[R]:
        """`submit(fn, *args)` for map: `own(future)` before the pool takes it.

        The caller holds the future before the pool may accept it, so a
        Ctrl-C striking after acceptance cannot leave an accepted task that
        the caller does not know of (map abandons what it holds).
        """
        future: PoolFuture[R] = PoolFuture(
            self, fn, args, None, _copy_context() if self._copy_context else None
        )
        own(future)
        self._place(future, self._on_full)
        return future

    def _closed_error(self) -> BaseException:
        # With the lock held.
        if self._broken_reason is not None:
            exc = BrokenWorkerPool(self._broken_reason)
            exc.__cause__ = self._broken_cause
            return exc
        if self._exit_refused:
            return RuntimeError(_EXIT_MSG)
        return RuntimeError("cannot schedule new futures after shutdown")

    def _place(self, future: PoolFuture[Any], policy: str | None) -> bool:  # noqa: C901, PLR0912, PLR0915 - one critical section, on purpose
        """Hand `future` to a worker or queue it; apply `policy` when full.

        Every state change below is one step that a Ctrl-C (which arrives
        only after a call returns) cannot split: the idle worker is taken
        off the stack by a statement followed only by plain stores and its
        wake-up call.  A submitter blocked on a full pool parks on a lock
        of its own, outside the pool lock, through `_waiting.acquire`.
        """
        if self._observer is not None:
            future._submitted_at = _monotonic()
        sleeper: _thread.LockType | None = None
        while True:
            run_here = False
            try:
                with self._lock:
                    woken = sleeper is not None
                    if woken and sleeper in self._blocked:
                        self._blocked.remove(sleeper)  # timed out, not woken
                        woken = False
                    sleeper = None
                    if self._shutdown or self._broken_reason is not None:
                        self._rejected += 1
                        raise self._closed_error()  # noqa: TRY301 - decided under the lock
                    if future._state is not _PENDING:
                        # Cancelled by its owner (a stream closed from another
                        # thread) before the pool took it: accepted and
                        # cancelled at once, so the counts still add up.
                        self._submitted += 1
                        self._cancelled += 1
                        if woken:
                            self._room_one_locked()  # the room it leaves unused
                        return True
                    idle = self._idle_workers
                    if idle:
                        worker = idle[-1]
                        worker.handoff = future
                        self._submitted += 1
                        future._placed = True
                        del idle[-1]
                        worker.sleeper.release()
                        return True
                    if len(self._workers) < self._max_workers + self._compensating:
                        self._start_worker_locked(future)
                        return True
                    if self._max_pending is not None:
                        if self._queued < self._max_pending:
                            future._in_queue = True
                            self._queued += 1
                        elif policy is None:
                            self._rejected += 1
                            return False
                        elif policy == "block" and not self._is_own_worker():
                            sleeper = _allocate_lock()
                            sleeper.acquire()
                            self._blocked.append(sleeper)
                        elif policy == "raise":
                            self._rejected += 1
                            msg = (
                                f"the pool's queue is full ({self._max_pending} tasks "
                                "pending); retry later, or choose on_full='block' or "
                                "'caller_runs'"
                            )
                            raise PoolFull(msg)  # noqa: TRY301 - decided under the lock
                        else:
                            # caller_runs, or "block" from one of the pool's own
                            # workers, which would otherwise risk every worker
                            # waiting for room that only a worker can make.
                            # Counted as running from now on, so that a
                            # shutdown(wait=True) waits for it.
                            run_here = True
                            future._counted_here = True
                            self._extra_running += 1
                    if sleeper is None:
                        self._submitted += 1
                        future._placed = True
                        if not run_here:
                            self._queue.put(future)
                            depth = self._queue.qsize()
                            if depth > self._peak_queued:  # noqa: PLR1730 - a compare costs less than max()
                                self._peak_queued = depth
                            return True
                if run_here:
                    self._run_here(future)
                    return True
            except BaseException:
                if run_here:
                    self._unreserve(future)
                raise
            assert sleeper is not None  # every other way out of the block returned
            try:
                # Timed: a wake-up lost to an interrupted submitter costs the
                # others one slice at most.
                acquire(sleeper, _POLL_SECONDS)
            except BaseException:
                with self._lock:
                    if sleeper in self._blocked:
                        self._blocked.remove(sleeper)
                    else:
                        self._room_one_locked()  # pass on the wake-up given
                raise

    def _unreserve(self, future: PoolFuture[Any]) -> None:
        """Undo `_place`'s reservation of a task it accepted to run here.

        For an interrupt that struck between the reservation and the start
        of the task: it was accepted, so it ends cancelled rather than
        pending forever, and is no longer counted as running; or one that
        stopped `_run_here`'s own accounting after the task ran.
        """
        with self._lock:
            self._uncount_here_locked(future)
        future.cancel()  # does nothing once the task has started

    def _room_one_locked(self) -> None:
        """Wake one submitter blocked on the full pool (lock held)."""
        blocked = self._blocked
        if blocked:
            blocked.pop(0).release()

    def _room_all_locked(self) -> None:
        """Wake every submitter blocked on the full pool (lock held)."""
        blocked = self._blocked
        while blocked:
            blocked.pop().release()

    def _start_worker_locked(self, first: PoolFuture[Any] | None) -> None:
        """Start a worker thread whose first task is `first` (lock held)."""
        worker = _Worker(first)
        name = f"{self._prefix}_{self._started}"
        thread = threading.Thread(
            target=_work, args=(self._ref, worker), name=name, daemon=True
        )
        worker.thread = thread
        workers = self._workers
        try:
            workers.append(worker)
            self._started += 1
            # Before the start: nothing may follow it that Ctrl-C could split.
            self._peak_workers = max(self._peak_workers, len(workers))
            thread.start()
            if first is not None:
                self._submitted += 1
                first._placed = True
        except BaseException:
            # Interrupted or failed: if the thread exists after all, it sees
            # `abandoned` under this lock before doing anything.
            worker.abandoned = True
            worker.handoff = None
            if worker in workers:
                workers.remove(worker)
                self._release_exit_waiters_locked()
                self._room_one_locked()
            raise

    def _is_own_worker(self) -> bool:
        ref = getattr(_local, "pool_ref", None)
        return ref is not None and ref() is self

    # --- running ------------------------------------------------------------------

    def _worker_exit_locked(self, worker: _Worker) -> None:
        workers = self._workers
        if worker in workers:
            workers.remove(worker)
            completed, failed, _, _ = worker.progress
            self._extra_completed += completed
            self._extra_failed += failed
            worker.progress = (0, 0, None, 0.0)
            if worker.thread is not None:
                self._ending = [t for t in self._ending if t.is_alive()]
                self._ending.append(worker.thread)
            self._release_exit_waiters_locked()
        if self._blocked:
            self._room_all_locked()

    def _release_exit_waiters_locked(self) -> None:
        waiters = self._exit_waiters
        if waiters:
            left = len(self._workers)
            inline = self._extra_running
            for entry in [e for e in waiters if e[0] >= left and e[1] >= inline]:
                waiters.remove(entry)
                entry[2].release()

    def _run_here(self, future: PoolFuture[Any], *, helping: bool = False) -> None:
        """Claim and run `future` in the calling thread, if still pending.

        `helping` is set when the caller is a worker of some pool (work
        helping), not the thread that submitted `future` (caller_runs).

        The claim and the `_extra_running` count change in one critical
        section, so `shutdown(wait=True)` never sees the task neither queued
        nor running; `_place` may have counted it already (caller_runs).
        The future's `_counted_here` flag and state, not the path taken, say
        what to give back, so a Ctrl-C (which strikes only after a call
        returns) anywhere in between leaks nothing.
        """
        claimed = False
        lock = future._lock
        # The future's lock is not waited for with the pool's held, as in
        # `PoolFuture.cancel()`: its holder may be waiting for the pool's lock
        # (a finalizer run by a collection inside its critical section).
        held = _Held(lock) if helping else None
        try:
            while True:
                with self._lock:
                    if held is not None:
                        # A worker gets no Ctrl-C, so it may try the lock:
                        # nothing can strike between acquire() returning and
                        # the block that releases it, and no other thread can
                        # take it between a look and a take.
                        guard: _Held | _thread.LockType | None = (
                            held if lock.acquire(blocking=False) else None
                        )
                    else:
                        # Looked at, not tried: a Ctrl-C just after a probing
                        # acquire() returned would leave it held for good.
                        # The future of this very submit is in no one
                        # else's hands yet; a stream owning it reaches it
                        # only through cancel(), which takes the pool's
                        # lock first, so nothing takes it in between.
                        guard = None if lock.locked() else lock
                    if guard is not None:
                        with guard:
                            if future._state is _PENDING:
                                future._state = _RUNNING
                                claimed = True
                                if not future._counted_here:
                                    future._counted_here = True
                                    self._extra_running += 1
                        break
                with lock:
                    pass  # its holder is done: look again
            if claimed:
                self._execute_here(future)
        except BaseException as exc:
            if claimed and future._state is _RUNNING:
                # Interrupted between the claim and the outcome (Ctrl-C):
                # the future is not left running forever, and the
                # interrupt, which goes on up, is not reported again.
                future._complete(None, exc)
                future._silence()
            raise
        finally:
            with self._lock:
                self._uncount_here_locked(future)

    def _uncount_here_locked(self, future: PoolFuture[Any]) -> None:
        """Give back `future`'s count as running here, once (lock held).

        The outcome is read from the future, so whichever of `_run_here`'s
        `finally` and `_unreserve` gets here first (a Ctrl-C can stop the
        first while it waits for the lock) counts it right.
        """
        if future._counted_here:
            future._counted_here = False
            self._extra_running -= 1
            if future._state is _FINISHED:
                if future._exception is None:
                    self._extra_completed += 1
                else:
                    self._extra_failed += 1
            self._release_exit_waiters_locked()

    def _execute_here(self, future: PoolFuture[Any]) -> None:
        """Run the task of `future`, claimed by this thread, and complete it."""
        fn = future._fn
        args = future._args or ()
        kwargs = future._kwargs or {}
        context = future._context
        future._args = future._kwargs = future._context = None
        assert fn is not None
        if self._observer is not None:
            fn = _Observed(fn, self._observer, future, None)
        inline = _inline_stack()
        depth = len(inline)
        try:
            inline.append(self)
            if context is not None:
                value = context.run(fn, *args, **kwargs)
            else:
                value = fn(*args, **kwargs)
        except BaseException as exc:
            del inline[depth:]
            _trim(exc)
            _complete_here(future, None, exc)
            if not isinstance(exc, Exception):
                # Ctrl-C or exit in the calling thread is the caller's too:
                # the future records it, and it goes on up.
                future._silence()
                raise
        else:
            del inline[depth:]
            _complete_here(future, value, None)

    def _help(self, future: PoolFuture[Any]) -> None:
        """Run a still-queued future of this pool in a waiting worker.

        Any `WorkerPool` worker helps, whichever pool the future belongs
        to, so that waits across pools cannot deadlock either.
        """
        if getattr(_local, "pool_ref", None) is None:
            return
        with self._lock:
            if future._in_queue:
                future._in_queue = False
                self._queued -= 1
                if self._blocked:
                    self._room_one_locked()
        self._run_here(future, helping=True)

    def _compensate_begin(self) -> bool:
        """A worker is about to block in a timed wait on a queued future.

        Helping could outlast the caller's timeout, so instead the pool may
        run one more thread for as long as the wait lasts: the queued task
        gets a thread although the waiting worker holds its own.

        Returns:
            Whether `_compensate_end` must be called after the wait.
        """
        if getattr(_local, "pool_ref", None) is None:
            return False
        with self._lock:
            if self._broken_reason is not None:
                return False
            self._compensating += 1
            if (
                not self._idle_workers
                and len(self._workers) < self._max_workers + self._compensating
                and not self._queue.empty()
            ):
                # No thread to spare (RuntimeError): the caller just waits.
                with contextlib.suppress(RuntimeError):
                    self._start_worker_locked(None)
        return True

    def _compensate_end(self) -> None:
        with self._lock:
            self._compensating -= 1
            # An added thread already parked leaves now; a busy one leaves
            # when it finds the queue empty.
            idle = self._idle_workers
            if idle and len(self._workers) > self._max_workers + self._compensating:
                worker = idle[-1]
                worker.handoff = None
                del idle[-1]
                worker.sleeper.release()
                # Uncounted at once, so that no other worker leaves for it.
                self._worker_exit_locked(worker)

    def _cancelled_one(self, future: PoolFuture[Any]) -> None:
        """Account for a future cancelled before it started."""
        with self._lock:
            self._cancelled_one_locked(future)

    def _cancelled_one_locked(self, future: PoolFuture[Any]) -> None:
        """Account for a future cancelled before it started (lock held).

        `cancel()` calls it under both locks, with the state change, then
        again after them: each part is done once, by its own flag, so the
        second call finishes a first one that a Ctrl-C cut short.
        """
        if future._placed:
            # Not set if never accepted (refused or interrupted): `_place`
            # counts a future it finds cancelled, or nobody does.
            future._placed = False
            self._cancelled += 1
        # Reserved to run in its submitter's thread (caller_runs) and
        # cancelled by its owner before it ran: no longer running.
        self._uncount_here_locked(future)
        if future._in_queue:
            future._in_queue = False
            self._queued -= 1
            if self._blocked:
                self._room_one_locked()

    def _break(
        self, reason: str, cause: BaseException | None, first: PoolFuture[Any] | None
    ) -> None:
        """Mark the pool broken and fail every future that will never run."""
        with self._lock:
            if self._broken_reason is None:
                self._broken_reason = reason
                self._broken_cause = cause
            drained = self._drain_locked()
            self._room_all_locked()
        if first is not None:
            drained.insert(0, first)

        def fail(f: PoolFuture[Any]) -> bool:
            exc = BrokenWorkerPool(reason)
            exc.__cause__ = cause
            return f._fail_pending(exc)

        failed, escaped = _settle(drained, fail)
        with self._lock:
            self._extra_failed += failed
            self._failed_unstarted += failed
        _reraise(escaped)

    def _drain_locked(self) -> list[PoolFuture[Any]]:
        """Empty the queue and stop the idle workers (lock held)."""
        drained = []
        get_nowait = self._queue.get_nowait
        while True:
            try:
                f = get_nowait()
            except queue.Empty:
                break
            if f._in_queue:
                # Not reset to 0: a future a worker has just taken off the
                # queue is still counted, and that worker uncounts it.
                f._in_queue = False
                self._queued -= 1
            drained.append(f)
        self._stop_idle_locked()
        return drained

    def _stop_idle_locked(self) -> None:
        idle = self._idle_workers
        while idle:
            worker = idle[-1]
            worker.handoff = None
            del idle[-1]
            worker.sleeper.release()

    # --- map -------------------------------------------------------------------

    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: Callable[[int, int | None], object] | None = None,
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

        If the consumer stops early (closes or drops the iterator, even
        before its first `next()`), a task fails, or the deadline passes,
        every task not yet started is cancelled, and the failures of tasks
        nobody will look at are not reported.  The iterator keeps no
        reference to a result it has returned.

        With `chunksize=N` (N > 1) each task is a chunk of N inputs that
        calls `fn` on them in a tight loop, and `buffersize` counts chunks;
        with `progress`, `progress(done, total)` is called in the consuming
        thread as results arrive.  Both are `executor_map`'s, which this
        then returns (see it for the details); tiny functions run several
        times faster in chunks.

        Args:
            fn: Called with one item of each iterable.
            *iterables: The inputs, zipped.
            timeout: Seconds from this call until the last result must be
                available; one deadline for the whole iteration.
            chunksize: How many inputs each task handles.
            buffersize: The most tasks (chunks, with `chunksize`) in
                flight, or `None` for eager submission.
            progress: Called with `(done, total)` as results arrive, or
                `None`.

        Returns:
            An iterator of the results in input order.

        Raises:
            ValueError: if `buffersize` or `chunksize` is less than 1, or
                `timeout` is NaN.
            TypeError: if `fn` or `progress` is not callable, `buffersize`
                or `chunksize` is not an int, or `timeout` is not a number.
            TimeoutError: from the iterator, if the deadline passes.
            RuntimeError: from the iterator, if a task (or `progress`)
                raised `StopIteration` (its cause), as from a generator.
            BaseException: from the iterator, the exception a task (or
                `progress`) raised.
        """
        _check_chunksize(chunksize)
        if chunksize > 1 or progress is not None:
            return executor_map(
                self,
                fn,
                *iterables,
                timeout=timeout,
                buffersize=buffersize,
                chunksize=chunksize,
                progress=progress,
            )
        check_callable(fn, "fn")
        check_timeout(timeout)
        _check_buffersize(buffersize)
        deadline = None if timeout is None else time.monotonic() + timeout
        args_iter = zip(*iterables, strict=False)
        first = (
            args_iter if buffersize is None else itertools.islice(args_iter, buffersize)
        )
        futures: list[Future[R]] = []
        submit, own = self._submit_owned, futures.append
        # Until the primed iterator owns them, the futures are abandoned here
        # if anything (the input, a refusal, Ctrl-C) interrupts.
        try:
            for args in first:
                submit(fn, args, own)
            futures.reverse()  # popped from the end, oldest first
            return _primed(
                _map_results(
                    futures,
                    None if buffersize is None else args_iter,
                    fn,
                    deadline,
                    self._ref,
                )
            )
        except BaseException:
            try:
                _abandon(futures)
            finally:
                _abandon(futures)  # finishes a pass a Ctrl-C cut short
            raise

    def imap_unordered(
        self,
        fn: Callable[[T], R],
        iterable: Iterable[T],
        *,
        timeout: float | None = None,
        buffersize: int | None = None,
        chunksize: int = 1,
        progress: Callable[[int, int | None], object] | None = None,
    ) -> Iterator[R]:
        """Return an iterator of `fn(item)` for each item, in completion order.

        Submission works as for `map`: eager without `buffersize`, otherwise
        at most `buffersize` tasks in flight, the next input submitted each
        time a result is yielded.  Early stop (also before the first
        `next()`), a failure or the deadline cancel every task not yet
        started.  `chunksize` and `progress` work as for `map`: each
        chunk's results come together, in input order within the chunk,
        chunk by chunk as chunks finish (`executor_imap_unordered`).

        Args:
            fn: Called with each item.
            iterable: The inputs.
            timeout: Seconds from this call until the last result must be
                available.
            buffersize: The most tasks (chunks, with `chunksize`) in
                flight, or `None` for eager submission.
            chunksize: How many inputs each task handles.
            progress: Called with `(done, total)` as results arrive, or
                `None`.

        Returns:
            An iterator of results, each as soon as its task finishes.

        Raises:
            ValueError: if `buffersize` or `chunksize` is less than 1, or
                `timeout` is NaN.
            TypeError: if `fn` or `progress` is not callable, `buffersize`
                or `chunksize` is not an int, or `timeout` is not a number.
            TimeoutError: from the iterator, if the deadline passes.
            RuntimeError: from the iterator, if a task (or `progress`)
                raised `StopIteration` (its cause), as from a generator.
            BaseException: from the iterator, the exception a task (or
                `progress`) raised.
        """
        _check_chunksize(chunksize)
        if chunksize > 1 or progress is not None:
            return executor_imap_unordered(
                self,
                fn,
                iterable,
                timeout=timeout,
                buffersize=buffersize,
                chunksize=chunksize,
                progress=progress,
            )
        check_callable(fn, "fn")
        check_timeout(timeout)
        _check_buffersize(buffersize)
        deadline = None if timeout is None else time.monotonic() + timeout
        done: queue.SimpleQueue[Future[R]] = queue.SimpleQueue()
        inputs = iter(iterable)
        in_flight: set[Future[R]] = set()
        first = inputs if buffersize is None else itertools.islice(inputs, buffersize)
        submit, own = self._submit_owned, in_flight.add
        # As in map: abandoned here until the primed iterator owns them.
        try:
            for item in first:
                submit(fn, (item,), own).add_done_callback(done.put)
            return _primed(
                _unordered_results(
                    done,
                    in_flight,
                    None if buffersize is None else inputs,
                    fn,
                    deadline,
                    self._ref,
                )
            )
        except BaseException:
            try:
                _abandon(in_flight)
            finally:
                _abandon(in_flight)  # finishes a pass a Ctrl-C cut short
            raise

    # --- shutdown --------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; optionally cancel the queued ones and wait.

        Idempotent and safe to call from several threads, and from a task
        (a worker never waits for itself).  The wait is on the pool's own
        latch, never `Thread.join`: Ctrl-C interrupts it with
        `KeyboardInterrupt` and leaves the pool intact, so a later
        `shutdown(wait=True)` still waits for every task.

        Args:
            wait: Return only after every worker thread has left its loop,
                i.e. every queued (not cancelled) and running task is done
                and its done-callbacks have run.
            cancel_futures: Cancel every task not yet started.
        """
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                drained = self._drain_locked()
            else:
                drained = []
                self._stop_idle_locked()
            self._room_all_locked()
        _reraise(_settle(drained, PoolFuture.cancel)[1])
        if wait:
            self._wait_for_workers()

    def _wait_for_workers(self) -> None:
        # A worker calling shutdown(wait=True) waits for the others only, and
        # a task run inline (caller_runs, helping) does not wait for itself.
        allowed = 1 if self._is_own_worker() else 0
        inline = getattr(_local, "inline", None)
        allowed_inline = 0 if not inline else sum(p is self for p in inline)
        latch = _allocate_lock()
        latch.acquire()
        entry = (allowed, allowed_inline, latch)
        with self._lock:
            # Their last instructions are waited out too, so that no worker
            # thread is alive once shutdown(wait=True) returns.
            threads = [w.thread for w in self._workers if w.thread is not None]
            threads += self._ending
            waiting = (
                len(self._workers) > allowed or self._extra_running > allowed_inline
            )
            if waiting:
                self._exit_waiters.append(entry)
        if waiting:
            try:
                acquire(latch, None)
            except BaseException:
                with self._lock:
                    if entry in self._exit_waiters:
                        self._exit_waiters.remove(entry)
                raise
        for t in threads:
            wait_thread_end(t)

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
                self._wait_for_workers()
            except KeyboardInterrupt:
                # The second Ctrl-C: stop waiting, and do not wait at exit.
                self._abandon_pool()
            return None
        try:
            self.shutdown(wait=True)
        except KeyboardInterrupt:
            self._abandon_pool()
            raise
        return None

    def _abandon_pool(self) -> None:
        with self._lock:
            self._abandoned = True
        self.shutdown(wait=False, cancel_futures=True)

    # --- introspection ---------------------------------------------------------

    def stats(self) -> WorkerPoolStats:
        """Return a snapshot of the pool's workers and task counts.

        Taken under the pool lock; each worker's own counts are read as one
        record, so the task counts always add up:
        `submitted == queued + running + completed + failed + cancelled` and
        `started == running + completed + failed - (tasks the pool failed
        before they started)`.  A task that a worker is just starting or has
        just finished is counted as queued, or as running, for that instant.
        The percentiles (with `metrics=True`) are taken over the last 1024
        tasks, a moment later, outside the pool lock.

        Returns:
            A frozen `WorkerPoolStats`.
        """
        from ._stats import WorkerPoolStats  # noqa: PLC0415 - slow to import

        timing = None if self._observer is None else self._observer.percentiles()
        with self._lock:
            running = self._extra_running
            completed = self._extra_completed
            failed = self._extra_failed
            for w in self._workers:
                c, f, current, _ = w.progress
                completed += c
                failed += f
                running += current is not None
            submitted = self._submitted
            cancelled = self._cancelled
            return WorkerPoolStats(
                workers=len(self._workers),
                idle=len(self._idle_workers),
                queued=submitted - running - completed - failed - cancelled,
                running=running,
                completed=completed,
                failed=failed,
                cancelled=cancelled,
                submitted=submitted,
                started=running + completed + failed - self._failed_unstarted,
                rejected=self._rejected,
                peak_workers=self._peak_workers,
                peak_queued=self._peak_queued,
                queue_wait_p50=None if timing is None else timing[0],
                queue_wait_p99=None if timing is None else timing[1],
                run_time_p50=None if timing is None else timing[2],
                run_time_p99=None if timing is None else timing[3],
            )

    def running(self) -> list[RunningTask]:
        """Return the tasks running now: where, since when, and their stacks.

        Each `RunningTask` names the task's callable and thread and holds
        its current stack (from `sys._current_frames()`, from the task's own
        code on).  With `metrics=True`, a `watchdog` or a hook, it also holds
        the start time and the time elapsed, and the list includes tasks run by
        a submitter (`"caller_runs"`) or by a waiting worker; otherwise it
        lists the tasks of the pool's worker threads, without times.  A
        snapshot: a task may have finished by the time it is read.

        Returns:
            The running tasks, the longest-running first when timed.
        """
        if self._observer is not None:
            return self._observer.running_tasks(self)
        return running_in_workers(self)

    def _check(self) -> None:
        """Assert the pool's invariants (for tests)."""
        s = self.stats()
        with self._lock:
            assert 0 <= len(self._idle_workers) <= len(self._workers)
            assert len(self._workers) <= self._max_workers + self._compensating
            assert self._compensating >= 0
            assert all(w in self._workers for w in self._idle_workers)
            assert self._queued >= 0
            if self._max_pending is not None:
                assert self._queued <= self._max_pending
            else:
                assert self._queued == 0
        assert s.queued >= 0, s
        assert min(s.running, s.completed, s.failed, s.cancelled) >= 0, s

    def __repr__(self) -> str:
        s = self.stats()
        state = (
            "broken"
            if self._broken_reason is not None
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
        """Refuse new tasks, finish the accepted ones (interpreter exit)."""
        with self._lock:
            abandoned = self._abandoned
            if not self._shutdown:
                self._exit_refused = True
        if not abandoned:
            self.shutdown(wait=True)
        else:
            self.shutdown(wait=False)

    def _after_fork_in_child(self) -> None:
        """Make an inherited pool fail predictably: nothing of it runs here."""
        self._lock = self._box[0] = _allocate_lock()
        if self._observer is not None:
            self._observer.after_fork_in_child()
        old, self._queue = self._queue, queue.SimpleQueue()
        futures: list[PoolFuture[Any]] = []
        while True:
            try:
                futures.append(old.get_nowait())
            except queue.Empty:
                break
        me = threading.current_thread()
        kept: list[_Worker] = []
        for w in self._workers:
            completed, failed, current, _ = w.progress
            if w.thread is me:
                w.forked = True if current is None else current
                kept.append(w)
                if current is not None:
                    # Still running here; its waiters were threads now gone.
                    current._reset_after_fork()
                continue
            self._extra_completed += completed
            self._extra_failed += failed
            if current is not None:
                futures.append(current)
                self._failed_unstarted -= 1  # started: counted below as failed
            if w.handoff is not None:
                futures.append(w.handoff)
        self._workers = kept
        self._idle_workers.clear()
        self._exit_waiters = []
        self._ending = []
        self._queued = self._extra_running = 0
        self._blocked = []
        reason = (
            "this WorkerPool was inherited through os.fork(); its threads do not "
            "exist in the child process, create a new pool there"
        )
        self._broken_reason = reason
        self._broken_cause = None
        self._fork_child = True
        for f in futures:
            f._reset_after_fork()
            f._in_queue = False
        failed, escaped = _settle(
            futures, lambda f: f._fail_pending(BrokenWorkerPool(reason))
        )
        self._extra_failed += failed
        self._failed_unstarted += failed
        _reraise(escaped)


def _work(pool_ref: weakref.ref[WorkerPool], worker: _Worker) -> None:  # noqa: C901, PLR0912, PLR0915 - the hot loop is inlined on purpose
    """A worker thread's loop; it holds its pool only while it has work."""
    pool = pool_ref()
    if pool is None:
        return
    with pool._lock:
        if worker.abandoned:
            return
    _local.pool_ref = pool_ref
    future = worker.take()
    if pool._init is not None:
        try:
            pool._init(*pool._init_args)
        except BaseException as exc:
            pool._break(
                "a worker initializer raised; the pool is broken, "
                "create a new pool with a working initializer",
                exc,
                future,
            )
            with pool._lock:
                pool._worker_exit_locked(worker)
            return
    get_nowait = pool._queue.get_nowait
    bounded = pool._max_pending is not None
    completed = failed = 0
    # Observed pool: time each task here, inline (a method call per task
    # would cost more than the timing itself); hooks go through `_Observed`,
    # which then also records the timing.
    obs = pool._observer
    record_wait = record_run = None
    if obs is not None and obs.windows is not None and not obs.hooked:
        waits, runs = obs.windows
        record_wait, record_run = waits.append, runs.append
    started = 0.0
    while True:
        if future is not None:
            # Claim PENDING -> RUNNING; cancelled or helped futures are skipped.
            with future._lock:
                claimed = future._state is _PENDING
                if claimed:
                    future._state = _RUNNING
            if claimed:
                fn = future._fn
                args = future._args
                kwargs = future._kwargs
                context = future._context
                future._args = future._kwargs = future._context = None
                if obs is None:
                    worker.progress = (completed, failed, future, 0.0)
                else:
                    started = _monotonic()
                    worker.progress = (completed, failed, future, started)
                    if obs.hooked:
                        fn = _Observed(fn, obs, future, started)  # type: ignore[arg-type]
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
                    if record_run is not None:
                        record_run(_monotonic() - started)
                        record_wait(started - future._submitted_at)  # type: ignore[misc]
                    _trim(exc)
                    failed += 1
                    try:
                        future._complete(None, exc)
                    except BaseException as cb_exc:
                        _callback_escaped(future, cb_exc)
                    del exc
                else:
                    if record_run is not None:
                        record_run(_monotonic() - started)
                        record_wait(started - future._submitted_at)  # type: ignore[misc]
                    completed += 1
                    try:
                        future._complete(value, None)
                    except BaseException as cb_exc:
                        _callback_escaped(future, cb_exc)
                worker.progress = (completed, failed, None, 0.0)
                del fn, args, kwargs, context
                value = None
        try:
            future = get_nowait()
        except queue.Empty:
            # Slow path: look again under the lock, then park or leave.
            future = None
            parked = False
            with pool._lock:
                try:
                    future = pool._queue.get_nowait()
                except queue.Empty:
                    if (
                        pool._shutdown
                        or pool._broken_reason is not None
                        or len(pool._workers) > pool._max_workers + pool._compensating
                    ):
                        # Stopped, or a thread added for a wait that ended.
                        pool._worker_exit_locked(worker)
                    else:
                        pool._idle_workers.append(worker)
                        parked = True
                        if pool._blocked:
                            pool._room_one_locked()
                else:
                    if future._in_queue:
                        future._in_queue = False
                        pool._queued -= 1
                        if pool._blocked:
                            pool._room_one_locked()
            if future is None:
                if not parked:
                    break
                sleeper = worker.sleeper
                del pool  # parked workers must not keep a dropped pool alive
                sleeper.acquire()
                future = worker.take()
                pool = pool_ref()
                if pool is None:
                    return
                if future is None:  # a stop
                    with pool._lock:
                        pool._worker_exit_locked(worker)
                    break
                get_nowait = pool._queue.get_nowait
            continue
        if bounded and future._in_queue:
            with pool._lock:
                if future._in_queue:
                    future._in_queue = False
                    pool._queued -= 1
                    if pool._blocked:
                        pool._room_one_locked()
    if worker.forked:
        _end_forked_child(worker)


def _inline_stack() -> list[WorkerPool]:
    """The pools whose tasks the calling thread is running inline, innermost last."""
    try:
        stack: list[WorkerPool] = _local.inline
    except AttributeError:
        stack = _local.inline = []
    return stack


def _callback_escaped(future: Future[Any], exc: BaseException) -> None:
    """A done-callback raised a BaseException in a worker: log it, go on."""
    _LOGGER.error(
        "exception calling callback for %r; the worker goes on",
        future,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def _end_forked_child(worker: _Worker) -> None:
    """End a child process forked by a task, as its main thread would."""
    forked = worker.forked
    del worker
    code: object = 0
    exc = forked._exception if isinstance(forked, PoolFuture) else None
    if isinstance(exc, SystemExit):
        code = exc.code
    elif exc is not None:
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:  # noqa: S110 - nothing left to report to
                pass
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)  # noqa: T201 - what sys.exit(str) does
            code = 1
        os._exit(code)


_PRIMED: Final = object()


def _primed(gen: Generator[Any, None, None]) -> Iterator[Any]:
    """Run `gen` to its first (dummy) yield, inside its `try`.

    A generator that was never started ignores `close()` and its collection
    (its `finally` never runs); one that was primed runs it for both, so
    closing or dropping the iterator before the first `next()` cancels.
    """
    first = next(gen)
    assert first is _PRIMED
    return gen


def _map_results(
    futures: list[Future[R]],
    args_iter: Iterator[tuple[Any, ...]] | None,
    fn: Callable[..., R],
    deadline: float | None,
    pool_ref: weakref.ref[WorkerPool],
) -> Generator[Any, None, None]:
    """`WorkerPool.map`'s iterator (primed); `futures` is newest first."""
    out: list[R] = []  # empty while suspended: no result is kept
    try:
        yield _PRIMED
        while futures:
            # Left in the list until its result is in hand: a failure, the
            # deadline or a Ctrl-C leaves it to the cleanup below with the
            # rest (a late task is not left to run).
            future = futures[-1]
            if deadline is None:
                out.append(future.result())
            else:
                out.append(future.result(deadline - time.monotonic()))
            del futures[-1]
            del future
            if args_iter is not None:
                args = next(args_iter, None)
                pool = pool_ref()
                if args is None or pool is None:
                    args_iter = None
                else:
                    # Newest goes first in the list, so insert at the front.
                    pool._submit_owned(fn, args, functools.partial(futures.insert, 0))
                del pool, args
            yield out.pop()
    finally:
        if futures:
            try:
                _abandon_from_finalizer(futures, pool_ref)
            finally:
                # A second pass finishes what a Ctrl-C cut short.
                _abandon_from_finalizer(futures, pool_ref)


def _unordered_results(  # noqa: PLR0917 - private plumbing of imap_unordered
    done: queue.SimpleQueue[Future[R]],
    in_flight: set[Future[R]],
    inputs: Iterator[Any] | None,
    fn: Callable[[Any], R],
    deadline: float | None,
    pool_ref: weakref.ref[WorkerPool],
) -> Generator[Any, None, None]:
    """`WorkerPool.imap_unordered`'s iterator (primed)."""
    out: list[R] = []  # empty while suspended: no result is kept
    sentinel = object()
    try:
        yield _PRIMED
        while in_flight:
            if deadline is None:
                future = done.get()
            else:
                try:
                    future = done.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    msg = f"{len(in_flight)} tasks unfinished at the deadline"
                    raise TimeoutError(msg) from None
            # Still in flight while its outcome is read: a Ctrl-C inside
            # result() leaves it to the cleanup below.
            out.append(future.result())
            in_flight.discard(future)
            del future
            if inputs is not None:
                item = next(inputs, sentinel)
                pool = pool_ref()
                if item is sentinel or pool is None:
                    inputs = None
                else:
                    pool._submit_owned(fn, (item,), in_flight.add).add_done_callback(
                        done.put
                    )
                del pool, item
            yield out.pop()
    finally:
        if in_flight:
            try:
                _abandon_from_finalizer(in_flight, pool_ref)
            finally:
                # A second pass finishes what a Ctrl-C cut short.
                _abandon_from_finalizer(in_flight, pool_ref)


def _settle(
    futures: Iterable[PoolFuture[Any]], action: Callable[[PoolFuture[Any]], bool]
) -> tuple[int, BaseException | None]:
    """Apply `action` to every future, even if a done-callback raises.

    Returns:
        How many futures `action` changed (a callback that raised counts:
        it ran after the change), and the first exception a callback let
        escape, for the caller to raise once all are settled.
    """
    changed = 0
    escaped: BaseException | None = None
    for f in futures:
        try:
            changed += action(f)
        except BaseException as exc:
            changed += 1
            if escaped is None:
                escaped = exc
    return changed, escaped


def _reraise(exc: BaseException | None) -> None:
    if exc is not None:
        try:
            raise exc
        finally:
            exc = None


def _abandon(futures: list[Future[Any]] | set[Future[Any]]) -> None:
    """Cancel what has not started; nobody will look at the rest's outcome.

    Consumes `futures`, each one removed only once it is dealt with, so that
    a pass a Ctrl-C cut short leaves the rest for the next (the call sites
    run a second pass in a `finally`; both steps are idempotent).
    """
    if isinstance(futures, list):
        while futures:
            _give_up(futures[-1])
            del futures[-1]
    else:
        # Over a copy: taking the "first" of a set again and again after
        # removals costs time quadratic in its size.
        for future in list(futures):
            _give_up(future)
            futures.discard(future)


def _give_up(future: Future[Any]) -> None:
    """Cancel `future` if it has not started, and never report its failure."""
    if isinstance(future, PoolFuture):
        future._silence()
    future.cancel()


# How long a result iterator's cleanup waits for a lock before it assumes
# that its own thread holds it.
_FINALIZER_PATIENCE: Final = 0.05


def _abandon_from_finalizer(
    futures: list[Future[Any]] | set[Future[Any]], pool_ref: weakref.ref[WorkerPool]
) -> None:
    """`_abandon`, from a result iterator's `finally`: never wait for oneself.

    That `finally` also runs when the garbage collector finalizes an
    iterator caught in a reference cycle, which can happen in any thread at
    any allocation, including inside one of the pool's or a future's
    critical sections; cancelling there would wait forever for a lock the
    thread itself holds.  So the cleanup first checks that it can take every
    lock it needs; if one stays held, it cancels from a fresh thread instead,
    which waits until the interrupted section has released it.
    """
    if not futures:
        return  # done by a first pass, or handed to a thread
    pool = pool_ref()
    locks = [f._lock for f in futures if isinstance(f, PoolFuture)]
    if pool is not None:
        locks.append(pool._lock)
    del pool
    # Looked at, not acquired: a Ctrl-C just after a probing acquire()
    # returned would leave the lock held for good.
    deadline = time.monotonic() + _FINALIZER_PATIENCE
    for lock in locks:
        while lock.locked():
            if time.monotonic() >= deadline:
                with contextlib.suppress(RuntimeError):  # the interpreter is exiting
                    _thread.start_new_thread(_abandon, (list(futures),))
                futures.clear()  # the thread has them now
                return
            time.sleep(_FINALIZER_PATIENCE / 50)
    _abandon(futures)


def _complete_here(
    future: PoolFuture[Any], value: object, exc: BaseException | None
) -> None:
    """Complete a future run outside `_work`, as `_work` would in a worker.

    In a pool worker (helping), what a done-callback lets escape is logged
    and the worker goes on; in any other thread (caller_runs) it propagates
    once every callback ran.
    """
    if getattr(_local, "pool_ref", None) is None:
        future._complete(value, exc)
        return
    try:
        future._complete(value, exc)
    except BaseException as cb_exc:
        _callback_escaped(future, cb_exc)


def _trim(exc: BaseException) -> None:
    """Drop the pool's own frame from the top of a task's traceback."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code in _PLUMBING:
        tb = exc.__traceback__ = tb.tb_next


_PLUMBING = frozenset({_work.__code__, WorkerPool._execute_here.__code__, _CALL_CODE})


def _check_observing(before_task: object, after_task: object, watchdog: object) -> None:
    for name, hook in (("before_task", before_task), ("after_task", after_task)):
        if hook is not None and not callable(hook):
            msg = f"{name} must be callable or None"
            raise TypeError(msg)
    if watchdog is None:
        return
    if not isinstance(watchdog, (int, float)) or isinstance(watchdog, bool):
        kind = type(watchdog).__name__
        msg = f"watchdog must be a number of seconds or None, got {kind}"
        raise TypeError(msg)
    if not watchdog > 0 or watchdog == float("inf"):
        msg = f"watchdog must be a finite number of seconds > 0, got {watchdog}"
        raise ValueError(msg)


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
    global _exiting  # noqa: PLW0603 - one flag, set once, under _pools_lock
    with _pools_lock:
        _exiting = True
        pools = list(_pools)
    try:
        for pool in pools:
            pool._drain_at_exit()
    except KeyboardInterrupt:
        # Ctrl-C while the interpreter waits for accepted work: stop
        # waiting; the daemon workers end with the process.
        for pool in pools:
            pool._abandon_pool()


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
    atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
