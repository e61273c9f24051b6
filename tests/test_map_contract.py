"""One contract for every bounded lazy map over a `WorkerPool`.

`WorkerPool.map` and `imap_unordered` have a fast path of their own (a
generator over the pool's futures) and, with `chunksize > 1` or a
`progress` callback, hand the work to the generic streams `executor_map` and
`executor_imap_unordered` (a `ResultStream`).  Each test here runs on every
route, and every call checks that it got the iterator its route names, so a
change to the condition that picks a route cannot quietly leave one
untested:

- in input order: `pool.map` (fast path), `pool.map(progress=...)` (the
  generic stream through the pool's method) and `executor_map(pool, ...)`;
- in completion order: the same three for `imap_unordered`.

Chunks (`chunksize > 1`) change what a task is and are tested with the
streams in `test_fanout_chunked.py`.  Every pool, event and counter is made
in the test body, so that copies run by pytest-run-parallel share nothing.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import threading
import time
import types
import weakref
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from safethreads import (
    ResultStream,
    WorkerPool,
    _worker_pool,
    executor_imap_unordered,
    executor_map,
)
from waiting import TIMEOUT, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator


def _no_progress(done: int, total: int | None) -> None:
    """A progress callback: passing one routes the pool's methods to a stream."""


def _pool_map(
    pool: WorkerPool, fn: Callable[..., Any], *iterables: Iterable[Any], **kw: Any
) -> Iterator[Any]:
    return pool.map(fn, *iterables, **kw)


def _pool_map_progress(
    pool: WorkerPool, fn: Callable[..., Any], *iterables: Iterable[Any], **kw: Any
) -> Iterator[Any]:
    return pool.map(fn, *iterables, chunksize=1, progress=_no_progress, **kw)


def _executor_map(
    pool: WorkerPool, fn: Callable[..., Any], *iterables: Iterable[Any], **kw: Any
) -> Iterator[Any]:
    return executor_map(pool, fn, *iterables, **kw)


def _pool_imap(
    pool: WorkerPool, fn: Callable[[Any], Any], iterable: Iterable[Any], **kw: Any
) -> Iterator[Any]:
    return pool.imap_unordered(fn, iterable, **kw)


def _pool_imap_progress(
    pool: WorkerPool, fn: Callable[[Any], Any], iterable: Iterable[Any], **kw: Any
) -> Iterator[Any]:
    return pool.imap_unordered(fn, iterable, chunksize=1, progress=_no_progress, **kw)


def _executor_imap(
    pool: WorkerPool, fn: Callable[[Any], Any], iterable: Iterable[Any], **kw: Any
) -> Iterator[Any]:
    return executor_imap_unordered(pool, fn, iterable, **kw)


@dataclasses.dataclass(frozen=True)
class Impl:
    """One implementation of a bounded lazy map over a pool."""

    name: str
    ordered: bool
    # True if it is one of the generic streams (a ResultStream), False for
    # the pool's own fast path (a generator).
    generic: bool
    start: Callable[..., Iterator[Any]]

    def __call__(
        self,
        pool: WorkerPool,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        buffersize: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[Any]:
        """Start the map; fail the test if it is not the route this names."""
        it = self.start(pool, fn, *iterables, buffersize=buffersize, timeout=timeout)
        if self.generic:
            assert type(it) is ResultStream, f"{self.name} returned {type(it)}"
        else:
            assert isinstance(it, types.GeneratorType), f"{self.name}: {type(it)}"
            assert it.gi_code is self._fast_code(), f"{self.name} runs {it.gi_code}"
        return it

    def _fast_code(self) -> types.CodeType:
        if self.ordered:
            return _worker_pool._map_results.__code__
        return _worker_pool._unordered_results.__code__

    def close(self, it: Iterator[Any]) -> None:
        """Close `it` early: both iterators have `close()`, typed or not."""
        assert isinstance(it, (ResultStream, types.GeneratorType))
        it.close()


ORDERED = [
    Impl("pool.map", ordered=True, generic=False, start=_pool_map),
    Impl("pool.map-progress", ordered=True, generic=True, start=_pool_map_progress),
    Impl("executor_map", ordered=True, generic=True, start=_executor_map),
]
UNORDERED = [
    Impl("pool.imap_unordered", ordered=False, generic=False, start=_pool_imap),
    Impl(
        "pool.imap_unordered-progress",
        ordered=False,
        generic=True,
        start=_pool_imap_progress,
    ),
    Impl("executor_imap_unordered", ordered=False, generic=True, start=_executor_imap),
]


@pytest.fixture(params=ORDERED + UNORDERED, ids=lambda impl: impl.name)
def impl(request: pytest.FixtureRequest) -> Impl:
    """Every implementation."""
    chosen: Impl = request.param
    return chosen


@pytest.fixture(params=ORDERED, ids=lambda impl: impl.name)
def ordered(request: pytest.FixtureRequest) -> Impl:
    """The implementations that yield in input order."""
    chosen: Impl = request.param
    return chosen


@pytest.fixture(params=UNORDERED, ids=lambda impl: impl.name)
def unordered(request: pytest.FixtureRequest) -> Impl:
    """The implementations that yield in completion order."""
    chosen: Impl = request.param
    return chosen


# --- helpers ------------------------------------------------------------------


def square(x: int) -> int:
    return x * x


def as_run(impl: Impl, results: list[Any]) -> list[Any]:
    """`results` as the contract compares them: completion order is free."""
    return results if impl.ordered else sorted(results)


class Input:
    """An input that counts the items drawn from it (by the consumer's thread)."""

    def __init__(self, stop: int | None = None) -> None:
        self.drawn = 0
        self._stop = stop

    def items(self) -> Iterator[int]:
        numbers = itertools.count() if self._stop is None else range(self._stop)
        for i in numbers:
            self.drawn += 1
            yield i


class Tasks:
    """Task functions for one test: which ran, how many at once, a gate."""

    def __init__(self) -> None:
        # Released by the test; tasks that wait on it stay running until then.
        self.hold = threading.Event()
        self._lock = threading.Lock()
        # Guarded by _lock: the inputs that started, and the live count.
        self.ran: list[int] = []
        self.live = 0
        self.peak = 0

    def _enter(self, x: int) -> None:
        with self._lock:
            self.ran.append(x)
            self.live += 1
            self.peak = max(self.peak, self.live)

    def _leave(self) -> None:
        with self._lock:
            self.live -= 1

    def held(self, x: int) -> int:
        """Return `x` once the test releases `hold`."""
        self._enter(x)
        try:
            assert self.hold.wait(TIMEOUT), "the test never released its tasks"
            return x
        finally:
            self._leave()

    def held_after(self, first: int) -> Callable[[int], int]:
        """A task that returns inputs below `first` at once, holds the rest."""
        return self.holding(lambda x: x >= first)

    def holding(self, hold: Callable[[int], bool]) -> Callable[[int], int]:
        """A task that holds the inputs `hold` picks, returns the rest at once."""

        def task(x: int) -> int:
            if not hold(x):
                self._enter(x)
                self._leave()
                return x
            return self.held(x)

        return task

    def fail(self, x: int) -> NoReturn:
        """Record `x` as run, and raise."""
        self._enter(x)
        self._leave()
        msg = f"task {x}"
        raise LookupError(msg)

    def started(self) -> set[int]:
        with self._lock:
            return set(self.ran)


def settled(pool: WorkerPool) -> bool:
    """Nothing is left queued: every task submitted started or was cancelled."""
    return pool.stats().queued == 0


def assert_one_held_at_most(tasks: Tasks, quick: set[int]) -> None:
    """With one worker, at most one held task started; the rest were cancelled.

    The worker stays on a held task until the test releases it, which the
    test does only once nothing is left queued.  Which task that is stays
    open: the pass that cancels the tasks races the worker taking them, so
    the worker may start one the pass had not reached yet.
    """
    held = tasks.started() - quick
    assert len(held) <= 1, f"held tasks {sorted(held)} started"


def assert_not_started_cancelled(pool: WorkerPool, tasks: Tasks) -> None:
    """After shutdown: each task that did not run was cancelled."""
    stats = pool.stats()
    assert stats.cancelled == stats.submitted - len(tasks.ran), stats


# --- the contract -------------------------------------------------------------


class TestRoute:
    def test_each_id_runs_the_route_it_names(self, impl: Impl) -> None:
        """The fast paths return the pool's generators, the rest a ResultStream."""
        with WorkerPool(2) as pool:
            # Impl.__call__ asserts the iterator's type.
            got = list(impl(pool, square, range(5)))
            assert as_run(impl, got) == [0, 1, 4, 9, 16]
            assert pool.stats().submitted == 5  # one task per input: no chunks


class TestResults:
    @pytest.mark.parametrize("buffersize", [None, 1, 4])
    def test_same_as_builtin_map(self, impl: Impl, buffersize: int | None) -> None:
        """The results are the builtin map's (in its order, if ordered)."""
        with WorkerPool(3) as pool:
            got = list(impl(pool, square, range(40), buffersize=buffersize))
        assert as_run(impl, got) == list(map(square, range(40)))

    @pytest.mark.parametrize("buffersize", [None, 2])
    def test_empty_input(self, impl: Impl, buffersize: int | None) -> None:
        """An empty input yields nothing and submits nothing."""
        with WorkerPool(1) as pool:
            assert list(impl(pool, square, [], buffersize=buffersize)) == []
            assert pool.stats().submitted == 0

    @pytest.mark.parametrize("buffersize", [None, 2])
    def test_zip_stops_at_the_shortest(
        self, ordered: Impl, buffersize: int | None
    ) -> None:
        """Several iterables are zipped, to the shortest, even an endless one."""
        with WorkerPool(2) as pool:
            got = ordered(pool, pow, range(10), [2, 2, 2], buffersize=buffersize)
            assert list(got) == list(map(pow, range(10), [2, 2, 2]))
            endless = ordered(
                pool, pow, itertools.count(), [3] * 5, buffersize=buffersize
            )
            assert list(endless) == [0, 1, 8, 27, 64]

    def test_completion_order(self, unordered: Impl) -> None:
        """Results come as tasks finish: a held first task comes last."""
        tasks = Tasks()
        with WorkerPool(2) as pool:
            try:
                results = unordered(pool, tasks.holding(lambda x: x == 0), [0, 1, 2, 3])
                assert {next(results) for _ in range(3)} == {1, 2, 3}
                tasks.hold.set()
                assert list(results) == [0]
            finally:
                tasks.hold.set()


class TestBound:
    def test_eager_without_buffersize(self, impl: Impl) -> None:
        """Without buffersize every input is drawn and submitted at the call."""
        source = Input(stop=7)
        with WorkerPool(2) as pool:
            results = impl(pool, square, source.items())
            assert source.drawn == 7
            assert pool.stats().submitted == 7
            assert as_run(impl, list(results)) == list(map(square, range(7)))

    def test_at_most_buffersize_in_flight(self, impl: Impl) -> None:
        """An endless input is drawn one item per result; N tasks at most."""
        n = 3
        tasks = Tasks()
        source = Input()
        # More workers than the bound: only the map can keep tasks back.
        with WorkerPool(n + 3) as pool:
            try:
                results = impl(pool, tasks.held, source.items(), buffersize=n)
                assert source.drawn == n
                assert pool.stats().submitted == n
                wait_until(lambda: tasks.live == n, "the first tasks to start")
                # Submitting happens in the consumer's thread: still n.
                assert pool.stats().submitted == n
                tasks.hold.set()
                got = []
                for taken in range(1, 21):
                    got.append(next(results))
                    assert source.drawn == n + taken
                    assert pool.stats().submitted == n + taken
                impl.close(results)
                assert next(results, None) is None
                assert source.drawn == n + 20
                if impl.ordered:
                    assert got == list(range(20))
                else:  # any 20 of the inputs submitted so far, each once
                    assert len(set(got)) == 20
                    assert set(got) <= set(range(n + 20))
            finally:
                tasks.hold.set()
        assert 1 <= tasks.peak <= n


class TestFailure:
    @pytest.mark.parametrize("buffersize", [None, 6])
    def test_raised_at_its_position_the_rest_cancelled(
        self, impl: Impl, buffersize: int | None
    ) -> None:
        """The task's exception follows the earlier results; the rest is cancelled."""
        tasks = Tasks()
        held_after_3 = tasks.held_after(3)

        def task(x: int) -> int:
            return tasks.fail(x) if x == 2 else held_after_3(x)

        # One worker: completion order is input order, for both kinds.
        with WorkerPool(1) as pool:
            try:
                results = impl(pool, task, range(12), buffersize=buffersize)
                got = [next(results), next(results)]
                with pytest.raises(LookupError) as raised:
                    next(results)
                assert raised.value.args == ("task 2",)
                assert got == [0, 1]
                wait_until(lambda: settled(pool), "nothing left queued")
                assert next(results, None) is None
            finally:
                tasks.hold.set()
        assert tasks.started() >= {0, 1, 2}
        assert_one_held_at_most(tasks, quick={0, 1, 2})
        assert_not_started_cancelled(pool, tasks)

    def test_a_tasks_stop_iteration_is_an_error(self, impl: Impl) -> None:
        """A task's StopIteration fails the map, as in a generator; never ends it."""

        def task(x: int) -> int:
            if x == 2:
                msg = f"task {x}"
                raise StopIteration(msg)
            return x

        with WorkerPool(1) as pool:
            results = impl(pool, task, range(6), buffersize=2)
            got = [next(results), next(results)]
            # Raised as itself from next(), it would read as the end of the
            # results: PEP 479 turns it into RuntimeError, with it as cause.
            with pytest.raises(RuntimeError, match="StopIteration") as raised:
                next(results)
            assert got == [0, 1]
            cause = raised.value.__cause__
            assert isinstance(cause, StopIteration)
            assert cause.args == ("task 2",)
            wait_until(lambda: settled(pool), "nothing left queued")
            assert next(results, None) is None

    def test_abandoned_failures_not_reported(
        self, impl: Impl, reported: list[Any]
    ) -> None:
        """A failure nobody will look at, after the first, is not reported."""
        second_started = threading.Event()
        hold = threading.Event()

        def task(x: int) -> NoReturn:
            if x == 0:
                assert second_started.wait(TIMEOUT)
            else:
                second_started.set()
                assert hold.wait(TIMEOUT)
            msg = f"task {x}"
            raise LookupError(msg)

        with WorkerPool(2) as pool:
            try:
                results = impl(pool, task, [0, 1])
                with pytest.raises(LookupError, match="task 0"):
                    next(results)
            finally:
                hold.set()
        assert pool.stats().failed == 2
        del results
        gc.collect()
        assert reported == []


class TestTimeout:
    def test_one_deadline_from_the_call(self, impl: Impl) -> None:
        """`timeout` counts from the call; then the rest is cancelled."""
        timeout = 0.3
        tasks = Tasks()
        with WorkerPool(1) as pool:
            try:
                start = time.monotonic()
                results = impl(pool, tasks.held_after(1), range(6), timeout=timeout)
                assert next(results) == 0
                # Let the deadline pass while nobody iterates: a per-result
                # timeout would now wait `timeout` more.
                time.sleep(max(0.0, start + timeout - time.monotonic()))
                waited_from = time.monotonic()
                with pytest.raises(TimeoutError):
                    next(results)
                assert time.monotonic() - waited_from < timeout
                assert time.monotonic() - start >= timeout
                wait_until(lambda: settled(pool), "nothing left queued")
                assert next(results, None) is None
            finally:
                tasks.hold.set()
        assert_one_held_at_most(tasks, quick={0})
        assert_not_started_cancelled(pool, tasks)


class TestEarlyStop:
    @pytest.mark.parametrize("taken", [0, 1])
    @pytest.mark.parametrize("how", ["close", "drop"])
    def test_stop_cancels_what_has_not_started(
        self, impl: Impl, how: str, taken: int
    ) -> None:
        """Closing or dropping it, even before next(), leaves nothing queued."""
        tasks = Tasks()
        source = Input()
        with WorkerPool(1) as pool:
            try:
                results = impl(pool, tasks.held_after(1), source.items(), buffersize=4)
                assert [next(results) for _ in range(taken)] == list(range(taken))
                if how == "close":
                    impl.close(results)
                    assert next(results, None) is None
                else:
                    del results  # reference counting finalizes it here
                wait_until(lambda: settled(pool), "nothing left queued")
                assert source.drawn == 4 + taken
            finally:
                tasks.hold.set()
        assert_one_held_at_most(tasks, quick={0})
        assert_not_started_cancelled(pool, tasks)


class Box:
    """A result that a weak reference can watch."""

    def __init__(self, value: int) -> None:
        self.value = value


class TestNothingKept:
    def test_a_yielded_result_dies_with_the_callers_reference(self, impl: Impl) -> None:
        """Once yielded, a result is referenced by the caller alone."""

        def gone(ref: weakref.ref[Box]) -> bool:
            if ref() is not None:
                # A worker may hold its last future until it takes the next
                # task or parks; free-threaded builds merge the counts of
                # objects made in another thread lazily: a collection settles
                # both.
                gc.collect()
            return ref() is None

        with WorkerPool(1) as pool:
            results = impl(pool, Box, range(6), buffersize=2)
            first = next(results)
            ref = weakref.ref(first)
            del first
            wait_until(lambda: gone(ref), "the result to be freed", poll=0.01)
            assert len(list(results)) == 5  # the iterator is still in use


class TestConcurrentNext:
    def test_a_second_next_at_once_is_refused(self, impl: Impl) -> None:
        """A second thread's next() during another's is an error; the map goes on."""
        tasks = Tasks()
        first: list[Any] = []
        with WorkerPool(2) as pool:
            try:
                results = impl(pool, tasks.held, range(4), buffersize=2)
                advancing = threading.Thread(target=lambda: first.append(next(results)))
                advancing.start()
                wait_until(lambda: advancing_now(results), "the first next() to wait")
                # The pool's fast paths are generators, which refuse a second
                # caller with ValueError; a ResultStream is not a generator
                # and documents RuntimeError.
                error = RuntimeError if impl.generic else ValueError
                with pytest.raises(error, match="already"):
                    next(results)
                tasks.hold.set()
                advancing.join(TIMEOUT)
                assert not advancing.is_alive()
                rest = list(results)
            finally:
                tasks.hold.set()
        assert as_run(impl, first + rest) == [0, 1, 2, 3]


def advancing_now(results: Iterator[Any]) -> bool:
    """Whether some thread is inside `next(results)`."""
    if isinstance(results, types.GeneratorType):
        return results.gi_running
    assert isinstance(results, ResultStream)
    return results._core._busy.locked()


class TestInputRaises:
    def test_rest_cancelled_and_error_raised(self, impl: Impl) -> None:
        """An input that raises ends the map with its error; nothing stays queued."""
        tasks = Tasks()

        def source() -> Iterator[int]:
            yield from range(3)
            msg = "input broke"
            raise OSError(msg)

        with WorkerPool(1) as pool:
            try:
                results = impl(pool, tasks.held_after(2), source(), buffersize=2)
                got: list[int] = []
                with pytest.raises(OSError, match="input broke"):  # noqa: PT012 - results before the error
                    for value in results:
                        got.append(value)  # noqa: PERF402 - the results before the error
                wait_until(lambda: settled(pool), "nothing left queued")
                assert next(results, None) is None
            finally:
                tasks.hold.set()
        # The fast paths follow 3.14's `Executor.map`, which draws the next
        # input before handing out the result in hand, so the input's error
        # replaces that result; the streams document that the results in
        # hand go out first.
        assert got == ([0, 1] if impl.generic else [0])
        assert_one_held_at_most(tasks, quick={0, 1})
        assert_not_started_cancelled(pool, tasks)


class TestBadInput:
    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"buffersize": 0}, ValueError, "buffersize must be None or >= 1"),
            ({"buffersize": -1}, ValueError, "buffersize must be None or >= 1"),
            ({"buffersize": 2.0}, TypeError, "buffersize must be an int"),
            ({"buffersize": True}, TypeError, "buffersize must be an int"),
            ({"timeout": float("nan")}, ValueError, "timeout"),
            ({"timeout": "1"}, TypeError, "timeout"),
        ],
    )
    def test_refused_at_the_call(
        self, impl: Impl, kwargs: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        """Bad options raise from the call; nothing is drawn or submitted."""
        source = Input()
        with WorkerPool(1) as pool:
            with pytest.raises(error, match=match):
                impl(pool, square, source.items(), **kwargs)
            assert pool.stats().submitted == 0
        assert source.drawn == 0

    def test_fn_not_callable(self, impl: Impl) -> None:
        """A non-callable fn raises TypeError from the call."""
        source = Input()
        with WorkerPool(1) as pool:
            with pytest.raises(TypeError, match="fn must be callable, not int"):
                impl(pool, 3, source.items(), buffersize=2)  # type: ignore[arg-type]
            assert pool.stats().submitted == 0
        assert source.drawn == 0
