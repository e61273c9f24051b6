"""The `concurrent.futures.Executor` contract, for WorkerPool and the stdlib pool.

Every test runs against `WorkerPool` and `ThreadPoolExecutor`: whatever code
written for the standard executor relies on must hold for both.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from safethreads import WorkerPool

if TYPE_CHECKING:
    from collections.abc import Iterator

TIMEOUT = 10.0  # every wait in these tests is bounded

MakePool = Callable[..., cf.Executor]


def fail_with(exc: BaseException) -> NoReturn:
    raise exc


def add(a: int, b: int = 0) -> int:
    return a + b


def signal_then_wait(started: threading.Event, gate: threading.Event) -> bool:
    started.set()
    return gate.wait(TIMEOUT)


@pytest.fixture(params=["WorkerPool", "ThreadPoolExecutor"])
def make_pool(request: pytest.FixtureRequest) -> Iterator[MakePool]:
    """A factory for the executor under test; every pool is shut down after."""
    cls: Any = WorkerPool if request.param == "WorkerPool" else cf.ThreadPoolExecutor
    pools: list[cf.Executor] = []

    def make(*args: Any, **kwargs: Any) -> cf.Executor:
        pool: cf.Executor = cls(*args, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event that blocks tasks until set; always set at teardown."""
    event = threading.Event()
    yield event
    event.set()


class TestSubmit:
    def test_result_with_args_and_kwargs(self, make_pool: MakePool) -> None:
        """submit() passes positional and keyword arguments; result() returns."""
        pool = make_pool(2)
        future = pool.submit(add, 2, b=3)
        assert isinstance(future, cf.Future)
        assert future.result(timeout=TIMEOUT) == 5
        assert future.done()
        assert not future.running()
        assert not future.cancelled()

    def test_exception_is_reraised(self, make_pool: MakePool) -> None:
        """The task's exception is re-raised by result() and returned by exception()."""
        pool = make_pool(2)
        error = ValueError("boom")
        future = pool.submit(fail_with, error)
        with pytest.raises(ValueError, match="boom") as info:
            future.result(timeout=TIMEOUT)
        assert info.value is error
        assert future.exception(timeout=TIMEOUT) is error

    def test_base_exception_reaches_future(self, make_pool: MakePool) -> None:
        """Even SystemExit raised by a task lands in its future."""
        pool = make_pool(1)
        future = pool.submit(fail_with, SystemExit(3))
        assert isinstance(future.exception(timeout=TIMEOUT), SystemExit)

    def test_result_timeout(self, make_pool: MakePool, gate: threading.Event) -> None:
        """result(timeout) raises TimeoutError while the task runs; later succeeds."""
        pool = make_pool(1)
        future = pool.submit(gate.wait, TIMEOUT)
        with pytest.raises(TimeoutError):
            future.result(timeout=0.01)
        with pytest.raises(TimeoutError):
            future.exception(timeout=0)
        gate.set()
        assert future.result(timeout=TIMEOUT) is True

    def test_running_while_running(
        self, make_pool: MakePool, gate: threading.Event
    ) -> None:
        """running() is True while the task runs, done() only after."""
        pool = make_pool(1)
        started = threading.Event()

        def task() -> int:
            started.set()
            gate.wait(TIMEOUT)
            return 1

        future = pool.submit(task)
        assert started.wait(TIMEOUT)
        assert future.running()
        assert not future.done()
        assert "running" in repr(future)
        gate.set()
        assert future.result(timeout=TIMEOUT) == 1
        assert "finished" in repr(future)

    def test_many_tasks(self, make_pool: MakePool) -> None:
        """A thousand tasks all complete with their own results."""
        pool = make_pool(4)
        futures = [pool.submit(add, i, 1) for i in range(1000)]
        assert [f.result(timeout=TIMEOUT) for f in futures] == list(range(1, 1001))

    def test_thread_name_prefix(self, make_pool: MakePool) -> None:
        """Workers are named after thread_name_prefix."""
        pool = make_pool(1, thread_name_prefix="crunch")
        name = pool.submit(lambda: threading.current_thread().name).result(TIMEOUT)
        assert name.startswith("crunch_")

    def test_initializer_runs_in_each_worker(self, make_pool: MakePool) -> None:
        """initializer(*initargs) runs in the worker thread before tasks."""
        seen = threading.local()

        def init(value: int) -> None:
            seen.value = value

        pool = make_pool(1, initializer=init, initargs=(7,))
        assert pool.submit(lambda: seen.value).result(timeout=TIMEOUT) == 7

    def test_failing_initializer_breaks_pool(self, make_pool: MakePool) -> None:
        """A raising initializer fails the task with BrokenExecutor, then submit."""
        pool = make_pool(1, initializer=fail_with, initargs=(OSError("no"),))
        future = pool.submit(add, 1)
        with pytest.raises(cf.BrokenExecutor):
            future.result(timeout=TIMEOUT)
        with pytest.raises(cf.BrokenExecutor):
            pool.submit(add, 1)


class TestCancel:
    def test_cancel_pending(self, make_pool: MakePool, gate: threading.Event) -> None:
        """A queued task can be cancelled and never runs."""
        pool = make_pool(1)
        blocker = pool.submit(gate.wait, TIMEOUT)
        ran: list[int] = []
        queued = pool.submit(ran.append, 1)
        assert queued.cancel()
        assert queued.cancel()  # idempotent
        assert queued.cancelled()
        assert queued.done()
        with pytest.raises(cf.CancelledError):
            queued.result(timeout=TIMEOUT)
        with pytest.raises(cf.CancelledError):
            queued.exception(timeout=TIMEOUT)
        gate.set()
        assert blocker.result(timeout=TIMEOUT)
        pool.shutdown(wait=True)
        assert ran == []

    def test_cannot_cancel_running_or_done(
        self, make_pool: MakePool, gate: threading.Event
    ) -> None:
        """cancel() returns False for a running or a finished task."""
        pool = make_pool(1)
        started = threading.Event()
        running = pool.submit(signal_then_wait, started, gate)
        assert started.wait(TIMEOUT)
        assert not running.cancel()
        gate.set()
        assert running.result(timeout=TIMEOUT) is True
        assert not running.cancel()
        assert not running.cancelled()


class TestCallbacks:
    def test_callback_after_completion(self, make_pool: MakePool) -> None:
        """A done-callback is called once, with the future, after it finishes."""
        pool = make_pool(1)
        calls: list[cf.Future[int]] = []
        called = threading.Event()
        gate = threading.Event()
        future = pool.submit(lambda: gate.wait(TIMEOUT) and 3)

        def callback(f: cf.Future[int]) -> None:
            calls.append(f)
            called.set()

        future.add_done_callback(callback)
        gate.set()
        assert called.wait(TIMEOUT)
        assert calls == [future]
        assert future.result(timeout=TIMEOUT) == 3

    def test_callback_on_done_future_runs_now(self, make_pool: MakePool) -> None:
        """A callback added to a done future runs at once, in the caller."""
        pool = make_pool(1)
        future = pool.submit(add, 1)
        future.result(timeout=TIMEOUT)
        where: list[threading.Thread] = []
        future.add_done_callback(lambda _: where.append(threading.current_thread()))
        assert where == [threading.current_thread()]

    def test_callbacks_in_order_and_on_cancel(
        self, make_pool: MakePool, gate: threading.Event
    ) -> None:
        """Callbacks run in the order added; cancelling a future runs them too."""
        pool = make_pool(1)
        pool.submit(gate.wait, TIMEOUT)
        future = pool.submit(add, 1)
        order: list[int] = []
        future.add_done_callback(lambda _: order.append(1))
        future.add_done_callback(lambda _: order.append(2))
        assert future.cancel()
        assert order == [1, 2]

    def test_raising_callback_is_logged(
        self, make_pool: MakePool, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An exception in a callback is logged and does not affect the future."""
        pool = make_pool(1)
        future = pool.submit(add, 1)
        future.result(timeout=TIMEOUT)
        future.add_done_callback(lambda _: fail_with(RuntimeError("cb")))
        assert "exception calling callback" in caplog.text
        assert future.result(timeout=TIMEOUT) == 1


class TestWaitAndAsCompleted:
    def test_wait_all_completed(self, make_pool: MakePool) -> None:
        """wait() returns every future in done."""
        pool = make_pool(3)
        futures = [pool.submit(add, i) for i in range(20)]
        done, not_done = cf.wait(futures, timeout=TIMEOUT)
        assert done == set(futures)
        assert not not_done

    def test_wait_first_completed(
        self, make_pool: MakePool, gate: threading.Event
    ) -> None:
        """FIRST_COMPLETED returns as soon as one future is done."""
        pool = make_pool(2)
        slow = pool.submit(gate.wait, TIMEOUT)
        fast = pool.submit(add, 1)
        both: list[cf.Future[Any]] = [slow, fast]
        done, not_done = cf.wait(both, timeout=TIMEOUT, return_when=cf.FIRST_COMPLETED)
        assert fast in done
        assert slow in not_done

    def test_wait_first_exception(
        self, make_pool: MakePool, gate: threading.Event
    ) -> None:
        """FIRST_EXCEPTION returns when a future fails."""
        pool = make_pool(2)
        slow = pool.submit(gate.wait, TIMEOUT)
        bad = pool.submit(fail_with, KeyError("k"))
        both: list[cf.Future[Any]] = [slow, bad]
        done, _ = cf.wait(both, timeout=TIMEOUT, return_when=cf.FIRST_EXCEPTION)
        assert done == {bad}

    def test_wait_timeout(self, make_pool: MakePool, gate: threading.Event) -> None:
        """wait() with a timeout returns the unfinished future in not_done."""
        pool = make_pool(1)
        slow = pool.submit(gate.wait, TIMEOUT)
        done, not_done = cf.wait([slow], timeout=0.01)
        assert not done
        assert not_done == {slow}

    def test_as_completed_yields_all(self, make_pool: MakePool) -> None:
        """as_completed() yields every future exactly once."""
        pool = make_pool(3)
        futures = [pool.submit(add, i) for i in range(50)]
        seen = list(cf.as_completed(futures, timeout=TIMEOUT))
        assert sorted(map(id, seen)) == sorted(map(id, futures))

    def test_as_completed_completion_order(
        self, make_pool: MakePool, gate: threading.Event
    ) -> None:
        """as_completed() yields the finished future before the blocked one."""
        pool = make_pool(2)
        slow = pool.submit(gate.wait, TIMEOUT)
        fast = pool.submit(add, 1)
        both: list[cf.Future[Any]] = [slow, fast]
        iterator = cf.as_completed(both, timeout=TIMEOUT)
        assert next(iterator) is fast
        gate.set()
        assert next(iterator) is slow

    def test_as_completed_timeout(
        self, make_pool: MakePool, gate: threading.Event
    ) -> None:
        """as_completed() raises TimeoutError at its deadline."""
        pool = make_pool(1)
        slow = pool.submit(gate.wait, TIMEOUT)
        with pytest.raises(TimeoutError):
            list(cf.as_completed([slow], timeout=0.01))

    def test_asyncio_wrap_future(self, make_pool: MakePool) -> None:
        """asyncio.wrap_future awaits the result and the exception."""
        pool = make_pool(2)

        async def main() -> int:
            value = await asyncio.wrap_future(pool.submit(add, 40, 2))
            with pytest.raises(ValueError, match="bad"):
                await asyncio.wrap_future(pool.submit(fail_with, ValueError("bad")))
            return value

        assert asyncio.run(main()) == 42


class TestMap:
    def test_map_in_order(self, make_pool: MakePool) -> None:
        """map() yields results in input order."""
        pool = make_pool(3)
        assert list(pool.map(add, range(100), timeout=TIMEOUT)) == list(range(100))

    def test_map_zips_iterables(self, make_pool: MakePool) -> None:
        """map() over several iterables stops at the shortest."""
        pool = make_pool(2)
        assert list(pool.map(add, [1, 2, 3], [10, 20])) == [11, 22]

    def test_map_reraises_at_position(self, make_pool: MakePool) -> None:
        """A failing call raises when its result is reached."""
        pool = make_pool(2)

        def check(x: int) -> int:
            if x == 2:
                raise ValueError(x)
            return x

        results = pool.map(check, range(5))
        assert next(results) == 0
        assert next(results) == 1
        with pytest.raises(ValueError, match="2"):
            next(results)

    def test_map_timeout(self, make_pool: MakePool, gate: threading.Event) -> None:
        """map(timeout=) raises TimeoutError when a result is late."""
        pool = make_pool(1)
        results = pool.map(gate.wait, [TIMEOUT], timeout=0.01)
        with pytest.raises(TimeoutError):
            next(results)

    def test_map_empty(self, make_pool: MakePool) -> None:
        """map() over nothing yields nothing."""
        pool = make_pool(1)
        assert list(pool.map(add, [])) == []


class TestShutdown:
    def test_submit_after_shutdown(self, make_pool: MakePool) -> None:
        """submit() after shutdown() raises RuntimeError; shutdown is idempotent."""
        pool = make_pool(1)
        pool.shutdown()
        pool.shutdown()
        with pytest.raises(
            RuntimeError, match="cannot schedule new futures after shutdown"
        ):
            pool.submit(add, 1)

    def test_shutdown_waits_for_queued(self, make_pool: MakePool) -> None:
        """shutdown(wait=True) returns after every queued task ran."""
        pool = make_pool(2)
        futures = [pool.submit(add, i) for i in range(100)]
        pool.shutdown(wait=True)
        assert all(f.done() for f in futures)
        assert [f.result(timeout=0) for f in futures] == list(range(100))

    def test_shutdown_cancel_futures(
        self, make_pool: MakePool, gate: threading.Event
    ) -> None:
        """cancel_futures=True cancels queued tasks; the running one finishes."""
        pool = make_pool(1)
        started = threading.Event()
        running = pool.submit(signal_then_wait, started, gate)
        assert started.wait(TIMEOUT)
        queued = [pool.submit(add, i) for i in range(5)]
        pool.shutdown(wait=False, cancel_futures=True)
        assert all(f.cancelled() for f in queued)
        gate.set()
        assert running.result(timeout=TIMEOUT) is True
        pool.shutdown(wait=True)

    def test_context_manager_waits(self, make_pool: MakePool) -> None:
        """Leaving the with block shuts down and waits for the tasks."""
        with make_pool(2) as pool:
            futures = [pool.submit(add, i) for i in range(20)]
        assert all(f.done() for f in futures)
        with pytest.raises(RuntimeError, match="after shutdown"):
            pool.submit(add, 1)
