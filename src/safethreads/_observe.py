"""Seeing into a running `WorkerPool`: timing, hooks, running tasks, watchdog.

All of it is off by default and costs nothing then: a pool made without
`metrics`, `before_task`, `after_task` or `watchdog` has no observer, and its
hot path is unchanged.  With any of them, the pool wraps each task's callable
in a `_Timed` when it is submitted; the wrapper notes the submit time, and in
the thread that runs the task it

1. registers itself as running (with its thread and start time),
2. calls `before_task`,
3. runs the task,
4. calls `after_task` with the task's exception (or `None`),
5. records the queue wait and run time in the observer's window, and
   unregisters itself.

A hook that raises is logged (logger `"safethreads"`) and otherwise ignored:
the task still runs, its outcome is the task's own, the worker goes on.
Hooks are for metrics and tracing; a bug in one must not fail the work it
measures.

Free-threading: the observer's state (the window of timings and the
registry of running tasks) changes only under its own raw lock, taken once
when a task starts and once when it ends; no user code runs under it.

The watchdog is a daemon thread that holds the pool and the observer only
weakly between its rounds, so it neither keeps a dropped pool alive nor
delays interpreter exit; it leaves when the pool is collected, or is shut
down with no worker left.
"""

from __future__ import annotations

import _thread
import logging
import math
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from ._thread_group import ThreadGroup
    from ._worker_pool import WorkerPool

__all__ = ["RunningTask", "TaskInfo"]

_LOGGER: Final = logging.getLogger("safethreads")

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


_DELEGATED: Final = frozenset({"__name__", "__qualname__", "__module__", "__doc__"})


class _Timed:
    """A task's callable, timed and hooked; see the module docstring."""

    __slots__ = ("fn", "observer", "submitted_at")

    def __init__(self, fn: Callable[..., Any], observer: _Observer) -> None:
        self.fn = fn
        self.observer = observer
        self.submitted_at = time.monotonic()

    def __getattr__(self, name: str) -> Any:
        # The task's names, for messages and reprs.
        if name in _DELEGATED:
            return getattr(self.fn, name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return repr(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        obs = self.observer
        fn = self.fn
        thread = threading.current_thread()
        started = time.monotonic()
        entry = (fn, thread, started)
        with obs.lock:
            obs.running[self] = entry
        try:
            before = obs.before
            if before is not None:
                _call_hook(
                    before, TaskInfo(fn, thread.name, self.submitted_at, started)
                )
            try:
                value = fn(*args, **kwargs)
            except BaseException as exc:
                self._finished(thread, started, exc)
                raise
            self._finished(thread, started, None)
            return value
        finally:
            with obs.lock:
                obs.running.pop(self, None)

    def _finished(
        self, thread: threading.Thread, started: float, exc: BaseException | None
    ) -> None:
        obs = self.observer
        ended = time.monotonic()
        after = obs.after
        if after is not None:
            info = TaskInfo(self.fn, thread.name, self.submitted_at, started)
            _call_hook(after, info, exc)
        if obs.metrics:
            with obs.lock:
                i = obs.count % WINDOW
                obs.waits[i] = started - self.submitted_at
                obs.runs[i] = ended - started
                obs.count += 1


def _call_hook(hook: Callable[..., object], *args: object) -> None:
    """Call a task hook; log whatever it raises and go on."""
    try:
        hook(*args)
    except BaseException as exc:
        _LOGGER.exception("task hook %r raised; the task and the worker go on", hook)
        del exc


class _Observer:
    """A pool's timing window, running-task registry and hooks."""

    __slots__ = (
        "__weakref__",
        "after",
        "before",
        "count",
        "lock",
        "metrics",
        "reported",
        "running",
        "runs",
        "waits",
    )

    def __init__(
        self,
        *,
        metrics: bool,
        before: Callable[[TaskInfo], object] | None,
        after: Callable[[TaskInfo, BaseException | None], object] | None,
    ) -> None:
        self.metrics = metrics
        self.before = before
        self.after = after
        # Guards `running`, `waits`, `runs`, `count` and `reported`.
        self.lock = _thread.allocate_lock()
        self.running: dict[_Timed, tuple[Callable[..., Any], threading.Thread, float]]
        self.running = {}
        # Ring buffers of the last WINDOW tasks' queue waits and run times;
        # `count` tasks recorded in all, slot `count % WINDOW` is next.
        self.waits = [0.0] * WINDOW if metrics else []
        self.runs = [0.0] * WINDOW if metrics else []
        self.count = 0
        # Tasks the watchdog already reported (reported once each).
        self.reported: set[_Timed] = set()

    def after_fork_in_child(self) -> None:
        """A fresh lock; forget the tasks of threads gone with the fork."""
        self.lock = _thread.allocate_lock()
        me = threading.current_thread()
        self.running = {k: v for k, v in self.running.items() if v[1] is me}
        self.reported = set()

    def wrap(self, fn: Callable[..., Any]) -> _Timed:
        return _Timed(fn, self)

    def percentiles(self) -> tuple[float, float, float, float] | None:
        """(wait p50, wait p99, run p50, run p99) over the window, or None."""
        with self.lock:
            n = min(self.count, WINDOW)
            waits = self.waits[:n]
            runs = self.runs[:n]
        if not n:
            return None
        waits.sort()
        runs.sort()
        return (
            _rank(waits, 0.50),
            _rank(waits, 0.99),
            _rank(runs, 0.50),
            _rank(runs, 0.99),
        )

    def running_tasks(self) -> list[RunningTask]:
        now = time.monotonic()
        with self.lock:
            entries = list(self.running.items())
        frames = sys._current_frames()
        tasks = [
            RunningTask(
                fn,
                thread.name,
                thread.ident or 0,
                started,
                now - started,
                _task_stack(frames.get(thread.ident or 0), timed),
            )
            for timed, (fn, thread, started) in entries
        ]
        tasks.sort(key=lambda t: t.started_at or 0.0)
        return tasks

    def overdue(self, seconds: float) -> list[RunningTask]:
        """Tasks running for `seconds` or more and not yet reported."""
        now = time.monotonic()
        with self.lock:
            self.reported.intersection_update(self.running)
            late = [
                (timed, entry)
                for timed, entry in self.running.items()
                if now - entry[2] >= seconds and timed not in self.reported
            ]
            self.reported.update(timed for timed, _ in late)
        if not late:
            return []
        frames = sys._current_frames()
        return [
            RunningTask(
                fn,
                thread.name,
                thread.ident or 0,
                started,
                now - started,
                _task_stack(frames.get(thread.ident or 0), timed),
            )
            for timed, (fn, thread, started) in late
        ]


def _rank(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile of sorted, non-empty `values`."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def _task_stack(frame: FrameType | None, timed: _Timed | None) -> str:
    """The stack of `frame` from the task's own code on, formatted."""
    import traceback  # noqa: PLC0415 - only when a stack is asked for

    if frame is None:
        return "  (the thread has ended)\n"
    frames: list[FrameType] = []
    f: FrameType | None = frame
    while f is not None:
        if (
            timed is not None
            and f.f_code is _CALL_CODE
            and f.f_locals.get("self") is timed
        ):
            break
        frames.append(f)
        f = f.f_back
    if not frames:
        return f"  in {timed!r} (C code, no Python frame)\n"
    frames.reverse()
    summary = traceback.StackSummary.extract((g, g.f_lineno) for g in frames)
    return "".join(summary.format())


_CALL_CODE: Final = _Timed.__call__.__code__


def running_in_workers(pool: WorkerPool) -> list[RunningTask]:
    """Running tasks seen from the workers' own records (no timing)."""
    with pool._lock:
        entries = [
            (w.thread, w.progress[2])
            for w in pool._workers
            if w.progress[2] is not None and w.thread is not None
        ]
    frames = sys._current_frames()
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
                _worker_stack(frames.get(ident)),
            )
        )
    return tasks


def _worker_stack(frame: FrameType | None) -> str:
    """A worker's stack from its task on (below the pool's loop)."""
    import traceback  # noqa: PLC0415 - only when a stack is asked for

    if frame is None:
        return "  (the thread has ended)\n"
    frames: list[FrameType] = []
    f: FrameType | None = frame
    while f is not None:
        if f.f_code.co_name == "_work" and f.f_code.co_filename.endswith(
            "_worker_pool.py"
        ):
            break
        frames.append(f)
        f = f.f_back
    frames.reverse()
    summary = traceback.StackSummary.extract((g, g.f_lineno) for g in frames)
    return "".join(summary.format())


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
        late = obs.overdue(seconds)
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
    frames = sys._current_frames()
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
