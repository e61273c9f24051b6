"""Observed-pool regressions found by attacking the inline-timing rewrite.

Each test failed on the pool before its fix.
"""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any

import pytest

from interrupts import TASK_SECONDS, Injector, check_pool, explore, shutdown_within
from safethreads import RunningTask, WorkerPool
from safethreads._observe import current_frames
from test_observe import assert_adds_up, blocked_task
from waiting import wait_until

if TYPE_CHECKING:
    from concurrent.futures import Future

TIMEOUT = 10.0  # every wait in these tests is bounded


def test_a_task_starting_while_running_is_read_has_no_negative_elapsed() -> None:
    """running() reads the clock after its snapshot, not before.

    The reader is held on the pool lock between the two (as a busy pool
    would hold it) while a queued task starts: before the fix its
    `elapsed` came out negative, its start after the reader's "now".
    """
    gate, first = threading.Event(), threading.Event()
    second_started, second_gate = threading.Event(), threading.Event()
    seen: list[list[RunningTask]] = []
    with WorkerPool(1, metrics=True) as pool:
        blocker = pool.submit(blocked_task, first, gate)
        assert first.wait(TIMEOUT)
        queued = pool.submit(blocked_task, second_started, second_gate)
        reader = threading.Thread(target=lambda: seen.append(pool.running()))
        with pool._lock:
            reader.start()

            def reader_waits_for_the_lock() -> bool:
                frame = current_frames().get(reader.ident or 0)
                return frame is not None and frame.f_code.co_name == "_entries"

            wait_until(reader_waits_for_the_lock, "the reader to block on the lock")
            gate.set()  # the worker takes the queued task without the lock
            assert second_started.wait(TIMEOUT)
        reader.join(TIMEOUT)
        assert not reader.is_alive()
        second_gate.set()
        assert blocker.result(TIMEOUT)
        assert queued.result(TIMEOUT)
    ((task,),) = seen
    assert task.fn is blocked_task
    assert task.elapsed is not None
    assert task.elapsed >= 0, task


def _caller_runs_observed(**options: Any) -> Any:
    """A scenario: the main thread runs a task of an observed pool (caller_runs)."""

    def scenario(inject: Injector) -> None:
        pool = WorkerPool(1, max_pending=0, on_full="caller_runs", **options)
        gate, started = threading.Event(), threading.Event()
        try:
            futures: list[Future[Any]] = [pool.submit(blocked_task, started, gate)]
            assert started.wait(TASK_SECONDS)
            with inject:
                futures.append(pool.submit(abs, -3))
            gate.set()
            assert futures[0].result(TASK_SECONDS)
            wait_until(lambda: pool.stats().running == 0, "the worker's task to end")
            # Nothing runs now: no task of the main thread may stay listed.
            assert pool.running() == [], pool.running()
            check_pool(pool)
            assert_adds_up(pool.stats())
        finally:
            gate.set()
            shutdown_within(pool)

    return scenario


# The harness records its points with sys.settrace, which on 3.13 misses
# some of them from run to run: like the other Ctrl-C explorations, this one
# runs with `make test` only (`-m "not exhaustive"` elsewhere).
@pytest.mark.exhaustive
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "options",
    [
        {"metrics": True},
        {"before_task": lambda _: None, "after_task": lambda _, __: None},
    ],
    ids=["metrics", "hooks"],
)
def test_ctrl_c_in_a_caller_runs_task_leaves_no_phantom_running_task(
    options: dict[str, Any],
) -> None:
    """Ctrl-C anywhere in an observed caller_runs task unlists the task.

    Before the fix, an interrupt right after the task registered itself as
    running (before the `try` whose `finally` unregisters it) left it listed
    by running() for ever, its future and result kept alive, and the
    watchdog would have reported it.
    """
    exploration = explore(_caller_runs_observed(**options))
    assert exploration.reached > 0, "no point was reached: the harness is broken"
    assert not exploration.findings, exploration.summary()


def test_a_task_the_watchdog_reported_is_not_kept_alive_after_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watchdog's memory of what it reported holds no finished task.

    Before the fix it kept the futures it had reported in a set, pruned
    only at its next round: a late task's result outlived the task.
    """

    class Result:
        pass

    def late() -> bool:
        return any("has been running" in r.getMessage() for r in caplog.records)

    # A long interval (a quarter of a second) between the watchdog's rounds.
    with (
        caplog.at_level(logging.WARNING, logger="safethreads"),
        WorkerPool(1, watchdog=1.0) as pool,
    ):
        reported = threading.Event()

        def task() -> Result:
            assert reported.wait(TIMEOUT)
            return Result()

        future = pool.submit(task)
        wait_until(late, "the watchdog's report")
        reported.set()
        ref = weakref.ref(future.result(TIMEOUT))
        del future
        wait_until(lambda: pool.stats().running == 0, "the worker to go idle")
        gc.collect()
        assert ref() is None


@pytest.mark.parametrize("which", ["before", "after"])
def test_ctrl_c_in_a_hook_run_by_the_main_thread_reaches_the_caller(
    which: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A Ctrl-C during a hook the main thread runs (caller_runs) propagates.

    Hooks' errors are logged and ignored, but a `KeyboardInterrupt` in the
    main thread is the user pressing Ctrl-C: swallowing it would keep the
    program running.  The task's future records it, as for a Ctrl-C in the
    task itself, and the counts still add up.
    """
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("a Ctrl-C is delivered to the main thread only")
    gate, started = threading.Event(), threading.Event()

    def hook(*_: object) -> None:
        if threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt

    kwargs: dict[str, Any] = {f"{which}_task": hook}
    with caplog.at_level(logging.ERROR, logger="safethreads"):
        with WorkerPool(1, max_pending=0, on_full="caller_runs", **kwargs) as pool:
            blocker = pool.submit(blocked_task, started, gate)
            assert started.wait(TIMEOUT)
            with pytest.raises(KeyboardInterrupt):
                pool.submit(abs, -1)  # the only worker is busy: run here
            gate.set()
            assert blocker.result(TIMEOUT)
        assert_adds_up(pool.stats())
    assert not [r for r in caplog.records if "task hook" in r.getMessage()]


# A child that reads stacks of running work in a loop while other threads
# start and end, with a collection forced at nearly every allocation and a
# Python gc callback (as Hypothesis installs) that can hand the GIL over.
# On CPython 3.11, a collection starting inside `sys._current_frames()`
# deadlocked the process (CPython gh-106883): seen in CI as a hung test.
_STACKS_WHILE_THREADS_CHURN = """\
import gc, sys, threading, time
from safethreads import ThreadGroup, WorkerPool

gc.callbacks.append(lambda phase, info: [phase])
gc.set_threshold(1, 1, 1)
sys.setswitchinterval(1e-6)
stop = time.monotonic() + {seconds}


def churn():
    while time.monotonic() < stop:
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()


release = threading.Event()
started = threading.Semaphore(0)


def task():
    started.release()
    release.wait()


churners = [threading.Thread(target=churn) for _ in range(3)]
for t in churners:
    t.start()
with WorkerPool(2) as pool, ThreadGroup(exit_timeout=0.01) as group:
    try:
        pool.submit(task)
        group.spawn(task)
        # Both are running before running() is asked to see them.
        assert started.acquire(timeout=30) and started.acquire(timeout=30)
        while time.monotonic() < stop:
            assert pool.running()
            assert group.running()
    finally:
        release.set()  # a failed check ends the script instead of hanging it
for t in churners:
    t.join()
assert gc.isenabled()
print("done")
"""


def test_reading_stacks_while_threads_start_and_end_does_not_deadlock() -> None:
    """`running()` survives a collection inside its stack snapshot."""
    completed = subprocess.run(
        [sys.executable, "-c", _STACKS_WHILE_THREADS_CHURN.format(seconds=3)],
        capture_output=True,
        text=True,
        timeout=40,  # 3 s of work: a deadlock ends here, not in the suite
        check=False,
    )
    assert (completed.returncode, completed.stdout) == (0, "done\n"), completed.stderr
