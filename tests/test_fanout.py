"""Bounded, structured fan-out over any executor: one contract, five engines.

Every contract test runs on a `ThreadPoolExecutor`, a `ProcessPoolExecutor`
with the spawn and the fork start methods, a `WorkerPool`, and the executor
of a real Dask `LocalCluster` with worker processes (started once per test
session; skipped, with the reason shown, where Dask is not installed).

Tasks that must stay busy wait for a gate file (see `fanout_tasks.py`), which
every test creates at teardown, so no worker stays blocked.
"""

from __future__ import annotations

import _thread
import concurrent.futures as cf
import gc
import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import fanout_tasks as tasks
from child_process import SIGINT_PRELUDE
from safethreads import (
    BoundedExecutor,
    FutureGroup,
    PoolFull,
    WorkerPool,
    executor_imap_unordered,
    executor_map,
    submit_task,
)
from waiting import idle_until_interrupted

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from distributed import Client

R = TypeVar("R")

TIMEOUT = 60.0  # every wait on a result is bounded
TESTS_DIR = str(Path(__file__).parent)

# Forking a process that runs threads (a Dask client, pytest's own) warns on
# 3.12+; the fork contract is what these tests check.
FORK_WARNING = "ignore:This process .* is multi-threaded:DeprecationWarning"

ENGINES = ["threads", "spawn", "fork", "WorkerPool", "dask"]


# --- engines ------------------------------------------------------------------------


def _dask_missing_reason() -> str | None:
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        return f"Dask distributed is not installed for this interpreter ({exc})"
    return None


DASK_MISSING = _dask_missing_reason()


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client | None]:
    """A LocalCluster of two worker processes on 127.0.0.1, for the session."""
    if DASK_MISSING is not None:
        yield None
        return
    from distributed import Client

    with (
        tasks.start_local_cluster(2, 2) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        # Start the client's helper threads now, before any test counts threads.
        warm = client.get_executor()
        submit_task(warm, tasks.square, 2).result(TIMEOUT)
        yield client


def _warm(pool: cf.ProcessPoolExecutor) -> cf.ProcessPoolExecutor:
    # Start the pool's processes and helper threads before tests count threads.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        list(pool.map(tasks.square, range(8)))
    return pool


@pytest.fixture(scope="module")
def process_pools() -> Iterator[dict[str, cf.ProcessPoolExecutor]]:
    """One process pool per start method, shared by the module's tests."""
    pools = {
        method: _warm(
            cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method))
        )
        for method in ("spawn", "fork")
    }
    yield pools
    for pool in pools.values():
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def executor(
    engine: str,
    process_pools: dict[str, cf.ProcessPoolExecutor],
    dask_client: Client | None,
) -> Iterator[cf.Executor]:
    """The executor under test; pools made here are shut down after the test."""
    if engine in process_pools:
        yield process_pools[engine]
        return
    if engine == "dask":
        if dask_client is None:
            pytest.skip(DASK_MISSING or "unreachable")
        dask_executor = dask_client.get_executor()  # type: ignore[no-untyped-call]
        yield dask_executor
        dask_executor.shutdown(wait=False)
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


class Counting(cf.Executor):
    """Passes tasks on and records the most futures unfinished at once."""

    def __init__(self, inner: cf.Executor) -> None:
        self.inner = inner
        self.futures: list[cf.Future[Any]] = []
        self.peak = 0

    def submit(
        self, fn: Callable[..., R], /, *args: Any, **kwargs: Any
    ) -> cf.Future[R]:
        future = submit_task(self.inner, fn, *args, **kwargs)
        self.futures.append(future)
        # done() turns true before a future's callbacks run, so this count
        # never includes a task whose result has already been taken.
        self.peak = max(self.peak, sum(1 for f in self.futures if not f.done()))
        return future

    def assert_nothing_left_pending(self) -> None:
        """Every future is running, done or cancelled: nothing waits to start."""
        waiting = [f for f in self.futures if not (f.running() or f.done())]
        assert not waiting, f"{len(waiting)} tasks still wait to start"


def _released(gate: str) -> None:
    Path(gate).touch()


# --- bounded streams ------------------------------------------------------------


class TestExecutorMap:
    def test_endless_input_bounded_in_order(self, executor: cf.Executor) -> None:
        """An endless input streams in order with at most buffersize in flight."""
        counting = Counting(executor)
        drawn = itertools.count()
        taken = (next(drawn) for _ in itertools.count())
        with executor_map(counting, tasks.square, taken, buffersize=3) as stream:
            got = list(itertools.islice(stream, 20))
        assert got == [i * i for i in range(20)]
        assert counting.peak <= 3
        assert next(drawn) <= 20 + 3 + 1  # the input was consumed lazily
        counting.assert_nothing_left_pending()

    def test_unordered_bounded(self, executor: cf.Executor) -> None:
        """Completion order yields every result once, at most buffersize in flight."""
        counting = Counting(executor)
        got = executor_imap_unordered(
            counting, tasks.square, range(25), buffersize=4, timeout=TIMEOUT
        )
        assert sorted(got) == [i * i for i in range(25)]
        assert counting.peak <= 4

    def test_failure_cancels_not_started(
        self, executor: cf.Executor, gate: str
    ) -> None:
        """A failed task raises from the stream and cancels every queued task."""
        counting = Counting(executor)
        stream = executor_map(
            counting,
            tasks.fail_or_wait,
            range(12),
            itertools.repeat(0),
            itertools.repeat(gate),
            buffersize=12,
        )
        with pytest.raises(ValueError, match="task 0 failed"):
            next(stream)
        counting.assert_nothing_left_pending()
        assert any(f.cancelled() for f in counting.futures)
        with pytest.raises(StopIteration):
            next(stream)

    @pytest.mark.parametrize("ordered", [True, False])
    def test_close_before_first_next_cancels(
        self, executor: cf.Executor, gate: str, ordered: bool
    ) -> None:
        """Closing a stream that was never advanced cancels its queued tasks."""
        counting = Counting(executor)
        paths = itertools.repeat(gate, 10)
        if ordered:
            stream = executor_map(counting, tasks.wait_for_file, paths, buffersize=10)
        else:
            stream = executor_imap_unordered(
                counting, tasks.wait_for_file, paths, buffersize=10
            )
        stream.close()
        counting.assert_nothing_left_pending()
        assert any(f.cancelled() for f in counting.futures)

    def test_deadline(self, executor: cf.Executor, gate: str) -> None:
        """One deadline for the whole stream; then the queued tasks are cancelled."""
        counting = Counting(executor)
        start = time.monotonic()
        stream = executor_map(
            counting, tasks.wait_for_file, itertools.repeat(gate, 8), timeout=0.5
        )
        with pytest.raises(TimeoutError):
            list(stream)
        assert time.monotonic() - start < TIMEOUT / 2
        counting.assert_nothing_left_pending()

    def test_input_that_raises(self, executor: cf.Executor) -> None:
        """An input's exception reaches the consumer; nothing is left queued."""
        counting = Counting(executor)

        def inputs() -> Iterator[int]:
            yield from range(3)
            msg = "input broke"
            raise OSError(msg)

        got: list[int] = []
        with pytest.raises(OSError, match="input broke"):  # noqa: PT012 - partial results
            for value in executor_map(counting, tasks.square, inputs(), buffersize=2):
                got.append(value)  # noqa: PERF402 - the results before the error
        assert got == [0, 1]
        counting.assert_nothing_left_pending()

    def test_no_result_kept_after_yield(self, executor: cf.Executor) -> None:
        """Once handed out, a result is referenced only by the consumer."""
        refs: list[weakref.ref[tasks.Payload]] = []
        stream = executor_map(executor, tasks.make_payload, range(12), buffersize=2)
        for payload in stream:
            refs.append(weakref.ref(payload))
            del payload
        gc.collect()
        alive = [i for i, ref in enumerate(refs[:-2]) if ref() is not None]
        assert not alive, f"results {alive} are still referenced"


class TestBadInput:
    def test_not_an_executor(self) -> None:
        """A non-executor is refused at the call."""
        with pytest.raises(TypeError, match="executor must be a concurrent"):
            executor_map(object(), abs, [1])  # type: ignore[arg-type]

    def test_buffersize(self) -> None:
        """buffersize must be a positive int."""
        with cf.ThreadPoolExecutor(1) as pool:
            with pytest.raises(ValueError, match="buffersize must be None or >= 1"):
                executor_map(pool, abs, [1], buffersize=0)
            with pytest.raises(TypeError, match="buffersize must be an int"):
                executor_imap_unordered(pool, abs, [1], buffersize=1.5)  # type: ignore[arg-type]

    def test_foreign_future_refused(self) -> None:
        """An executor returning non-standard futures gets a clear TypeError."""

        class Odd(cf.Executor):
            def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:  # noqa: ARG002
                return object()

        with pytest.raises(TypeError, match=r"Odd.submit returned object, not a"):
            submit_task(Odd(), abs, 1)
        with FutureGroup() as group, pytest.raises(TypeError, match="member must be"):
            group.add(object())  # type: ignore[arg-type]

    def test_bounded_executor_arguments(self) -> None:
        """max_pending and on_full are checked at construction."""
        with cf.ThreadPoolExecutor(1) as pool:
            with pytest.raises(ValueError, match="max_pending must be >= 1"):
                BoundedExecutor(pool, max_pending=0)
            with pytest.raises(ValueError, match="on_full must be one of"):
                BoundedExecutor(pool, max_pending=1, on_full="drop")  # type: ignore[arg-type]

    def test_group_without_executor(self) -> None:
        """submit() on a group made without an executor says what to do."""
        with FutureGroup() as group, pytest.raises(RuntimeError, match="no executor"):
            group.submit(abs, 1)


@given(
    values=st.lists(st.integers(-1000, 1000), max_size=40),
    buffersize=st.none() | st.integers(1, 8),
    ordered=st.booleans(),
)
@settings(max_examples=30, deadline=None)
def test_stream_matches_builtin_map(
    values: list[int], buffersize: int | None, ordered: bool
) -> None:
    """The streams return what the built-in map does (in some order if unordered)."""
    with WorkerPool(3) as pool:
        if ordered:
            got = list(executor_map(pool, tasks.square, values, buffersize=buffersize))
            assert got == list(map(tasks.square, values))
        else:
            got = list(
                executor_imap_unordered(
                    pool, tasks.square, values, buffersize=buffersize
                )
            )
            assert sorted(got) == sorted(map(tasks.square, values))


# --- backpressure ---------------------------------------------------------------


class TestBoundedExecutor:
    def test_block_keeps_the_bound(self, executor: cf.Executor) -> None:
        """With on_full="block" no more than max_pending tasks are unfinished."""
        counting = Counting(executor)
        bounded = BoundedExecutor(counting, max_pending=3)
        futures = [bounded.submit(tasks.sleep_ms, 1) for _ in range(15)]
        assert [f.result(TIMEOUT) for f in futures] == [1] * 15
        assert counting.peak <= 3
        bounded._check()

    def test_raise_and_try_submit(self, executor: cf.Executor, gate: str) -> None:
        """A full wrapper raises PoolFull, or try_submit returns None."""
        bounded = BoundedExecutor(executor, max_pending=2, on_full="raise")
        held = [bounded.submit(tasks.wait_for_file, gate) for _ in range(2)]
        with pytest.raises(PoolFull, match="2 tasks are unfinished; retry later"):
            bounded.submit(tasks.square, 2)
        assert bounded.try_submit(tasks.square, 2) is None
        _released(gate)
        assert [f.result(TIMEOUT) for f in held] == [0, 0]
        retry = bounded.try_submit(tasks.square, 3)
        assert retry is not None
        assert retry.result(TIMEOUT) == 9

    def test_caller_runs(self, executor: cf.Executor, gate: str) -> None:
        """With on_full="caller_runs" a full wrapper runs the task in the caller."""
        bounded = BoundedExecutor(executor, max_pending=1, on_full="caller_runs")
        held = bounded.submit(tasks.wait_for_file, gate)
        here = bounded.submit(tasks.where_am_i, 0)
        assert here.done()
        assert here.result(0) == os.getpid()
        _released(gate)
        held.result(TIMEOUT)

    @pytest.mark.filterwarnings(FORK_WARNING)
    def test_shutdown_cancel_futures(
        self, engine: str, gate: str, dask_client: Client | None
    ) -> None:
        """shutdown(cancel_futures=True) works even where the executor lacks it."""
        inner: cf.Executor
        if engine == "dask":
            if dask_client is None:
                pytest.skip(DASK_MISSING or "unreachable")
            inner = dask_client.get_executor()  # type: ignore[no-untyped-call]
        elif engine in ("spawn", "fork"):
            context = multiprocessing.get_context(engine)
            inner = cf.ProcessPoolExecutor(1, mp_context=context)
        else:
            inner = cf.ThreadPoolExecutor(1) if engine == "threads" else WorkerPool(1)
        bounded = BoundedExecutor(inner, max_pending=10)
        futures = [bounded.submit(tasks.wait_for_file, gate) for _ in range(5)]
        bounded.shutdown(wait=False, cancel_futures=True)
        assert any(f.cancelled() for f in futures)
        with pytest.raises(RuntimeError, match="after shutdown"):
            bounded.submit(tasks.square, 1)
        _released(gate)
        # Not cf.wait(): a future cancelled by shutdown(cancel_futures=True)
        # is never "notified", and cf.wait() would not count it as done.
        # Tasks already handed to a worker finish; Dask cancels running
        # tasks too. A process pool of one marks running the task its worker
        # runs and fills its call queue (max_workers + 1 more) behind it.
        finished = [f.result(TIMEOUT) for f in futures if not f.cancelled()]
        assert finished == [0] * len(finished)
        assert len(finished) <= (3 if engine in ("spawn", "fork") else 2)
        inner.shutdown(wait=True)

    @pytest.mark.stress
    @pytest.mark.usefixtures("fast_switching")
    def test_many_submitters(self) -> None:
        """Eight threads submitting at once never exceed the bound; sums are exact."""
        with WorkerPool(4) as pool:
            bounded = BoundedExecutor(pool, max_pending=5)
            n = 400
            futures: list[cf.Future[int]] = []
            lock = threading.Lock()

            def submitter(start: int) -> None:
                mine = [bounded.submit(tasks.square, i) for i in range(start, n, 8)]
                with lock:
                    futures.extend(mine)

            threads = [threading.Thread(target=submitter, args=(s,)) for s in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(TIMEOUT)
                bounded._check()
            assert sum(f.result(TIMEOUT) for f in futures) == sum(
                i * i for i in range(n)
            )
        # A slot is given back by a done-callback, which may run just after
        # result() returns; the pool's shutdown has waited for all of them.
        assert bounded.pending == 0


# --- the structured scope -------------------------------------------------------


class TestFutureGroup:
    def test_waits_for_every_member(self, executor: cf.Executor) -> None:
        """Leaving the block, every member has finished."""
        with FutureGroup(executor, timeout=TIMEOUT) as group:
            futures = [group.submit(tasks.square, i) for i in range(6)]
        assert all(f.done() for f in futures)
        assert [f.result(0) for f in futures] == [i * i for i in range(6)]

    def test_failure_cancels_and_raises_group(
        self, executor: cf.Executor, gate: str
    ) -> None:
        """A failing member cancels the not-started ones; one ExceptionGroup."""
        counting = Counting(executor)
        with (  # noqa: PT012 - the block is the code under test
            pytest.raises(ExceptionGroup) as info,
            FutureGroup(counting, timeout=TIMEOUT) as group,
        ):
            for i in range(12):
                group.submit(tasks.fail_or_wait, i, 0, gate)
            first = group.futures[0]
            cf.wait([first], TIMEOUT)
            # Members that run (they wait on the gate) may now finish.
            _released(gate)
        errors = info.value.exceptions
        assert len(errors) == 1
        assert isinstance(errors[0], ValueError)
        assert "in member 0 of group" in "".join(errors[0].__notes__)
        counting.assert_nothing_left_pending()
        # Cancelled either once submitted, or at submit after the failure.
        assert any(f.cancelled() for f in group.futures)

    def test_every_failure_gathered(self, executor: cf.Executor) -> None:
        """Without fail_fast every failure is raised, in submission order."""
        with (  # noqa: PT012 - the block is the code under test
            pytest.raises(ExceptionGroup) as info,
            FutureGroup(executor, fail_fast=False, timeout=TIMEOUT) as group,
        ):
            for i in range(6):
                group.submit(tasks.fail_if, i % 3, 0)
        assert [str(e) for e in info.value.exceptions] == ["task 0 failed"] * 2

    def test_deadline(self, executor: cf.Executor, gate: str) -> None:
        """The deadline ends the block with TimeoutError; queued work is cancelled."""
        counting = Counting(executor)
        start = time.monotonic()
        with (  # noqa: PT012 - the block is the code under test
            pytest.raises(
                TimeoutError, match=r"did not finish within timeout=0.5 s: 10 member"
            ),
            FutureGroup(counting, timeout=0.5) as group,
        ):
            for _ in range(10):
                group.submit(tasks.wait_for_file, gate)
        assert time.monotonic() - start < TIMEOUT / 2
        counting.assert_nothing_left_pending()

    def test_identical_submits_are_separate_tasks(self, executor: cf.Executor) -> None:
        """Identical calls run once each (Dask would otherwise merge them)."""
        with FutureGroup(executor, timeout=TIMEOUT) as group:
            futures = [group.submit(tasks.fresh_token, 1) for _ in range(6)]
        assert len({f.result(0) for f in futures}) == 6

    def test_body_error_cancels_and_comes_first(self, gate: str) -> None:
        """An error in the body cancels the members and is raised first."""
        with WorkerPool(1) as pool:
            with pytest.raises(ExceptionGroup) as info, FutureGroup(pool) as group:  # noqa: PT012 - the block is the code under test
                running = group.submit(tasks.wait_for_file, gate)
                queued = group.submit(tasks.square, 3)
                # Started before the body fails, else the failure cancels it.
                deadline = time.monotonic() + TIMEOUT
                while not running.running() and time.monotonic() < deadline:
                    time.sleep(0.001)
                _released(gate)
                msg = "body broke"
                raise KeyError(msg)
            assert isinstance(info.value.exceptions[0], KeyError)
            assert running.result(TIMEOUT) == 0
            assert queued.cancelled() or queued.result(0) == 9

    def test_submit_after_cancel_starts_nothing(self) -> None:
        """Once the group is cancelled, submit returns cancelled futures."""
        with WorkerPool(1) as pool, FutureGroup(pool) as group:
            assert group.cancel()
            assert not group.cancel()
            assert group.submit(tasks.square, 2).cancelled()
            assert group.cancelled

    def test_ctrl_c_cancels_and_waits_for_running(self, gate: str) -> None:
        """Ctrl-C cancels the queued members and waits for the running one."""
        with WorkerPool(1) as pool:
            group = FutureGroup(pool)
            queued: list[cf.Future[int]] = []

            def release_once_cancelled() -> None:
                deadline = time.monotonic() + TIMEOUT
                while not (queued and queued[0].cancelled()):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
                _released(gate)

            helper = threading.Thread(target=release_once_cancelled)
            with pytest.raises(KeyboardInterrupt), group:  # noqa: PT012 - the block is the code under test
                running = group.submit(tasks.wait_for_file, gate)
                queued.append(group.submit(tasks.square, 2))
                # Started before Ctrl-C, else the interrupt cancels it.
                deadline = time.monotonic() + TIMEOUT
                while not running.running() and time.monotonic() < deadline:
                    time.sleep(0.001)
                helper.start()
                _thread.interrupt_main()
                idle_until_interrupted()
            helper.join(TIMEOUT)
            assert queued[0].cancelled()
            assert running.done()
            assert running.result(0) == 0

    def test_second_press_abandons_the_wait(self) -> None:
        """A second Ctrl-C stops waiting for a member that never finishes."""
        group = FutureGroup()
        running: cf.Future[None] = cf.Future()
        running.set_running_or_notify_cancel()  # started: cannot be cancelled

        def press_twice() -> None:
            _thread.interrupt_main()
            # The second press once the first one has cancelled the group.
            deadline = time.monotonic() + TIMEOUT
            while not group.cancelled and time.monotonic() < deadline:
                time.sleep(0.01)
            _thread.interrupt_main()

        presser = threading.Thread(target=press_twice)
        with pytest.raises(KeyboardInterrupt) as info, group:  # noqa: PT012 - the block is the test
            group.add(running)
            presser.start()
            idle_until_interrupted()
        presser.join(TIMEOUT)
        assert "stopped waiting; 1 member(s) unfinished" in "".join(
            info.value.__notes__
        )
        assert not running.done()  # the group left without it
        running.set_result(None)

    def test_second_press_while_cancelling_abandons_the_wait(self) -> None:
        """A second Ctrl-C landing in the first one's cancellation abandons the wait.

        Without a GIL a second press can arrive while the first is still
        cancelling the members; it must count as the second press.
        """

        class PressedDuringCancel(cf.Future[None]):
            def cancel(self) -> bool:
                raise KeyboardInterrupt  # the second press lands here

        deadline = 10.0  # reached only if the second press is lost
        group = FutureGroup(timeout=deadline)
        running: cf.Future[None] = cf.Future()
        running.set_running_or_notify_cancel()
        first = KeyboardInterrupt()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt) as info, group:  # noqa: PT012 - the block is the test
            group.add(running)
            group.add(PressedDuringCancel())
            raise first
        assert time.monotonic() - start < deadline / 2, "waited for the deadline"
        assert info.value is first
        assert "stopped waiting; 2 member(s) unfinished" in "".join(
            info.value.__notes__
        )
        running.set_result(None)


# --- engines that can lose a worker ---------------------------------------------


@pytest.mark.subprocess
@pytest.mark.filterwarnings(FORK_WARNING)
@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_killed_process_is_a_clear_error(method: str, tmp_path: Path) -> None:
    """A pool process killed mid-task fails the waiter's group, not hangs it."""
    marker = tmp_path / "pid"
    context = multiprocessing.get_context(method)
    start = time.monotonic()
    with (  # noqa: PT012 - the block is the code under test
        cf.ProcessPoolExecutor(1, mp_context=context) as pool,
        pytest.raises(ExceptionGroup) as info,
        FutureGroup(pool, timeout=TIMEOUT / 2) as group,
    ):
        victim = group.submit(tasks.announce_and_sleep, str(marker), 3 * TIMEOUT)
        while not marker.exists() and not victim.done():
            time.sleep(0.01)
        os.kill(int(marker.read_text()), signal.SIGKILL)
    assert time.monotonic() - start < TIMEOUT / 2
    [error] = info.value.exceptions
    assert isinstance(error, cf.process.BrokenProcessPool)


def _run_cluster_child(
    body: str, tmp_path: Path, *, interrupt: bool = False
) -> tuple[str, str, int]:
    """Run `body` in a child driving its own cluster (`executor` is bound)."""
    if DASK_MISSING is not None:
        pytest.skip(DASK_MISSING)
    code = (
        SIGINT_PRELUDE
        + textwrap.dedent(
            f"""
        import os, signal, sys, time
        sys.path.insert(0, {TESTS_DIR!r})
        import dask
        import fanout_tasks as tasks
        from distributed import Client
        from safethreads import FutureGroup

        if __name__ == "__main__":
            # No retries: a task whose worker died fails with KilledWorker.
            with (
                dask.config.set({{"distributed.scheduler.allowed-failures": 0}}),
                tasks.start_local_cluster(1) as cluster,
                Client(cluster) as client,
            ):
                executor = client.get_executor()
        """
        )
        + textwrap.indent(textwrap.dedent(body), " " * 8)
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert child.stdout is not None
        if interrupt:
            line = child.stdout.readline()
            assert line.strip() == "ready", child.communicate(timeout=TIMEOUT)
            child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return out, err, child.returncode


@pytest.mark.slow
@pytest.mark.subprocess
def test_killed_dask_worker_is_a_clear_error(tmp_path: Path) -> None:
    """A Dask worker process killed mid-task fails the group with KilledWorker."""
    body = f"""
    marker = {str(tmp_path / "pid")!r}
    start = time.monotonic()
    try:
        with FutureGroup(executor, timeout=30) as group:
            group.submit(tasks.announce_and_sleep, marker, 180)
            while not os.path.exists(marker):
                time.sleep(0.01)
            os.kill(int(open(marker).read()), signal.SIGKILL)
    except ExceptionGroup as eg:
        print(type(eg.exceptions[0]).__name__, round(time.monotonic() - start))
    """
    out, err, code = _run_cluster_child(body, tmp_path)
    assert code == 0, err
    name, seconds = out.split()
    assert name == "KilledWorker", err
    assert int(seconds) < 30


@pytest.mark.slow
@pytest.mark.subprocess
def test_ctrl_c_while_driving_a_cluster_exits_cleanly(tmp_path: Path) -> None:
    """Ctrl-C in a program waiting on a cluster cancels its tasks and exits."""
    body = """
    group = FutureGroup(executor)
    try:
        with group:
            for _ in range(20):
                group.submit(tasks.sleep_ms, 60_000)
            print("ready", flush=True)
            _wait_for_signal(60)
    except KeyboardInterrupt:
        cancelled = sum(f.cancelled() for f in group.futures)
        print("interrupted; cancelled", cancelled, flush=True)
        raise
    """
    out, err, code = _run_cluster_child(body, tmp_path, interrupt=True)
    assert "interrupted; cancelled 20" in out, err
    assert "KeyboardInterrupt" in err
    assert code != 0


EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "scaleout.py"


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "kind", ["threads", "processes", pytest.param("dask", marks=pytest.mark.slow)]
)
def test_scaling_out_example_same_answer_everywhere(kind: str) -> None:
    """The guide's program prints the same fingerprint on every engine."""
    if kind == "dask" and DASK_MISSING is not None:
        pytest.skip(DASK_MISSING)
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), kind, "40"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    assert out.startswith(f"{kind}: 40 records, fingerprint 538af4e0, "), out


def test_close_from_another_thread_ends_a_waiting_stream(tmp_path: Path) -> None:
    """A consumer blocked in next() stops when another thread closes the stream."""
    gate = str(tmp_path / "gate")
    with WorkerPool(1) as pool:
        stream = executor_imap_unordered(
            pool, tasks.wait_for_file, [gate] * 3, buffersize=3
        )
        closer = threading.Timer(0.2, stream.close)
        closer.start()
        with pytest.raises(StopIteration):
            next(stream)
        closer.join(TIMEOUT)
        _released(gate)


def test_failure_after_the_deadline_is_reported(reported: list[Any]) -> None:
    """A member failing after the group gave up reaches threading.excepthook."""
    late: cf.Future[int] = cf.Future()
    late.set_running_or_notify_cancel()  # running: the deadline cannot cancel it
    with pytest.raises(TimeoutError), FutureGroup(timeout=0.1) as group:
        group.add(late)
    assert reported == []
    late.set_exception(OSError("disk gone"))
    [report] = reported
    assert isinstance(report.exc_value, OSError)
    assert "failed after the group's block ended" in "".join(report.exc_value.__notes__)


class BoundedExecutorMachine(RuleBasedStateMachine):
    """BoundedExecutor against a model: the set of tasks not yet finished."""

    MAX_PENDING = 3

    def __init__(self) -> None:
        super().__init__()
        self.pool = WorkerPool(self.MAX_PENDING + 1)
        self.bounded = BoundedExecutor(
            self.pool, max_pending=self.MAX_PENDING, on_full="raise"
        )
        # The model: task id -> (its gate, its future), for unfinished tasks.
        self.held: dict[int, tuple[threading.Event, cf.Future[bool]]] = {}
        self.ids = itertools.count()

    def _settle(self) -> None:
        # A slot frees in a done callback, which may run just after result()
        # returns: wait (bounded) until the wrapper has caught up.
        deadline = time.monotonic() + TIMEOUT
        while self.bounded.pending != len(self.held):
            assert time.monotonic() < deadline, "pending never matched the model"
            time.sleep(0.001)

    @rule(use_try=st.booleans())
    def submit(self, use_try: bool) -> None:
        gate = threading.Event()
        full = len(self.held) == self.MAX_PENDING
        if use_try:
            future = self.bounded.try_submit(gate.wait, TIMEOUT)
            assert (future is None) == full
        elif full:
            with pytest.raises(PoolFull):
                self.bounded.submit(gate.wait, TIMEOUT)
            future = None
        else:
            future = self.bounded.submit(gate.wait, TIMEOUT)
        if future is not None:
            self.held[next(self.ids)] = (gate, future)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.held)))
        gate, future = self.held.pop(key)
        gate.set()
        assert future.result(TIMEOUT) is True
        self._settle()

    @invariant()
    def matches_model(self) -> None:
        self.bounded._check()
        assert self.bounded.pending >= len(self.held)

    def teardown(self) -> None:
        for gate, _ in self.held.values():
            gate.set()
        self.bounded.shutdown(wait=True)


TestBoundedExecutorMachine = BoundedExecutorMachine.TestCase
TestBoundedExecutorMachine.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None
)


@pytest.mark.stress
@pytest.mark.usefixtures("fast_switching")
def test_group_many_submitting_threads(stress_rng: Any) -> None:
    """Members added from many threads at once: every failure and result counted."""
    n_threads, per_thread = 8, 60
    bad = {stress_rng.randrange(n_threads * per_thread) for _ in range(20)}
    with WorkerPool(4) as pool:
        group = FutureGroup(pool, fail_fast=False)
        with pytest.raises(ExceptionGroup) as info, group:  # noqa: PT012 - the block is the code under test

            def submitter(start: int) -> None:
                for i in range(start, n_threads * per_thread, n_threads):
                    group.submit(tasks.fail_if, i, i if i in bad else -1)

            threads = [
                threading.Thread(target=submitter, args=(s,)) for s in range(n_threads)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(TIMEOUT)
        group._check()
        assert len(info.value.exceptions) == len(bad)
        ok = [f.result(0) for f in group.futures if f.exception(0) is None]
        total = n_threads * per_thread
        assert sum(ok) == total * (total - 1) // 2 - sum(bad)
