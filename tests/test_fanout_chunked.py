"""Chunked streams and progress callbacks: one contract, three engines.

The contract tests run on a `ThreadPoolExecutor`, a `WorkerPool` and a
`ProcessPoolExecutor` with the fork start method (shared by the module and
warmed up once, so that they stay fast).  Tasks that must stay busy wait for
a gate file, created at teardown (see `fanout_tasks.py`).
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import gc
import itertools
import multiprocessing
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fanout_tasks as tasks
from safethreads import (
    BoundedExecutor,
    FutureGroup,
    WorkerPool,
    executor_imap_unordered,
    executor_map,
)
from test_fanout import Counting

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

TIMEOUT = 60.0  # every wait on a result is bounded

# Forking a process that runs threads warns on 3.12+; fork is what is tested.
FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"

pytestmark = pytest.mark.filterwarnings(FORK_WARNING)


@pytest.fixture(scope="module")
def fork_pool() -> Iterator[cf.ProcessPoolExecutor]:
    """A process pool of two forked workers, shared by the module's tests."""
    context = multiprocessing.get_context("fork")
    pool = cf.ProcessPoolExecutor(2, mp_context=context)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        list(pool.map(tasks.square, range(8)))  # start the workers now
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(params=["threads", "fork", "WorkerPool"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def executor(engine: str, fork_pool: cf.ProcessPoolExecutor) -> Iterator[cf.Executor]:
    """The executor under test; thread pools made here are shut down after."""
    if engine == "fork":
        yield fork_pool
        return
    own: cf.Executor = (
        cf.ThreadPoolExecutor(4) if engine == "threads" else WorkerPool(4)
    )
    yield own
    own.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[str]:
    """A gate file's path: tasks waiting on it are released at teardown."""
    path = tmp_path / "gate"
    yield str(path)
    path.touch()


class Recorder:
    """A progress callback that records its calls and the calling thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []
        self.threads: set[int] = set()

    def __call__(self, done: int, total: int | None) -> None:
        self.calls.append((done, total))
        self.threads.add(threading.get_ident())

    def assert_monotonic_to(self, n: int, total: int | None) -> None:
        """Calls rise strictly, each with `total`, and the last has done == n."""
        done = [d for d, _ in self.calls]
        assert done == sorted(set(done)), done
        assert {t for _, t in self.calls} <= {total}
        assert done[-1] == n


# --- chunked streams ------------------------------------------------------------


class TestChunkedMap:
    def test_results_in_order(self, executor: cf.Executor) -> None:
        """Chunked map returns every result in input order, one or several inputs."""
        got = executor_map(
            executor, tasks.square, range(103), chunksize=10, timeout=TIMEOUT
        )
        assert list(got) == [i * i for i in range(103)]
        two = executor_map(executor, tasks.fail_if, range(50), [-1] * 40, chunksize=7)
        assert list(two) == list(range(40))

    @pytest.mark.parametrize("how", ["map", "map-several", "imap_unordered"])
    def test_a_tasks_stop_iteration_fails_the_chunk(
        self, executor: cf.Executor, how: str
    ) -> None:
        """A StopIteration from `fn` inside a chunk is an error, not the
        chunk's end (a loop over `map()` would end there and drop results).
        """
        if how == "imap_unordered":
            stream: Iterator[int] = executor_imap_unordered(
                executor, tasks.stop_at, range(8), chunksize=4, timeout=TIMEOUT
            )
        else:
            iterables: list[Iterable[int]] = [range(8)]
            if how == "map-several":
                iterables.append(itertools.repeat(2))  # stop_at(x, 2)
            stream = executor_map(
                executor, tasks.stop_at, *iterables, chunksize=4, timeout=TIMEOUT
            )
        with pytest.raises(RuntimeError, match="StopIteration") as raised:
            list(stream)
        assert "input 2 of its chunk" in str(raised.value)

    def test_one_task_per_chunk_and_buffersize_counts_chunks(
        self, executor: cf.Executor
    ) -> None:
        """Each chunk is one task; at most buffersize chunks are in flight."""
        counting = Counting(executor)
        drawn = itertools.count()
        endless = (next(drawn) for _ in itertools.count())
        with executor_map(
            counting, tasks.square, endless, chunksize=8, buffersize=3
        ) as stream:
            got = list(itertools.islice(stream, 100))
        assert got == [i * i for i in range(100)]
        assert counting.peak <= 3
        # 13 chunks handed out at least in part, 3 more in flight, at most.
        assert len(counting.futures) <= 13 + 3
        assert next(drawn) <= (13 + 3) * 8 + 1  # the input was read lazily
        counting.assert_nothing_left_pending()

    def test_unordered_chunk_by_chunk(self, executor: cf.Executor) -> None:
        """Unordered: each chunk's results come together, in input order."""
        got = list(
            executor_imap_unordered(
                executor, tasks.square, range(60), chunksize=6, buffersize=4
            )
        )
        assert sorted(got) == [i * i for i in range(60)]
        for start in range(0, 60, 6):
            block = got[start : start + 6]
            first = round(block[0] ** 0.5)
            assert first % 6 == 0
            assert block == [i * i for i in range(first, first + 6)]

    def test_failure_raises_in_place_and_drops_its_chunk(
        self, executor: cf.Executor
    ) -> None:
        """Earlier chunks are handed out; the failing chunk raises in their place."""
        stream = executor_map(
            executor, tasks.fail_if, range(40), [13] * 40, chunksize=5
        )
        got: list[int] = []
        with pytest.raises(ValueError, match="task 13 failed"):  # noqa: PT012 - partial results
            for value in stream:
                got.append(value)  # noqa: PERF402 - the results before the error
        assert got == list(range(10))  # items 10 to 12 share 13's chunk
        with pytest.raises(StopIteration):
            next(stream)

    @pytest.mark.parametrize("ordered", [True, False])
    def test_failure_cancels_queued_chunks(
        self, executor: cf.Executor, gate: str, ordered: bool
    ) -> None:
        """A failing chunk cancels every chunk not started."""
        counting = Counting(executor)
        args = (tasks.fail_or_wait, range(120), [0] * 120, [gate] * 120)
        if ordered:
            stream = executor_map(counting, *args, chunksize=4)
        else:
            fn = functools.partial(tasks.fail_or_wait, bad=0, path=gate)
            stream = executor_imap_unordered(counting, fn, range(120), chunksize=4)
        with pytest.raises(ValueError, match="task 0 failed"):
            next(stream)
        counting.assert_nothing_left_pending()
        assert any(f.cancelled() for f in counting.futures)

    def test_close_before_first_next_cancels_chunks(
        self, executor: cf.Executor, gate: str
    ) -> None:
        """Closing a chunked stream at once cancels its queued chunks."""
        counting = Counting(executor)
        stream = executor_map(
            counting, tasks.wait_for_file, [gate] * 200, chunksize=5, buffersize=20
        )
        stream.close()
        counting.assert_nothing_left_pending()
        assert any(f.cancelled() for f in counting.futures)
        with pytest.raises(StopIteration):
            next(stream)

    def test_close_mid_chunk_stops_at_once(self, executor: cf.Executor) -> None:
        """close() drops the rest of the chunk in hand: next() then stops."""
        stream = executor_map(executor, tasks.square, range(100), chunksize=50)
        assert next(stream) == 0
        stream.close()
        assert list(stream) == []

    @pytest.mark.parametrize("ordered", [True, False])
    def test_no_result_kept_after_yield(
        self, executor: cf.Executor, ordered: bool
    ) -> None:
        """A chunk's results are referenced only by the consumer once handed out."""
        refs: list[weakref.ref[tasks.Payload]] = []
        if ordered:
            stream = executor_map(
                executor, tasks.make_payload, range(24), chunksize=4, buffersize=2
            )
        else:
            stream = executor_imap_unordered(
                executor, tasks.make_payload, range(24), chunksize=4, buffersize=2
            )
        for payload in stream:
            refs.append(weakref.ref(payload))
            del payload
            if refs[-1]() is not None:
                # Free-threaded builds merge the counts of objects made in
                # another thread lazily; a collection settles them.
                gc.collect()
            assert refs[-1]() is None, "the stream kept a result it handed out"
        assert len(refs) == 24

    def test_input_that_raises_mid_chunk(self, executor: cf.Executor) -> None:
        """Full chunks before the input broke are handed out, then its error."""

        def inputs() -> Iterator[int]:
            yield from range(10)
            msg = "input broke"
            raise OSError(msg)

        got: list[int] = []
        with pytest.raises(OSError, match="input broke"):  # noqa: PT012 - partial results
            for value in executor_map(
                executor, tasks.square, inputs(), chunksize=4, buffersize=1
            ):
                got.append(value)  # noqa: PERF402 - the results before the error
        assert got == [i * i for i in range(8)]

    def test_bounded_executor_map_chunks(self, executor: cf.Executor) -> None:
        """BoundedExecutor.map passes chunksize and progress on."""
        counting = Counting(executor)
        bounded = BoundedExecutor(counting, max_pending=2)
        recorder = Recorder()
        got = bounded.map(tasks.square, range(30), chunksize=10, progress=recorder)
        assert list(got) == [i * i for i in range(30)]
        assert len(counting.futures) == 3
        assert recorder.calls == [(10, 30), (20, 30), (30, 30)]


# --- progress -------------------------------------------------------------------


class TestProgress:
    @pytest.mark.parametrize("ordered", [True, False])
    @pytest.mark.parametrize("chunksize", [1, 7])
    def test_calls_rise_to_total_in_the_consumer(
        self, executor: cf.Executor, ordered: bool, chunksize: int
    ) -> None:
        """progress rises to (n, n), called only in the consuming thread."""
        recorder = Recorder()
        stream = (executor_map if ordered else executor_imap_unordered)(
            executor,
            tasks.square,
            range(50),
            chunksize=chunksize,
            buffersize=3,
            progress=recorder,
        )
        assert sorted(stream) == [i * i for i in range(50)]
        recorder.assert_monotonic_to(50, 50)
        assert len(recorder.calls) == -(-50 // chunksize)
        assert recorder.threads == {threading.get_ident()}

    def test_total_unknown_without_len(self, executor: cf.Executor) -> None:
        """Inputs without a len() give total=None; zipped sized inputs the shortest."""
        recorder = Recorder()
        list(executor_map(executor, tasks.square, iter(range(9)), progress=recorder))
        recorder.assert_monotonic_to(9, None)
        zipped = Recorder()
        list(executor_map(executor, pow, range(9), [2] * 5, progress=zipped))
        zipped.assert_monotonic_to(5, 5)

    @pytest.mark.parametrize("ordered", [True, False])
    def test_raising_callback_propagates_and_cancels(
        self, executor: cf.Executor, gate: str, ordered: bool
    ) -> None:
        """A progress callback that raises acts as a task failure."""
        counting = Counting(executor)

        def broken(done: int, total: int | None) -> None:
            msg = f"bar broke at {done}/{total}"
            raise OSError(msg)

        first = [0] * 4  # returned at once: the first task finishes
        paths: list[str | int] = [*first, *([gate] * 60)]
        fn = _wait_unless_zero
        if ordered:
            stream = executor_map(counting, fn, paths, chunksize=4, progress=broken)
        else:
            stream = executor_imap_unordered(
                counting, fn, paths, chunksize=4, progress=broken
            )
        with pytest.raises(OSError, match="bar broke at 4/64"):
            next(stream)
        counting.assert_nothing_left_pending()
        with pytest.raises(StopIteration):
            next(stream)

    @pytest.mark.parametrize("ordered", [True, False])
    def test_callback_stop_iteration_is_an_error(
        self, executor: cf.Executor, ordered: bool
    ) -> None:
        """A callback's StopIteration fails the stream; it does not end it quietly."""

        def stopping(done: int, total: int | None) -> None:
            msg = f"stop at {done}/{total}"
            raise StopIteration(msg)

        make = executor_map if ordered else executor_imap_unordered
        stream = make(executor, tasks.square, range(8), progress=stopping)
        with pytest.raises(RuntimeError, match="StopIteration") as raised:
            next(stream)
        assert isinstance(raised.value.__cause__, StopIteration)
        with pytest.raises(StopIteration):
            next(stream)


def _wait_unless_zero(path: str | int) -> int:
    if path == 0:
        return 0
    assert isinstance(path, str)
    return tasks.wait_for_file(path)


class TestGroupProgress:
    def test_calls_rise_to_total_in_the_leaving_thread(
        self, executor: cf.Executor
    ) -> None:
        """Progress rises to (n, n), reported by the thread leaving the block."""
        recorder = Recorder()
        with FutureGroup(executor, progress=recorder, timeout=TIMEOUT) as group:
            for i in range(20):
                group.submit(tasks.sleep_ms, i % 3)
        recorder.assert_monotonic_to(20, 20)
        assert recorder.threads == {threading.get_ident()}

    def test_failed_and_cancelled_members_count_as_done(
        self, executor: cf.Executor, gate: str
    ) -> None:
        """A failure cancels the rest; progress still ends with every member."""
        recorder = Recorder()
        group = FutureGroup(executor, progress=recorder, timeout=TIMEOUT)
        with pytest.raises(ExceptionGroup), group:  # noqa: PT012 - the block
            group.submit(tasks.fail_if, 1, 1)
            for _ in range(30):
                group.submit(tasks.wait_for_file, gate)
            Path(gate).touch()
        assert recorder.calls[-1] == (31, 31)

    def test_raising_callback_is_raised_in_the_group(
        self, executor: cf.Executor, gate: str
    ) -> None:
        """A raising callback cancels the group and is raised in its ExceptionGroup."""

        def broken(done: int, total: int | None) -> None:
            msg = f"bar broke at {done}/{total}"
            raise OSError(msg)

        group = FutureGroup(executor, progress=broken, timeout=TIMEOUT)

        def release_once_cancelled() -> None:
            # The running members finish only after the group cancelled the
            # queued ones (released earlier, the workers could drain the queue
            # before the cancel, and nothing would be left to cancel).
            deadline = time.monotonic() + TIMEOUT
            while not group.cancelled and time.monotonic() < deadline:
                time.sleep(0.005)
            Path(gate).touch()

        releaser = threading.Thread(target=release_once_cancelled)
        releaser.start()
        with pytest.raises(ExceptionGroup) as caught, group:  # noqa: PT012
            for _ in range(30):
                group.submit(tasks.wait_for_file, gate)
        releaser.join(TIMEOUT)
        assert caught.group_contains(OSError, match="bar broke at")
        assert group.cancelled
        assert any(f.cancelled() for f in group.futures)


# --- bad input ------------------------------------------------------------------


class TestBadInput:
    def test_chunksize(self) -> None:
        """chunksize must be an int of at least 1."""
        with cf.ThreadPoolExecutor(1) as pool:
            with pytest.raises(ValueError, match="chunksize must be >= 1, got 0"):
                executor_map(pool, abs, [1], chunksize=0)
            with pytest.raises(TypeError, match="chunksize must be an int, got float"):
                executor_imap_unordered(pool, abs, [1], chunksize=2.0)  # type: ignore[arg-type]

    def test_progress_not_callable(self) -> None:
        """A progress that cannot be called is refused at the call."""
        with cf.ThreadPoolExecutor(1) as pool:
            with pytest.raises(TypeError, match="progress must be callable, not int"):
                executor_map(pool, abs, [1], progress=3)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="progress must be callable, not str"):
                FutureGroup(pool, progress="bar")  # type: ignore[arg-type]


# --- properties and stress ----------------------------------------------------------


@given(
    values=st.lists(st.integers(-1000, 1000), max_size=60),
    chunksize=st.integers(1, 12),
    buffersize=st.none() | st.integers(1, 6),
    ordered=st.booleans(),
    sized=st.booleans(),
)
@settings(max_examples=40, deadline=None)
def test_chunked_stream_matches_builtin_map(
    values: list[int],
    chunksize: int,
    buffersize: int | None,
    ordered: bool,
    sized: bool,
) -> None:
    """Chunked streams return what map does; progress rises to the total."""
    recorder = Recorder()
    inputs = values if sized else iter(values)
    with cf.ThreadPoolExecutor(3) as pool:
        run = executor_map if ordered else executor_imap_unordered
        got = list(
            run(
                pool,
                tasks.square,
                inputs,
                chunksize=chunksize,
                buffersize=buffersize,
                progress=recorder,
            )
        )
    expected = list(map(tasks.square, values))
    assert (got if ordered else sorted(got)) == (
        expected if ordered else sorted(expected)
    )
    if values:
        recorder.assert_monotonic_to(len(values), len(values) if sized else None)
        assert len(recorder.calls) == -(-len(values) // chunksize)
    else:
        assert recorder.calls == []


@pytest.mark.stress
@pytest.mark.usefixtures("fast_switching")
def test_many_chunked_streams_share_a_pool(stress_rng: Any) -> None:
    """Eight consumers stream through one pool; some are closed mid-way."""
    n = 3_000
    plans = [
        (stress_rng.randint(1, 64), stress_rng.choice([None, 1, 2, 8]), i % 3 == 0)
        for i in range(8)
    ]
    sums: list[int | None] = [None] * len(plans)
    errors: list[BaseException] = []

    def consume(index: int, chunksize: int, buffersize: int | None, stop: bool) -> None:
        try:
            calls = Recorder()
            with executor_map(
                pool,
                tasks.square,
                range(n),
                chunksize=chunksize,
                buffersize=buffersize,
                progress=calls,
                timeout=TIMEOUT,
            ) as stream:
                total = 0
                for i, value in enumerate(stream):
                    if stop and i == n // 2:
                        break
                    total += value
            sums[index] = total
            if not stop:
                calls.assert_monotonic_to(n, n)
        except BaseException as exc:  # checked below
            errors.append(exc)

    with WorkerPool(4) as pool:
        threads = [
            threading.Thread(target=consume, args=(i, *plan))
            for i, plan in enumerate(plans)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    full = sum(i * i for i in range(n))
    half = sum(i * i for i in range(n // 2))
    for (_, _, stop), got in zip(plans, sums, strict=True):
        assert got == (half if stop else full)
