"""Attacks on streams owning their futures before a `WorkerPool` takes them.

Each test failed before its fix.
"""

from __future__ import annotations

import collections
import random
import sys
import sysconfig
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import pytest

from safethreads import WorkerPool
from safethreads._fanout import _abandon, executor_imap_unordered, executor_map

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

TIMEOUT = 10.0  # every wait in these tests is bounded


def test_a_caller_runs_task_cancelled_before_it_runs_inline_is_not_left_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """caller_runs reserves the task (counted running) before it runs it
    inline; the stream owns the future already, so a close() from another
    thread may cancel it in between.  No snapshot may then count the task
    both running and cancelled (queued would go negative)."""
    with WorkerPool(1, max_pending=1, on_full="caller_runs") as pool:
        gate = threading.Event()
        busy = pool.submit(gate.wait, TIMEOUT)
        queued = pool.submit(int, "1")  # the queue is now full
        owned: list[Future[Any]] = []
        seen: list[Any] = []
        run_here = pool._run_here

        def closed_meanwhile(future: Any) -> None:
            # Between the reservation and the inline run: another thread
            # closes the stream, which gives up every future it owns.
            closer = threading.Thread(target=lambda: [f.cancel() for f in owned])
            closer.start()
            closer.join(TIMEOUT)
            gate.set()
            busy.result(TIMEOUT)
            queued.result(TIMEOUT)
            seen.append(pool.stats())
            run_here(future)

        monkeypatch.setattr(pool, "_run_here", closed_meanwhile)
        ran: list[int] = []
        future = pool._submit_owned(ran.append, (1,), owned.append)
        assert future.cancelled()
        assert ran == []
        (s,) = seen
        assert s.running == 0, s
        assert s.queued == 0, s
        assert s.cancelled == 1, s
        monkeypatch.undo()
        pool._check()
        s = pool.stats()
        assert (s.submitted, s.completed, s.cancelled, s.running, s.queued) == (
            3,
            2,
            1,
            0,
            0,
        )


def test_a_blocked_submit_whose_future_was_cancelled_passes_its_wake_up_on() -> None:
    """A stream's submit blocked for room (on_full="block") whose future the
    stream gave up meanwhile returns without taking the room it was woken
    for: the next blocked submitter gets it at once, not a poll slice later."""
    with WorkerPool(1, max_pending=2, on_full="block") as pool:
        gate = threading.Event()
        later = threading.Event()
        pool.submit(gate.wait, TIMEOUT)
        pool.submit(later.wait, TIMEOUT)  # keeps the worker from parking
        pool.submit(int, "1")  # the queue is now full
        owned: list[Future[Any]] = []
        first = threading.Thread(
            target=pool._submit_owned, args=(int, ("2",), owned.append)
        )
        first.start()
        _until(lambda: len(pool._blocked) == 1)
        done_at: list[float] = []

        def second() -> None:
            pool.submit(int, "3")
            done_at.append(time.monotonic())

        other = threading.Thread(target=second)
        other.start()
        _until(lambda: len(pool._blocked) == 2)
        (future,) = owned
        future.cancel()  # the stream closed from another thread
        opened = time.monotonic()
        gate.set()
        first.join(TIMEOUT)
        other.join(TIMEOUT)
        later.set()
        assert future.cancelled()
        (end,) = done_at
        assert end - opened < 0.15
        pool.shutdown(wait=True)
        pool._check()
        s = pool.stats()
        assert (s.submitted, s.cancelled, s.completed) == (5, 1, 4), s


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


class _MutatedWhileCopied(collections.deque[Any]):
    """A deque that the consumer appends to while close() copies it, as it
    can on the free-threaded build (where `list(deque)` then raises)."""

    def __init__(self, extra: Any) -> None:
        super().__init__()
        self.extra = extra
        self.times = 1

    def __iter__(self) -> Iterator[Any]:
        it = super().__iter__()
        yield next(it)
        if self.times:
            self.times -= 1
            self.append(self.extra)  # the consumer, meanwhile
        yield from it


def test_abandon_survives_an_append_while_it_copies_the_deque() -> None:
    """close() from another thread copies the ordered stream's deque while
    the consumer appends the next future: the copy is retried, every future
    is given up, and close() does not raise."""
    futures = [Future[Any]() for _ in range(3)]
    extra = Future[Any]()
    owned = _MutatedWhileCopied(extra)
    owned.extend(futures)
    _abandon(owned)
    assert all(f.cancelled() for f in [*futures, extra])
    assert not owned


@pytest.mark.skipif(
    not FREE_THREADED or getattr(sys, "_is_gil_enabled", bool)(),
    reason="a race without the GIL",
)
def test_close_from_another_thread_while_the_consumer_appends_free_threaded() -> None:
    """On the free-threaded build, close() racing the consumer's refill."""
    errors: list[BaseException] = []
    with WorkerPool(2) as pool:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not errors:
            stream = executor_map(pool, abs, range(100_000), buffersize=20_000)
            started = threading.Event()

            def close(stream: Any = stream, started: threading.Event = started) -> None:
                started.wait(TIMEOUT)
                time.sleep(random.random() * 0.001)
                try:
                    stream.close()
                except BaseException as exc:
                    errors.append(exc)

            closer = threading.Thread(target=close)
            closer.start()
            it = iter(stream)
            next(it)
            started.set()
            for _ in it:
                pass
            closer.join(TIMEOUT)
        assert errors == []
    pool._check()


def test_close_from_another_thread_ends_an_unordered_stream_without_error() -> None:
    """close() from another thread cancels the tasks in flight, whose done
    callbacks hand them to the consumer waiting for the next result: the
    consumer's `next()` ends the stream (StopIteration) instead of raising
    the CancelledError of a task the stream itself gave up."""
    gate = threading.Event()
    with WorkerPool(1) as pool:
        stream = executor_imap_unordered(pool, gate.wait, [TIMEOUT] * 3)
        core: Any = stream._core
        pending = [f for f in core._in_flight if not f.running()]
        # Keeps close() between cancelling and forgetting the futures while
        # the consumer takes the cancelled one.
        pending[0].add_done_callback(lambda _: time.sleep(0.3))
        outcome: list[BaseException | object] = []

        def consume() -> None:
            try:
                outcome.append(next(stream, "end"))
            except BaseException as exc:
                outcome.append(exc)

        consumer = threading.Thread(target=consume)
        consumer.start()
        time.sleep(0.05)  # the consumer waits for the first result
        stream.close()
        consumer.join(TIMEOUT)
        gate.set()
        assert outcome == ["end"]
