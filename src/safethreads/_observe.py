"""Seeing into a running `WorkerPool`: timing, hooks, running tasks, watchdog.

All of it is off by default and then costs next to nothing: a pool made without
`metrics`, `before_task`, `after_task` or `watchdog` has no observer, and its
hot path only tests, a few times per task, that it has none.  With any of them:

1. the pool notes the submit time on each future it accepts;
2. the worker that runs a task reads the clock once when it starts and
   publishes the start time with the task on its own record
   (`_Worker.progress`), which `running()` and the watchdog read; no lock
   is taken;
3. with `metrics`, the worker reads the clock again when the task ends and
   appends the run time and the queue wait to two bounded deques, the
   windows the percentiles are taken over: a deque's append is atomic with
   or without a GIL, so the hot path takes no lock of ours either, and
   floats, unlike tuples, give the garbage collector nothing to track;
4. with hooks, the task's callable is called through an `_Observed`, made
   when the task starts and never stored on the future, which calls
   `before_task`, the task, then records the timing and calls `after_task`.

A task run outside a worker's loop (by a `"caller_runs"` submitter, or by a
thread waiting on it) always goes through an `_Observed`, which then also
registers it, under the observer's lock, for `running()`.

The timing is inlined in the worker's loop because a method call per task
would cost more than the clock reads themselves: `make bench` measures it
against the default pool.

A hook that raises is logged (logger `"safethreads"`) and otherwise ignored:
the task still runs, its outcome is the task's own, the worker goes on.
Hooks are for metrics and tracing; a bug in one must not fail the work it
measures.  A Ctrl-C in the main thread (running a task itself) is not a bug
in the hook: it propagates.

The watchdog is a daemon thread that holds the pool and the observer only
weakly between its rounds, so it neither keeps a dropped pool alive nor
delays interpreter exit; it leaves when the pool is collected, or is shut
down with no worker left.
"""

from __future__ import annotations

import _thread
import gc
import logging
import math
import sys
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from ._future import PoolFuture
    from ._thread_group import ThreadGroup
    from ._worker_pool import WorkerPool

    # A running task: (future, fn, thread, started, its `_Observed` if it
    # runs outside a worker's loop, else None).
    _Entry = tuple[
        PoolFuture[Any], Callable[..., Any], threading.Thread, float, "_Observed | None"
    ]

__all__ = ["RunningTask", "TaskInfo"]

_LOGGER: Final = logging.getLogger("safethreads")
_monotonic: Final = time.monotonic

# How many recent tasks the percentiles are taken over.
WINDOW: Final = 1024


class TaskInfo(NamedTuple):
    """One task as `WorkerPool` hooks see it.

    Times are `time.monotonic()` seconds.

    Attributes:
        fn: The callable the task runs.
        thread_name: The name of the thread that runs it.
        submitted_at: When the task was submitted.
        started_at: When it started to run.
    """

    fn: Callable[..., Any]
    thread_name: str
    submitted_at: float
    started_at: float


class RunningTask(NamedTuple):
    """A task running now, as `WorkerPool.running()` returns it.

    Attributes:
        fn: The callable the task runs.
        thread_name: The name of the thread that runs it.
        thread_id: That thread's `threading.get_ident()`.
        started_at: When it started (`time.monotonic()`), or `None` if the
            pool does not time its tasks (it does with `metrics=True`, a
            `watchdog` or a hook; a `ThreadGroup` does not).
        elapsed: Seconds it has been running, or `None` likewise.
        stack: The task's current stack, formatted as in a traceback
            (most recent call last), from the task's own code on.
    """

    fn: Callable[..., Any]
    thread_name: str
    thread_id: int
    started_at: float | None
    elapsed: float | None
    stack: str


class _Observed:
    """A task's callable, timed and hooked while it runs; see the module docstring.

    Made when the task starts, never stored on its future.  In a worker's
    loop (`started` given) the worker itself publishes the task as running;
    anywhere else (`"caller_runs"`, a waiter running the task) this object
    registers it with the observer for the time it runs.
    """

    __slots__ = ("fn", "future", "observer", "started")

    def __init__(
        self,
        fn: Callable[..., Any],
        observer: _Observer,
        future: PoolFuture[Any],
        started: float | None,
    ) -> None:
        self.fn = fn
        self.observer = observer
        self.future = future
        self.started = started

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        obs = self.observer
        fn = self.fn
        started = self.started
        here = started is None
        try:
            # Registered inside the `try`: a Ctrl-C right after it (the
            # lock's release checks for signals) must not leave the task
            # listed as running for ever.
            if started is None:
                started = self.started = _monotonic()
                with obs.lock:
                    obs.here[self.future] = (
                        fn,
                        threading.current_thread(),
                        started,
                        self,
                    )
            before = obs.before
            if before is not None:
                _call_hook(before, self._info(started))
            try:
                value = fn(*args, **kwargs)
            except BaseException as exc:
                self._finished(started, exc)
                raise
            self._finished(started, None)
            return value
        finally:
            if here:
                with obs.lock:
                    obs.here.pop(self.future, None)

    def _info(self, started: float) -> TaskInfo:
        name = threading.current_thread().name
        return TaskInfo(self.fn, name, self.future._submitted_at, started)

    def _finished(self, started: float, exc: BaseException | None) -> None:
        obs = self.observer
        ended = _monotonic()
        if obs.windows is not None:
            waits, runs = obs.windows
            runs.append(ended - started)
            waits.append(started - self.future._submitted_at)
        after = obs.after
        if after is not None:
            _call_hook(after, self._info(started), exc)


def _call_hook(hook: Callable[..., object], *args: object) -> None:
    """Call a task hook; log whatever it raises and go on.

    Except a `KeyboardInterrupt` in the main thread (a task run there by
    `"caller_runs"` or a wait): that is a Ctrl-C, the caller's, and it
    propagates as it would from the task itself.
    """
    try:
        hook(*args)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and (
            threading.current_thread() is threading.main_thread()
        ):
            raise
        _LOGGER.exception("task hook %r raised; the task and the worker go on", hook)
        del exc


class _Observer:
    """A pool's timing window, hooks, and registry of tasks run outside workers."""

    __slots__ = (
        "__weakref__",
        "after",
        "before",
        "here",
        "hooked",
        "lock",
        "windows",
    )

    def __init__(
        self,
        *,
        metrics: bool,
        before: Callable[[TaskInfo], object] | None,
        after: Callable[[TaskInfo, BaseException | None], object] | None,
    ) -> None:
        self.before = before
        self.after = after
        # Tasks then start through an `_Observed`, which calls the hooks.
        self.hooked = before is not None or after is not None
        # (queue waits, run times) of the last WINDOW tasks, appended by
        # the threads that ran them: a deque's append is atomic, with or
        # without a GIL, so the hot path takes no lock of ours.  A wait and a
        # run time of one task may land at different positions.
        self.windows: tuple[deque[float], deque[float]] | None = None
        if metrics:
            self.windows = (deque(maxlen=WINDOW), deque(maxlen=WINDOW))
        # Guards `here` and the futures' `_reported_late`.
        self.lock = _thread.allocate_lock()
        # Tasks running outside a worker's loop: future -> (fn, thread,
        # started, its `_Observed`).  Workers publish theirs on their record.
        self.here: dict[
            PoolFuture[Any],
            tuple[Callable[..., Any], threading.Thread, float, _Observed],
        ] = {}

    def after_fork_in_child(self) -> None:
        """A fresh lock; forget the tasks of threads gone with the fork."""
        self.lock = _thread.allocate_lock()
        me = threading.current_thread()
        self.here = {k: v for k, v in self.here.items() if v[1] is me}

    def percentiles(self) -> tuple[float, float, float, float] | None:
        """(wait p50, wait p99, run p50, run p99) over the window, or None."""
        if self.windows is None:
            return None
        waits, runs = map(_sorted_copy, self.windows)
        if not waits or not runs:
            return None
        return (
            _rank(waits, 0.50),
            _rank(waits, 0.99),
            _rank(runs, 0.50),
            _rank(runs, 0.99),
        )

    def _entries(self, pool: WorkerPool) -> list[_Entry]:
        """Every task running now: the workers' own, then those run elsewhere."""
        entries: list[_Entry] = []
        with pool._lock:
            for w in pool._workers:
                _, _, current, started = w.progress
                thread = w.thread
                if current is None or thread is None:
                    continue
                fn = current._fn
                if fn is not None:  # else it has just finished
                    entries.append((current, fn, thread, started, None))
        with self.lock:
            entries.extend(
                (future, fn, thread, started, observed)
                for future, (fn, thread, started, observed) in self.here.items()
            )
        return entries

    def running_tasks(self, pool: WorkerPool) -> list[RunningTask]:
        entries = self._entries(pool)
        # Read after the snapshot: a task that started while it was taken
        # (the pool lock may be busy) must not show a negative elapsed.
        now = _monotonic()
        tasks = _running(entries, now)
        tasks.sort(key=lambda t: t.started_at or 0.0)
        return tasks

    def overdue(self, pool: WorkerPool, seconds: float) -> list[RunningTask]:
        """Tasks running for `seconds` or more and not yet reported."""
        entries = self._entries(pool)
        now = _monotonic()  # after the snapshot, as in running_tasks
        with self.lock:
            late = [
                e for e in entries if now - e[3] >= seconds and not e[0]._reported_late
            ]
            for e in late:
                e[0]._reported_late = True
        return _running(late, now) if late else []


if sys.version_info >= (3, 12):
    current_frames = sys._current_frames
else:
    _collection_paused = threading.Lock()

    def current_frames() -> dict[int, FrameType]:
        """`sys._current_frames()`, with automatic collection paused meanwhile.

        On CPython 3.11, a collection that starts inside it runs while the
        interpreter's thread-list lock is held; a Python gc callback can then
        hand the GIL to a thread that is ending, which waits for that lock
        with the GIL held, and the process hangs (CPython gh-106883, fixed
        in 3.12).  The lock keeps two of our own calls from re-enabling
        collection under each other.
        """
        with _collection_paused:
            enabled = gc.isenabled()
            try:
                gc.disable()
                return sys._current_frames()
            finally:
                if enabled:
                    gc.enable()


def _running(entries: list[_Entry], now: float) -> list[RunningTask]:
    frames = current_frames()
    return [
        RunningTask(
            fn,
            thread.name,
            thread.ident or 0,
            started,
            now - started,
            _task_stack(frames.get(thread.ident or 0), observed),
        )
        for _, fn, thread, started, observed in entries
    ]


def _sorted_copy(window: deque[float]) -> list[float]:
    while True:
        try:
            values = list(window.copy())
        except RuntimeError:  # appended to while copied (no GIL): again
            continue
        values.sort()
        return values


def _rank(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile of sorted, non-empty `values`."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def _task_stack(frame: FrameType | None, observed: _Observed | None) -> str:
    """The stack of `frame` from the task's own code on, formatted.

    A task run outside a worker's loop starts above its `observed` wrapper's
    frame; a worker's task, above the worker's loop (and a hook wrapper).
    """
    import traceback  # noqa: PLC0415 - only when a stack is asked for

    if frame is None:
        return "  (the thread has ended)\n"
    frames: list[FrameType] = []
    f: FrameType | None = frame
    while f is not None:
        code = f.f_code
        if observed is None:
            if code.co_name == "_work" and code.co_filename.endswith("_worker_pool.py"):
                break
        elif code is _CALL_CODE and f.f_locals.get("self") is observed:
            break
        frames.append(f)
        f = f.f_back
    if observed is None and frames and frames[-1].f_code is _CALL_CODE:
        frames.pop()  # the hooks' wrapper, right above the loop
    if not frames:
        return "  (C code, no Python frame)\n"
    frames.reverse()
    summary = traceback.StackSummary.extract((g, g.f_lineno) for g in frames)
    return "".join(summary.format())


_CALL_CODE: Final = _Observed.__call__.__code__


def running_in_workers(pool: WorkerPool) -> list[RunningTask]:
    """Running tasks seen from the workers' own records (no timing)."""
    with pool._lock:
        entries = [
            (w.thread, w.progress[2])
            for w in pool._workers
            if w.progress[2] is not None and w.thread is not None
        ]
    frames = current_frames()
    tasks = []
    for thread, future in entries:
        fn = getattr(future, "_fn", None)
        if fn is None:
            continue  # finished meanwhile
        ident = thread.ident or 0
        tasks.append(
            RunningTask(
                fn,
                thread.name,
                ident,
                None,
                None,
                _task_stack(frames.get(ident), None),
            )
        )
    return tasks


def start_watchdog(pool: WorkerPool, observer: _Observer, seconds: float) -> None:
    """Start the daemon thread that logs tasks running `seconds` or more."""
    thread = threading.Thread(
        target=_watch,
        args=(weakref.ref(pool), weakref.ref(observer), seconds),
        name=f"{pool._prefix}_watchdog",
        daemon=True,
    )
    thread.start()


def _watch(
    pool_ref: weakref.ref[WorkerPool], obs_ref: weakref.ref[_Observer], seconds: float
) -> None:
    # Check often enough to report a task soon after it is late, and to
    # leave soon after the pool does.
    interval = min(seconds / 4, 0.25)
    sleeper = threading.Event()
    while True:
        pool = pool_ref()
        obs = obs_ref()
        if pool is None or obs is None:
            return
        with pool._lock:
            done = pool._shutdown and not pool._workers
        late = obs.overdue(pool, seconds)
        del pool, obs
        for task in late:
            _LOGGER.warning(
                "task %r has been running for %.3f seconds (watchdog %s s) "
                "in thread %r; its stack, most recent call last:\n%s",
                task.fn,
                task.elapsed,
                seconds,
                task.thread_name,
                task.stack,
            )
        del late
        if done:
            return
        sleeper.wait(interval)


# --- ThreadGroup -------------------------------------------------------------------


def group_snapshot(
    group: ThreadGroup,
) -> tuple[int, int, int, int, list[threading.Thread]]:
    """(members, pending, finished, failed, running members), under its lock."""
    with group._lock:
        members = list(group._members)
        pending = set(group._pending)
        ended = group._ended
        failed = group._failed_count
        finished = 0
        running = []
        for t in members:
            if t in pending:
                continue
            if t in ended or (t.ident is not None and not t.is_alive()):
                finished += 1
            else:
                running.append(t)
    return len(members), len(pending), finished, failed, running


def group_running(group: ThreadGroup) -> list[RunningTask]:
    """The running members of `group`, with their stacks."""
    from ._thread_group import _member_stack  # noqa: PLC0415 - a cycle otherwise

    running = group_snapshot(group)[4]
    frames = current_frames()
    tasks = []
    for t in running:
        ident = t.ident
        frame = None if ident is None else frames.get(ident)
        if frame is None:
            continue  # not started yet, or ended meanwhile
        tasks.append(
            RunningTask(
                _member_function(t),
                t.name,
                ident or 0,
                None,
                None,
                _member_stack(frame),
            )
        )
    return tasks


def _member_function(t: threading.Thread) -> Callable[..., Any]:
    """The function a member runs: spawn()'s `fn`, a thread's target, or run."""
    call_args = getattr(t, "_call_args", None)
    if call_args and callable(call_args[0]):
        return call_args[0]  # type: ignore[no-any-return]
    target = getattr(t, "_target", None)
    if callable(target):
        return target  # type: ignore[no-any-return]
    return t.run


class GroupProgress:
    """A `ThreadGroup`'s `progress(done, total)` callback and its last report.

    Called only by the thread leaving the block, while it waits, with no
    lock held: calls never overlap, and `done` never goes down.
    """

    __slots__ = ("callback", "error", "last")

    def __init__(self, callback: Callable[[int, int | None], object]) -> None:
        self.callback: Callable[[int, int | None], object] | None = callback
        self.last: tuple[int, int] | None = None
        # What the callback raised (it is then called no more).
        self.error: Exception | None = None

    def report(self, group: ThreadGroup) -> None:
        """Call the callback if members of `group` finished since the last call."""
        callback = self.callback
        if callback is None:
            return
        members, _, finished, _, _ = group_snapshot(group)
        now = (finished, members)
        if now == self.last:
            return
        self.last = now
        try:
            callback(finished, members)
        except Exception as exc:
            self.callback = None
            self.error = exc
            group._cancel_quietly(
                f"the progress callback of group {group.name!r} raised "
                f"{type(exc).__name__}"
            )

    def wrap(self, group: ThreadGroup, ready: Callable[[], bool]) -> Callable[[], bool]:
        """`ready`, reporting progress first each time it is asked."""

        def reporting() -> bool:
            self.report(group)
            return ready()

        return reporting
