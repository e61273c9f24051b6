"""Bounded, structured fan-out over any `concurrent.futures.Executor`.

The same guarantees `WorkerPool` gives threads, for tasks that run wherever
an executor sends them: a thread pool, a process pool, a cluster.

Three pieces, each needing nothing from the executor but `submit()` and the
`concurrent.futures.Future` it returns:

- `executor_map` / `executor_imap_unordered`: lazy streams with at most
  `buffersize` tasks in flight, one deadline, and cancellation of what has
  not started when the consumer stops, a task fails or the deadline passes.
  The stream is an iterator object, not a generator, so that closing it (or
  dropping it) before the first `next()` still cancels the tasks submitted at
  the call; it holds a future only until its result is handed out.  With
  `chunksize`, a task is a chunk of inputs run by a small top-level function
  (picklable, for process pools and clusters); the stream is an
  `itertools.chain` over each task's results, so stepping through a chunk
  runs in C, and `list.pop` drops each result as it is handed out.  A
  `progress` callback runs in the consuming thread, between tasks.
- `BoundedExecutor`: an `Executor` wrapping another, with a bound on the tasks
  submitted through it and not finished, and `WorkerPool`'s `on_full`
  policies.  Its slots are released by done-callbacks, so the bound holds
  whatever runs the tasks.
- `FutureGroup`: a structured scope over futures.  Leaving its block waits
  for every member future (until one deadline), gathers every failure into
  one `ExceptionGroup`, and on the first failure (fail-fast), an error in the
  body, the deadline or Ctrl-C cancels every member that has not started.  A
  second Ctrl-C stops waiting.  Members are futures, not threads, so the
  same scope works for any executor; a thread-based group can delegate to it
  by making each member's outcome a future.

Executors' gaps are handled here, not by the user:

- Dask's `ClientExecutor` submits with `pure=True` by default, which makes
  identical calls one task, and its relay to `concurrent.futures` fails in
  Dask's event loop when a future is cancelled as its task finishes.
  Submissions go through `submit_task`, which submits to such an executor's
  client with `pure=False` (unless the user chose `pure` when creating the
  executor) and relays the outcome itself.  The executor is recognised by
  its class, looked up in `sys.modules`, so Dask is never imported here.
- `shutdown(cancel_futures=...)` is passed on only to executors whose
  `shutdown` accepts it; `BoundedExecutor` cancels the futures it handed out
  itself, so the option works everywhere.
- Futures that are not `concurrent.futures.Future` instances are refused with
  a `TypeError` naming the executor, at the call that received them.

Locks.  Each object has one lock, never held while user code runs, while a
future's callbacks run, or while calling into the executor: done-callbacks
may run in the submitting thread (a future already done), in a worker, or in
an executor's event-loop thread (Dask), so they only change counts and
lists under the lock and wake a waiter by releasing the raw lock it parked
(see `BoundedExecutor._submit` and `FutureGroup._wait_members`): never a
`threading.Condition`, whose `wait` a Ctrl-C can leave without its lock.
"""

from __future__ import annotations

import _queue as queue  # the C module: `queue` also imports heapq
import _thread
import collections
import contextlib
import itertools
import operator
import os
import sys
import threading
import time
from collections.abc import Iterator, Sized
from concurrent.futures import CancelledError, Executor, Future, InvalidStateError
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    NamedTuple,
    ParamSpec,
    TypeVar,
    final,
)

from ._errors import PoolFull
from ._future import PoolFuture
from ._scope import add_note, note_unraised, raise_outcome, wait_counting_presses
from ._waiting import check_callable, check_timeout, release_parked

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from types import TracebackType
    from typing import Self

    from ._worker_pool import OnFull

__all__ = [
    "BoundedExecutor",
    "FutureGroup",
    "ResultStream",
    "executor_imap_unordered",
    "executor_map",
    "submit_task",
]

R = TypeVar("R")
T = TypeVar("T")
P = ParamSpec("P")

_ON_FULL: Final[tuple[str, ...]] = ("block", "raise", "caller_runs")

# Longest single wait, so that a waiting main thread services Ctrl-C.
_POLL: Final = 0.05


# --- submitting to any executor ---------------------------------------------------


def _dask_executor_class() -> type | None:
    """Dask's `ClientExecutor` class if Dask is loaded, without importing it."""
    module = sys.modules.get("distributed.cfexecutor")
    cls = getattr(module, "ClientExecutor", None) if module is not None else None
    return cls if isinstance(cls, type) else None


def _submit_to_dask(
    executor: Executor,
    fn: Callable[..., R],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> object:
    """Submit to Dask's `ClientExecutor` as an impure task, with a safe relay.

    The executor's own relay sets the outcome on its `concurrent.futures`
    future without checking whether that future was cancelled meanwhile,
    which fails with `InvalidStateError` in Dask's event loop whenever a
    task finishes just as it is cancelled (fail-fast and early stops do
    exactly that).  This relay checks.  It relies on the attributes the
    executor has had since its first release; without them it falls back to
    the executor's own `submit`.
    """
    client = getattr(executor, "_client", None)
    chosen = getattr(executor, "_kwargs", None)
    owned = getattr(executor, "_futures", None)
    loop = getattr(client, "loop", None)
    if client is None or not isinstance(chosen, dict) or owned is None or loop is None:
        options = dict(kwargs)
        options.setdefault("pure", False)
        return executor.submit(fn, *args, **options)
    if getattr(executor, "_shutdown", False):
        msg = "cannot schedule new futures after shutdown"
        raise RuntimeError(msg)
    options = {"pure": False, **chosen, **kwargs}
    dask_future = client.submit(fn, *args, **options)
    owned.add(dask_future)  # so that the executor's shutdown waits for it
    future: Future[R] = Future()

    def on_cancel(f: Future[R]) -> None:
        # Possibly in Dask's event loop (a member failing cancels others):
        # never block here; the loop cancels the task when it gets to it.
        if f.cancelled():
            loop.add_callback(_cancel_dask_task, client, dask_future)

    future.add_done_callback(on_cancel)
    loop.add_callback(_relay_dask_outcome, dask_future, future)
    return future


async def _cancel_dask_task(client: Any, dask_future: Any) -> None:
    await client.cancel([dask_future], asynchronous=True)


async def _relay_dask_outcome(dask_future: Any, future: Future[Any]) -> None:
    """Wait (in Dask's event loop) for a Dask future; copy its outcome."""
    outcome = await dask_future._result(raiseit=False)
    status = dask_future.status
    try:
        if status == "finished":
            future.set_result(outcome)
        elif status == "cancelled":
            if future.cancel():
                future.set_running_or_notify_cancel()
        else:
            _, exc, tb = outcome
            future.set_exception(exc.with_traceback(tb))
    except InvalidStateError:
        pass  # cancelled by its owner meanwhile: nobody wants the outcome


def submit_task(
    executor: Executor, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> Future[R]:
    """Submit `fn(*args, **kwargs)` to `executor`, smoothing over its quirks.

    Every task the scale-out helpers submit goes through here.  Tasks for a
    Dask `ClientExecutor` are submitted with `pure=False` (unless the
    executor was made with its own `pure`), so that identical calls are
    separate tasks, and their outcome is relayed safely to a future that
    may be cancelled at any time.

    ```python
    from concurrent.futures import ThreadPoolExecutor

    from safethreads import submit_task

    with ThreadPoolExecutor(2) as pool:
        assert submit_task(pool, pow, 2, 5).result(timeout=5) == 32
    ```

    Args:
        executor: Any `concurrent.futures.Executor`.
        fn: The callable to run.
        *args: Positional arguments for `fn`.
        **kwargs: Keyword arguments for `fn`.

    Returns:
        The future `executor.submit` returned.

    Raises:
        TypeError: if `executor` is not an `Executor`, or its `submit`
            returned something that is not a `concurrent.futures.Future`.
    """
    _check_executor(executor)
    dask = _dask_executor_class()
    if dask is not None and isinstance(executor, dask):
        future: object = _submit_to_dask(executor, fn, args, kwargs)
    else:
        future = executor.submit(fn, *args, **kwargs)
    return _checked_future(executor, future)


def _submit_into(
    executor: Executor,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    own: Callable[[Future[Any]], object],
) -> Future[Any]:
    """Submit `fn(*args)` for a stream, handing the future to `own`.

    A `WorkerPool` hands it over before it may accept the task, so a
    Ctrl-C striking inside `submit` after the pool accepted it cannot leave
    a task nobody owns (the stream abandons what it owns); other executors
    give the future only once their `submit` has returned.
    """
    submit_owned = getattr(executor, "_submit_owned", None)  # a WorkerPool's
    if submit_owned is not None:
        future: Future[Any] = submit_owned(fn, args, own)
        return future
    future = submit_task(executor, fn, *args)
    own(future)
    return future


def _check_executor(executor: object) -> None:
    if not isinstance(executor, Executor):
        msg = (
            "executor must be a concurrent.futures.Executor, not "
            f"{type(executor).__name__}; wrap other engines in an Executor"
        )
        raise TypeError(msg)


def _checked_future(executor: object, future: object) -> Future[Any]:
    if isinstance(future, Future):
        return future
    cancel = getattr(future, "cancel", None)
    if callable(cancel):
        cancel()
    msg = (
        f"{type(executor).__name__}.submit returned {type(future).__name__}, "
        "not a concurrent.futures.Future; use an executor that returns "
        "standard futures (for Dask: client.get_executor())"
    )
    raise TypeError(msg)


def _check_buffersize(buffersize: object) -> None:
    if buffersize is None:
        return
    if not isinstance(buffersize, int) or isinstance(buffersize, bool):
        msg = f"buffersize must be an int, got {type(buffersize).__name__}"
        raise TypeError(msg)
    if buffersize < 1:
        msg = f"buffersize must be None or >= 1, got {buffersize}"
        raise ValueError(msg)


def _cancel_all(futures: Iterable[Future[Any]]) -> None:
    for future in futures:
        future.cancel()


def _give_up(future: Future[Any]) -> None:
    """Cancel `future` if it has not started; nobody will look at its outcome.

    A `WorkerPool` future's failure is then not reported as unobserved, as
    for the tasks the pool's own `map` abandons.
    """
    if isinstance(future, PoolFuture):
        future._silence()
    future.cancel()


def _abandon(
    futures: collections.deque[Future[Any]] | set[Future[Any]] | list[Future[Any]],
) -> None:
    """`_give_up` every future, then forget them all.

    A pass that a Ctrl-C cuts short forgets nothing: the callers run a
    second pass in a `finally` (giving up is idempotent).  A future another
    thread adds meanwhile is given up by that thread, which appends it
    before it looks whether the stream was closed.
    """
    for future in _snapshot(futures):
        _give_up(future)
    futures.clear()


def _snapshot(
    futures: collections.deque[Future[Any]] | set[Future[Any]] | list[Future[Any]],
) -> list[Future[Any]]:
    """A copy of `futures`, taken again if another thread changed them meanwhile.

    Without the GIL, copying a deque that the consumer appends to or pops
    from raises `RuntimeError` ("deque mutated during iteration").
    """
    while True:
        try:
            return list(futures)
        except RuntimeError:
            continue


# How long a stream's finalizer waits for a lock before it assumes that its
# own thread holds it (as `WorkerPool.map`'s iterator does).
_FINALIZER_PATIENCE: Final = 0.05


# --- lazy bounded streams ---------------------------------------------------------


# Marks the end of a chunk being handed out: `iter(chunk.pop, _CHUNK_END)`
# hands out results from C until it pops this.
_CHUNK_END: Final = object()


@final
class ResultStream(itertools.chain[R]):
    """The results of `executor_map` or `executor_imap_unordered`, as they come.

    An iterator with a `close()` method, and a context manager that closes
    it.  Closing (or dropping) the stream cancels every task it submitted
    that has not started, even before the first `next()`; that is why it is
    not a generator.  A result is not kept once `next()` has returned it.

    The stream hands out one task's results at a time (one result, or a
    chunk's); the step from one item of a chunk to the next runs in C, so
    iterating costs about what a generator does.  The bookkeeping between
    tasks (waiting, submitting the next, `progress`) runs in the thread
    that advances the stream.

    Thread safety: one thread at a time may advance a stream (a second
    reaching the next task's result gets `RuntimeError`, as a generator
    would raise `ValueError`); `close()` may be called from any thread.
    """

    __slots__ = ("__weakref__", "_core")

    _core: _StreamCore[R]

    @classmethod
    def _over(cls, core: _StreamCore[R]) -> ResultStream[R]:
        # The chain's source calls `core.next_task_results()` until it
        # returns None; the stream holds the core, the core never the stream,
        # so dropping the stream runs `__del__` at once.
        stream: ResultStream[R] = cls.from_iterable(  # type: ignore[assignment]
            iter(core.next_task_results, None)
        )
        stream._core = core
        return stream

    def __enter__(self) -> Self:
        """Return the stream; leaving the block closes it."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the stream."""
        self.close()

    def __del__(self) -> None:
        """Close the stream: its tasks not started are not left to run."""
        core = getattr(self, "_core", None)
        if core is not None:
            try:
                core.close_from_finalizer()
            except (TypeError, AttributeError):
                # At interpreter exit the module's globals may already be
                # None: nothing is left to cancel for.
                if _CHUNK_END is not None:
                    raise

    def close(self) -> None:
        """Stop the stream: cancel every task not started, submit no more.

        Results already received and not handed out are dropped; `next()`
        then raises `StopIteration`.  Safe to call several times and from
        any thread.
        """
        self._core.close()


class _StreamCore(Generic[R]):
    """The state of a stream: what is in flight, what is left to submit."""

    __slots__ = (
        "_busy",
        "_chunk",
        "_chunked",
        "_closed",
        "_deadline",
        "_done_items",
        "_executor",
        "_fn",
        "_input_error",
        "_inputs",
        "_progress",
        "_total",
    )

    def __init__(
        self,
        executor: Executor,
        fn: Callable[..., Any],
        inputs: Iterator[tuple[Any, ...]] | None,
        deadline: float | None,
        plan: _Plan,
    ) -> None:
        self._executor = executor
        # The callable each task runs: the user's, or `_run_chunk` /
        # `_run_star_chunk` when chunked (each task's result is then a list).
        self._fn = fn
        self._chunked = plan.chunked
        # The inputs not yet submitted, as argument tuples for `_fn`; None
        # once exhausted (or eager).
        self._inputs = inputs
        self._deadline = deadline
        self._closed = False
        # The results of the task being handed out, reversed, after
        # _CHUNK_END; close() leaves only _CHUNK_END, in one atomic slice
        # assignment, so that nothing more is handed out.
        self._chunk: list[Any] = []
        self._progress = plan.progress
        self._total = plan.total
        self._done_items = 0  # items whose results reached the stream
        # An exception the input raised, re-raised when the next task's
        # results are wanted: the results already in hand go out first.
        self._input_error: BaseException | None = None
        # Held while a thread takes the next task's results: like a
        # generator, a stream is consumed by one thread at a time.
        self._busy = threading.Lock()

    def next_task_results(self) -> Iterator[R] | None:
        """The next task's results to hand out, or None at the end.

        Raises:
            TimeoutError: if the deadline passed.
            RuntimeError: if another thread is advancing the stream, or a
                task or the `progress` callback raised `StopIteration`
                (then its cause).
            BaseException: the exception a task, the input or the
                `progress` callback raised.
        """
        if not self._busy.acquire(blocking=False):
            # Not raised here: `itertools.chain` drops its source when the
            # source raises, which would end the stream for the thread that
            # is advancing it.  An error from the iterator handed back is
            # raised to this caller alone.
            return iter(_refuse_concurrent_next, None)
        try:
            error, self._input_error = self._input_error, None
            if error is not None:
                raise error
            if self._closed:
                return None
            value = self._next_value()
            if value is _END or (self._closed_now() and self._input_error is None):
                # The end, or close() from another thread while waiting: a
                # result that arrived meanwhile is dropped, not handed out.
                self._closed = True
                return None
            return self._hand_out(value)
        except StopIteration as exc:
            # Raised as itself, the chain (and any consumer) would take it
            # for the end of the results and drop the failure; a generator
            # turns it into RuntimeError (PEP 479), and so does the stream.
            msg = "a task or the progress callback raised StopIteration"
            raise RuntimeError(msg) from exc
        finally:
            self._busy.release()

    def _closed_now(self) -> bool:
        # Read afresh: close() from another thread sets it at any time.
        return self._closed

    def _next_value(self) -> Any:
        raise NotImplementedError  # pragma: no cover - overridden

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def _next_input(self) -> tuple[Any, ...] | None:
        """The next arguments to submit, or None.

        If the input raises, the stream is closed (its tasks cancelled) and
        the exception kept for the next task's turn.
        """
        inputs = self._inputs
        if inputs is None:
            return None
        try:
            args = next(inputs, None)
        except Exception as exc:
            self.close()
            self._input_error = exc
            return None
        except BaseException:
            # Ctrl-C, SystemExit: not deferred behind the result in hand
            # (a consumer that stops there would never see it).
            self.close()
            raise
        if args is None:
            self._inputs = None
        return args

    def _hand_out(self, value: Any) -> Iterator[R]:
        """Count a task's results, report progress, return them to hand out.

        With `_busy` held, in the consumer's thread; a `progress` callback
        that raises closes the stream (the results are dropped).
        """
        items: list[Any] = value if self._chunked else [value]
        del value
        self._done_items += len(items)
        progress = self._progress
        if progress is not None:
            try:
                progress(self._done_items, self._total)
            except BaseException:
                self.close()
                raise
        items.append(_CHUNK_END)
        items.reverse()
        self._chunk = items
        if self._closed_now() and self._input_error is None:
            # close() (from another thread, or from `progress`) ran since
            # the check in next_task_results and emptied the previous chunk:
            # nothing is handed out after it returned.  (An input that
            # raised closed the stream itself: the results in hand go out.)
            items[:] = [_CHUNK_END]
        # Each `pop()` drops the list's reference to the result it returns.
        return iter(items.pop, _CHUNK_END)

    def close(self) -> None:
        try:
            self._closed = True
            self._inputs = None
            self._chunk[:] = [_CHUNK_END]
        finally:
            try:
                self._abandon_tasks()
            finally:
                self._abandon_tasks()  # finishes a pass a Ctrl-C cut short

    def _abandon_tasks(self) -> None:
        raise NotImplementedError  # pragma: no cover - overridden

    def _unfinished(self) -> list[Future[Any]]:
        raise NotImplementedError  # pragma: no cover - overridden

    def close_from_finalizer(self) -> None:
        """`close()`, from `ResultStream.__del__`: never wait for oneself.

        The garbage collector finalizes a stream caught in a reference cycle
        in any thread at any allocation, including inside a `WorkerPool`'s
        or a `BoundedExecutor`'s critical section, whose locks cancelling
        needs.  If one of them stays held, the stream is closed here without
        them and its tasks are cancelled from a fresh thread.
        """
        locks: list[Any] = []
        for future in self._unfinished():
            if isinstance(future, PoolFuture):
                locks.append(future._lock)
                pool = future._pool
                if pool is not None:
                    locks.append(pool._lock)
        if isinstance(self._executor, BoundedExecutor):
            locks.append(self._executor._lock)
        # Looked at, not acquired, as in `WorkerPool.map`'s iterator.
        deadline = time.monotonic() + _FINALIZER_PATIENCE
        for lock in locks:
            while lock.locked():
                if time.monotonic() >= deadline:
                    self._closed = True
                    self._inputs = None
                    self._chunk[:] = [_CHUNK_END]
                    with contextlib.suppress(RuntimeError):  # interpreter exiting
                        _thread.start_new_thread(self.close, ())
                    return
                time.sleep(_FINALIZER_PATIENCE / 50)
        self.close()


_END: Final = object()  # no task left


def _refuse_concurrent_next() -> None:
    msg = (
        "the stream is already being advanced (by another thread, or from its "
        "progress callback); advance a stream from one thread at a time"
    )
    raise RuntimeError(msg)


@final
class _OrderedCore(_StreamCore[R]):
    __slots__ = ("_futures",)

    def __init__(  # noqa: PLR0917 - private, called from one place
        self,
        executor: Executor,
        fn: Callable[..., Any],
        futures: collections.deque[Future[Any]],
        inputs: Iterator[tuple[Any, ...]] | None,
        deadline: float | None,
        plan: _Plan,
    ) -> None:
        super().__init__(executor, fn, inputs, deadline, plan)
        self._futures = futures

    def _next_value(self) -> Any:
        futures = self._futures
        try:
            # Left in the deque while awaited, so that close() from another
            # thread cancels it too.
            future = futures[0]
        except IndexError:  # no task left, or emptied by close()
            return _END
        try:
            value = self._await(future)
        except BaseException:
            # A late task is not left to run (one that failed is done).
            try:
                _give_up(future)
            finally:
                self.close()
            raise
        if value is _END:
            return _END
        try:
            taken = futures.popleft()
        except IndexError:  # emptied by close() meanwhile
            return _END
        if taken is not future:  # close() took ours: `taken` is not wanted
            taken.cancel()
            return _END
        del future, taken
        args = self._next_input()
        if args is not None:
            try:
                nxt = _submit_into(self._executor, self._fn, args, futures.append)
            except BaseException:
                self.close()
                raise
            if self._closed_now():  # by close() from another thread meanwhile
                _give_up(nxt)
        return value

    def _await(self, future: Future[Any]) -> Any:
        """The future's result; _END if the stream is closed meanwhile.

        Waits in slices, so that close() from another thread ends the wait
        and a waiting main thread services Ctrl-C.
        """
        while True:
            if self._closed:
                return _END
            remaining = self._remaining()
            wait = _POLL if remaining is None else min(remaining, _POLL)
            try:
                return future.result(wait)
            except CancelledError:
                if self._closed_now():
                    return _END
                raise
            except TimeoutError:
                if future.done():
                    raise  # the task's own TimeoutError
                if remaining is not None and remaining <= 0:
                    msg = f"{len(self._futures)} tasks unfinished at the deadline"
                    raise TimeoutError(msg) from None

    def _abandon_tasks(self) -> None:
        _abandon(self._futures)

    def _unfinished(self) -> list[Future[Any]]:
        return _snapshot(self._futures)


@final
class _UnorderedCore(_StreamCore[R]):
    __slots__ = ("_done", "_in_flight")

    def __init__(  # noqa: PLR0917 - private, called from one place
        self,
        executor: Executor,
        fn: Callable[..., Any],
        done: queue.SimpleQueue[Future[Any]],
        in_flight: set[Future[Any]],
        inputs: Iterator[tuple[Any, ...]] | None,
        deadline: float | None,
        plan: _Plan,
    ) -> None:
        super().__init__(executor, fn, inputs, deadline, plan)
        self._done = done
        self._in_flight = in_flight

    def _next_value(self) -> Any:
        if not self._in_flight:
            return _END
        try:
            future = self._take()
            if future is None:
                return _END
            value = future.result(timeout=0)
            # Owned until its result is in hand: close() gives up what a
            # Ctrl-C before this line left unhanded.
            self._in_flight.discard(future)
        except CancelledError:
            if self._closed_now():  # given up by close() from another thread
                return _END
            self.close()
            raise
        except BaseException:
            self.close()
            raise
        del future
        args = self._next_input()
        if args is not None:
            try:
                nxt = _submit_into(self._executor, self._fn, args, self._in_flight.add)
                nxt.add_done_callback(self._done.put)
            except BaseException:
                self.close()
                raise
            if self._closed_now():  # by close() from another thread meanwhile
                _give_up(nxt)
        return value

    def _take(self) -> Future[Any] | None:
        """Wait (in slices, for Ctrl-C) for the next finished future.

        It stays in flight (owned) until the caller has its result.
        """
        while True:
            if self._closed:  # by close() from another thread meanwhile
                return None
            remaining = self._remaining()
            wait = _POLL if remaining is None else min(remaining, _POLL)
            try:
                future = self._done.get(timeout=wait)
            except queue.Empty:
                if remaining is not None and remaining <= 0:
                    n = len(self._in_flight)
                    msg = f"{n} tasks unfinished at the deadline"
                    raise TimeoutError(msg) from None
                continue
            if future in self._in_flight:
                return future

    def _abandon_tasks(self) -> None:
        _abandon(self._in_flight)
        # Drop finished futures still queued, with their results.
        while True:
            try:
                self._done.get_nowait()
            except queue.Empty:
                break

    def _unfinished(self) -> list[Future[Any]]:
        return list(self._in_flight)


class _Plan(NamedTuple):
    """How a stream turns its inputs into tasks, and whom it tells."""

    chunked: bool
    progress: Callable[[int, int | None], object] | None
    total: int | None


# Inputs chunked by slicing (exact types: a subclass may slice differently).
_SLICEABLE: Final = (list, tuple, range)


def _run_chunk(fn: Callable[[Any], R], items: Sequence[Any]) -> list[R]:
    """One task for a chunk of single arguments: a tight loop, in order.

    Top-level, so that process pools and clusters can pickle it.  The first
    item that raises ends the chunk: the exception is the task's.
    """
    return _whole(list(map(fn, items)), items)


def _run_star_chunk(
    fn: Callable[..., R], arg_tuples: Sequence[tuple[Any, ...]]
) -> list[R]:
    """One task for a chunk of argument tuples, as `_run_chunk`.

    For `executor_map` over several iterables.
    """
    return _whole(list(itertools.starmap(fn, arg_tuples)), arg_tuples)


def _whole(results: list[R], inputs: Sequence[Any]) -> list[R]:
    """`results`, if there is one per input: else `fn` raised StopIteration.

    `map()` takes a StopIteration from the function for its own end, so the
    chunk came back short, silently, where one task would have failed.  One
    length test per chunk keeps the loop in C.
    """
    if len(results) != len(inputs):
        msg = (
            f"the function raised StopIteration on input {len(results)} of its "
            "chunk, which would end the chunk early; raise another exception "
            "to fail a task"
        )
        raise RuntimeError(msg)
    return results


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` items (the last may be shorter), taken lazily."""
    islice = itertools.islice
    while chunk := list(islice(items, size)):
        yield chunk


def _slices(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Slices of `size` items of a list, tuple or range, taken lazily.

    Slicing copies a list's references in C, and a range's slice is a range:
    the items themselves are then made in the worker, and a process pool
    pickles three numbers instead of a list.
    """
    start = 0
    while chunk := items[start : start + size]:
        yield chunk
        start += size


def _check_chunksize(chunksize: object) -> None:
    if not isinstance(chunksize, int) or isinstance(chunksize, bool):
        msg = f"chunksize must be an int, got {type(chunksize).__name__}"
        raise TypeError(msg)
    if chunksize < 1:
        msg = f"chunksize must be >= 1, got {chunksize}"
        raise ValueError(msg)


def _known_total(iterables: tuple[Iterable[Any], ...]) -> int | None:
    """The number of items `zip(*iterables)` yields, if every input has a len."""
    if not all(isinstance(it, Sized) for it in iterables):
        return None
    return min((len(it) for it in iterables), default=0)  # type: ignore[arg-type]


def _stream_tasks(
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    chunksize: int,
    progress: Callable[[int, int | None], object] | None,
) -> tuple[Callable[..., Any], Iterator[tuple[Any, ...]], _Plan]:
    """The callable each task runs, the argument tuples to submit, the plan."""
    total = None if progress is None else _known_total(iterables)
    if chunksize == 1:
        return (
            fn,
            zip(*iterables, strict=False),
            _Plan(chunked=False, progress=progress, total=total),
        )
    task: Callable[..., Any]
    chunks: Iterator[Sequence[Any]]
    if len(iterables) == 1:
        task, items = _run_chunk, iterables[0]
        if type(items) in _SLICEABLE:
            chunks = _slices(items, chunksize)  # type: ignore[arg-type]
        else:
            chunks = _chunks(iter(items), chunksize)
    else:
        task = _run_star_chunk
        chunks = _chunks(zip(*iterables, strict=False), chunksize)
    args = zip(itertools.repeat(fn), chunks, strict=False)
    return task, args, _Plan(chunked=True, progress=progress, total=total)


def executor_map(
    executor: Executor,
    fn: Callable[..., R],
    *iterables: Iterable[Any],
    timeout: float | None = None,
    buffersize: int | None = None,
    chunksize: int = 1,
    progress: Callable[[int, int | None], object] | None = None,
) -> ResultStream[R]:
    """Map `fn` over `zip(*iterables)` on any executor, lazily and in order.

    Python 3.14's `Executor.map(buffersize=)` for every executor and version:
    with `buffersize=N`, the first N tasks are submitted at once and one
    more each time a task's result is taken, so at most N tasks are in
    flight and endless inputs work.  Without `buffersize` every input is
    submitted before this returns (the input must be finite).

    With `chunksize=N` (N > 1), the inputs are taken N at a time and each
    chunk is one task, which calls `fn` on its items in a tight loop: for
    tiny functions, the per-task cost of the executor is paid once per
    chunk.  `buffersize` then counts chunks (tasks), as in Python 3.14's
    `ProcessPoolExecutor.map`, so at most `buffersize * chunksize` results
    are held.  When an item fails, its chunk stops there and the
    exception is raised in the item's place; the results of that chunk's
    earlier items are not handed out (as with
    `ProcessPoolExecutor.map(chunksize=)`).

    When the consumer stops early (calls `close()`, leaves a `with` block
    around the iterator, or drops it), a task fails, the input raises, the
    `progress` callback raises, or the deadline passes, every task not yet
    started is cancelled.  A result is not kept once it has been handed out.

    ```python
    from concurrent.futures import ThreadPoolExecutor
    from itertools import count

    from safethreads import executor_map

    with ThreadPoolExecutor(4) as pool:
        squares = executor_map(pool, pow, count(), [2] * 5, buffersize=2)
        assert list(squares) == [0, 1, 4, 9, 16]
        halves = executor_map(pool, divmod, range(1000), [2] * 1000, chunksize=100)
        assert sum(q for q, _ in halves) == 249500
    ```

    `progress(done, total)` is called in the consumer's thread, inside
    `next()`, each time a task's result reaches the stream (once per
    chunk): `done` counts the items whose results have arrived, `total` is
    the number of inputs if every iterable has a `len()`, else `None`.  The
    last call has `done == total`.  It runs with no lock held and never in
    a worker, so it may update a progress bar that is not thread-safe; if
    it raises, the stream is closed and the exception propagates from
    `next()`, like a task failure.

    Thread safety: one thread at a time may advance the iterator (a second
    gets `RuntimeError`); `close()` may be called from any thread.

    Args:
        executor: Any `concurrent.futures.Executor`; tasks go through
            `submit_task` (for Dask, as impure tasks).
        fn: Called with one item of each iterable; for process pools and
            clusters it must be picklable.
        *iterables: The inputs, zipped.
        timeout: Seconds from this call until the last result must be
            available; one deadline for the whole iteration.
        buffersize: The most tasks (chunks, with `chunksize`) in flight, or
            `None` for eager submission.
        chunksize: How many inputs each task handles; 1 submits `fn`
            itself for each input.
        progress: Called with `(done, total)` as results arrive, or `None`.

    Returns:
        A `ResultStream` of the results in input order.

    Raises:
        ValueError: if `buffersize` or `chunksize` is less than 1, or
            `timeout` is NaN.
        TypeError: if `executor` is not an `Executor`, `fn` or `progress`
            is not callable, `buffersize` or `chunksize` is not an int, or
            `timeout` is not a number.
        TimeoutError: from the iterator, if the deadline passes.
        RuntimeError: from the iterator, if a task or the `progress`
            callback raised `StopIteration` (its cause), as from a
            generator: raised as itself it would end the iteration.
        BaseException: from the iterator, the exception a task or the
            `progress` callback raised.
    """
    _check_executor(executor)
    check_callable(fn, "fn")
    check_timeout(timeout)
    _check_buffersize(buffersize)
    _check_chunksize(chunksize)
    if progress is not None:
        check_callable(progress, "progress")
    deadline = None if timeout is None else time.monotonic() + timeout
    task, args_iter, plan = _stream_tasks(fn, iterables, chunksize, progress)
    first = args_iter if buffersize is None else itertools.islice(args_iter, buffersize)
    futures: collections.deque[Future[Any]] = collections.deque()
    # Until the stream owns them, the futures are abandoned here if anything
    # (the input, a refusal, Ctrl-C) interrupts.
    try:
        for args in first:
            _submit_into(executor, task, args, futures.append)
        core: _OrderedCore[R] = _OrderedCore(
            executor,
            task,
            futures,
            None if buffersize is None else args_iter,
            deadline,
            plan,
        )
        stream = ResultStream._over(core)
    except BaseException:
        try:
            _abandon(futures)
        finally:
            _abandon(futures)  # finishes a pass a Ctrl-C cut short
        raise
    return stream


def executor_imap_unordered(
    executor: Executor,
    fn: Callable[[T], R],
    iterable: Iterable[T],
    *,
    timeout: float | None = None,
    buffersize: int | None = None,
    chunksize: int = 1,
    progress: Callable[[int, int | None], object] | None = None,
) -> ResultStream[R]:
    """Map `fn` over `iterable` on any executor, yielding in completion order.

    Submission works as for `executor_map`: eager without `buffersize`,
    otherwise at most `buffersize` tasks in flight, the next input submitted
    each time a result is taken.  Early stop, a failure, an input that
    raises, a `progress` callback that raises or the deadline cancel every
    task not yet started.  With `chunksize=N`, each task handles N inputs
    and its results are handed out together, in input order within the
    chunk, chunk by chunk in completion order; `buffersize` counts chunks;
    a failing item fails its whole chunk.  `progress` works as for
    `executor_map`.

    ```python
    from concurrent.futures import ThreadPoolExecutor

    from safethreads import executor_imap_unordered

    with ThreadPoolExecutor(4) as pool:
        got = executor_imap_unordered(pool, abs, range(-3, 0), buffersize=2)
        assert sorted(got) == [1, 2, 3]
    ```

    Args:
        executor: Any `concurrent.futures.Executor`.
        fn: Called with each item.
        iterable: The inputs.
        timeout: Seconds from this call until the last result must be
            available.
        buffersize: The most tasks (chunks, with `chunksize`) in flight, or
            `None` for eager submission.
        chunksize: How many inputs each task handles.
        progress: Called with `(done, total)` as results arrive, or `None`.

    Returns:
        A `ResultStream` of the results, each as soon as its task finishes.

    Raises:
        ValueError: if `buffersize` or `chunksize` is less than 1, or
            `timeout` is NaN.
        TypeError: if `executor` is not an `Executor`, `fn` or `progress`
            is not callable, `buffersize` or `chunksize` is not an int, or
            `timeout` is not a number.
        TimeoutError: from the iterator, if the deadline passes.
        RuntimeError: from the iterator, if a task or the `progress`
            callback raised `StopIteration` (its cause), as from a
            generator: raised as itself it would end the iteration.
        BaseException: from the iterator, the exception a task or the
            `progress` callback raised.
    """
    _check_executor(executor)
    check_callable(fn, "fn")
    check_timeout(timeout)
    _check_buffersize(buffersize)
    _check_chunksize(chunksize)
    if progress is not None:
        check_callable(progress, "progress")
    deadline = None if timeout is None else time.monotonic() + timeout
    task, args_iter, plan = _stream_tasks(fn, (iterable,), chunksize, progress)
    done: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
    in_flight: set[Future[Any]] = set()
    first = args_iter if buffersize is None else itertools.islice(args_iter, buffersize)
    # As in executor_map: abandoned here until the stream owns them.
    try:
        for args in first:
            _submit_into(executor, task, args, in_flight.add).add_done_callback(
                done.put
            )
        core: _UnorderedCore[R] = _UnorderedCore(
            executor,
            task,
            done,
            in_flight,
            None if buffersize is None else args_iter,
            deadline,
            plan,
        )
        stream = ResultStream._over(core)
    except BaseException:
        try:
            _abandon(in_flight)
        finally:
            _abandon(in_flight)  # finishes a pass a Ctrl-C cut short
        raise
    return stream


# --- backpressure over any executor -----------------------------------------------


def _shutdown_executor(executor: Executor, wait: bool, cancel_futures: bool) -> None:
    """Call `executor.shutdown`, passing `cancel_futures` only if it takes it."""
    if cancel_futures:
        # Imported here: `inspect` costs milliseconds, and `import
        # safethreads` stays cheap (only this rare path needs it).
        import inspect  # noqa: PLC0415

        try:
            params = inspect.signature(executor.shutdown).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins
            params = {}  # type: ignore[assignment]
        takes = "cancel_futures" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        if takes:
            executor.shutdown(wait, cancel_futures=True)
            return
    executor.shutdown(wait)


@final
class BoundedExecutor(Executor):
    """An `Executor` that bounds the tasks another executor has in hand.

    At most `max_pending` tasks submitted through it are unfinished at any
    time; a slot frees when a task's future is done (finished, failed or
    cancelled).  When every slot is taken, `on_full` chooses, as for
    `WorkerPool`: `"block"` waits for a slot, `"raise"` raises `PoolFull`,
    `"caller_runs"` runs the task in the submitting thread.  `try_submit`
    never blocks.  `map` is `executor_map` (lazy with `buffersize`).

    ```python
    from concurrent.futures import ThreadPoolExecutor

    from safethreads import BoundedExecutor

    with BoundedExecutor(ThreadPoolExecutor(4), max_pending=8) as pool:
        futures = [pool.submit(pow, 2, i) for i in range(20)]
        assert [f.result(timeout=5) for f in futures][:3] == [1, 2, 4]
        assert pool.pending <= 8
    ```

    The wrapper owns the wrapped executor: `shutdown()` shuts it down too.
    `shutdown(cancel_futures=True)` cancels the tasks submitted through the
    wrapper itself, so it works on executors whose `shutdown` has no such
    option (Dask's); on executors whose futures can be cancelled while
    running (Dask's), running tasks are cancelled too.

    Thread safety: every method may be called from any thread.

    Args:
        executor: The executor that runs the tasks.
        max_pending: The most tasks submitted and not finished; at least 1.
        on_full: What `submit` does when `max_pending` tasks are unfinished.

    Raises:
        TypeError: if `executor` is not an `Executor` or `max_pending` is not
            an int.
        ValueError: if `max_pending` is less than 1 or `on_full` is not one
            of the three policies.
    """

    def __init__(
        self, executor: Executor, *, max_pending: int, on_full: OnFull = "block"
    ) -> None:
        _check_executor(executor)
        given: object = max_pending  # typed int, but checked at runtime
        if not isinstance(given, int) or isinstance(given, bool):
            msg = f"max_pending must be an int, got {type(given).__name__}"
            raise TypeError(msg)
        if max_pending < 1:
            msg = f"max_pending must be >= 1, got {max_pending}"
            raise ValueError(msg)
        if on_full not in _ON_FULL:
            choices = ", ".join(map(repr, _ON_FULL))
            msg = f"on_full must be one of {choices}, got {on_full!r}"
            raise ValueError(msg)
        self._executor: Final = executor
        self._max_pending: Final = max_pending
        self._on_full: Final = on_full
        # Guards _pending, _futures, _shutdown and _parked.
        self._lock = threading.Lock()
        self._pending = 0  # slots taken: submits in progress + unfinished futures
        self._futures: set[Future[Any]] = set()  # unfinished, for cancel_futures
        self._shutdown = False
        # The raw locks of submitters waiting for room, oldest first, each
        # held by its waiter: a slot freeing releases the first, shutdown all.
        self._parked: list[_thread.LockType] = []
        self._release = self._task_done  # one bound method for every future

    @property
    def executor(self) -> Executor:
        """The wrapped executor."""
        return self._executor

    @property
    def max_pending(self) -> int:
        """The bound on unfinished tasks."""
        return self._max_pending

    @property
    def pending(self) -> int:
        """Tasks submitted and not finished (a snapshot, may be stale)."""
        with self._lock:
            return self._pending

    def __repr__(self) -> str:
        """Show the wrapped executor and the slots taken."""
        return (
            f"<BoundedExecutor {type(self._executor).__name__} "
            f"pending={self.pending}/{self._max_pending} on_full={self._on_full!r}>"
        )

    def submit(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]:
        """Submit `fn(*args, **kwargs)` to the wrapped executor, within the bound.

        Args:
            fn: The callable to run.
            *args: Positional arguments for `fn`.
            **kwargs: Keyword arguments for `fn`.

        Returns:
            The task's future (for `"caller_runs"` on a full wrapper, a
            future already done).

        Raises:
            RuntimeError: if the wrapper has been shut down (also while
                `submit` waits for a slot).
            PoolFull: if every slot is taken and `on_full="raise"`.
            TypeError: if `fn` is not callable, or the wrapped executor
                returned something other than a `concurrent.futures.Future`.
        """
        check_callable(fn, "fn")
        future = self._submit(fn, args, kwargs, self._on_full)
        if future is None:
            return _run_here(fn, args, kwargs)
        return future

    def try_submit(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R] | None:
        """Submit `fn(*args, **kwargs)` if a slot is free now; never block.

        Args:
            fn: The callable to run.
            *args: Positional arguments for `fn`.
            **kwargs: Keyword arguments for `fn`.

        Returns:
            The future, or `None` if `max_pending` tasks are unfinished (the
            task is then not submitted at all).

        Raises:
            RuntimeError: if the wrapper has been shut down.
            TypeError: if `fn` is not callable.
        """
        check_callable(fn, "fn")
        return self._submit(fn, args, kwargs, None)

    def _submit(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        policy: str | None,
    ) -> Future[R] | None:
        """Take a slot and submit in it; None: none free and `policy` says not to wait.

        A submitter waiting for room parks a raw lock of its own in
        `_parked`, not a `threading.Condition` over the wrapper's lock: a
        Ctrl-C landing in `Condition.wait` as it releases or takes back that
        lock leaves it released inside the `with` holding it, which then
        releases it again (a `RuntimeError` in place of the Ctrl-C, or
        another thread's hold released).

        One frame from taking the slot to handing it to the future, so that
        `held` always says who has it: a Ctrl-C after a call returns can
        lose that call's return value, never a store made without a call.
        """
        wake: _thread.LockType | None = None
        held = False  # this call has a slot that no future frees yet
        future: Future[R] | None = None
        try:
            while True:
                with self._lock:
                    # Still parked: timed out, and keeps its place in line.
                    parked = wake is not None and wake in self._parked
                    if self._shutdown:
                        msg = "cannot schedule new futures after shutdown"
                        raise RuntimeError(msg)  # noqa: TRY301 - decided under the lock
                    if self._pending < self._max_pending:
                        if parked and wake is not None:
                            self._parked.remove(wake)
                        self._pending += 1
                        held = True
                        break
                    if policy is None or policy == "caller_runs":
                        return None
                    if policy == "raise":
                        msg = (
                            f"{self._max_pending} tasks are unfinished; retry "
                            "later, or choose on_full='block' or 'caller_runs'"
                        )
                        raise PoolFull(msg)  # noqa: TRY301 - decided under the lock
                    if wake is None:
                        wake = _thread.allocate_lock()
                        wake.acquire()
                        self._parked.append(wake)
                    elif not parked:
                        # Woken, but a new submitter took the slot first.
                        self._parked.insert(0, wake)
                # Timed, so that a waiting main thread services Ctrl-C.
                wake.acquire(timeout=_POLL * 5)
            future = submit_task(self._executor, fn, *args, **kwargs)
            with self._lock:
                held = False  # from here the future's done-callback frees it
                self._futures.add(future)
            # Runs at once if the future is already done, freeing the slot.
            future.add_done_callback(self._release)
        except BaseException:
            self._undo_submit(wake, held, future)
            raise
        return future

    def _undo_submit(
        self,
        wake: _thread.LockType | None,
        held: bool,
        future: Future[Any] | None,
    ) -> None:
        """Clean up after `_submit` raised (its policy, shutdown or a Ctrl-C)."""
        with self._lock:
            if held and future is not None:
                # Submitted: the task holds the slot until it ends.
                self._futures.add(future)
            else:
                if held:
                    self._pending -= 1
                if wake is not None and wake in self._parked:
                    self._parked.remove(wake)
                elif held or wake is not None:
                    # The room it frees, or a wake-up it may have been given.
                    self._wake_one()
        if future is not None:
            # A second registration is harmless: `_task_done` frees a slot
            # only for a future still in `_futures`.
            future.add_done_callback(self._release)

    def _wake_one(self) -> None:
        # With the lock held; releasing a raw lock never blocks.
        if self._parked:
            release_parked((self._parked.pop(0),))

    def _task_done(self, future: Future[Any]) -> None:
        with self._lock:
            if future in self._futures:
                self._futures.discard(future)
                self._pending -= 1
                self._wake_one()

    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: Callable[[int, int | None], object] | None = None,
    ) -> ResultStream[R]:
        """`executor_map` through this wrapper: lazy and bounded with `buffersize`.

        Args:
            fn: Called with one item of each iterable.
            *iterables: The inputs, zipped.
            timeout: Seconds from this call until the last result.
            chunksize: How many inputs each task handles (see
                `executor_map`).
            buffersize: The most tasks in flight, or `None` for eager
                submission (still bounded by `max_pending`).
            progress: Called with `(done, total)` as results arrive, in the
                consumer's thread.

        Returns:
            An iterator of the results in input order.

        Raises:
            ValueError: if `buffersize` or `chunksize` is less than 1.
            TypeError: if an argument has the wrong type.
        """
        return executor_map(
            self,
            fn,
            *iterables,
            timeout=timeout,
            buffersize=buffersize,
            chunksize=chunksize,
            progress=progress,
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks, then shut the wrapped executor down.

        Idempotent.

        Args:
            wait: Return only after the wrapped executor's tasks are done.
            cancel_futures: Cancel the tasks submitted through this wrapper
                that have not started (and pass the option on to the
                wrapped executor if its `shutdown` takes it).
        """
        with self._lock:
            self._shutdown = True
            # Each raises RuntimeError when it looks again.
            parked, self._parked = self._parked, []
            release_parked(parked)
            mine = list(self._futures) if cancel_futures else []
        _cancel_all(mine)
        _shutdown_executor(self._executor, wait, cancel_futures)

    def _check(self) -> None:
        with self._lock:
            assert 0 <= self._pending <= self._max_pending
            assert len(self._futures) <= self._pending


def _run_here(
    fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Future[R]:
    """Run a task in the calling thread; return its outcome as a done future."""
    future: Future[R] = Future()
    future.set_running_or_notify_cancel()
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
    else:
        future.set_result(result)
    return future


# --- a structured scope over futures ----------------------------------------------


class _GroupState:
    NEW: Final = "new"
    OPEN: Final = "open"
    CLOSING: Final = "closing"
    CLOSED: Final = "closed"


_group_numbers = itertools.count(1)
_group_numbers_lock = threading.Lock()  # guards _group_numbers


def _fresh_lock_in_child() -> None:
    # A thread that held the lock at a fork does not exist in the child.
    global _group_numbers_lock  # noqa: PLW0603
    _group_numbers_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_in_child)


def _next_group_name() -> str:
    with _group_numbers_lock:
        return f"FutureGroup-{next(_group_numbers)}"


@final
class FutureGroup:
    """A scope for futures: leaving the block waits for them and raises their errors.

    The structured-concurrency rules of `ThreadGroup`, for tasks run by any
    executor (threads, processes, a cluster): members are futures, made by
    `submit` on the group's executor or adopted with `add`.

    ```python
    from concurrent.futures import ThreadPoolExecutor

    from safethreads import FutureGroup

    with ThreadPoolExecutor(4) as pool, FutureGroup(pool, timeout=30) as group:
        futures = [group.submit(pow, i, 2) for i in range(4)]
    # Every member has finished here.
    assert [f.result(timeout=0) for f in futures] == [0, 1, 4, 9]
    ```

    Rules:

    - Scope: leaving the block waits for every member, including members
      added while it waits, until the deadline.
    - Errors: member failures are gathered, in submission order, into one
      `ExceptionGroup` (a `BaseExceptionGroup` if one is not an
      `Exception`), each with a note naming its member.  If the body raised,
      its exception comes first.  A cancelled member is not a failure.
    - Cancellation: the first failure (with `fail_fast`, the default), an
      exception from the body, `cancel()`, the deadline and Ctrl-C cancel
      every member not yet started; once the group is cancelled, `submit`
      returns futures already cancelled instead of starting work.  Running
      tasks are left to finish, except on executors that can cancel them
      (Dask).
    - Deadline: `timeout` counts from entering the block.  When it passes,
      the group cancels what it can and raises `TimeoutError` naming the
      members still unfinished (inside the group if there were errors too);
      it does not wait for them.  A member that fails after the block
      ended is reported through `threading.excepthook`.
    - Ctrl-C (in the body or during the final wait) cancels and keeps
      waiting for the running members; a second Ctrl-C stops waiting.
      `KeyboardInterrupt` propagates either way, with a note listing the
      failures it hides.
    - Progress: `progress(done, total)` is called by the thread leaving the
      block, while it waits, each time members have finished since the
      last call (once more at the end, with `done == total` unless the
      deadline passed): `done` counts members finished in any way,
      `total` the members so far.  Never in a worker, an event loop or
      with a lock held, so calls never overlap and `done` never goes
      down.  Members that finish while the body runs are counted in the
      first call.  If it raises, the group is cancelled as for an error in
      the body and the exception is raised in the group, after the body's.

    Thread safety: `submit`, `add`, `cancel` and the properties may be
    called from any thread (a task may add to its own group); `futures` is a
    snapshot.

    Args:
        executor: Where `submit` sends tasks; `None` for a group that only
            adopts futures with `add`.
        name: The group's name, used in errors and notes.
        fail_fast: Whether the first member failure cancels the group.
        timeout: Seconds from entering the block until every member must
            have finished; `None` for no deadline.
        progress: Called with `(done, total)` as members finish, or `None`.

    Raises:
        TypeError: if `executor` is not an `Executor` or `None`,
            `timeout` is not a number, or `progress` is not callable.
        ValueError: if `timeout` is negative or NaN.
    """

    __slots__ = (
        "_cancelled",
        "_deadline",
        "_executor",
        "_fail_fast",
        "_failures",
        "_futures",
        "_hook",
        "_index",
        "_live",
        "_lock",
        "_name",
        "_parked",
        "_progress",
        "_progress_error",
        "_state",
        "_submitting",
        "_timeout",
    )

    def __init__(
        self,
        executor: Executor | None = None,
        *,
        name: str | None = None,
        fail_fast: bool = True,
        timeout: float | None = None,
        progress: Callable[[int, int | None], object] | None = None,
    ) -> None:
        """Create a group; enter it with `with` to submit members."""
        if executor is not None:
            _check_executor(executor)
        check_timeout(timeout)
        if progress is not None:
            check_callable(progress, "progress")
        if timeout is not None and timeout < 0:
            msg = f"timeout must be None or at least 0, not {timeout!r}"
            raise ValueError(msg)
        self._executor = executor
        self._name = _next_group_name() if name is None else name
        self._fail_fast = fail_fast
        self._timeout = timeout
        self._deadline: float | None = None
        # Guards everything below.
        self._lock = threading.Lock()
        # The raw lock of the thread waiting at the end of the block, while
        # it waits; released when the last unfinished member ends.
        self._parked: list[_thread.LockType] = []
        self._state = _GroupState.NEW
        self._futures: list[Future[Any]] = []
        self._index: dict[Future[Any], int] = {}
        # Members whose end has not been counted yet.
        self._live: set[Future[Any]] = set()
        # A token per submit() call past the state check, not added yet.
        self._submitting: set[object] = set()
        self._failures: list[tuple[int, BaseException]] = []
        self._cancelled = False
        self._hook = self._member_done  # one bound method for every member
        # Called only by the thread waiting at the end of the block.
        self._progress = progress
        self._progress_error: Exception | None = None

    @property
    def name(self) -> str:
        """The group's name."""
        return self._name

    @property
    def futures(self) -> tuple[Future[Any], ...]:
        """The members in submission order (a snapshot)."""
        with self._lock:
            return tuple(self._futures)

    @property
    def cancelled(self) -> bool:
        """Whether the group was cancelled (by any of the causes above)."""
        with self._lock:
            return self._cancelled

    def __repr__(self) -> str:
        """Show the name, the state and the number of members."""
        with self._lock:
            return (
                f"<FutureGroup {self._name!r} {self._state} "
                f"members={len(self._futures)} unfinished={len(self._live)}>"
            )

    # --- members --------------------------------------------------------------------

    def submit(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]:
        """Submit `fn(*args, **kwargs)` to the group's executor as a member.

        Args:
            fn: The callable to run.
            *args: Positional arguments for `fn`.
            **kwargs: Keyword arguments for `fn`.

        Returns:
            The member's future; already cancelled, and nothing submitted,
            if the group has been cancelled.

        Raises:
            RuntimeError: if the group has no executor, or its block has not
                been entered or has ended.
            TypeError: if `fn` is not callable.
        """
        check_callable(fn, "fn")
        executor = self._executor
        if executor is None:
            msg = (
                f"group {self._name!r} has no executor; pass one to "
                "FutureGroup(executor) or submit elsewhere and add() the future"
            )
            raise RuntimeError(msg)
        # The block's end waits while this token is in `_submitting`: the
        # task submitted is a member even if the block is ending meanwhile.
        # A token, not a count: removing it is idempotent, so an interrupt
        # at any point cannot leave the block waiting for it.
        token = object()
        try:
            with self._lock:
                self._check_open("submit to")
                cancelled = self._cancelled
                self._submitting.add(token)
            future: Future[R]
            if cancelled:
                future = Future()
                future.cancel()
                future.set_running_or_notify_cancel()
            else:
                future = submit_task(executor, fn, *args, **kwargs)
            return self._adopt(future)
        finally:
            with self._lock:
                self._submitting.discard(token)
                self._wake()

    def add(self, future: Future[R]) -> Future[R]:
        """Make `future` a member: the block waits for it and raises its error.

        Args:
            future: A `concurrent.futures.Future` from any executor.

        Returns:
            `future`, for chaining.

        Raises:
            RuntimeError: if the block has not been entered or has ended.
            TypeError: if `future` is not a `concurrent.futures.Future`.
        """
        given: object = future
        if not isinstance(given, Future):
            msg = (
                "a member must be a concurrent.futures.Future, not "
                f"{type(given).__name__}; for Dask use client.get_executor()"
            )
            raise TypeError(msg)
        with self._lock:
            self._check_open("add to")
        return self._adopt(future)

    def _adopt(self, future: Future[R]) -> Future[R]:
        # For add() and submit(): submit() checked the state before
        # submitting, and its task is a member whatever the state now.
        try:
            with self._lock:
                if future in self._index:
                    return future
                self._live.add(future)
                self._index[future] = len(self._futures)
                self._futures.append(future)
                cancel = self._cancelled
            if cancel:
                future.cancel()
        finally:
            # Hooked whatever interrupts this call, so that the block never
            # waits for a member whose end nobody counts (a second hook on
            # a member finds it no longer live, and does nothing).  Runs at
            # once if the future is already done.
            if future in self._live:
                future.add_done_callback(self._hook)
        return future

    def _wake(self) -> None:
        # With the lock held; releasing a raw lock never blocks.  Taken off
        # first: a Ctrl-C cutting this loop short costs a waiter one slice.
        parked, self._parked = self._parked, []
        release_parked(parked)

    def _check_open(self, action: str) -> None:
        # With the lock held.
        if self._state in (_GroupState.OPEN, _GroupState.CLOSING):
            return
        where = "has not been entered" if self._state == _GroupState.NEW else "ended"
        msg = f"cannot {action} group {self._name!r}: its block {where}"
        raise RuntimeError(msg)

    def _member_done(self, future: Future[Any]) -> None:
        # In whichever thread completed the future: counts and lists only.
        exc = None if future.cancelled() else future.exception(timeout=0)
        cancel_now = late = False
        with self._lock:
            if future not in self._live:  # counted by an earlier hook
                return
            self._live.discard(future)
            index = self._index.get(future, -1)
            if exc is not None:
                if self._state == _GroupState.CLOSED:
                    late = True
                else:
                    self._failures.append((index, exc))
                    if self._fail_fast and not self._cancelled:
                        self._cancelled = cancel_now = True
            if not self._live or self._progress is not None:
                self._wake()
        if cancel_now:
            self._cancel_members()
        if late:
            assert exc is not None
            self._report_late(index, exc)

    def _report_late(self, index: int, exc: BaseException) -> None:
        """A member failed after the block ended (deadline, second Ctrl-C).

        Nobody will raise it any more: it goes to `threading.excepthook`,
        like an unhandled exception in a thread, so it is not lost.
        """
        add_note(
            exc,
            f"member {index} of group {self._name!r} failed after the group's "
            "block ended",
        )
        threading.excepthook(
            threading.ExceptHookArgs((type(exc), exc, exc.__traceback__, None))
        )

    def cancel(self) -> bool:
        """Cancel every member not started; later submits are not started.

        Returns:
            `True` if this call cancelled the group, `False` if it already was.
        """
        with self._lock:
            if self._cancelled:
                return False
            self._cancelled = True
        self._cancel_members()
        return True

    def _cancel_members(self) -> None:
        with self._lock:
            members = list(self._futures)
        _cancel_all(members)

    # --- the block ------------------------------------------------------------------

    def __enter__(self) -> Self:
        """Open the block and start the deadline.

        Raises:
            RuntimeError: if the group was entered before.
        """
        with self._lock:
            if self._state != _GroupState.NEW:
                msg = (
                    f"group {self._name!r} was already entered; "
                    "create a new FutureGroup for each with block"
                )
                raise RuntimeError(msg)
            self._state = _GroupState.OPEN
            if self._timeout is not None:
                self._deadline = time.monotonic() + self._timeout
        return self

    def __exit__(  # type: ignore[exit-return]
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Wait for the members, then raise what went wrong.

        Returns:
            `False`: an exception from the body is never swallowed.

        Raises:
            BaseExceptionGroup: holding the body's exception (if any) then
                the member failures, in submission order.  An
                `ExceptionGroup` when all of them are `Exception`s.
            TimeoutError: if the deadline passed with members unfinished
                (inside the group above if there were also errors).
            KeyboardInterrupt: on Ctrl-C, after the wait (or at once on a
                second Ctrl-C).
        """
        # Whatever escapes on the way to the wait's own handling (Ctrl-C, an
        # exception from a future's own callback while cancelling) still
        # ends here: the block closes and reports its failures.  Inline, not
        # a helper: a signal at a helper's entry would escape the handlers.
        try:
            with self._lock:
                self._state = _GroupState.CLOSING
            if exc is not None:
                self.cancel()
            interrupt, unfinished = wait_counting_presses(
                exc, self._wait_at_exit, self._unfinished_members
            )
        except KeyboardInterrupt as ki:
            with self._lock:
                self._state = _GroupState.CLOSING
            if isinstance(exc, KeyboardInterrupt):
                # The body's Ctrl-C was the first press: this is the second,
                # landed before the wait began (a free-threaded build lets
                # it arrive while the first one's cancellation runs).
                with contextlib.suppress(KeyboardInterrupt):
                    self._cancel_members()  # finish what the press cut short
                interrupt, unfinished = exc, self._unfinished_members()
            else:  # a first press
                interrupt, unfinished = wait_counting_presses(
                    ki, self._wait_at_exit, self._unfinished_members
                )
        except BaseException as escaping:
            self.cancel()
            interrupt, unfinished = escaping, self._unfinished_members()
        # From closing the block on, a Ctrl-C propagates in place of the
        # outcome, naming the failures it hides (the block is closed: nothing
        # else would report them).
        indexed: list[tuple[int, BaseException]] = []
        left: str | None = None
        try:
            with self._lock:
                self._state = _GroupState.CLOSED
                indexed, self._failures = self._failures, []
            indexed.sort(key=operator.itemgetter(0))
            for index, error in indexed:
                add_note(error, f"in member {index} of group {self._name!r}")
            timeout_error = None
            if unfinished:
                left = f"{len(unfinished)} member(s) unfinished"
                timeout_error = TimeoutError(
                    f"group {self._name!r} did not finish within timeout="
                    f"{self._timeout} s: {len(unfinished)} member(s) unfinished "
                    "(cancelled where the executor allows); raise the timeout or "
                    "make the tasks shorter"
                )
            progress_error, self._progress_error = self._progress_error, None
            raise_outcome(
                "future group",
                self._name,
                exc,
                body_cancelled=False,
                propagating=interrupt,
                failures=[error for _, error in indexed],
                progress_error=progress_error,
                timeout_error=timeout_error,
                unfinished=left,
            )
        except KeyboardInterrupt as ki:
            if ki is not interrupt:
                with self._lock:  # taken again: the press may have come first
                    self._state = _GroupState.CLOSED
                    indexed += self._failures
                    self._failures = []
                hidden = [
                    error for _, error in sorted(indexed, key=operator.itemgetter(0))
                ]
                if exc is not None and exc is not interrupt:
                    hidden.insert(0, exc)
                note_unraised(ki, self._name, hidden, left)
            raise
        return False

    def _wait_at_exit(
        self, cancel: bool, stopped: BaseException | None
    ) -> list[Future[Any]]:
        """Wait for the members until the deadline; return those unfinished.

        One round of the shared loop that counts Ctrl-C presses, which calls
        it again after each interruption.

        Args:
            cancel: Whether to cancel the group first (again: a press may
                have cut the last cancellation short).
            stopped: What stopped the last round besides Ctrl-C (a
                `SystemExit` from the progress callback, say), if anything.
        """
        if stopped is not None:
            # It propagates like the body's SystemExit, after the wait, with
            # notes naming the failures it hides.
            self._progress = None
        if cancel and not self.cancel():
            self._cancel_members()
        while True:
            try:
                finished = self._wait_members()
            except Exception as error:
                # From the progress callback: raised with the members'
                # failures, and like an error in the body, it cancels.
                self._progress = None
                self._progress_error = error
                self.cancel()
                continue
            if finished:
                return []
            # Counted before cancelling: some executors (Dask) also cancel
            # running tasks, which would hide them.
            late = self._unfinished_members()
            self.cancel()
            return late

    def _wait_members(self) -> bool:
        """Wait until no member is unfinished; False if the deadline passed.

        Reports progress, with no lock held, whenever members have finished
        since the last report (and once at the end).

        The waiter parks a raw lock of its own in `_parked`, not a
        `threading.Condition` over the group's lock: a Ctrl-C landing in
        `Condition.wait` as it takes that lock back would leave it released
        inside the `with` holding it, which then releases it again (a
        `RuntimeError` in place of the Ctrl-C, or another thread's hold
        released).  A Ctrl-C anywhere here leaves at worst a stale lock in
        `_parked`, whose release wakes nobody.

        Raises:
            Exception: what the progress callback raised.
        """
        deadline = self._deadline
        reported: tuple[int, int] | None = None
        wake = _thread.allocate_lock()
        wake.acquire()
        while True:
            with self._lock:
                total = len(self._futures)
                done = total - len(self._live)
                progress = self._progress
                if progress is None or reported == (done, total):
                    if not self._live and not self._submitting:
                        return True
                    if deadline is None:
                        wait = _POLL
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        wait = min(remaining, _POLL)
                    self._parked.append(wake)
                else:
                    wait = None
            if wait is None:
                assert progress is not None
                reported = (done, total)
                progress(done, total)
                continue
            try:
                # Timed, so that the main thread services Ctrl-C.
                idle = not wake.acquire(timeout=wait)
            finally:
                with self._lock:
                    if wake in self._parked:
                        self._parked.remove(wake)
            wake.acquire(blocking=False)  # locked again, for the next round
            if idle:
                self._sweep()

    def _sweep(self) -> None:
        """Count the members that are done but whose hook has not run.

        Only an interrupt inside `add()` leaves a member unhooked; counting
        it here (its failure too) keeps the block from waiting for it
        forever.  A hook that runs later finds it counted and does nothing.
        """
        with self._lock:
            done = [f for f in self._live if f.done()]
        for future in done:
            self._member_done(future)

    def _unfinished_members(self) -> list[Future[Any]]:
        with self._lock:
            return [f for f in self._futures if not f.done()]

    def _check(self) -> None:
        with self._lock:
            # A future may be done with its callback still to run.
            assert len(self._live) >= sum(1 for f in self._futures if not f.done())
            assert len(self._index) == len(self._futures)
