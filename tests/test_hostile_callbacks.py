"""User code that raises anything, wherever the library runs it, breaks nothing.

`INJECTION_POINTS` lists every place where the library calls user code;
each entry runs a small scenario whose user code raises the given kind of
exception, then checks the invariants of `interrupts.py`: no lock of the
library left held, no phantom worker or member, the object still usable
(or cleanly closed with a clear error), every outcome delivered or
reported once, no thread left behind.  Every point is tried with an
`Exception`, `KeyboardInterrupt`, `SystemExit` and a custom
`BaseException` subclass.
"""

from __future__ import annotations

import gc
import threading
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from interrupts import TASK_SECONDS, check_pool, held_locks, run_within, shutdown_within
from safethreads import (
    MISSING,
    BrokenWorkerPool,
    CancelToken,
    LockedDict,
    ResultThread,
    ThreadGroup,
    WorkerPool,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Self


class CustomBaseError(BaseException):
    """A `BaseException` that is neither an `Exception` nor a known signal."""


KINDS: dict[str, type[BaseException]] = {
    "Exception": ValueError,
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "CustomBaseError": CustomBaseError,
}


class Hostile:
    """Raises a fresh exception of one kind, counting how often it did."""

    def __init__(self, kind: type[BaseException]) -> None:
        self.kind = kind
        self.calls = 0

    def __call__(self, *_: object) -> NoReturn:
        self.calls += 1
        msg = "hostile user code"
        raise self.kind(msg)


class _Reports:
    """Collect what reaches `threading.excepthook`."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._old: Any = None

    def __enter__(self) -> Self:
        self._old = threading.excepthook
        threading.excepthook = lambda args: self.seen.append(repr(args.exc_value))
        return self

    def __exit__(self, *_: object) -> None:
        gc.collect()
        threading.excepthook = self._old


def _raises(kind: type[BaseException], fn: Callable[[], object]) -> None:
    """`fn()` must raise `kind` (or a group holding it) right here."""
    try:
        fn()
    except BaseException as exc:
        inner = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
        if not any(isinstance(e, kind) for e in inner):
            msg = f"expected {kind.__name__}, got {exc!r}"
            raise AssertionError(msg) from exc
        return
    msg = f"{kind.__name__} raised by user code did not reach the caller"
    raise AssertionError(msg)


# --- the injection points ------------------------------------------------------------


def pool_done_callback(kind: type[BaseException]) -> None:
    """A done-callback of a pool future, run by the worker that finishes it."""
    with _Reports():
        pool = WorkerPool(max_workers=1)
        try:
            gate = threading.Event()
            future = pool.submit(gate.wait, TASK_SECONDS)
            hostile = Hostile(kind)
            future.add_done_callback(hostile)
            gate.set()
            assert future.result(timeout=TASK_SECONDS) is True
            worker = pool._workers[0].thread
            assert worker is not None
            worker.join(0.5)  # a worker killed by the callback is gone by now
            check_pool(pool)  # the worker survived, or was replaced
            assert hostile.calls == 1
        finally:
            shutdown_within(pool)


def _expect_reported(reports: _Reports, kind: type[BaseException], text: str) -> None:
    """A `BaseException` raised by user code in a thread is reported, once.

    The library re-raises such an exception in the thread that ran the user
    code, after its own bookkeeping (see `PoolFuture._after_done`); it then
    reaches `threading.excepthook`: not silently lost, and not swallowed.
    An `Exception` is logged or suppressed instead, and reaches no hook.
    """
    if issubclass(kind, Exception):
        assert not reports.seen, f"unexpected thread reports: {reports.seen}"
    else:
        assert reports.seen == [repr(kind(text))], f"thread reports: {reports.seen}"


def result_thread_done_callback(kind: type[BaseException]) -> None:
    """A done-callback of `ResultThread.as_future()`."""
    with _Reports() as reports:
        gate = threading.Event()
        thread = ResultThread(target=gate.wait, args=(TASK_SECONDS,))
        thread.start()
        hostile = Hostile(kind)
        thread.as_future().add_done_callback(hostile)
        gate.set()
        assert thread.result(timeout=TASK_SECONDS) is True
        thread.join(TASK_SECONDS)
        assert not thread.is_alive()
        assert hostile.calls == 1
        assert not held_locks(thread), held_locks(thread)
    _expect_reported(reports, kind, "hostile user code")


def result_thread_target(kind: type[BaseException]) -> None:
    """A `ResultThread` target: its exception is the thread's outcome."""
    thread = ResultThread(target=Hostile(kind))
    thread.start()
    _raises(kind, lambda: thread.result(timeout=TASK_SECONDS))
    thread.join(TASK_SECONDS)
    assert isinstance(thread.exception(timeout=0), kind)
    assert not held_locks(thread), held_locks(thread)


def exception_add_note(kind: type[BaseException]) -> None:
    """`add_note` of the exception a `ResultThread` target raised."""

    class BadNoteError(Exception):
        def add_note(self, note: str, /) -> None:  # noqa: ARG002
            msg = "add_note failed"
            raise kind(msg)

    def target() -> NoReturn:
        msg = "the target's own error"
        raise BadNoteError(msg)

    with _Reports() as reports:
        thread = ResultThread(target=target)
        thread.start()
        thread.join(TASK_SECONDS)
        assert not thread.is_alive()
        try:
            error = thread.exception(timeout=0.5)  # the thread ended: it is there
        except TimeoutError:
            msg = "the thread ended but its outcome timed out: it was lost"
            raise AssertionError(msg) from None
        # The target's own error, delivered (without its note).
        assert isinstance(error, BadNoteError), f"outcome: {error!r}"
    _expect_reported(reports, kind, "add_note failed")


def group_member(kind: type[BaseException]) -> None:
    """A `ThreadGroup` member's function."""
    group = ThreadGroup()

    def body() -> None:
        with group as g:
            g.spawn(Hostile(kind))

    _raises(kind, body)
    assert not held_locks(group), held_locks(group)
    group._check()


def token_callback(kind: type[BaseException]) -> None:
    """A `CancelToken` callback: every other callback and child still runs."""
    token = CancelToken()
    calls: list[str] = []
    token.add_callback(lambda: calls.append("before"))
    token.add_callback(Hostile(kind))
    token.add_callback(lambda: calls.append("after"))
    child = token.child()
    _raises(kind, lambda: token.cancel("stop"))
    assert token.cancelled
    assert child.cancelled
    assert calls == ["before", "after"]
    assert not held_locks(token, child)
    token._check()


def pool_initializer(kind: type[BaseException]) -> None:
    """A pool's `initializer`: the pool is broken, and says so."""
    pool = WorkerPool(max_workers=1, initializer=Hostile(kind))
    try:
        future = pool.submit(int, "1")
        _raises(BrokenWorkerPool, lambda: future.result(timeout=TASK_SECONDS))
        with pytest.raises(BrokenWorkerPool, match="initializer"):
            pool.submit(int, "2")
        check_pool(pool, expect_usable=False)
    finally:
        shutdown_within(pool)


def map_input_iterable(kind: type[BaseException]) -> None:
    """The iterable given to `map`, raising after two items of failing tasks."""

    def inputs() -> Iterator[int]:
        yield 1
        yield 2
        raise kind("the input failed")

    with _Reports() as reports:
        pool = WorkerPool(max_workers=2)
        try:
            _raises(kind, lambda: list(pool.map(Hostile(ValueError), inputs())))
            check_pool(pool)
        finally:
            shutdown_within(pool)
        gc.collect()
    assert not reports.seen, f"spurious unobserved-failure reports: {reports.seen}"


def dict_compute_function(kind: type[BaseException]) -> None:
    """The function given to `LockedDict.compute`: the dict is unchanged."""
    d: LockedDict[str, int] = LockedDict({"a": 1})
    _raises(kind, lambda: d.compute("a", Hostile(kind)))
    _check_dict(d, {"a": 1})


def dict_get_or_set_factory(kind: type[BaseException]) -> None:
    """The factory given to `LockedDict.get_or_set`: nothing is inserted."""
    d: LockedDict[str, int] = LockedDict({"a": 1})
    _raises(kind, lambda: d.get_or_set("b", Hostile(kind)))
    _check_dict(d, {"a": 1})
    assert d.get_or_set("b", lambda: 2) == 2


class _Key:
    """A key whose `__eq__` or `__hash__` raises on demand."""

    def __init__(self, kind: type[BaseException] | None, where: str) -> None:
        self.kind = kind
        self.where = where

    def __hash__(self) -> int:
        if self.kind is not None and self.where == "hash":
            raise self.kind("__hash__ failed")
        return 1

    def __eq__(self, other: object) -> bool:
        if self.kind is not None and self.where == "eq":
            raise self.kind("__eq__ failed")
        return self is other


def dict_key_hash(kind: type[BaseException]) -> None:
    """A key's `__hash__`, in `d[k] = v` and in `update`."""
    d: LockedDict[Any, int] = LockedDict({"old": 0})
    _raises(kind, lambda: d.__setitem__(_Key(kind, "hash"), 1))
    _raises(kind, lambda: d.update({"new": 1, _Key(kind, "hash"): 2}))
    _check_dict(d, None)


def dict_key_eq(kind: type[BaseException]) -> None:
    """A key's `__eq__` (called on a hash collision), in `update`."""
    present = _Key(None, "eq")
    d: LockedDict[Any, int] = LockedDict({"old": 0, present: 0})
    list(d)  # a shared snapshot exists; the failed update must drop it
    present.kind = kind  # from now on, comparing with it raises
    _raises(kind, lambda: d.update({"new": 1, _Key(None, "eq"): 2}))
    present.kind = None
    _check_dict(d, None)


def _check_dict(d: LockedDict[Any, int], expected: dict[Any, int] | None) -> None:
    assert not held_locks(d), held_locks(d)
    d._check()
    run_within(lambda: d.get("a", MISSING), TASK_SECONDS, "a read from a thread")
    assert dict(d.items()) == d.snapshot(), "iteration disagrees with the dict"
    assert list(d) == list(d.snapshot()), "iteration disagrees with the dict"
    assert len(d) == len(list(d))
    if expected is not None:
        assert d.snapshot() == expected


INJECTION_POINTS: dict[str, Callable[[type[BaseException]], None]] = {
    f.__name__: f
    for f in (
        pool_done_callback,
        result_thread_done_callback,
        result_thread_target,
        exception_add_note,
        group_member,
        token_callback,
        pool_initializer,
        map_input_iterable,
        dict_compute_function,
        dict_get_or_set_factory,
        dict_key_hash,
        dict_key_eq,
    )
}

# (point, kind) -> the open defect that makes it fail; "*" = all kinds.
# Empty: every defect this harness found (issue 9 items 8 and 10, issue 10
# item 2, issue 11 item 2, and the new ones) is fixed.
KNOWN: dict[tuple[str, str], str] = {}


def _cases() -> list[Any]:
    cases = []
    for point in INJECTION_POINTS:
        for kind in KINDS:
            reason = KNOWN.get((point, kind)) or KNOWN.get((point, "*"))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(point, kind, marks=marks, id=f"{point}-{kind}"))
    return cases


@pytest.mark.parametrize(("point", "kind"), _cases())
def test_raising_user_code_keeps_invariants(point: str, kind: str) -> None:
    """User code raising `kind` at `point` leaves the library sound."""
    baseline = set(threading.enumerate())
    INJECTION_POINTS[point](KINDS[kind])
    from interrupts import wait_for_threads

    assert not wait_for_threads(baseline), "threads left behind"
