"""WorkerPool regressions of issue 9: each test reproduces one defect.

Every test here failed on the pool before the fix; those whose failure is a
hang or a process-level effect (exit, fork, Ctrl-C) run a child interpreter
with a timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import functools
import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from child_process import SIGINT_PRELUDE
from safethreads import PoolFull, ResultThread, WorkerPool
from safethreads._future import PoolFuture
from safethreads._observe import current_frames
from waiting import wait_until

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterator

TIMEOUT = 10.0  # every wait in these tests is bounded
CHILD_TIMEOUT = 60.0


def fail_with(exc: BaseException) -> NoReturn:
    raise exc


def add(a: int, b: int = 0) -> int:
    return a + b


def _has_idle(pool: WorkerPool) -> bool:
    return pool.stats().idle == 1


def run_child(code: str, *, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter; a hang fails instead of blocking."""
    try:
        return subprocess.run(
            [sys.executable, "-c", prelude + textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child process hung: {exc.stdout!r} {exc.stderr!r}")


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event that blocks tasks until set; always set at teardown."""
    event = threading.Event()
    yield event
    event.set()


def _source_line(frame: Any, offset: int) -> str:
    """The source line `offset` lines from the one a frame is at."""
    import linecache

    return linecache.getline(frame.f_code.co_filename, frame.f_lineno + offset)


def hold_workers(
    pool: WorkerPool, n: int, gate: threading.Event
) -> list[cf.Future[bool]]:
    """Occupy `n` workers until `gate` is set; return once all are running."""
    started = threading.Barrier(n + 1)

    def hold() -> bool:
        started.wait(TIMEOUT)
        return gate.wait(TIMEOUT)

    futures = [pool.submit(hold) for _ in range(n)]
    started.wait(TIMEOUT)
    return futures


class TestHandOff:
    @pytest.mark.usefixtures("fast_switching")
    def test_handoff_never_loses_a_worker(self, gate: threading.Event) -> None:
        """#1: after a burst of hand-offs, every idle worker accepts a task."""
        with WorkerPool(2, max_pending=0) as pool:
            for _ in range(3000):
                pool.submit(add, 1)
            wait_until(lambda: pool.stats().idle == 2, "both workers idle")
            pool._check()
            # Two idle workers: two hand-offs must be accepted and run together.
            both = threading.Barrier(3)
            first = pool.try_submit(both.wait, TIMEOUT)
            second = pool.try_submit(both.wait, TIMEOUT)
            assert first is not None
            assert second is not None
            both.wait(TIMEOUT)
            first.result(TIMEOUT)
            second.result(TIMEOUT)
            # With both busy and no queue, a third task is refused.
            hold_workers(pool, 2, gate)
            assert pool.try_submit(add, 1) is None
            gate.set()


class TestShutdownWaits:
    @pytest.mark.usefixtures("fast_switching")
    def test_no_worker_thread_is_alive_after_shutdown_wait(self) -> None:
        """shutdown(wait=True) returns only once its worker threads have ended."""
        for _ in range(200):
            pool = WorkerPool(4)
            futures = [pool.submit(abs, -i) for i in range(8)]
            workers = [w.thread for w in pool._workers if w.thread is not None]
            pool.shutdown(wait=True)
            assert [f.result(timeout=0) for f in futures] == list(range(8))
            alive = [t.name for t in workers if t.is_alive()]
            assert not alive, f"still alive after shutdown(wait=True): {alive}"

    @pytest.mark.usefixtures("fast_switching")
    def test_shutdown_waits_for_a_task_whose_worker_is_starting(self) -> None:
        """#2: shutdown(wait=True) never returns before an accepted task ran."""
        early = spin = 0
        for _ in range(300):
            pool = WorkerPool(2)
            go = threading.Barrier(2)
            accepted: list[cf.Future[None]] = []
            finished = threading.Event()

            def task(finished: threading.Event = finished) -> None:
                time.sleep(0.01)  # the task's own work, not a synchronisation
                finished.set()

            def submitter(
                pool: WorkerPool = pool,
                go: threading.Barrier = go,
                accepted: list[cf.Future[None]] = accepted,
                task: Callable[[], None] = task,
            ) -> None:
                go.wait(TIMEOUT)
                with contextlib.suppress(RuntimeError):  # refused: shutdown first
                    accepted.append(pool.submit(task))

            t = threading.Thread(target=submitter)
            t.start()
            go.wait(TIMEOUT)
            for _ in range(spin):  # land the shutdown at varying points of submit
                pass
            spin = (spin + 37) % 8000
            pool.shutdown(wait=True)
            t.join(TIMEOUT)
            # The task takes 10 ms: had shutdown returned before it, the
            # submit (which returns once the thread started) came first.
            if accepted and not finished.is_set():
                early += 1
            pool.shutdown(wait=True)
        assert early == 0

    def test_ctrl_c_in_shutdown_keeps_the_next_shutdown_waiting(self) -> None:
        """#5: after Ctrl-C interrupts shutdown(wait=True), the next one waits."""
        code = """
            import os, signal, threading, time
            from safethreads import WorkerPool

            pool = WorkerPool(1)
            started, release = threading.Event(), threading.Event()
            def task():
                started.set()
                release.wait(30)
            f = pool.submit(task)
            started.wait(10)

            def interrupter():
                while not pool._shutdown:
                    time.sleep(0.01)
                time.sleep(0.3)  # let shutdown() start waiting
                os.kill(os.getpid(), signal.SIGINT)

            threading.Thread(target=interrupter, daemon=True).start()
            try:
                pool.shutdown(wait=True)
                print("not interrupted")
            except KeyboardInterrupt:
                print("interrupted")
            threading.Timer(0.5, release.set).start()
            pool.shutdown(wait=True)
            print("done after second shutdown:", f.done())
        """
        proc = run_child(code, prelude=SIGINT_PRELUDE)
        assert proc.returncode == 0, proc.stderr
        assert "interrupted" in proc.stdout
        assert "done after second shutdown: True" in proc.stdout


class TestExit:
    def test_work_submitted_after_the_exit_hook_is_refused_not_dropped(self) -> None:
        """#3: a submit after the exit hook raises RuntimeError; none is dropped."""
        code = """
            import atexit, threading
            from safethreads import WorkerPool

            early = WorkerPool(2)  # created before exit, never used
            done = []
            counts = {"accepted": 0, "refused": 0}

            def late():
                threading.main_thread().join()  # returns once exit began
                for pool in (early, WorkerPool(2)):
                    for i in range(5):
                        try:
                            pool.submit(lambda i=i: (threading.Event().wait(0.2),
                                                     done.append(i)))
                        except RuntimeError as exc:
                            counts["refused"] += 1
                            counts["message"] = str(exc)
                        else:
                            counts["accepted"] += 1

            atexit.register(lambda: print(counts, "completed", len(done), flush=True))
            threading.Thread(target=late).start()
        """
        proc = run_child(code)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert "'accepted': 0" in out, out
        assert "'refused': 10" in out, out
        assert "after interpreter shutdown" in out, out


class TestHelping:
    def test_a_raising_callback_of_a_helped_task_does_not_reach_the_helper(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A done-callback's SystemExit, in a helping worker, is logged."""
        ready = threading.Event()
        inner: list[cf.Future[int]] = []

        def boom(_f: object) -> None:
            raise SystemExit("from a done-callback")

        def outer() -> int:
            assert ready.wait(TIMEOUT)
            return inner[0].result()  # no timeout: the worker runs it inline

        with WorkerPool(1) as pool:
            helper = pool.submit(outer)
            inner.append(pool.submit(int, "42"))  # queued behind outer
            inner[0].add_done_callback(boom)
            ready.set()
            assert helper.result(TIMEOUT) == 42
        assert inner[0].result(0) == 42
        assert "from a done-callback" in caplog.text

    def test_result_with_timeout_does_not_run_a_queued_task_inline(self) -> None:
        """#4: from a worker, result(timeout=0) on a queued task times out."""
        with WorkerPool(1) as pool:

            def parent() -> str:
                child = pool.submit(threading.current_thread)
                try:
                    child.result(timeout=0)
                except TimeoutError as exc:
                    return str(exc)
                return "ran inline"

            message = pool.submit(parent).result(TIMEOUT)
        assert "did not finish within 0 seconds" in message

    def test_nested_waits_across_two_pools_do_not_deadlock(self) -> None:
        """#12: A's task waits on B's, which waits on A's queued task."""
        a = WorkerPool(1)
        b = WorkerPool(1)
        try:

            def in_b() -> int:
                return a.submit(add, 1, 2).result()  # A's only worker is busy

            def in_a() -> int:
                return b.submit(in_b).result()

            assert a.submit(in_a).result(TIMEOUT) == 3
        finally:
            a.shutdown(wait=False, cancel_futures=True)
            b.shutdown(wait=False, cancel_futures=True)
        a.shutdown()
        b.shutdown()


class TestInterruptedSubmit:
    @pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
    def test_interrupt_in_a_caller_runs_task_reaches_the_caller(
        self, gate: threading.Event, exc_type: type[BaseException]
    ) -> None:
        """Ctrl-C (or exit) while the caller runs the task is raised by submit."""
        captured: list[cf.Future[None]] = []

        def interrupted() -> None:
            raise exc_type

        with WorkerPool(1, max_pending=0, on_full="caller_runs") as pool:
            hold_workers(pool, 1, gate)
            real_place = pool._place

            def place(future: Any, policy: str | None) -> bool:
                captured.append(future)
                return real_place(future, policy)

            pool._place = place  # type: ignore[method-assign]
            with pytest.raises(exc_type):
                pool.submit(interrupted)
            gate.set()
        (future,) = captured
        assert isinstance(future.exception(timeout=0), exc_type)
        assert pool.stats().running == 0

    def test_ctrl_c_while_a_caller_runs_task_is_counted_keeps_counts(
        self, gate: threading.Event
    ) -> None:
        """A SIGINT while the caller waits for the pool lock to count its task."""
        import signal

        from safethreads import _worker_pool

        main = threading.get_ident()

        def blocked_before_counting() -> bool:
            # The caller is in _run_here's `finally`, waiting for the lock
            # that we hold: the line after `finally:`, `with self._lock:`.
            frame = current_frames().get(main)
            return (
                frame is not None
                and frame.f_code is _worker_pool.WorkerPool._run_here.__code__
                and "with self._lock" in _source_line(frame, 0)
                and "finally:" in _source_line(frame, -1)
            )

        def hold_the_lock_and_interrupt() -> None:
            with pool._lock:
                wait_until(blocked_before_counting, "the caller waiting to count")
                # No frame shows the caller inside the kernel's wait for the
                # lock: give it a moment to get there, or the signal lands
                # before the wait and the test passes without testing.
                time.sleep(0.05)
                # A real signal: it interrupts the caller's wait for the lock.
                signal.pthread_kill(main, signal.SIGINT)

        def task() -> int:
            threading.Thread(target=hold_the_lock_and_interrupt, daemon=True).start()
            return 7

        with WorkerPool(1, max_pending=0, on_full="caller_runs") as pool:
            hold_workers(pool, 1, gate)
            with pytest.raises(KeyboardInterrupt):
                pool.submit(task)
            gate.set()
        s = pool.stats()
        assert (s.submitted, s.completed, s.queued, s.running) == (2, 2, 0, 0), s

    def test_ctrl_c_while_a_worker_is_created_leaves_no_phantom(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """#6: Ctrl-C while submit creates a worker leaves the pool usable."""
        import safethreads._worker_pool as wp

        real = wp._Worker
        calls = 0

        def interrupted(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise KeyboardInterrupt
            return real(*args)

        monkeypatch.setattr(wp, "_Worker", interrupted)
        with WorkerPool(1) as pool:
            with pytest.raises(KeyboardInterrupt):
                pool.submit(add, 1)
            assert pool.submit(add, 1, 2).result(TIMEOUT) == 3
            pool._check()

    def test_ctrl_c_after_the_thread_started_leaves_counts_right(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """#6: Ctrl-C as Thread.start returns: no task runs, no count goes wrong."""
        real_start = threading.Thread.start
        calls = 0

        def start_then_interrupt(self: threading.Thread) -> None:
            nonlocal calls
            real_start(self)
            calls += 1
            if calls == 1:
                raise KeyboardInterrupt

        ran: list[int] = []
        monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
        with WorkerPool(1) as pool:
            with pytest.raises(KeyboardInterrupt):
                pool.submit(ran.append, 1)
            monkeypatch.undo()
            assert pool.submit(add, 1, 2).result(TIMEOUT) == 3
            wait_until(lambda: pool.stats().running == 0, "the pool to settle")
            pool._check()
            s = pool.stats()
            assert s.workers == 1
            assert s.submitted == s.completed == 1
        assert ran == []

    def test_ctrl_c_at_every_point_of_submit(self) -> None:  # noqa: C901 - one loop over every point
        """#6: an interrupt at any call inside submit leaves a working pool.

        A profile hook raises KeyboardInterrupt at the n-th function entry
        or C-call return in the pool's own code in the submitting thread,
        which is where CPython delivers a real Ctrl-C; n runs over every
        such point of three submit paths: starting a worker, a hand-off to
        an idle worker, and the queue.  (Inside `threading` itself, an
        interrupt can corrupt `threading`'s own state; Ctrl-C inside
        `Thread.start` is covered above.)
        """
        import safethreads._future as fut
        import safethreads._worker_pool as wp

        OURS = {wp.__file__, fut.__file__}  # noqa: N806
        for path in ("start", "handoff", "queue"):
            n = 0
            while True:
                n += 1
                pool = WorkerPool(1)
                gate = threading.Event()
                busy: cf.Future[bool] | None = None
                if path == "handoff":
                    pool.submit(add, 0).result(TIMEOUT)
                    wait_until(functools.partial(_has_idle, pool), "an idle worker")
                elif path == "queue":
                    busy = pool.submit(gate.wait, TIMEOUT)
                seen = 0

                def hook(frame: Any, event: str, arg: Any, n: int = n) -> None:
                    nonlocal seen
                    if (
                        event in ("call", "c_return")
                        and frame.f_code.co_filename in OURS
                    ):
                        seen += 1
                        if seen == n:
                            raise KeyboardInterrupt

                interrupted = False
                future: cf.Future[int] | None = None
                sys.setprofile(hook)
                try:
                    future = pool.submit(add, 1, 2)
                except KeyboardInterrupt:
                    interrupted = True
                finally:
                    sys.setprofile(None)
                gate.set()
                assert pool.submit(add, 2, 2).result(TIMEOUT) == 4, (path, n)
                if future is not None:
                    assert future.result(TIMEOUT) == 3, (path, n)
                pool.shutdown(wait=True)
                pool._check()
                s = pool.stats()
                assert s.queued == s.running == 0, (path, n, s)
                assert s.workers == 0, (path, n, s)
                if busy is not None:
                    assert busy.done()
                if not interrupted:
                    break
            assert n > 3, path  # the hook did reach into submit


class TestDroppedPool:
    def test_dropped_pools_let_their_idle_workers_exit(self) -> None:
        """#7: pools dropped without shutdown() leave no thread behind."""
        before = threading.active_count()
        for _ in range(5):
            pool = WorkerPool(4)
            assert list(pool.map(add, range(8))) == list(range(8))
            del pool
        gc.collect()
        wait_until(lambda: threading.active_count() == before, "idle workers to exit")

    def test_dropped_pool_finishes_its_queued_work(self, gate: threading.Event) -> None:
        """#7: a dropped pool with queued tasks runs them, then its workers exit."""
        before = threading.active_count()
        pool = WorkerPool(1)
        hold_workers(pool, 1, gate)
        futures = [pool.submit(add, i) for i in range(5)]
        del pool
        gc.collect()
        gate.set()
        assert [f.result(TIMEOUT) for f in futures] == list(range(5))
        wait_until(lambda: threading.active_count() == before, "the worker to exit")


class TestMapIterators:
    @pytest.mark.parametrize("how", ["close", "drop"])
    @pytest.mark.parametrize("kind", ["map", "imap_unordered"])
    def test_stopping_before_the_first_next_cancels(
        self, gate: threading.Event, reported: list[Any], how: str, kind: str
    ) -> None:
        """#8: closing or dropping an unstarted iterator cancels its tasks."""
        with WorkerPool(1) as pool:
            hold_workers(pool, 1, gate)
            errors = [ValueError(i) for i in range(3)]
            it = getattr(pool, kind)(fail_with, errors)
            if how == "close":
                it.close()
            else:
                del it
                gc.collect()
            assert pool.stats().cancelled == 3
            gate.set()
        gc.collect()
        assert reported == []

    @pytest.mark.parametrize("kind", ["map", "imap_unordered"])
    def test_failing_input_reports_nothing_unobserved(
        self, reported: list[Any], kind: str
    ) -> None:
        """#8: tasks abandoned because the input raised are not reported."""
        with WorkerPool(2) as pool:

            def inputs() -> Iterator[BaseException]:
                yield ValueError("a")
                yield ValueError("b")
                wait_until(lambda: pool.stats().failed == 2, "both tasks to fail")
                raise LookupError("bad input")

            with pytest.raises(LookupError):
                getattr(pool, kind)(fail_with, inputs())
        gc.collect()
        assert reported == []

    def test_map_keeps_no_reference_to_a_returned_result(self) -> None:
        """#9: a result the caller dropped is not kept alive by the iterator."""

        class Big:
            pass

        with WorkerPool(1) as pool:
            it = pool.map(lambda _: Big(), range(3))
            first = next(it)
            ref = weakref.ref(first)
            del first
            wait_until(lambda: pool.stats().idle == 1, "the worker to park")
            gc.collect()
            assert ref() is None
            assert len(list(it)) == 2


class Boom(BaseException):
    pass


def raise_boom(_: object) -> NoReturn:
    raise Boom


class TestCallbacks:
    def test_base_exception_in_a_callback_does_not_kill_the_worker(
        self, gate: threading.Event, caplog: pytest.LogCaptureFixture
    ) -> None:
        """#10: a done-callback raising BaseException is logged; the pool goes on."""
        with WorkerPool(1) as pool:
            (held,) = hold_workers(pool, 1, gate)
            held.add_done_callback(raise_boom)
            with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
                gate.set()
                assert pool.submit(add, 1, 2).result(TIMEOUT) == 3
            assert pool.stats().workers == 1
        assert "exception calling callback" in caplog.text
        assert "Boom" in caplog.text

    def test_base_exception_in_a_callback_runs_the_others_then_propagates(
        self, gate: threading.Event
    ) -> None:
        """#10: in the caller's thread the other callbacks run, then it raises."""
        seen: list[cf.Future[int]] = []
        with WorkerPool(1) as pool:
            hold_workers(pool, 1, gate)
            queued = pool.submit(add, 1)
            queued.add_done_callback(raise_boom)
            queued.add_done_callback(seen.append)
            with pytest.raises(Boom):
                queued.cancel()
            assert seen == [queued]
            assert queued.cancelled()
            gate.set()

    def test_raising_callback_does_not_stop_shutdown_cancelling_the_rest(
        self, gate: threading.Event
    ) -> None:
        """#10: shutdown(cancel_futures=True) cancels every task, then raises."""
        with WorkerPool(1) as pool:
            hold_workers(pool, 1, gate)
            queued = [pool.submit(add, i) for i in range(4)]
            queued[0].add_done_callback(raise_boom)
            with pytest.raises(Boom):
                pool.shutdown(wait=False, cancel_futures=True)
            assert all(f.cancelled() for f in queued)
            gate.set()
        assert pool.stats().cancelled == 4


class TestFork:
    pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

    def test_fork_inside_a_task_ends_the_child(self) -> None:
        """#11: a child forked by a task exits when the task ends there."""
        code = """
            import os, sys, warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            from safethreads import WorkerPool

            def task(how):
                pid = os.fork()
                if pid == 0:
                    if how == "exit":
                        sys.exit(7)
                    if how == "raise":
                        raise ValueError("in the child")
                    return "child"
                _, status = os.waitpid(pid, 0)
                return os.waitstatus_to_exitcode(status)

            with WorkerPool(2) as pool:
                codes = [pool.submit(task, how).result(30)
                         for how in ("exit", "return", "raise")]
            print("codes", codes)
        """
        proc = run_child(code)
        assert proc.returncode == 0, proc.stderr
        assert "codes [7, 0, 1]" in proc.stdout

    def test_fork_fails_a_task_handed_to_a_starting_worker(self) -> None:
        """Suspicion 1: a task waiting for its worker's start fails in the child."""
        code = """
            import os, sys, threading, warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            from safethreads import BrokenWorkerPool, WorkerPool

            in_init, release = threading.Event(), threading.Event()
            def init():
                in_init.set()
                release.wait(30)

            pool = WorkerPool(1, initializer=init)
            f = pool.submit(int, 5)
            in_init.wait(10)
            pid = os.fork()
            if pid == 0:
                try:
                    f.result(timeout=5)
                    print("child: result")
                except BrokenWorkerPool:
                    print("child: broken")
                except TimeoutError:
                    print("child: hang")
                sys.stdout.flush()
                os._exit(0)
            os.waitpid(pid, 0)
            release.set()
            print("parent:", f.result(10))
            pool.shutdown()
        """
        proc = run_child(code)
        assert proc.returncode == 0, proc.stderr
        assert "child: broken" in proc.stdout
        assert "parent: 5" in proc.stdout

    def test_fork_while_a_submit_is_blocked_leaves_a_consistent_pool(self) -> None:
        """Suspicion 1: a submit blocked at the fork leaves nothing waitable behind."""
        code = """
            import os, sys, threading, time, warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            from safethreads import BrokenWorkerPool, WorkerPool

            release = threading.Event()
            pool = WorkerPool(1, max_pending=0)
            busy = pool.submit(release.wait, 30)
            t = threading.Thread(target=lambda: pool.submit(int))
            t.start()
            while not pool._blocked:
                time.sleep(0.01)
            pid = os.fork()
            if pid == 0:
                pool._check()
                s = pool.stats()
                print("child:", s.queued, s.running, s.failed)
                try:
                    busy.result(timeout=5)
                except BrokenWorkerPool:
                    print("child: busy broken")
                try:
                    pool.submit(int)
                except BrokenWorkerPool:
                    print("child: submit refused")
                sys.stdout.flush()
                os._exit(0)
            os.waitpid(pid, 0)
            release.set()
            t.join(10)
            pool.shutdown()
        """
        proc = run_child(code)
        assert proc.returncode == 0, proc.stderr
        assert "child: 0 0 1" in proc.stdout
        assert "child: busy broken" in proc.stdout
        assert "child: submit refused" in proc.stdout


class TestCancelWhileWaited:
    @pytest.mark.stress
    @pytest.mark.usefixtures("fast_switching")
    def test_as_completed_yields_each_cancelled_future_once(
        self, gate: threading.Event
    ) -> None:
        """Futures cancelled while another thread iterates as_completed()."""
        with WorkerPool(1) as pool:
            hold_workers(pool, 1, gate)
            for _ in range(100):
                futures = [pool.submit(int) for _ in range(30)]
                got: ResultThread[list[cf.Future[int]]] = ResultThread(
                    target=list, args=(cf.as_completed(futures, timeout=TIMEOUT),)
                )
                got.start()
                last: Any = futures[-1]
                wait_until(lambda: bool(last._waiters), "as_completed() waiting")  # noqa: B023 - called at once
                for f in futures:
                    f.cancel()
                assert sorted(map(id, got.result(TIMEOUT))) == sorted(map(id, futures))
            gate.set()


class TestStats:
    def test_a_task_refused_inside_map_is_not_counted(
        self, gate: threading.Event
    ) -> None:
        """A map whose second submit is refused counts only what was accepted."""
        with WorkerPool(1, max_pending=0, on_full="raise") as pool:
            hold_workers(pool, 1, gate)
            with pytest.raises(PoolFull):
                pool.map(add, range(3))
            s = pool.stats()
            gate.set()
        assert (s.submitted, s.cancelled, s.rejected) == (1, 0, 1)
        assert s.submitted == (
            s.queued + s.running + s.completed + s.failed + s.cancelled
        )

    def test_cancelled_tasks_are_not_counted_as_queued(
        self, gate: threading.Event
    ) -> None:
        """#13: 4 submitted tasks, 2 of them cancelled, add up to 4."""
        with WorkerPool(1) as pool:
            hold_workers(pool, 1, gate)
            queued = [pool.submit(add, i) for i in range(3)]
            assert queued[0].cancel()
            assert queued[1].cancel()
            s = pool.stats()
            assert (s.queued, s.running, s.cancelled) == (1, 1, 2)
            assert s.submitted == 4
            gate.set()

    def test_a_cancel_is_counted_with_its_state_change(
        self, gate: threading.Event, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A future another thread has cancelled is counted as cancelled, even
        while that thread is still waking its waiters, and `shutdown(wait=True)`
        leaves nothing queued (the count used to come after the state change)."""
        deliver = PoolFuture._deliver_cancel
        paused, resume = threading.Event(), threading.Event()

        def held(future: PoolFuture[Any], pool: Any) -> None:
            if threading.current_thread() is canceller:
                paused.set()
                resume.wait(TIMEOUT)
            deliver(future, pool)

        monkeypatch.setattr(PoolFuture, "_deliver_cancel", held)
        pool = WorkerPool(1)
        hold_workers(pool, 1, gate)
        victim = pool.submit(add, 1)
        canceller = threading.Thread(target=victim.cancel)
        try:
            canceller.start()
            assert paused.wait(TIMEOUT)
            assert victim.cancelled()
            s = pool.stats()
            assert (s.queued, s.running, s.cancelled) == (0, 1, 1), s
            gate.set()
            pool.shutdown(wait=True)
            s = pool.stats()
            assert (s.queued, s.completed, s.cancelled, s.submitted) == (0, 1, 1, 2), s
        finally:
            resume.set()
            gate.set()
            canceller.join(TIMEOUT)
            pool.shutdown()

    @pytest.mark.stress
    @pytest.mark.usefixtures("fast_switching")
    def test_a_future_seen_cancelled_is_counted_in_the_next_snapshot(
        self,
    ) -> None:
        """Three threads cancel queued futures while this one reads them:
        `stats().cancelled` is never below the number it saw cancelled."""
        n, rounds = 40, 30
        low: list[tuple[int, Any]] = []
        for _ in range(rounds):
            gate = threading.Event()
            with WorkerPool(2) as pool:
                hold_workers(pool, 2, gate)
                futures = [pool.submit(add, i) for i in range(n)]
                go = threading.Barrier(4)

                def cancel_some(part: list[cf.Future[int]]) -> None:
                    go.wait(TIMEOUT)  # noqa: B023 - joined before the next round
                    for f in part:
                        f.cancel()

                cancellers = [
                    threading.Thread(target=cancel_some, args=(futures[k::3],))
                    for k in range(3)
                ]
                for t in cancellers:
                    t.start()
                go.wait(TIMEOUT)
                for _ in range(60):
                    seen = sum(f.cancelled() for f in futures)
                    s = pool.stats()
                    if s.cancelled < seen:
                        low.append((seen, s))
                for t in cancellers:
                    t.join(TIMEOUT)
                gate.set()
            s = pool.stats()
            assert (s.queued, s.running, s.cancelled, s.completed) == (0, 0, n, 2), s
        assert low == []

    @pytest.mark.stress
    @pytest.mark.usefixtures("fast_switching")
    def test_counts_add_up_in_every_snapshot(self) -> None:
        """#13: submitted == queued + running + completed + failed + cancelled."""
        n_threads, per_thread = 4, 300
        with WorkerPool(3, max_pending=5) as pool:
            stop = threading.Event()
            bad: list[Any] = []

            def watch() -> None:
                while not stop.is_set():
                    s = pool.stats()
                    total = s.queued + s.running + s.completed + s.failed + s.cancelled
                    if total != s.submitted or min(s.queued, s.running) < 0:
                        bad.append(s)

            def submit_some(seed: int) -> None:
                for i in range(per_thread):
                    f = (
                        pool.submit(fail_with, ValueError())
                        if i % 7 == 0
                        else (pool.submit(add, i, seed))
                    )
                    # A failure that was too late to cancel is still looked
                    # at, or it would be reported as unobserved.
                    cancelled = i % 5 == 0 and f.cancel()
                    if i % 7 == 0 and not cancelled:
                        f.exception(TIMEOUT)

            watcher = threading.Thread(target=watch)
            watcher.start()
            workers = [
                threading.Thread(target=submit_some, args=(k,))
                for k in range(n_threads)
            ]
            for t in workers:
                t.start()
            for t in workers:
                t.join(TIMEOUT * 3)
            stop.set()
            watcher.join(TIMEOUT)
        s = pool.stats()
        assert bad == []
        assert s.submitted == n_threads * per_thread
        assert s.queued == s.running == 0
        assert s.completed + s.failed + s.cancelled == s.submitted


class TestAsyncio:
    def test_default_executor_of_an_event_loop(self) -> None:
        """#14: set_default_executor accepts it; run_in_executor(None) uses it."""
        pool = WorkerPool(2, thread_name_prefix="aio")
        assert isinstance(pool, cf.ThreadPoolExecutor)

        async def main() -> tuple[int, str]:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(pool)
            value = await loop.run_in_executor(None, add, 1, 2)
            name = await loop.run_in_executor(
                None, lambda: threading.current_thread().name
            )
            return value, name

        value, name = asyncio.run(main())
        assert value == 3
        assert name.startswith("aio_")
        # asyncio.run shut the default executor down and waited for it.
        assert pool.stats().workers == 0
        with pytest.raises(RuntimeError, match="after shutdown"):
            pool.submit(add, 1)
        # None of ThreadPoolExecutor's own machinery is half-used.
        for name in ("_work_queue", "_threads", "_idle_semaphore"):
            assert not hasattr(pool, name)


class TestMessages:
    def test_timeout_error_names_the_task_and_the_timeout(
        self, gate: threading.Event
    ) -> None:
        """#15: a pool future's TimeoutError says which task and how long."""
        with WorkerPool(1) as pool:
            (held,) = hold_workers(pool, 1, gate)
            queued = pool.submit(add, 1)
            with pytest.raises(
                TimeoutError, match=r"task add did not finish within 0\.01"
            ):
                queued.result(timeout=0.01)
            with pytest.raises(
                TimeoutError, match=r"\.hold did not finish within 0\.01"
            ):
                held.exception(timeout=0.01)
            gate.set()


class TestObserved:
    def test_failure_returned_by_wait_is_observed(self, reported: list[Any]) -> None:
        """#16: a failed future wait() returns in `done` is never reported."""
        with WorkerPool(2) as pool:
            gate = threading.Event()
            slow = pool.submit(gate.wait, TIMEOUT)
            bad = pool.submit(fail_with, KeyError("k"))
            both: list[cf.Future[Any]] = [slow, bad]
            done, not_done = cf.wait(
                both, timeout=TIMEOUT, return_when=cf.FIRST_EXCEPTION
            )
            assert done == {bad}
            gate.set()
            early = pool.submit(fail_with, KeyError("early"))
            wait_until(early.done, "the task to fail")
            assert list(cf.as_completed([early], timeout=TIMEOUT)) == [early]
        del bad, both, done, not_done, early
        gc.collect()
        assert reported == []

    def test_failure_after_wait_gave_up_is_still_reported(
        self, reported: list[Any], gate: threading.Event
    ) -> None:
        """#16: wait() that timed out did not see the failure that came later."""
        with WorkerPool(1) as pool:
            hold_workers(pool, 1, gate)
            late = pool.submit(fail_with, KeyError("late"))
            done, not_done = cf.wait([late], timeout=0.01)
            assert not done
            gate.set()
        del late, done, not_done
        gc.collect()
        assert len(reported) == 1


class TestFutureProtocol:
    @pytest.mark.parametrize("kind", ["stdlib", "pool"])
    def test_second_notify_after_cancel_raises(self, kind: str) -> None:
        """Suspicion 2: set_running_or_notify_cancel() twice after cancel() raises."""
        future: cf.Future[int] = (
            cf.Future()
            if kind == "stdlib"
            else PoolFuture(None, None, None, None, None)
        )
        assert future.cancel()
        assert future.set_running_or_notify_cancel() is False
        with pytest.raises(RuntimeError, match="unexpected state"):
            future.set_running_or_notify_cancel()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_reaches_a_blocked_submit() -> None:
    """A submit blocked on a full pool is interrupted by Ctrl-C, pool intact."""
    code = """
        import os, signal, threading, time
        from safethreads import WorkerPool
        release = threading.Event()
        pool = WorkerPool(1, max_pending=0)
        pool.submit(release.wait, 30)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            pool.submit(int)
        except KeyboardInterrupt:
            print("interrupted")
        release.set()
        print("after", pool.submit(int, 4).result(10))
        pool.shutdown()
        pool._check()
    """
    proc = run_child(code, prelude=SIGINT_PRELUDE)
    assert proc.returncode == 0, proc.stderr
    assert "interrupted" in proc.stdout
    assert "after 4" in proc.stdout


class TestTimedNestedWaits:
    def test_timed_wait_on_a_queued_subtask_gets_a_thread(self) -> None:
        """#4: a worker's timed wait does not run the task, and does not deadlock."""
        with WorkerPool(1) as pool:
            me: list[threading.Thread] = []

            def child() -> tuple[threading.Thread, int]:
                return threading.current_thread(), pool.stats().workers

            def parent() -> int:
                me.append(threading.current_thread())
                ran_in, workers = pool.submit(child).result(timeout=TIMEOUT)
                assert ran_in is not me[0]  # not inline: another thread ran it
                return workers

            assert pool.submit(parent).result(TIMEOUT) == 2
            # The thread added for the wait leaves once the wait is over.
            wait_until(lambda: pool.stats().workers == 1, "the extra thread to exit")
            pool._check()


@pytest.mark.stress
@pytest.mark.usefixtures("fast_switching")
def test_shutdown_races_submitters_and_loses_nothing(
    stress_rng: random.Random,
) -> None:
    """Every accepted task ends done, whatever shutdown(cancel_futures) races.

    Also pins the bounded queue's count: cancelling the queue must not
    forget a task a worker took off it an instant before.
    """
    for _ in range(150):
        pool = WorkerPool(
            stress_rng.choice([1, 2, 3]),
            max_pending=stress_rng.choice([None, 0, 1, 3]),
            on_full=stress_rng.choice(["block", "raise", "caller_runs"]),
        )
        accepted: list[cf.Future[None]] = []
        go = threading.Barrier(4)

        def submit_some(
            pool: WorkerPool = pool,
            go: threading.Barrier = go,
            accepted: list[cf.Future[None]] = accepted,
        ) -> None:
            go.wait(TIMEOUT)
            for i in range(30):
                try:
                    f = pool.submit(time.sleep, 0)
                except RuntimeError:  # shut down, or PoolFull
                    continue
                accepted.append(f)
                if i % 4 == 0:
                    f.cancel()

        threads = [threading.Thread(target=submit_some) for _ in range(3)]
        for t in threads:
            t.start()
        go.wait(TIMEOUT)
        for _ in range(stress_rng.randrange(3000)):  # vary where shutdown lands
            pass
        pool.shutdown(wait=True, cancel_futures=stress_rng.random() < 0.5)
        for t in threads:
            t.join(TIMEOUT)
        pool._check()
        assert all(f.done() for f in accepted)
        s = pool.stats()
        assert (s.workers, s.queued, s.running) == (0, 0, 0), s
        assert s.submitted == s.completed + s.failed + s.cancelled, s
