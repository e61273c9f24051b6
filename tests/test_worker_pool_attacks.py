"""WorkerPool regressions found by attacking the issue-9 rewrite.

Each test failed on the pool before its fix; a failure that is a hang runs
in a child interpreter with a timeout.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from safethreads import WorkerPool

TIMEOUT = 10.0  # every wait in these tests is bounded
CHILD_TIMEOUT = 30.0


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter; a hang fails instead of blocking."""
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child process hung: {exc.stdout!r} {exc.stderr!r}")


@pytest.mark.parametrize(
    ("operation", "method"),
    [("stats", "map"), ("shutdown", "map"), ("shutdown", "imap_unordered")],
)
def test_collecting_a_map_iterator_inside_the_pool_lock_does_not_deadlock(
    operation: str, method: str
) -> None:
    """A dropped map iterator in a reference cycle, collected by a garbage
    collection that runs while the thread holds the pool's lock, cancels its
    tasks without waiting for that lock (it used to wait for itself forever).

    The collection threshold is moved step by step so that, in one of the
    rounds, the collection fires inside the pool's critical section.
    """
    code = f"""
        import gc, threading
        from safethreads import WorkerPool
        import safethreads._stats
        for step in range(120):
            pool = WorkerPool(1)
            gate = threading.Event()
            pool.submit(gate.wait, 30)
            it = pool.{method}(abs, range(3))
            cycle = [it]
            cycle.append(cycle)
            del it, cycle
            gc.set_threshold(gc.get_count()[0] + step, 1000, 1000)
            try:
                if {operation!r} == "stats":
                    pool.stats()
                else:
                    pool.shutdown(wait=False, cancel_futures=True)
            finally:
                gc.set_threshold(700, 10, 10)
            gate.set()
            pool.shutdown(wait=True)
            gc.collect()
            s = pool.stats()
            assert s.submitted == s.completed + s.cancelled, s
            assert s.workers == 0, s
        print("ok")
    """
    proc = run_child(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("operation", ["stats", "shutdown"])
@pytest.mark.parametrize("method", ["map", "imap_unordered"])
@pytest.mark.parametrize("kwargs", ["chunksize=2", "progress=lambda d, t: None"])
def test_collecting_a_chunked_stream_inside_the_pool_lock_does_not_deadlock(
    operation: str, method: str, kwargs: str
) -> None:
    """As above, for the stream `map` and `imap_unordered` return with
    `chunksize` or `progress` (`executor_map` over the pool): its `__del__`
    cancelled its tasks under the pool's lock, held by the collecting thread.
    """
    code = f"""
        import gc, threading
        from safethreads import WorkerPool
        import safethreads._stats
        for step in range(120):
            pool = WorkerPool(1)
            gate = threading.Event()
            pool.submit(gate.wait, 30)
            it = pool.{method}(abs, range(6), {kwargs})
            cycle = [it]
            cycle.append(cycle)
            del it, cycle
            gc.set_threshold(gc.get_count()[0] + step, 1000, 1000)
            try:
                if {operation!r} == "stats":
                    pool.stats()
                else:
                    pool.shutdown(wait=False, cancel_futures=True)
            finally:
                gc.set_threshold(700, 10, 10)
            gate.set()
            pool.shutdown(wait=True)
            gc.collect()
            s = pool.stats()
            assert s.submitted == s.completed + s.cancelled, s
            assert s.workers == 0, s
        print("ok")
    """
    proc = run_child(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("cancel_futures", [True, False])
def test_a_cancel_handed_to_a_thread_is_counted_before_shutdown_returns(
    cancel_futures: bool,
) -> None:
    """A map iterator collected inside the pool's critical section hands its
    cancels to a fresh thread; once a future is cancelled it is counted, so
    `stats()` after `shutdown(wait=True)` adds up however far that thread got.

    It used to set the state first and count later: a `shutdown` between the
    two left `queued=1` (seen under `--parallel-threads`).  Here the thread is
    held just after the state change, as a preempted thread would be.
    """
    code = f"""
        import threading
        from safethreads import WorkerPool
        from safethreads._future import PoolFuture

        main = threading.get_ident()
        paused, resume, finished = (threading.Event() for _ in range(3))
        deliver = PoolFuture._deliver_cancel

        def held(self, pool):
            if threading.get_ident() == main:
                deliver(self, pool)
                return
            paused.set()
            resume.wait(30)
            try:
                deliver(self, pool)
            finally:
                finished.set()

        PoolFuture._deliver_cancel = held
        pool = WorkerPool(1)
        gate = threading.Event()
        pool.submit(gate.wait, 30)
        it = pool.map(abs, range(3))
        with pool._lock:  # where a collection would close it
            it.close()
        assert paused.wait(30)
        if {cancel_futures!r}:
            pool.shutdown(wait=False, cancel_futures=True)
        gate.set()
        pool.shutdown(wait=True)
        s = pool.stats()
        resume.set()
        assert finished.wait(30)
        assert s.submitted == s.completed + s.cancelled, s
        assert (s.queued, s.running, s.workers) == (0, 0, 0), s
        assert s == pool.stats(), (s, pool.stats())
        print("ok")
    """
    proc = run_child(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("finalizer", ["weakref.finalize", "map", "imap_unordered"])
def test_a_finalizer_cancelling_inside_a_future_lock_does_not_deadlock(
    finalizer: str,
) -> None:
    """A collection inside a future's critical section (here the lock
    `concurrent.futures.wait()` holds) runs a finalizer that cancels another
    task of the pool, while a second thread cancels the first future:
    neither waits forever.

    `cancel()` used to wait for the future's lock with the pool's held, and
    the finalizer waited for the pool's with the future's held.  A dropped
    `map` iterator checks the locks before it cancels; here the second
    thread takes the pool's lock just after that check, as a preempted
    finalizer would let it.
    """
    code = f"""
        import gc, os, threading, time, weakref
        from safethreads import WorkerPool
        from safethreads._future import PoolFuture

        pool = WorkerPool(1)
        gate = threading.Event()
        pool.submit(gate.wait, 30)
        first = pool.submit(abs, -1)
        if {finalizer!r} == "weakref.finalize":
            other = pool.submit(abs, -2)
            owner = type("Owner", (), {{}})()
            owner.cycle = owner
            weakref.finalize(owner, other.cancel)
            del owner
        else:
            it = pool.{finalizer}(abs, range(3))
            cycle = [it]
            cycle.append(cycle)
            del it, cycle
        collector_holds = threading.Event()
        silence = PoolFuture._silence

        def held(self):
            # The map iterator found every lock free and goes on to cancel.
            if threading.current_thread() is collector:
                collector_holds.set()
                deadline = time.monotonic() + 2
                while not pool._lock.locked() and time.monotonic() < deadline:
                    time.sleep(0.001)
            silence(self)

        PoolFuture._silence = held

        def collect():
            with first._condition:  # as concurrent.futures.wait() holds it
                if {finalizer!r} == "weakref.finalize":
                    collector_holds.set()
                    deadline = time.monotonic() + 2
                    while not pool._lock.locked() and time.monotonic() < deadline:
                        time.sleep(0.001)
                gc.collect()

        def cancel_first():
            assert collector_holds.wait(30)
            first.cancel()

        collector = threading.Thread(target=collect, daemon=True)
        canceller = threading.Thread(target=cancel_first, daemon=True)
        collector.start()
        canceller.start()
        collector.join(10)
        canceller.join(10)
        if collector.is_alive() or canceller.is_alive():
            print("deadlocked", flush=True)
            os._exit(1)  # the exit hook would wait for the pool's lock too
        gate.set()
        pool.shutdown(wait=True)
        s = pool.stats()
        assert first.cancelled(), first
        assert s.submitted == s.completed + s.cancelled, s
        assert (s.queued, s.running, s.completed) == (0, 0, 1), s
        print("ok")
    """
    proc = run_child(code)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proc.stdout.strip() == "ok"


# How the collecting thread comes to hold the first future's lock while the
# helping worker claims it: already held when the helper arrives (it used to
# wait for it with the pool's lock held), or taken just after the helper found
# it free (a thread switch between its look and its take, forced by a profile
# hook; a worker now tries the lock instead of looking, and the hook never
# fires).
_HELPER_MEETS_A_HELD_LOCK = {
    "held_before": """
        def help_with_first():
            helper.append(threading.get_ident())
            return first.result()

        def claiming():
            frame = current_frames().get(helper[0]) if helper else None
            return (
                frame is not None
                and frame.f_code is WorkerPool._run_here.__code__
                and pool._lock.locked()
            )

        def collect():
            with first._condition:  # as concurrent.futures.wait() holds it
                helped = helpers.submit(help_with_first)
                deadline = time.monotonic() + 2
                while not claiming() and time.monotonic() < deadline:
                    time.sleep(0.001)
                gc.collect()  # the finalizer cancels `other`
            return helped
    """,
    "taken_after_the_look": """
        looked, taken = threading.Event(), threading.Event()

        def switch_after_the_look(frame, event, arg):
            if (
                event == "c_return"
                and frame.f_code is WorkerPool._run_here.__code__
                and getattr(arg, "__name__", "") == "locked"
            ):
                sys.setprofile(None)
                looked.set()  # the future's lock was free
                taken.wait(2)  # the collecting thread runs meanwhile

        def help_with_first():
            sys.setprofile(switch_after_the_look)
            try:
                return first.result()
            finally:
                sys.setprofile(None)

        def collect():
            helped = helpers.submit(help_with_first)
            looked.wait(1)
            with first._condition:  # as concurrent.futures.wait() holds it
                taken.set()
                time.sleep(0.2)  # the helper goes on to take the future's lock
                gc.collect()  # the finalizer cancels `other`
            return helped
    """,
}


@pytest.mark.parametrize("when", list(_HELPER_MEETS_A_HELD_LOCK))
def test_a_finalizer_inside_a_future_lock_does_not_deadlock_a_helping_worker(
    when: str,
) -> None:
    """As above, with a worker of another pool helping: it runs the first
    future itself (`result()` in a worker), so it claims it with the pool's
    lock and the future's, while the collecting thread holds the future's
    and its finalizer needs the pool's.
    """
    code = (
        """
        import gc, os, sys, threading, time, weakref
        from concurrent.futures import wait
        from safethreads import WorkerPool
        from safethreads._observe import current_frames

        pool, helpers = WorkerPool(1), WorkerPool(1)
        gate = threading.Event()
        pool.submit(gate.wait, 30)
        first = pool.submit(abs, -1)
        other = pool.submit(abs, -2)
        owner = type("Owner", (), {})()
        owner.cycle = owner
        weakref.finalize(owner, other.cancel)
        del owner
        helper = []
        """
        + _HELPER_MEETS_A_HELD_LOCK[when]
        + """
        out = []
        collector = threading.Thread(target=lambda: out.append(collect()), daemon=True)
        collector.start()
        collector.join(10)
        if collector.is_alive() or not wait(out, timeout=10).done:
            print("deadlocked", flush=True)
            os._exit(1)  # the exit hook would wait for the pool's lock too
        assert out[0].result(timeout=0) == 1
        assert other.cancelled(), other
        gate.set()
        pool.shutdown(wait=True)
        helpers.shutdown(wait=True)
        s = pool.stats()
        assert s.submitted == s.completed + s.cancelled, s
        assert (s.queued, s.running, s.completed, s.cancelled) == (0, 0, 2, 1), s
        print("ok")
        """
    )
    proc = run_child(code)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok"


def test_a_task_cancelled_before_the_pool_took_it_is_counted_once() -> None:
    """A stream closed from another thread may cancel a future it owns before
    `submit` placed it: the pool counts it submitted and cancelled, runs
    nothing, and stays usable."""
    with WorkerPool(1) as pool:
        future = pool._submit_owned(int, ("1",), lambda f: f.cancel())
        assert future.cancelled()
        s = pool.stats()
        assert (s.submitted, s.cancelled, s.queued, s.started) == (1, 1, 0, 0)
        assert pool.submit(int, "2").result(TIMEOUT) == 2
        pool._check()


class TestShutdownWaitsForInlineTasks:
    """`shutdown(wait=True)` also waits for tasks run outside its workers."""

    def _shutdown_after(
        self, pool: WorkerPool, release: threading.Event, order: list[str]
    ) -> None:
        def shut() -> None:
            pool.shutdown(wait=True)
            order.append("shutdown")

        closer = threading.Thread(target=shut)
        closer.start()
        closer.join(0.2)  # on the old pool, shutdown had returned by now
        release.set()
        closer.join(TIMEOUT)
        assert not closer.is_alive()

    def test_shutdown_waits_for_a_caller_runs_task(self) -> None:
        pool = WorkerPool(1, max_pending=0, on_full="caller_runs")
        release = threading.Event()
        started = threading.Event()
        order: list[str] = []
        busy = threading.Event()
        pool.submit(busy.wait, TIMEOUT)

        def inline() -> None:
            started.set()
            release.wait(TIMEOUT)
            order.append("task")

        submitter = threading.Thread(target=pool.submit, args=(inline,))
        submitter.start()
        assert started.wait(TIMEOUT)
        busy.set()
        self._shutdown_after(pool, release, order)
        submitter.join(TIMEOUT)
        assert order == ["task", "shutdown"]
        s = pool.stats()
        assert (s.running, s.completed, s.submitted) == (0, 2, 2), s

    def test_shutdown_waits_for_a_task_helped_by_another_pool(self) -> None:
        a = WorkerPool(1)
        b = WorkerPool(1)
        release = threading.Event()
        started = threading.Event()
        busy = threading.Event()
        order: list[str] = []
        a.submit(busy.wait, TIMEOUT)

        def helped() -> None:
            started.set()
            release.wait(TIMEOUT)
            order.append("task")

        queued = a.submit(helped)
        waiter = b.submit(queued.result)  # b's worker runs it inline
        assert started.wait(TIMEOUT)
        busy.set()
        self._shutdown_after(a, release, order)
        waiter.result(TIMEOUT)
        b.shutdown()
        assert order == ["task", "shutdown"]

    def test_a_task_run_inline_may_shut_its_pool_down_and_wait(self) -> None:
        """The wait does not include the caller's own inline task."""
        pool = WorkerPool(1, max_pending=0, on_full="caller_runs")
        busy = threading.Event()
        pool.submit(busy.wait, TIMEOUT)

        def closes() -> str:
            busy.set()
            pool.shutdown(wait=True)
            return "closed"

        assert pool.submit(closes).result(TIMEOUT) == "closed"
        assert pool.stats().workers == 0
