"""WorkerPool: what it adds to the Executor contract, and that it holds up."""

from __future__ import annotations

import _thread
import concurrent.futures as cf
import contextvars
import gc
import itertools
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from hypothesis import given
from hypothesis import strategies as st

from child_process import SIGINT_PRELUDE
from safethreads import BrokenWorkerPool, PoolFull, WorkerPool, WorkerPoolStats
from safethreads._future import PoolFuture
from waiting import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

TIMEOUT = 10.0  # every wait in these tests is bounded


def fail_with(exc: BaseException) -> NoReturn:
    raise exc


def add(a: int, b: int = 0) -> int:
    return a + b


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event that blocks tasks until set; always set at teardown."""
    event = threading.Event()
    yield event
    event.set()


def block_workers(
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


class TestConstruction:
    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"max_workers": 0}, ValueError, "max_workers must be greater than 0"),
            ({"max_workers": -3}, ValueError, "max_workers must be greater than 0"),
            ({"max_workers": 1.5}, TypeError, "max_workers must be an int"),
            ({"max_workers": True}, TypeError, "max_workers must be an int"),
            ({"max_pending": -1}, ValueError, "max_pending must be None or >= 0"),
            ({"max_pending": "2"}, TypeError, "max_pending must be an int"),
            ({"on_full": "drop"}, ValueError, "on_full must be one of"),
            ({"thread_name_prefix": 3}, TypeError, "thread_name_prefix must be a str"),
            ({"initializer": 3}, TypeError, "initializer must be callable"),
        ],
    )
    def test_invalid_arguments(
        self, kwargs: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        """Invalid constructor arguments raise, naming the argument."""
        with pytest.raises(error, match=match):
            WorkerPool(**kwargs)

    def test_default_max_workers(self) -> None:
        """The default max_workers is ThreadPoolExecutor's."""
        with WorkerPool() as pool:
            assert pool._max_workers == min(32, (os.cpu_count() or 1) + 4)

    def test_no_thread_until_first_task(self) -> None:
        """Workers are created on demand."""
        with WorkerPool(4) as pool:
            assert pool.stats().workers == 0
            pool.submit(add, 1).result(timeout=TIMEOUT)
            assert pool.stats().workers == 1

    def test_default_thread_names(self) -> None:
        """Default names are "WorkerPool-<n>_<i>", distinct per pool."""
        with WorkerPool(1) as a, WorkerPool(1) as b:
            name_a = a.submit(lambda: threading.current_thread().name).result(TIMEOUT)
            name_b = b.submit(lambda: threading.current_thread().name).result(TIMEOUT)
        assert name_a.startswith("WorkerPool-")
        assert name_a.endswith("_0")
        assert name_a != name_b

    def test_repr(self) -> None:
        """repr() shows the state and counts."""
        pool = WorkerPool(1, thread_name_prefix="p")
        assert "running" in repr(pool)
        pool.shutdown()
        assert "shut down" in repr(pool)


class TestReuse:
    def test_idle_worker_reused_before_new_thread(self) -> None:
        """Sequential tasks all run on the one thread started first."""
        with WorkerPool(8) as pool:
            names = set()
            for i in range(50):
                fut = pool.submit(lambda: threading.current_thread().name)
                names.add(fut.result(timeout=TIMEOUT))
                # Let the worker park before the next submit.
                deadline = time.monotonic() + TIMEOUT
                while pool.stats().idle != pool.stats().workers:
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
                assert i >= 0
            assert len(names) == 1
            assert pool.stats().workers == 1

    def test_workers_capped(self, gate: threading.Event) -> None:
        """No more than max_workers threads ever run."""
        with WorkerPool(3) as pool:
            block_workers(pool, 3, gate)
            queued = [pool.submit(add, i) for i in range(10)]
            assert pool.stats().workers == 3
            assert pool.stats().queued == 10
            gate.set()
            assert [f.result(timeout=TIMEOUT) for f in queued] == list(range(10))


class TestBackpressure:
    def test_block_waits_for_room(self, gate: threading.Event) -> None:
        """on_full="block": submit waits until a queued task leaves the queue."""
        with WorkerPool(1, max_pending=2) as pool:
            block_workers(pool, 1, gate)
            pool.submit(add, 1)
            pool.submit(add, 2)
            assert pool.stats().queued == 2
            submitted = threading.Event()
            result: list[cf.Future[int]] = []

            def submitter() -> None:
                result.append(pool.submit(add, 3))
                submitted.set()

            t = threading.Thread(target=submitter)
            t.start()
            assert not submitted.wait(0.05)
            gate.set()
            assert submitted.wait(TIMEOUT)
            t.join(TIMEOUT)
            assert result[0].result(timeout=TIMEOUT) == 3
            pool._check()

    def test_block_wakes_on_shutdown(self, gate: threading.Event) -> None:
        """A submitter blocked on a full pool gets RuntimeError at shutdown."""
        pool = WorkerPool(1, max_pending=0)
        block_workers(pool, 1, gate)
        errors: list[BaseException] = []
        blocked = threading.Event()

        def submitter() -> None:
            blocked.set()
            try:
                pool.submit(add, 1)
            except RuntimeError as exc:
                errors.append(exc)

        t = threading.Thread(target=submitter)
        t.start()
        assert blocked.wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while not pool._blocked:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        pool.shutdown(wait=False)
        t.join(TIMEOUT)
        assert len(errors) == 1
        assert "after shutdown" in str(errors[0])
        gate.set()
        pool.shutdown()

    def test_raise_policy(self, gate: threading.Event) -> None:
        """on_full="raise": a full pool raises PoolFull at once."""
        with WorkerPool(1, max_pending=1, on_full="raise") as pool:
            block_workers(pool, 1, gate)
            pool.submit(add, 1)
            with pytest.raises(PoolFull, match=r"queue is full \(1 tasks pending\)"):
                pool.submit(add, 2)
            assert isinstance(PoolFull("x"), RuntimeError)
            assert pool.stats().queued == 1
            gate.set()

    def test_caller_runs_policy(self, gate: threading.Event) -> None:
        """on_full="caller_runs": the submitting thread runs the task."""
        with WorkerPool(1, max_pending=0, on_full="caller_runs") as pool:
            block_workers(pool, 1, gate)
            future = pool.submit(threading.current_thread)
            assert future.done()
            assert future.result(timeout=0) is threading.current_thread()
            failing = pool.submit(fail_with, KeyError("k"))
            assert isinstance(failing.exception(timeout=0), KeyError)
            stats = pool.stats()
            assert (stats.completed, stats.failed) == (1, 1)
            gate.set()

    def test_try_submit(self, gate: threading.Event) -> None:
        """try_submit returns a future when there is room and None when full."""
        with WorkerPool(1, max_pending=1, on_full="block") as pool:
            first = pool.try_submit(gate.wait, TIMEOUT)
            assert first is not None
            queued = pool.try_submit(add, 1)
            assert queued is not None
            assert pool.try_submit(add, 2) is None
            gate.set()
            assert queued.result(timeout=TIMEOUT) == 1
        with pytest.raises(RuntimeError, match="after shutdown"):
            pool.try_submit(add, 1)

    def test_try_submit_unbounded_never_none(self) -> None:
        """Without max_pending, try_submit always schedules."""
        with WorkerPool(1) as pool:
            futures = [pool.try_submit(add, i) for i in range(100)]
            assert all(f is not None for f in futures)

    def test_cancel_makes_room(self, gate: threading.Event) -> None:
        """Cancelling a queued task frees its place at once."""
        with WorkerPool(1, max_pending=1, on_full="raise") as pool:
            block_workers(pool, 1, gate)
            queued = pool.submit(add, 1)
            assert queued.cancel()
            assert pool.stats().queued == 0
            again = pool.submit(add, 2)
            gate.set()
            assert again.result(timeout=TIMEOUT) == 2

    def test_handoff_with_zero_pending(self) -> None:
        """max_pending=0 accepts a task whenever an idle worker can take it.

        A worker parks again only after its task's future is done, so the
        next submit waits until one can take it (without a GIL the submitter
        wakes before the worker gets there).
        """

        def can_take(pool: WorkerPool) -> bool:
            s = pool.stats()
            return s.idle > 0 or s.workers < 2

        with WorkerPool(2, max_pending=0, on_full="raise") as pool:
            for i in range(20):
                wait_until(lambda: can_take(pool), "a worker free to take a task")
                assert pool.submit(add, i).result(timeout=TIMEOUT) == i

    def test_nested_submit_on_full_pool_runs_inline(self) -> None:
        """A worker submitting to its own full "block" pool runs the task itself."""
        with WorkerPool(1, max_pending=0) as pool:

            def parent() -> str:
                child = pool.submit(lambda: threading.current_thread().name)
                return child.result(timeout=TIMEOUT)

            name = pool.submit(parent).result(timeout=TIMEOUT)
            assert name.endswith("_0")


class TestMapLazy:
    def test_buffersize_consumes_lazily(self) -> None:
        """With buffersize, an endless input works and is read ahead boundedly."""
        consumed = itertools.count()

        def numbers() -> Iterator[int]:
            for i in itertools.count():
                next(consumed)
                yield i

        with WorkerPool(2) as pool:
            results = pool.map(add, numbers(), buffersize=3)
            assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
            # 3 submitted at the call, one more per result taken.
            assert next(consumed) == 3 + 5
            results.close()  # type: ignore[attr-defined]

    def test_buffersize_bounds_in_flight(self) -> None:
        """At most buffersize tasks are submitted and not yet yielded."""
        lock = threading.Lock()
        live = 0
        peak = 0

        def task(x: int) -> int:
            nonlocal live, peak
            with lock:
                live += 1
                peak = max(peak, live)
            time.sleep(0.001)
            with lock:
                live -= 1
            return x

        with WorkerPool(8) as pool:
            assert list(pool.map(task, range(60), buffersize=3)) == list(range(60))
        assert 1 <= peak <= 3

    def test_early_close_cancels_pending(self) -> None:
        """Closing the map iterator cancels the tasks not yet started."""
        later = threading.Event()
        with WorkerPool(1) as pool:
            ran: list[int] = []

            def task(x: int) -> int:
                ran.append(x)
                if x == 1:
                    later.wait(TIMEOUT)
                return x

            results = pool.map(task, range(10))
            assert next(results) == 0
            results.close()  # type: ignore[attr-defined]
            later.set()
        # Task 1 may have started before the close; nothing after it did.
        assert ran in ([0], [0, 1])

    def test_failure_cancels_pending(self, gate: threading.Event) -> None:
        """A failing task makes map cancel the rest."""
        with WorkerPool(1) as pool:
            seen: list[int] = []

            def task(x: int) -> int:
                seen.append(x)
                if x == 0:
                    raise ValueError(x)
                gate.wait(TIMEOUT)
                return x

            results = pool.map(task, range(50))
            with pytest.raises(ValueError, match="0"):
                next(results)
            gate.set()
        assert seen in ([0], [0, 1])

    def test_timeout_is_one_deadline(self, gate: threading.Event) -> None:
        """The timeout counts from the call, not per result."""
        with WorkerPool(1) as pool:
            results = pool.map(gate.wait, [TIMEOUT, TIMEOUT], timeout=0.05)
            time.sleep(0.1)  # the deadline passes while nobody iterates
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                next(results)
            assert time.monotonic() - start < TIMEOUT / 2
            gate.set()

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"buffersize": 0}, ValueError, "buffersize must be None or >= 1"),
            ({"buffersize": 2.0}, TypeError, "buffersize must be an int"),
            ({"chunksize": 0}, ValueError, "chunksize must be >= 1"),
            ({"chunksize": None}, TypeError, "chunksize must be an int"),
        ],
    )
    def test_map_validates(
        self, kwargs: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        """Invalid buffersize or chunksize is refused at the call."""
        with WorkerPool(1) as pool, pytest.raises(error, match=match):
            pool.map(add, [1], **kwargs)

    def test_map_submit_failure_cancels_submitted(self, gate: threading.Event) -> None:
        """If submitting the inputs fails midway, the submitted tasks are cancelled."""
        with WorkerPool(1, max_pending=2, on_full="raise") as pool:
            block_workers(pool, 1, gate)
            with pytest.raises(PoolFull):
                pool.map(add, range(10))
            assert pool.stats().queued == 0
            gate.set()


class TestImapUnordered:
    def test_completion_order(self, gate: threading.Event) -> None:
        """Results come as tasks finish, not in input order."""
        with WorkerPool(2) as pool:

            def task(x: int) -> int:
                if x == 0:
                    gate.wait(TIMEOUT)
                return x

            results = pool.imap_unordered(task, [0, 1, 2])
            assert next(results) in {1, 2}
            assert next(results) in {1, 2}
            gate.set()
            assert next(results) == 0

    def test_all_results_with_buffersize(self) -> None:
        """Every input's result arrives once, with a bounded number in flight."""
        with WorkerPool(4) as pool:
            got = sorted(pool.imap_unordered(add, range(200), buffersize=5))
        assert got == list(range(200))

    def test_endless_input(self) -> None:
        """With buffersize an endless input works."""
        with WorkerPool(2) as pool:
            results = pool.imap_unordered(add, itertools.count(), buffersize=4)
            assert len({next(results) for _ in range(20)}) == 20
            results.close()  # type: ignore[attr-defined]

    def test_failure_propagates(self) -> None:
        """A failed task raises from the iterator."""
        with WorkerPool(2) as pool:
            results = pool.imap_unordered(fail_with, [LookupError("x")])
            with pytest.raises(LookupError):
                next(results)

    def test_timeout(self, gate: threading.Event) -> None:
        """The deadline raises TimeoutError naming the unfinished count."""
        with WorkerPool(1) as pool:
            results = pool.imap_unordered(gate.wait, [TIMEOUT], timeout=0.01)
            with pytest.raises(TimeoutError, match="1 tasks unfinished"):
                next(results)
            gate.set()

    def test_validates_buffersize(self) -> None:
        """buffersize must be a positive int."""
        with WorkerPool(1) as pool, pytest.raises(ValueError, match="buffersize"):
            pool.imap_unordered(add, [1], buffersize=0)


class TestMapChunks:
    """`chunksize` and `progress` on the pool's own map and imap_unordered."""

    def test_chunked_map_in_order_one_task_per_chunk(self) -> None:
        """Each chunk is one task; results come in input order."""
        with WorkerPool(3) as pool:
            got = pool.map(add, range(103), timeout=TIMEOUT, chunksize=10)
            assert list(got) == list(range(103))
            assert pool.stats().submitted == 11
            two = pool.map(add, range(50), [1] * 40, chunksize=7)
            assert list(two) == [i + 1 for i in range(40)]

    def test_buffersize_counts_chunks_and_reads_lazily(self) -> None:
        """With buffersize=N at most N chunks are submitted ahead of the consumer."""
        drawn = itertools.count()
        endless = (next(drawn) for _ in itertools.count())
        with WorkerPool(2) as pool:
            results = pool.map(add, endless, chunksize=8, buffersize=3)
            assert [next(results) for _ in range(20)] == list(range(20))
            results.close()  # type: ignore[attr-defined]
            # 3 chunks at the call, one more for each of the 2 finished with.
            assert pool.stats().submitted <= 3 + 3
        assert next(drawn) <= (3 + 3) * 8 + 1

    def test_failing_item_raises_in_place_of_its_chunk(self) -> None:
        """Earlier chunks are handed out, then the failing chunk's exception."""

        def fail_on_13(x: int) -> int:
            if x == 13:
                raise ValueError(x)
            return x

        got: list[int] = []
        with WorkerPool(2) as pool:
            results = pool.map(fail_on_13, range(40), chunksize=5)
            with pytest.raises(ValueError, match="13"):  # noqa: PT012 - partial results
                for value in results:
                    got.append(value)  # noqa: PERF402 - the results before the error
        assert got == list(range(10))

    def test_chunked_imap_unordered_chunk_by_chunk(self) -> None:
        """Each chunk's results come together and in input order."""
        with WorkerPool(4) as pool:
            got = list(pool.imap_unordered(add, range(60), chunksize=6, buffersize=4))
            assert pool.stats().submitted == 10
        assert sorted(got) == list(range(60))
        for start in range(0, 60, 6):
            first = got[start]
            assert first % 6 == 0
            assert got[start : start + 6] == list(range(first, first + 6))

    @pytest.mark.parametrize("ordered", [True, False])
    @pytest.mark.parametrize("chunksize", [1, 4])
    def test_progress_rises_to_total_in_the_consumer(
        self, ordered: bool, chunksize: int
    ) -> None:
        """progress(done, total) is called in the consuming thread up to (n, n)."""
        calls: list[tuple[int, int | None]] = []
        threads: set[int] = set()

        def progress(done: int, total: int | None) -> None:
            calls.append((done, total))
            threads.add(threading.get_ident())

        with WorkerPool(2) as pool:
            if ordered:
                got = list(
                    pool.map(add, range(30), chunksize=chunksize, progress=progress)
                )
            else:
                got = sorted(
                    pool.imap_unordered(
                        add, range(30), chunksize=chunksize, progress=progress
                    )
                )
        assert got == list(range(30))
        done = [d for d, _ in calls]
        assert done == sorted(set(done))
        assert done[-1] == 30
        assert {t for _, t in calls} == {30}
        assert len(calls) == -(-30 // chunksize)
        assert threads == {threading.get_ident()}

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"chunksize": 0}, ValueError, "chunksize must be >= 1"),
            ({"chunksize": True}, TypeError, "chunksize must be an int"),
            ({"progress": 3}, TypeError, "progress"),
        ],
    )
    def test_bad_chunksize_or_progress_is_refused_at_the_call(
        self, kwargs: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        """Both methods refuse a bad chunksize or progress before submitting."""
        with WorkerPool(1) as pool:
            with pytest.raises(error, match=match):
                pool.map(add, [1], **kwargs)
            with pytest.raises(error, match=match):
                pool.imap_unordered(add, [1], **kwargs)
            assert pool.stats().submitted == 0

    @given(
        items=st.lists(st.integers(), max_size=60),
        chunksize=st.integers(1, 9),
        buffersize=st.one_of(st.none(), st.integers(1, 4)),
    )
    def test_same_results_as_builtin_map(
        self, items: list[int], chunksize: int, buffersize: int | None
    ) -> None:
        """Any chunking and buffering gives the builtin map's results."""
        with WorkerPool(3) as pool:
            ordered = pool.map(add, items, chunksize=chunksize, buffersize=buffersize)
            assert list(ordered) == items
            unordered = pool.imap_unordered(
                add, iter(items), chunksize=chunksize, buffersize=buffersize
            )
            assert sorted(unordered) == sorted(items)

    @pytest.mark.parametrize("method", ["map", "imap_unordered"])
    @pytest.mark.parametrize(
        "kwargs", [{"chunksize": 10}, {"progress": lambda *_: None}]
    )
    def test_abandoned_tasks_failures_are_not_reported(
        self, method: str, kwargs: dict[str, Any]
    ) -> None:
        """Tasks running when the stream is closed fail unreported, as unchunked."""
        reports: list[BaseException | None] = []
        release = threading.Event()

        def late_failure(x: int) -> int:
            if x >= 10:
                release.wait(TIMEOUT)
                raise ValueError(x)
            return x

        old_hook = threading.excepthook
        threading.excepthook = lambda args: reports.append(args.exc_value)
        try:
            with WorkerPool(4) as pool:
                results = getattr(pool, method)(late_failure, range(40), **kwargs)
                assert next(results) in range(10)
                wait_until(lambda: pool.stats().running >= 3, "late tasks running")
                results.close()
                release.set()
            del results
            gc.collect()
        finally:
            release.set()
            threading.excepthook = old_hook
        assert reports == []
        s = pool.stats()
        assert s.submitted == s.completed + s.failed + s.cancelled, s
        pool._check()

    @pytest.mark.parametrize("chunksize", [1, 10])
    def test_close_from_another_thread_during_progress_ends_the_stream(
        self, chunksize: int
    ) -> None:
        """After close() returns, next() hands out nothing more."""
        in_progress = threading.Event()
        closed = threading.Event()

        def progress(done: int, total: int | None) -> None:
            in_progress.set()
            closed.wait(TIMEOUT)

        with WorkerPool(2) as pool:
            results = pool.map(add, range(100), chunksize=chunksize, progress=progress)

            def closer() -> None:
                in_progress.wait(TIMEOUT)
                results.close()  # type: ignore[attr-defined]
                closed.set()

            thread = threading.Thread(target=closer)
            thread.start()
            got = list(results)
            thread.join(TIMEOUT)
        assert got == []
        pool._check()


class TestWorkHelping:
    def test_single_worker_nested_wait(self) -> None:
        """A one-worker pool whose task waits on a subtask completes."""
        with WorkerPool(1) as pool:

            def parent(n: int) -> int:
                children = [pool.submit(add, i, 1) for i in range(n)]
                return sum(c.result() for c in children)  # no timeout: helps

            assert pool.submit(parent, 10).result(timeout=TIMEOUT) == 55

    def test_deep_recursion(self) -> None:
        """Recursive fan-out on a two-worker pool finishes (fib via the pool)."""
        with WorkerPool(2) as pool:

            def fib(n: int) -> int:
                if n < 2:
                    return n
                a = pool.submit(fib, n - 1)
                b = pool.submit(fib, n - 2)
                return a.result() + b.result()  # no timeout: helps

            assert pool.submit(fib, 12).result(timeout=TIMEOUT) == 144

    def test_exception_helps_too(self) -> None:
        """exception() on a queued subtask also runs it inline."""
        with WorkerPool(1) as pool:

            def parent() -> BaseException | None:
                return pool.submit(fail_with, KeyError("k")).exception()

            assert isinstance(pool.submit(parent).result(TIMEOUT), KeyError)

    def test_other_threads_do_not_help(self, gate: threading.Event) -> None:
        """A thread that is not a worker of the pool waits instead of running."""
        with WorkerPool(1) as pool:
            block_workers(pool, 1, gate)
            queued = pool.submit(threading.current_thread)
            with pytest.raises(TimeoutError):
                queued.result(timeout=0.01)
            gate.set()
            assert queued.result(timeout=TIMEOUT) is not threading.current_thread()


class TestContext:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    @classmethod
    def suffixed(cls, *, k: str) -> str:
        return cls.var.get() + k

    def test_task_sees_submitters_context(self) -> None:
        """Each task runs in a copy of the context captured at submit."""
        with WorkerPool(1) as pool:
            token = self.var.set("submitted")
            try:
                future = pool.submit(self.var.get)
            finally:
                self.var.reset(token)
            assert future.result(timeout=TIMEOUT) == "submitted"

    def test_task_changes_do_not_leak(self) -> None:
        """A task setting a variable does not affect the next task or the caller."""
        with WorkerPool(1) as pool:
            pool.submit(self.var.set, "leaked").result(timeout=TIMEOUT)
            assert pool.submit(self.var.get).result(timeout=TIMEOUT) == "unset"
        assert self.var.get() == "unset"

    def test_opt_out(self) -> None:
        """copy_context=False runs tasks in the worker's own context."""
        with WorkerPool(1, copy_context=False) as pool:
            token = self.var.set("submitted")
            try:
                future = pool.submit(self.var.get)
            finally:
                self.var.reset(token)
            assert future.result(timeout=TIMEOUT) == "unset"

    def test_map_and_kwargs_carry_context(self) -> None:
        """map() tasks and keyword-argument calls carry the context too."""
        with WorkerPool(2) as pool:
            token = self.var.set("m")
            try:
                results = list(pool.map(lambda _: self.var.get(), range(3)))
                kw = pool.submit(self.suffixed, k="!")
            finally:
                self.var.reset(token)
            assert results == ["m", "m", "m"]
            assert kw.result(timeout=TIMEOUT) == "m!"


class TestUnobserved:
    def test_unretrieved_failure_reported(self, reported: list[Any]) -> None:
        """A failed future dropped unseen is reported once through excepthook."""
        with WorkerPool(1) as pool:
            future = pool.submit(fail_with, ValueError("lost"))
        # The with block waited; nothing looked at the outcome.
        del future
        gc.collect()
        assert len(reported) == 1
        assert isinstance(reported[0].exc_value, ValueError)

    @pytest.mark.parametrize("how", ["result", "exception", "callback"])
    def test_retrieved_failure_not_reported(
        self, reported: list[Any], how: str
    ) -> None:
        """Looking at the failure (any way) dismisses the report."""
        with WorkerPool(1) as pool:
            future = pool.submit(fail_with, ValueError("seen"))
            if how == "result":
                with pytest.raises(ValueError, match="seen"):
                    future.result(timeout=TIMEOUT)
            elif how == "exception":
                assert future.exception(timeout=TIMEOUT) is not None
            else:
                future.add_done_callback(lambda f: f.exception())
                cf.wait([future], timeout=TIMEOUT)
        del future
        gc.collect()
        assert reported == []

    def test_abandoned_map_failures_not_reported(
        self, reported: list[Any], gate: threading.Event
    ) -> None:
        """Failures of map tasks whose results the consumer abandoned stay quiet."""
        with WorkerPool(2) as pool:

            def task(x: int) -> int:
                if x > 0:
                    gate.wait(TIMEOUT)
                    raise ValueError(x)
                return x

            results = pool.map(task, range(4))
            assert next(results) == 0
            results.close()  # type: ignore[attr-defined]
            gate.set()
        del results
        gc.collect()
        assert reported == []

    def test_traceback_starts_in_task(self) -> None:
        """The pool's own frame is dropped from a task's traceback."""
        with WorkerPool(1) as pool:
            exc = pool.submit(int, "x").exception(timeout=TIMEOUT)
        assert exc is not None
        tb = exc.__traceback__
        assert tb is None or tb.tb_frame.f_code.co_name != "_work"


class TestFuture:
    def test_is_stdlib_future(self) -> None:
        """The returned object is a concurrent.futures.Future subclass."""
        with WorkerPool(1) as pool:
            future = pool.submit(add, 1)
            assert isinstance(future, cf.Future)
            assert isinstance(future, PoolFuture)
            future.result(timeout=TIMEOUT)

    def test_no_condition_on_common_path(self) -> None:
        """submit + result never build the Condition; wait() does."""
        with WorkerPool(2) as pool:
            futures = [pool.submit(add, i) for i in range(100)]
            assert [f.result(timeout=TIMEOUT) for f in futures] == list(range(100))
            assert all("_cond" not in vars(f) for f in futures)
            cf.wait(futures[:1], timeout=TIMEOUT)
            assert "_cond" in vars(futures[0])

    def test_wait_sees_cancelled_at_once(self, gate: threading.Event) -> None:
        """wait() counts a cancelled queued future as done immediately."""
        with WorkerPool(1) as pool:
            block_workers(pool, 1, gate)
            queued = pool.submit(add, 1)
            waiter_done = threading.Event()
            outcome: list[Any] = []

            def waiter() -> None:
                outcome.append(cf.wait([queued], timeout=TIMEOUT))
                waiter_done.set()

            t = threading.Thread(target=waiter)
            t.start()
            time.sleep(0.01)
            assert queued.cancel()
            assert waiter_done.wait(TIMEOUT / 2)
            t.join(TIMEOUT)
            assert outcome[0].done == {queued}
            gate.set()

    def test_many_waiters_all_woken(self, gate: threading.Event) -> None:
        """Several threads blocked in result() all get the value."""
        with WorkerPool(1) as pool:
            future = pool.submit(lambda: gate.wait(TIMEOUT) and 9)
            got: list[int] = []
            lock = threading.Lock()

            def wait_for_it() -> None:
                value = future.result(timeout=TIMEOUT)
                with lock:
                    got.append(value)

            threads = [threading.Thread(target=wait_for_it) for _ in range(5)]
            for t in threads:
                t.start()
            time.sleep(0.01)
            gate.set()
            for t in threads:
                t.join(TIMEOUT)
            assert got == [9] * 5

    def test_timed_out_waiter_is_forgotten(self, gate: threading.Event) -> None:
        """A waiter that timed out leaves nothing behind on the future."""
        with WorkerPool(1) as pool:
            future = pool.submit(gate.wait, TIMEOUT)
            with pytest.raises(TimeoutError):
                future.result(timeout=0.01)
            assert isinstance(future, PoolFuture)
            assert future._sleepers is None
            gate.set()
            assert future.result(timeout=TIMEOUT)

    def test_executor_side_api(self) -> None:
        """set_result/set_exception/set_running_or_notify_cancel work as stock."""
        future: PoolFuture[int] = PoolFuture(None, None, None, None, None)
        assert future.set_running_or_notify_cancel()
        with pytest.raises(RuntimeError, match="unexpected state"):
            future.set_running_or_notify_cancel()
        future.set_result(5)
        assert future.result(timeout=0) == 5
        with pytest.raises(cf.InvalidStateError):
            future.set_result(6)
        other: PoolFuture[int] = PoolFuture(None, None, None, None, None)
        assert other.cancel()
        assert not other.set_running_or_notify_cancel()
        third: PoolFuture[int] = PoolFuture(None, None, None, None, None)
        error = KeyError("k")
        third.set_exception(error)
        assert third.exception(timeout=0) is error
        assert "raised KeyError" in repr(third)


class TestShutdownAndInterrupt:
    def test_shutdown_from_a_task(self) -> None:
        """A task may shut down its own pool with wait=True without deadlock."""
        pool = WorkerPool(2)
        future = pool.submit(pool.shutdown, wait=True)
        assert future.result(timeout=TIMEOUT) is None
        pool.shutdown()

    def test_concurrent_shutdowns(self) -> None:
        """shutdown() from several threads at once is safe."""
        pool = WorkerPool(4)
        for i in range(20):
            pool.submit(add, i)
        threads = [threading.Thread(target=pool.shutdown) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert pool.stats().workers == 0

    def test_keyboard_interrupt_in_with_body(self, gate: threading.Event) -> None:
        """Ctrl-C in the body cancels queued tasks, waits for running, propagates."""
        queued: list[cf.Future[int]] = []
        running: list[cf.Future[bool]] = []
        with pytest.raises(KeyboardInterrupt), WorkerPool(1) as pool:  # noqa: PT012
            running.extend(block_workers(pool, 1, gate))
            queued.extend(pool.submit(add, i) for i in range(5))
            threading.Timer(0.05, gate.set).start()
            raise KeyboardInterrupt
        assert all(f.cancelled() for f in queued)
        assert running[0].result(timeout=0) is True

    def test_ctrl_c_while_waiting_on_result(self, gate: threading.Event) -> None:
        """Ctrl-C in a main thread blocked in result() leaves the future waitable."""
        main = threading.main_thread()
        if threading.current_thread() is not main or main.ident is None:
            pytest.skip("signals are delivered to the main thread only")
        with WorkerPool(1) as pool:
            future = pool.submit(gate.wait, TIMEOUT)
            sender = threading.Timer(
                0.05, signal.pthread_kill, (main.ident, signal.SIGINT)
            )
            # Started inside the block, so the signal is raised there wherever
            # it lands.
            with pytest.raises(KeyboardInterrupt):  # noqa: PT012
                sender.start()
                future.result(timeout=TIMEOUT)
            sender.join(TIMEOUT)
            assert not future.done()
            assert isinstance(future, PoolFuture)
            assert future._sleepers is None  # the interrupted waiter is gone
            gate.set()
            assert future.result(timeout=TIMEOUT) is True

    def test_ctrl_c_noticed_without_a_wakeup(self, gate: threading.Event) -> None:
        """A Ctrl-C that does not wake a main thread in result() is seen in a slice."""
        if threading.current_thread() is not threading.main_thread():
            pytest.skip("signals are handled in the main thread only")
        with WorkerPool(1) as pool:
            future = pool.submit(gate.wait, TIMEOUT)
            # interrupt_main() flags Ctrl-C without interrupting the blocked
            # wait, as when the kernel hands SIGINT to another thread.
            sender = threading.Timer(0.05, _thread.interrupt_main)
            start = time.monotonic()
            with pytest.raises(KeyboardInterrupt):  # noqa: PT012
                sender.start()
                future.result(timeout=TIMEOUT)
            assert time.monotonic() - start < TIMEOUT / 2  # slices are 0.25 s
            sender.join(TIMEOUT)
            gate.set()
            assert future.result(timeout=TIMEOUT) is True

    def test_ctrl_c_in_blocked_submit(self, gate: threading.Event) -> None:
        """Ctrl-C reaches a main thread blocked in submit(); the pool stays usable."""
        if threading.current_thread() is not threading.main_thread():
            pytest.skip("signals are handled in the main thread only")
        with WorkerPool(1, max_pending=1) as pool:
            block_workers(pool, 1, gate)
            queued = pool.submit(add, 1)  # fills the queue
            sender = threading.Timer(0.05, _thread.interrupt_main)
            start = time.monotonic()
            with pytest.raises(KeyboardInterrupt):  # noqa: PT012
                sender.start()
                pool.submit(add, 2)  # blocks: the queue is full
            assert time.monotonic() - start < TIMEOUT / 2  # slices are 0.25 s
            sender.join(TIMEOUT)
            gate.set()
            assert queued.result(timeout=TIMEOUT) == 1
            assert pool.submit(add, 3).result(timeout=TIMEOUT) == 3
            assert pool.stats().queued == 0

    def test_second_interrupt_stops_waiting(
        self, gate: threading.Event, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A KeyboardInterrupt during the exit wait abandons the running tasks."""
        pool = WorkerPool(1)
        block_workers(pool, 1, gate)

        def interrupted() -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(pool, "_wait_for_workers", interrupted)
        with pytest.raises(KeyboardInterrupt), pool:
            raise KeyboardInterrupt
        assert pool._abandoned
        monkeypatch.undo()
        gate.set()
        pool.shutdown()


class TestBroken:
    def test_initializer_failure(self) -> None:
        """Pending and later futures fail with BrokenWorkerPool, cause attached."""
        release = threading.Event()

        def init() -> None:
            release.wait(TIMEOUT)
            raise OSError("no config")

        pool = WorkerPool(1, initializer=init)
        futures = [pool.submit(add, i) for i in range(3)]
        release.set()
        for f in futures:
            with pytest.raises(BrokenWorkerPool, match="initializer raised") as info:
                f.result(timeout=TIMEOUT)
            assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(BrokenWorkerPool, match="the pool is broken"):
            pool.submit(add, 1)
        assert isinstance(BrokenWorkerPool("x"), cf.BrokenExecutor)
        pool.shutdown()


class TestStats:
    def test_counts(self, gate: threading.Event) -> None:
        """stats() counts workers, idle, queued, running and outcomes."""
        with WorkerPool(2) as pool:
            assert pool.stats() == WorkerPoolStats(0, 0, 0, 0, 0, 0, 0)
            pool.submit(add, 1).result(timeout=TIMEOUT)
            pool.submit(fail_with, KeyError()).exception(timeout=TIMEOUT)
            block_workers(pool, 2, gate)
            queued = [pool.submit(add, i) for i in range(3)]
            queued[0].cancel()
            stats = pool.stats()
            assert stats.workers == 2
            assert stats.running == 2
            assert stats.idle == 0
            assert stats.completed == 1
            assert stats.failed == 1
            assert stats.cancelled == 1
            gate.set()
            for f in queued[1:]:
                f.result(timeout=TIMEOUT)
        final = pool.stats()
        assert (final.completed, final.failed, final.cancelled) == (5, 1, 1)
        assert final.workers == 0
        with pytest.raises(AttributeError):
            final.workers = 3  # type: ignore[misc]


# --- model-based ---------------------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("ok"), st.integers(-100, 100)),
        st.tuples(st.just("fail"), st.integers(-100, 100)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("shutdown"), st.booleans()),
    ),
    max_size=40,
)


class TestModel:
    @given(
        ops=OPS,
        workers=st.integers(1, 3),
        max_pending=st.one_of(st.none(), st.integers(0, 4)),
        on_full=st.sampled_from(["block", "raise", "caller_runs"]),
    )
    def test_random_programs(  # noqa: C901, PLR0915 - one program, one test
        self,
        ops: list[tuple[str, Any]],
        workers: int,
        max_pending: int | None,
        on_full: Any,
    ) -> None:
        """Every future ends in one terminal state with the right outcome, once."""
        runs: dict[int, int] = {}
        runs_lock = threading.Lock()

        def task(key: int, value: int, fail: bool) -> int:
            with runs_lock:
                runs[key] = runs.get(key, 0) + 1
            if fail:
                raise ValueError(value)
            return value * 2

        pool = WorkerPool(workers, max_pending=max_pending, on_full=on_full)
        expected: dict[int, tuple[str, int]] = {}
        futures: dict[int, cf.Future[int]] = {}
        closed = False
        try:
            for key, (op, arg) in enumerate(ops):
                if op in {"ok", "fail"}:
                    try:
                        future = pool.submit(task, key, arg, op == "fail")
                    except PoolFull:
                        assert on_full == "raise"
                        continue
                    except RuntimeError:
                        assert closed
                        continue
                    assert not closed
                    futures[key] = future
                    expected[key] = (op, arg)
                elif op == "cancel" and futures:
                    victim = list(futures.values())[arg % len(futures)]
                    victim.cancel()
                elif op == "shutdown":
                    pool.shutdown(wait=False, cancel_futures=arg)
                    closed = True
                pool._check()
        finally:
            pool.shutdown(wait=True)
        pool._check()
        for key, future in futures.items():
            assert future.done()
            kind, value = expected[key]
            if future.cancelled():
                assert key not in runs  # cancelled means never ran
                continue
            assert runs[key] == 1  # ran exactly once
            if kind == "ok":
                assert future.result(timeout=0) == value * 2
            else:
                exc = future.exception(timeout=0)
                assert isinstance(exc, ValueError)
                assert exc.args == (value,)
        assert set(runs) <= set(futures)
        stats = pool.stats()
        ran = sum(runs.values())
        assert stats.completed + stats.failed == ran
        assert stats.cancelled == sum(f.cancelled() for f in futures.values())


# --- stress ----------------------------------------------------------------------


@pytest.mark.stress
def test_stress_many_submitters(  # noqa: C901 - setup and checks in one place
    fast_switching: None, stress_rng: random.Random
) -> None:
    """Tasks from 4 submitting threads, random failures: totals are exact."""
    n_threads = 4
    per_thread = 25_000  # 100,000 tasks in all
    seeds = [stress_rng.randrange(2**32) for _ in range(n_threads)]
    all_futures: list[list[cf.Future[int]]] = [[] for _ in range(n_threads)]
    failing: list[set[int]] = [set() for _ in range(n_threads)]
    before = set(threading.enumerate())

    def work(i: int) -> int:
        if i < 0:
            raise ValueError(i)
        return i

    pool = WorkerPool(4, max_pending=64)

    def submitter(t: int) -> None:
        rng = random.Random(seeds[t])
        for i in range(per_thread):
            n = t * per_thread + i
            if rng.random() < 0.1:
                failing[t].add(n)
                all_futures[t].append(pool.submit(work, -n - 1))
            else:
                all_futures[t].append(pool.submit(work, n))

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 4)
    pool._check()
    total = 0
    failures = 0
    for futures in all_futures:
        for f in futures:
            exc = f.exception(timeout=TIMEOUT)
            if exc is None:
                total += f.result(timeout=0)
            else:
                failures += 1
    pool.shutdown(wait=True)
    n = n_threads * per_thread
    failed_ids = set().union(*failing)
    assert failures == len(failed_ids)
    assert total == n * (n - 1) // 2 - sum(failed_ids)
    stats = pool.stats()
    assert stats.completed == n - len(failed_ids)
    assert stats.failed == len(failed_ids)
    assert stats.workers == 0
    assert set(threading.enumerate()) <= before


# --- subprocesses -----------------------------------------------------------------


def run_child(code: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,
    )


def read_line(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> str:
    """Read one line of the child's stdout, failing instead of hanging."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output from the child within {timeout} s"
    return proc.stdout.readline().strip()


@pytest.mark.subprocess
class TestSubprocess:
    def test_exit_without_shutdown(self) -> None:
        """A program that never shuts its pool down finishes the work and exits."""
        proc = run_child(
            """
            import time
            from safethreads import WorkerPool

            pool = WorkerPool(2)
            def slow(i):
                time.sleep(0.01)
                print("done", i, flush=True)
            for i in range(10):
                pool.submit(slow, i)
            print("main ends", flush=True)
            """
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        assert proc.stdout.count("done") == 10

    def test_fork_child_pool_is_broken(self) -> None:
        """After fork the child's inherited pool fails clearly and never hangs."""
        proc = run_child(
            """
            import os, sys, threading, warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            from safethreads import BrokenWorkerPool, WorkerPool

            pool = WorkerPool(1)
            gate = threading.Event()
            running = pool.submit(gate.wait, 10)
            queued = pool.submit(int, "1")
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    pool.submit(int, "2")
                    code = 10
                except BrokenWorkerPool as exc:
                    if "inherited through os.fork()" not in str(exc):
                        code = 11
                for f in (running, queued):
                    try:
                        f.result(timeout=5)
                        code = 12
                    except BrokenWorkerPool:
                        pass
                pool.shutdown()
                os._exit(code)
            _, status = os.waitpid(pid, 0)
            gate.set()
            assert queued.result(timeout=5) == 1
            pool.shutdown()
            print("child", os.waitstatus_to_exitcode(status))
            """
        )
        assert proc.returncode == 0, proc.stderr
        assert "child 0" in proc.stdout

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_sigint_in_with_block(self) -> None:
        """SIGINT while the body waits: queued cancelled, running awaited, raised."""
        code = """
            import sys, threading, time
            from safethreads import WorkerPool

            finished = []
            queued = []
            try:
                with WorkerPool(1) as pool:
                    started = threading.Event()
                    def running():
                        started.set()
                        time.sleep(0.5)
                        finished.append(True)
                    pool.submit(running)
                    queued.extend(pool.submit(print, i) for i in range(5))
                    started.wait(5)
                    print("ready", flush=True)
                    _wait_for_signal(30)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
            print("cancelled", all(f.cancelled() for f in queued))
            print("finished", finished == [True])
        """
        proc = subprocess.Popen(
            [sys.executable, "-c", SIGINT_PRELUDE + textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert read_line(proc) == "ready"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait(TIMEOUT)
        assert proc.returncode == 0, err
        assert "interrupted" in out
        assert "cancelled True" in out
        assert "finished True" in out

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_second_sigint_stops_waiting(self) -> None:
        """A second SIGINT while the with block waits ends the wait and the process."""
        code = """
            import threading, time
            from safethreads import WorkerPool

            original = WorkerPool._wait_for_workers
            def joining(self):
                print("joining", flush=True)
                original(self)
            WorkerPool._wait_for_workers = joining

            try:
                with WorkerPool(1) as pool:
                    started = threading.Event()
                    pool.submit(lambda: (started.set(), time.sleep(60)))
                    started.wait(5)
                    print("ready", flush=True)
                    _wait_for_signal(60)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
        """
        proc = subprocess.Popen(
            [sys.executable, "-c", SIGINT_PRELUDE + textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        start = time.monotonic()
        try:
            assert read_line(proc) == "ready"
            proc.send_signal(signal.SIGINT)
            assert read_line(proc) == "joining"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait(TIMEOUT)
        assert proc.returncode == 0, err
        assert "interrupted" in out
        assert time.monotonic() - start < 30  # not the task's 60 s
