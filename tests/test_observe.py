"""Seeing into a running pool: counters, percentiles, running tasks, hooks, watchdog."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import weakref
from typing import TYPE_CHECKING, Any

import pytest

from safethreads import (
    PoolFull,
    RunningTask,
    TaskInfo,
    ThreadGroup,
    ThreadGroupStats,
    WorkerPool,
)
from waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from safethreads import WorkerPoolStats

TIMEOUT = 10.0  # every wait in these tests is bounded


def boom(x: int) -> int:
    msg = f"boom {x}"
    raise ValueError(msg)


def spin(seconds: float) -> float:
    """Run for at least `seconds` (a task whose run time is known)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return seconds


def print_nothing(_: TaskInfo) -> None:
    pass


def blocked_task(started: threading.Event, gate: threading.Event) -> bool:
    started.set()
    return gate.wait(TIMEOUT)


def assert_adds_up(s: WorkerPoolStats) -> None:
    assert s.submitted == s.queued + s.running + s.completed + s.failed + s.cancelled
    assert s.started == s.running + s.completed + s.failed, s
    assert min(s.queued, s.running, s.completed, s.failed, s.cancelled) >= 0, s
    assert s.rejected >= 0, s


class TestCounters:
    def test_counts_each_outcome_exactly(self) -> None:
        """Completed, failed, cancelled and started add up to what was submitted."""
        gate = threading.Event()
        started = threading.Event()
        with WorkerPool(1) as pool:
            blocker = pool.submit(blocked_task, started, gate)
            assert started.wait(TIMEOUT)
            ok = [pool.submit(abs, -i) for i in range(5)]
            bad = [pool.submit(boom, i) for i in range(3)]
            cancelled = [pool.submit(abs, 1) for _ in range(2)]
            assert all(f.cancel() for f in cancelled)
            gate.set()
            assert blocker.result(TIMEOUT)
            assert [f.result(TIMEOUT) for f in ok] == [0, 1, 2, 3, 4]
            for f in bad:
                assert isinstance(f.exception(TIMEOUT), ValueError)
        s = pool.stats()
        assert_adds_up(s)
        assert (s.submitted, s.started, s.completed, s.failed, s.cancelled) == (
            11,
            9,
            6,
            3,
            2,
        )
        assert s.rejected == 0

    def test_rejected_counts_every_refused_submit(self) -> None:
        """PoolFull, a try_submit refused and a submit after shutdown are rejected."""
        gate = threading.Event()
        started = threading.Event()
        pool = WorkerPool(1, max_pending=1, on_full="raise")
        blocker = pool.submit(blocked_task, started, gate)
        assert started.wait(TIMEOUT)
        queued = pool.submit(abs, -1)
        with pytest.raises(PoolFull):
            pool.submit(abs, -2)
        assert pool.try_submit(abs, -3) is None
        gate.set()
        assert blocker.result(TIMEOUT)
        assert queued.result(TIMEOUT) == 1
        pool.shutdown(wait=True)
        with pytest.raises(RuntimeError, match="after shutdown"):
            pool.submit(abs, -4)
        s = pool.stats()
        assert_adds_up(s)
        assert (s.submitted, s.rejected, s.completed) == (2, 3, 2)

    def test_peaks_record_the_most_workers_and_queued_tasks(self) -> None:
        """peak_workers and peak_queued keep their high-water marks."""
        gate = threading.Event()
        started = [threading.Event() for _ in range(3)]
        with WorkerPool(3) as pool:
            blockers = [pool.submit(blocked_task, e, gate) for e in started]
            for e in started:
                assert e.wait(TIMEOUT)
            queued = [pool.submit(abs, -i) for i in range(4)]
            s = pool.stats()
            assert (s.peak_workers, s.peak_queued) == (3, 4)
            gate.set()
            for f in blockers + queued:
                f.result(TIMEOUT)
        s = pool.stats()
        assert (s.workers, s.peak_workers, s.peak_queued) == (0, 3, 4)

    def test_percentiles_need_metrics(self) -> None:
        """Without metrics=True the percentiles are None; the counts still add up."""
        with WorkerPool(2) as pool:
            assert list(pool.map(abs, range(10))) == list(range(10))
        s = pool.stats()
        assert s.run_time_p50 is s.run_time_p99 is None
        assert s.queue_wait_p50 is s.queue_wait_p99 is None
        assert (s.started, s.completed) == (10, 10)

    def test_percentiles_reflect_run_times_and_queue_waits(self) -> None:
        """p50/p99 run times bound the known task durations; waits are non-negative."""
        with WorkerPool(1, metrics=True) as pool:
            assert pool.stats().run_time_p50 is None  # nothing run yet
            fast = [pool.submit(spin, 0.0) for _ in range(97)]
            slow = [pool.submit(spin, 0.05) for _ in range(3)]
            for f in fast + slow:
                f.result(TIMEOUT)
        s = pool.stats()
        assert s.run_time_p50 is not None
        assert s.run_time_p99 is not None
        assert s.queue_wait_p50 is not None
        assert s.queue_wait_p99 is not None
        # 3 of 100 tasks ran >= 50 ms: the 99th percentile (the 99th value)
        # is one of them, the median one of the fast ones.
        assert s.run_time_p99 >= 0.05
        assert s.run_time_p50 < 0.05
        assert 0 <= s.queue_wait_p50 <= s.queue_wait_p99
        # The last two waited in the queue for a slow one before them.
        assert s.queue_wait_p99 >= 0.05

    def test_percentile_window_keeps_the_last_1024_tasks(self) -> None:
        """Old timings leave the window: 1024 fast tasks after slow ones hide them."""
        with WorkerPool(1, metrics=True) as pool:
            for f in [pool.submit(spin, 0.02) for _ in range(3)]:
                f.result(TIMEOUT)
            assert (pool.stats().run_time_p50 or 0.0) >= 0.02
            for f in [pool.submit(spin, 0.0) for _ in range(1024)]:
                f.result(TIMEOUT)
        s = pool.stats()
        assert s.run_time_p99 is not None
        assert s.run_time_p99 < 0.02

    @pytest.mark.stress
    @pytest.mark.usefixtures("fast_switching")
    @pytest.mark.parametrize("metrics", [False, True])
    def test_counters_add_up_in_every_snapshot_under_load(  # noqa: C901, PLR0915 - one scenario
        self, metrics: bool
    ) -> None:
        """Many submitters, cancels and refusals: every snapshot adds up, exactly."""
        n_threads, per_thread = 8, 300
        pool = WorkerPool(3, max_pending=20, on_full="raise", metrics=metrics)
        snapshots: list[WorkerPoolStats] = []
        stop = threading.Event()
        tallies: list[tuple[int, int, int]] = []  # (accepted, rejected, cancelled)
        lock = threading.Lock()
        futures: list[list[Any]] = []

        def submitter(seed: int) -> None:
            kept: list[Any] = []
            futures.append(kept)
            accepted = rejected = cancelled = 0
            for i in range(per_thread):
                fn: Callable[[int], int] = boom if (i + seed) % 7 == 0 else abs
                try:
                    if i % 2:
                        f = pool.try_submit(fn, i)
                        if f is None:
                            rejected += 1
                            continue
                    else:
                        f = pool.submit(fn, i)
                except PoolFull:
                    rejected += 1
                    continue
                accepted += 1
                if i % 5 == 0 and f.cancel():
                    cancelled += 1
                kept.append(f)
            with lock:
                tallies.append((accepted, rejected, cancelled))

        def watcher() -> None:
            while not stop.is_set():
                snapshots.append(pool.stats())

        watch = threading.Thread(target=watcher)
        watch.start()
        threads = [
            threading.Thread(target=submitter, args=(k,)) for k in range(n_threads)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT * 6)
            assert not t.is_alive()
        pool.shutdown(wait=True)
        stop.set()
        watch.join(TIMEOUT)
        assert not watch.is_alive()
        final = pool.stats()
        snapshots.append(final)
        for s in snapshots:
            assert_adds_up(s)
            assert s.submitted + s.rejected <= n_threads * per_thread
        accepted = sum(a for a, _, _ in tallies)
        rejected = sum(r for _, r, _ in tallies)
        cancelled = sum(c for _, _, c in tallies)
        assert accepted + rejected == n_threads * per_thread
        assert (final.submitted, final.rejected, final.cancelled) == (
            accepted,
            rejected,
            cancelled,
        )
        assert final.queued == final.running == 0
        assert final.started == final.completed + final.failed == accepted - cancelled
        pool._check()
        outcomes = [
            f.exception(TIMEOUT) for kept in futures for f in kept if not f.cancelled()
        ]
        assert sum(e is not None for e in outcomes) == final.failed


class TestRunning:
    @pytest.mark.parametrize("metrics", [False, True])
    def test_running_lists_each_task_with_its_thread_and_stack(
        self, metrics: bool
    ) -> None:
        """running() names the task, its thread, and shows where it is now."""
        gate = threading.Event()
        started = threading.Event()
        with WorkerPool(2, thread_name_prefix="seen", metrics=metrics) as pool:
            assert pool.running() == []
            before = time.monotonic()
            future = pool.submit(blocked_task, started, gate)
            assert started.wait(TIMEOUT)
            tasks = pool.running()
            gate.set()
            assert future.result(TIMEOUT)
        assert len(tasks) == 1
        task = tasks[0]
        assert isinstance(task, RunningTask)
        assert task.fn is blocked_task
        assert task.thread_name.startswith("seen_")
        assert task.thread_id != threading.get_ident()
        assert "in blocked_task" in task.stack
        assert "gate.wait(TIMEOUT)" in task.stack
        assert "_worker_pool.py" not in task.stack  # the task's own frames only
        if metrics:
            assert task.started_at is not None
            assert task.elapsed is not None
            assert before <= task.started_at <= time.monotonic()
            assert task.elapsed >= 0
        else:
            assert task.started_at is task.elapsed is None
        wait_until(lambda: pool.running() == [], "no running task")

    def test_running_includes_tasks_run_by_the_submitter(self) -> None:
        """With timing on, a caller_runs task shows up in the submitting thread."""
        gate = threading.Event()
        started = threading.Event()
        seen: list[list[RunningTask]] = []
        with WorkerPool(1, max_pending=0, on_full="caller_runs", metrics=True) as pool:
            blocker = pool.submit(blocked_task, started, gate)
            assert started.wait(TIMEOUT)
            pool.submit(lambda: seen.append(pool.running()))
            gate.set()
            assert blocker.result(TIMEOUT)
        names = sorted(t.thread_name for t in seen[0])
        assert threading.current_thread().name in names
        assert len(names) == 2

    @pytest.mark.parametrize(
        "options",
        [
            {"metrics": True},
            {"watchdog": 60},
            {"before_task": print_nothing},
        ],
        ids=["metrics", "watchdog", "hooks"],
    )
    def test_an_observed_pool_keeps_no_finished_task_alive(
        self, options: dict[str, Any]
    ) -> None:
        """The timing record a worker keeps is dropped when its task ends."""

        class Result:
            pass

        with WorkerPool(1, **options) as pool:
            future = pool.submit(Result)
            ref = weakref.ref(future.result(TIMEOUT))
            del future
            wait_until(lambda: pool.stats().running == 0, "the worker is idle")
            gc.collect()
            assert ref() is None
            assert pool.running() == []

    def test_running_shows_a_helped_task_and_the_task_that_waits_on_it(self) -> None:
        """A worker running a nested task inline lists both, each with its own stack."""
        seen: list[list[RunningTask]] = []

        def inner() -> None:
            seen.append(pool.running())

        def outer() -> None:
            pool.submit(inner).result(TIMEOUT)  # one worker: run inline

        with WorkerPool(1, metrics=True) as pool:
            pool.submit(outer).result(TIMEOUT)
        (tasks,) = seen
        assert sorted(t.fn.__name__ for t in tasks) == ["inner", "outer"]
        by_name = {t.fn.__name__: t for t in tasks}
        assert "in inner" in by_name["inner"].stack
        assert "in outer" not in by_name["inner"].stack
        assert "in outer" in by_name["outer"].stack
        assert all(t.started_at is not None for t in tasks)


class TestHooks:
    def test_hooks_run_around_each_task_with_its_outcome(self) -> None:
        """before_task, then the task, then after_task with its exception or None."""
        events: list[tuple[str, Any, Any]] = []
        lock = threading.Lock()

        def before(task: TaskInfo) -> None:
            with lock:
                events.append(("before", task.fn, threading.current_thread().name))
            assert task.submitted_at <= task.started_at

        def after(task: TaskInfo, error: BaseException | None) -> None:
            with lock:
                events.append(("after", task.fn, type(error)))
            assert task.thread_name == threading.current_thread().name

        with WorkerPool(1, before_task=before, after_task=after) as pool:
            assert pool.submit(abs, -3).result(TIMEOUT) == 3
            assert isinstance(pool.submit(boom, 1).exception(TIMEOUT), ValueError)
        assert [e[:2] for e in events] == [
            ("before", abs),
            ("after", abs),
            ("before", boom),
            ("after", boom),
        ]
        assert events[1][2] is type(None)
        assert events[3][2] is ValueError
        assert events[0][2] != threading.current_thread().name

    @pytest.mark.parametrize(
        "error", [RuntimeError("hook bug"), KeyboardInterrupt(), SystemExit(3)]
    )
    @pytest.mark.parametrize("which", ["before", "after"])
    def test_a_raising_hook_is_logged_and_the_task_keeps_its_outcome(
        self, caplog: pytest.LogCaptureFixture, error: BaseException, which: str
    ) -> None:
        """A hook that raises (even a BaseException) is logged; work goes on."""

        def hook(*_: object) -> None:
            raise error

        kwargs: dict[str, Any] = {f"{which}_task": hook}
        with caplog.at_level(logging.ERROR, logger="safethreads"):
            with WorkerPool(1, **kwargs) as pool:
                assert pool.submit(abs, -3).result(TIMEOUT) == 3
                exc = pool.submit(boom, 4).exception(TIMEOUT)
                assert isinstance(exc, ValueError)
                # The same worker goes on.
                assert pool.submit(abs, -5).result(TIMEOUT) == 5
            s = pool.stats()
        assert (s.completed, s.failed, s.peak_workers) == (2, 1, 1)
        hook_records = [r for r in caplog.records if "task hook" in r.getMessage()]
        assert len(hook_records) == 3
        assert hook_records[0].exc_info is not None
        assert hook_records[0].exc_info[1] is error

    def test_hooks_are_not_called_for_cancelled_tasks(self) -> None:
        """A task cancelled before it started runs no hook."""
        calls: list[object] = []
        gate = threading.Event()
        started = threading.Event()
        with WorkerPool(
            1, before_task=calls.append, after_task=lambda t, _: calls.append(t)
        ) as pool:
            blocker = pool.submit(blocked_task, started, gate)
            assert started.wait(TIMEOUT)
            assert pool.submit(abs, 1).cancel()
            gate.set()
            assert blocker.result(TIMEOUT)
        assert len(calls) == 2  # the blocker's before and after only

    def test_a_failed_task_traceback_starts_at_the_task(self) -> None:
        """Timing adds no frame of the pool's to a task's traceback."""
        with WorkerPool(1, metrics=True, before_task=lambda _: None) as pool:
            exc = pool.submit(boom, 1).exception(TIMEOUT)
        assert exc is not None
        frames = traceback.extract_tb(exc.__traceback__)
        assert frames[0].name == "boom"


class TestWatchdog:
    def test_watchdog_logs_a_late_task_once_with_its_stack(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A task running past the threshold is logged once, with where it is."""
        gate = threading.Event()
        started = threading.Event()

        def late() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "has been running" in r.getMessage()]

        with (
            caplog.at_level(logging.WARNING, logger="safethreads"),
            WorkerPool(1, watchdog=0.05, thread_name_prefix="wd") as pool,
        ):
            future = pool.submit(blocked_task, started, gate)
            assert started.wait(TIMEOUT)
            wait_until(lambda: bool(late()), "the watchdog's report")
            # Still running: give the watchdog rounds to repeat itself.
            round_seen = time.monotonic()
            wait_until(lambda: time.monotonic() - round_seen > 0.3, "more rounds")
            gate.set()
            assert future.result(TIMEOUT)
            assert pool.submit(abs, -1).result(TIMEOUT) == 1  # fast: no report
        records = late()
        assert len(records) == 1
        message = records[0].getMessage()
        assert records[0].levelno == logging.WARNING
        assert "blocked_task" in message
        assert "'wd_0'" in message
        assert "gate.wait(TIMEOUT)" in message

    def test_watchdog_stops_with_the_pool(self) -> None:
        """After shutdown(wait=True) the watchdog thread leaves."""
        pool = WorkerPool(1, watchdog=30, thread_name_prefix="stopping")
        assert pool.submit(abs, -1).result(TIMEOUT) == 1
        (watch,) = [t for t in threading.enumerate() if t.name == "stopping_watchdog"]
        assert watch.daemon
        assert pool.stats().run_time_p50 is None  # timing windows need metrics
        pool.shutdown(wait=True)
        watch.join(TIMEOUT)
        assert not watch.is_alive()

    def test_watchdog_does_not_keep_a_dropped_pool_alive(self) -> None:
        """The watchdog holds its pool weakly, and leaves when it is collected."""
        pool = WorkerPool(1, watchdog=30, thread_name_prefix="dropped")
        (watch,) = [t for t in threading.enumerate() if t.name == "dropped_watchdog"]
        ref = weakref.ref(pool)
        del pool
        gc.collect()
        assert ref() is None
        watch.join(TIMEOUT)
        assert not watch.is_alive()

    def test_watchdog_does_not_delay_interpreter_exit(self) -> None:
        """A pool with a watchdog, never shut down, lets the process exit."""
        code = textwrap.dedent(
            """
            from safethreads import WorkerPool
            pool = WorkerPool(2, watchdog=60)
            assert pool.submit(abs, -2).result(10) == 2
            print("done")
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert out.stdout.strip() == "done"


class TestBadInput:
    @pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf")])
    def test_watchdog_must_be_positive_and_finite(self, value: float) -> None:
        """A watchdog threshold is a finite number of seconds above zero."""
        with pytest.raises(ValueError, match="watchdog must be a finite number"):
            WorkerPool(1, watchdog=value)

    def test_watchdog_must_be_a_number(self) -> None:
        """A threshold of the wrong type is refused at the constructor."""
        with pytest.raises(TypeError, match="watchdog must be a number of seconds"):
            WorkerPool(1, watchdog="1")  # type: ignore[arg-type]

    @pytest.mark.parametrize("name", ["before_task", "after_task"])
    def test_hooks_must_be_callable(self, name: str) -> None:
        """A hook that cannot be called is refused at the constructor."""
        with pytest.raises(TypeError, match=f"{name} must be callable or None"):
            WorkerPool(1, **{name: 3})  # type: ignore[arg-type]


def member_blocks(started: threading.Event, gate: threading.Event) -> bool:
    started.set()
    return gate.wait(TIMEOUT)


class TestThreadGroupObservability:
    def test_stats_count_pending_running_finished_and_failed_members(self) -> None:
        """A bounded group's snapshot adds up while members wait, run and fail."""
        gate = threading.Event()
        started = [threading.Event() for _ in range(2)]
        seen: list[ThreadGroupStats] = []
        g = ThreadGroup("seen", max_concurrency=2, fail_fast=False)

        def body() -> None:
            with g:
                seen.append(g.stats())
                g.spawn(boom, 1).join(TIMEOUT)
                wait_until(lambda: g.stats().finished == 1, "the failed member")
                for e in started:
                    g.spawn(member_blocks, e, gate)
                g.spawn(abs, -1)  # waits for a slot
                for e in started:
                    assert e.wait(TIMEOUT)
                seen.append(g.stats())
                gate.set()

        with pytest.raises(ExceptionGroup) as caught:
            body()
        assert seen == [
            ThreadGroupStats(0, 0, 0, 0, 0),
            ThreadGroupStats(members=4, pending=1, running=2, finished=1, failed=1),
        ]
        assert len(caught.value.exceptions) == 1
        s = g.stats()
        assert s == ThreadGroupStats(
            members=4, pending=0, running=0, finished=4, failed=1
        )

    @pytest.mark.stress
    @pytest.mark.usefixtures("fast_switching")
    def test_group_stats_add_up_in_every_snapshot(self) -> None:
        """Members ending while others are spawned: every snapshot adds up."""
        snapshots: list[ThreadGroupStats] = []
        with ThreadGroup(max_concurrency=4) as g:
            for i in range(200):
                g.spawn(abs, -i)
                snapshots.append(g.stats())
        snapshots.append(g.stats())
        for s in snapshots:
            assert s.members == s.pending + s.running + s.finished, s
            assert s.failed == 0
        assert snapshots[-1] == ThreadGroupStats(200, 0, 0, 200, 0)

    def test_running_lists_members_with_their_stacks(self) -> None:
        """running() names each running member's function, thread and stack."""
        gate = threading.Event()
        started = threading.Event()
        with ThreadGroup("watched") as g:
            g.spawn(member_blocks, started, gate)
            assert started.wait(TIMEOUT)
            tasks = g.running()
            gate.set()
        assert len(tasks) == 1
        (task,) = tasks
        assert task.fn is member_blocks
        assert task.thread_name == "watched-0"
        assert task.started_at is task.elapsed is None
        assert "in member_blocks" in task.stack
        assert "_thread_group.py" not in task.stack
        assert g.running() == []


class TestThreadGroupProgress:
    def test_progress_is_reported_by_the_owner_as_members_finish(self) -> None:
        """progress(done, total) runs in the leaving thread; done grows to total."""
        calls: list[tuple[int, int | None, str]] = []
        gates = [threading.Event() for _ in range(4)]

        def member(i: int) -> None:
            assert gates[i].wait(TIMEOUT)
            if i + 1 < len(gates):
                gates[i + 1].set()  # members finish one after another

        def progress(done: int, total: int | None) -> None:
            calls.append((done, total, threading.current_thread().name))

        with ThreadGroup(progress=progress) as g:
            for i in range(4):
                g.spawn(member, i)
            gates[0].set()
        assert calls, "progress was never called"
        assert {name for _, _, name in calls} == {threading.current_thread().name}
        dones = [d for d, _, _ in calls]
        assert dones == sorted(dones)
        assert len(set(dones)) == len(dones)  # only called when something finished
        assert calls[-1][:2] == (4, 4)
        assert all(t == 4 for _, t, _ in calls)

    def test_a_raising_progress_cancels_the_group_and_is_raised_after_the_body(
        self,
    ) -> None:
        """A raising progress callback's error is raised after the body's."""
        started = threading.Event()

        def waits_for_cancel(token_wait: Callable[[float], bool]) -> None:
            started.set()
            token_wait(TIMEOUT)

        def progress(done: int, total: int | None) -> None:
            msg = f"bar broke at {done}/{total}"
            raise RuntimeError(msg)

        body_error = KeyError("body")
        g = ThreadGroup(progress=progress)

        def body() -> None:
            with g:
                g.spawn(waits_for_cancel, g.token.wait)
                g.spawn(abs, -1)
                assert started.wait(TIMEOUT)
                raise body_error

        with pytest.raises(ExceptionGroup) as caught:
            body()
        errors = caught.value.exceptions
        assert errors[0] is body_error
        assert isinstance(errors[1], RuntimeError)
        assert "bar broke" in str(errors[1])
        assert g.token.cancelled

    def test_a_raising_progress_alone_is_raised_in_the_group(self) -> None:
        """A raising progress cancels the group and is its only error."""

        def progress(done: int, total: int | None) -> None:
            raise ValueError(done)

        g = ThreadGroup(progress=progress)
        woken: list[bool] = []

        def body() -> None:
            with g:
                # Ends early only because the raising callback cancels.
                g.spawn(lambda: woken.append(g.token.wait(TIMEOUT * 3)))

        with pytest.raises(ExceptionGroup) as caught:
            body()
        assert [type(e) for e in caught.value.exceptions] == [ValueError]
        assert g.token.cancelled
        assert woken == [True]

    def test_progress_must_be_callable(self) -> None:
        """A progress that cannot be called is refused at the constructor."""
        with pytest.raises(TypeError, match="progress must be callable"):
            ThreadGroup(progress=3)  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_task_that_forks_with_the_timing_lock_held_ends_its_child() -> None:
    """A child forked while another thread held the timing lock still finishes."""
    code = textwrap.dedent(
        """
        import os, threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        from safethreads import WorkerPool

        pool = WorkerPool(2, metrics=True)
        lock = pool._observer.lock
        held, release = threading.Event(), threading.Event()

        def hold():
            with lock:
                held.set()
                release.wait(10)

        def task():
            holder = threading.Thread(target=hold)
            holder.start()
            held.wait(10)
            pid = os.fork()
            if pid == 0:
                return "child"  # the child ends when the task does
            release.set()
            holder.join(10)
            deadline = 20
            while deadline > 0:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return os.waitstatus_to_exitcode(status)
                threading.Event().wait(0.05)
                deadline -= 0.05
            os.kill(pid, 9)
            return "hung"

        print("child", pool.submit(task).result(30))
        pool.shutdown()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "child 0" in proc.stdout
