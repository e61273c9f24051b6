"""Adversarial tests of the fan-out helpers: races, misuse and interruptions.

Each test pins a defect found by attacking `_fanout.py`: a second thread
advancing a stream, `close()` racing a waiting consumer, an input raising
`KeyboardInterrupt`, `submit` racing the end of a `FutureGroup` block, and
`fork()` while another thread holds a library lock.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

import safethreads._fanout as fanout_module
from safethreads import (
    BoundedExecutor,
    FutureGroup,
    ResultStream,
    WorkerPool,
    executor_imap_unordered,
    executor_map,
)

if TYPE_CHECKING:
    import types
    from collections.abc import Callable, Iterator

TIMEOUT = 60.0


def _advancing(stream: ResultStream[Any]) -> Callable[[], bool]:
    """Whether a thread is inside the stream's `next()`, between tasks."""
    return stream._core._busy.locked


def _wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


@pytest.mark.parametrize("mapper", [executor_map, executor_imap_unordered])
def test_second_thread_does_not_truncate_the_first_consumers_stream(
    mapper: Callable[..., ResultStream[int]],
) -> None:
    """A thread refused mid-stream leaves the stream whole for its consumer."""
    gate = threading.Event()
    waiting = threading.Event()

    def task(x: int) -> int:
        if x == 1:
            waiting.set()
            gate.wait(TIMEOUT)
        return x

    with cf.ThreadPoolExecutor(2) as pool:
        stream = mapper(pool, task, range(5), buffersize=1)
        assert next(stream) == 0
        got: list[list[int]] = []
        consumer = threading.Thread(target=lambda: got.append(sorted(stream)))
        consumer.start()
        waiting.wait(TIMEOUT)
        # The consumer holds the stream while task 1 runs.
        try:
            _wait_until(_advancing(stream))
            with pytest.raises(RuntimeError, match="one thread at a time"):
                next(stream)
        finally:
            gate.set()
            consumer.join(TIMEOUT)
    assert got == [[1, 2, 3, 4]]


def test_progress_calling_next_reentrantly_is_refused_and_stream_goes_on() -> None:
    """next() from the progress callback raises; the stream is not cut short."""
    refused: list[RuntimeError] = []

    def progress(done: int, total: int | None) -> None:
        del done, total
        try:
            next(stream)
        except RuntimeError as exc:
            refused.append(exc)

    with cf.ThreadPoolExecutor(2) as pool:
        stream = executor_map(pool, abs, range(4), buffersize=2, progress=progress)
        assert list(stream) == [0, 1, 2, 3]
    assert len(refused) == 4


@pytest.mark.parametrize("mapper", [executor_map, executor_imap_unordered])
def test_close_from_another_thread_cancels_the_awaited_task(
    mapper: Callable[..., ResultStream[object]],
) -> None:
    """close() cancels the task the consumer waits for; no result after close."""
    release = threading.Event()
    ran: list[int] = []
    with WorkerPool(1) as pool:
        blocker = pool.submit(release.wait, TIMEOUT)
        stream = mapper(pool, ran.append, range(3), buffersize=3)
        out: list[list[object]] = []
        consumer = threading.Thread(target=lambda: out.append(list(stream)))
        consumer.start()
        try:
            _wait_until(_advancing(stream))
            stream.close()
            consumer.join(TIMEOUT / 4)
            alive = consumer.is_alive()
        finally:
            release.set()
        consumer.join(TIMEOUT)
        assert blocker.result(timeout=TIMEOUT)
    assert not alive, "close() did not end the consumer's wait"
    assert out == [[]]
    assert ran == []


@pytest.mark.parametrize("mapper", [executor_map, executor_imap_unordered])
def test_no_result_handed_out_after_close_returns(
    mapper: Callable[..., ResultStream[int]],
) -> None:
    """A result arriving while close() runs is dropped, not handed out."""
    started = threading.Event()
    finish = threading.Event()

    def task(x: int) -> int:
        started.set()
        finish.wait(TIMEOUT)
        return x

    with cf.ThreadPoolExecutor(1) as pool:
        stream = mapper(pool, task, [7], buffersize=1)
        out: list[list[int]] = []
        consumer = threading.Thread(target=lambda: out.append(list(stream)))
        consumer.start()
        started.wait(TIMEOUT)
        try:
            _wait_until(_advancing(stream))
            stream.close()  # the task is running: it cannot be cancelled
        finally:
            finish.set()
        consumer.join(TIMEOUT)
    assert out == [[]]


@pytest.mark.parametrize("mapper", [executor_map, executor_imap_unordered])
@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_input_raising_interrupt_propagates_at_once(
    mapper: Callable[..., ResultStream[int]], stop: type[BaseException]
) -> None:
    """Ctrl-C or SystemExit from the input is not deferred (and lost)."""

    def inputs() -> Iterator[int]:
        yield 1
        yield 2
        raise stop

    with cf.ThreadPoolExecutor(2) as pool:
        stream = mapper(pool, abs, inputs(), buffersize=1)
        assert next(stream) == 1
        with pytest.raises(stop):
            next(stream)
        assert list(stream) == []


def test_input_raising_exception_still_hands_out_results_first() -> None:
    """An ordinary exception from the input comes after the results in hand."""

    def inputs() -> Iterator[int]:
        yield 1
        raise LookupError("input broke")

    with cf.ThreadPoolExecutor(2) as pool:
        stream = executor_map(pool, abs, inputs(), buffersize=1)
        assert next(stream) == 1
        with pytest.raises(LookupError, match="input broke"):
            next(stream)


def test_submit_racing_the_end_of_the_block_is_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A submit that passed the open check is a member the block waits for."""
    real_submit = fanout_module.submit_task
    in_submit = threading.Event()
    proceed = threading.Event()

    def slow_submit(executor: cf.Executor, fn: Callable[[], float]) -> cf.Future[float]:
        in_submit.set()
        proceed.wait(TIMEOUT)
        return real_submit(executor, fn)

    monkeypatch.setattr(fanout_module, "submit_task", slow_submit)
    outcome: list[object] = []

    def submitter(group: FutureGroup) -> None:
        try:
            outcome.append(group.submit(lambda: 1 / 0))
        except RuntimeError as exc:  # pragma: no cover - the defect
            outcome.append(exc)

    with cf.ThreadPoolExecutor(2) as pool:
        group = FutureGroup(pool)
        thread = threading.Thread(target=submitter, args=(group,))
        with pytest.raises(ExceptionGroup) as caught, group:  # noqa: PT012
            thread.start()
            in_submit.wait(TIMEOUT)
            threading.Timer(0.2, proceed.set).start()
        thread.join(TIMEOUT)
    [future] = outcome
    assert isinstance(future, cf.Future)
    [error] = caught.value.exceptions
    assert isinstance(error, ZeroDivisionError)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_a_group_is_being_named_does_not_hang_the_child() -> None:
    """The module lock naming groups is fresh in a forked child."""
    code = textwrap.dedent(
        """
        import os, sys, warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        import safethreads._fanout as fanout
        from safethreads import FutureGroup
        fanout._group_numbers_lock.acquire()  # as another thread would, mid-call
        pid = os.fork()
        if pid == 0:
            FutureGroup()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], timeout=20, capture_output=True, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the forked child hung on the group-naming lock")
    assert done.returncode == 0, done.stderr


def test_progress_raising_systemexit_reports_failures_and_closes_the_group() -> None:
    """SystemExit from progress propagates, names the failures, ends the block."""

    def progress(done: int, total: int | None) -> None:
        del done, total
        raise SystemExit(3)

    with cf.ThreadPoolExecutor(2) as pool:
        group = FutureGroup(pool, progress=progress)
        with pytest.raises(SystemExit) as caught, group:  # noqa: PT012
            failed = group.submit(lambda: 1 / 0)
            failed.exception(TIMEOUT)
        assert "ZeroDivisionError" in "".join(caught.value.__notes__)
        with pytest.raises(RuntimeError, match="its block ended"):
            group.add(pool.submit(int))


class _Recording(cf.ThreadPoolExecutor):
    """A thread pool that remembers every future it hands out."""

    def __init__(self) -> None:
        super().__init__(2)
        self.handed_out: list[cf.Future[Any]] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        self.handed_out.append(future)
        return future


class _CallInterrupter:
    """A trace function raising KeyboardInterrupt at the target-th call.

    Counts the Python functions of `_fanout` entered, and those they call
    (the lock's `Condition`, the future's methods): a function's entry is
    where the interpreter runs a signal handler, so each is a point where a
    real Ctrl-C can land.  (Raising at any line, a trace function can also
    skip a `with` statement's `__exit__` or a `finally` block's first step,
    which no signal can do.)  `fired` says whether the run got that far.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.fired = False
        self._seen = 0
        self._source = fanout_module.__file__

    def __call__(self, frame: types.FrameType, event: str, arg: object) -> None:
        del arg
        caller = frame.f_back
        ours = frame.f_code.co_filename == self._source or (
            caller is not None and caller.f_code.co_filename == self._source
        )
        # Not the entry of `__exit__` itself: a signal there escapes any
        # context manager written in Python before its first line runs.
        if event == "call" and ours and frame.f_code.co_name != "__exit__":
            self._seen += 1
            if self._seen == self.target:
                self.fired = True
                raise KeyboardInterrupt


def _interrupt_at_call(target: int) -> _CallInterrupter:
    return _CallInterrupter(target)


def test_ctrl_c_at_every_call_of_a_group_keeps_it_consistent() -> None:
    """Ctrl-C at each call in submit/add/exit: no lock held, no count leaked.

    In a child process with a timeout: a leaked count would hang the block.
    """
    code = textwrap.dedent(
        """
        import os, traceback
        import test_fanout_attack as t
        try:
            t.ctrl_c_at_every_call_scenario()
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)  # the pools' idle threads are not joined
        """
    )
    done = _run_child(code)
    assert done.returncode == 0, done.stderr.decode()[-3000:]


# Far more runs than the scenario's block makes calls (a few dozen, more
# when its wait polls on a slow machine): reaching it means no end.
_MAX_CALL_POINTS = 1000


def test_ctrl_c_scenario_ends_after_the_last_call() -> None:
    """The every-call scenario stops once a run goes past the block's last call.

    That run is not interrupted, yet it raises: the failing member's error,
    in an `ExceptionGroup`.  A scenario that stopped only when nothing was
    raised ran on forever, and the test above timed out as if the group
    had hung.
    """
    code = textwrap.dedent(
        f"""
        import os, traceback
        import test_fanout_attack as t
        real = t._interrupt_at_call
        def capped(target):
            if target > {_MAX_CALL_POINTS}:
                print("no end after", target - 1, "runs", flush=True)
                os._exit(2)
            return real(target)
        t._interrupt_at_call = capped
        try:
            t.ctrl_c_at_every_call_scenario()
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
        """
    )
    done = _run_child(code)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()[-3000:]


def _run_child(code: str) -> subprocess.CompletedProcess[bytes]:
    """Run `code` in a fresh interpreter that can import this module.

    The child imports the library from where this process did, not from
    whatever copy is installed.
    """
    tests_dir = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120
    package = os.path.dirname(fanout_module.__file__)  # noqa: PTH120
    path = [tests_dir, os.path.dirname(package)]  # noqa: PTH120
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    try:
        return subprocess.run(
            [sys.executable, "-c", code],
            timeout=TIMEOUT,
            capture_output=True,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a Ctrl-C inside the group left its block waiting forever")


def ctrl_c_at_every_call_scenario() -> None:
    """The scenario of the test above, run in the child process."""
    target = 0
    while True:
        target += 1
        pool = _Recording()
        # The deadline turns a leaked count (a wait that cannot end) into
        # a failed assertion instead of a hang.
        group = FutureGroup(pool, timeout=10)
        raised: BaseException | None = None
        entered = False
        interrupter = _interrupt_at_call(target)
        sys.settrace(interrupter)
        try:
            with group:
                entered = True
                group.submit(abs, -1)
                group.submit(lambda: 1 / 0)
                group.add(pool.submit(abs, 2))
        except BaseException as exc:
            raised = exc
        finally:
            sys.settrace(None)
        # Not shutdown(wait=True): an interrupt inside the executor's own
        # submit can leave its idle threads unjoinable; the child exits
        # with os._exit.
        cf.wait(pool.handed_out, timeout=TIMEOUT)
        pool.shutdown(wait=False)
        assert not group._lock.locked(), target
        if not interrupter.fired:
            # The target is past the last call: every point was tried.
            # (This run raised too, the failing member's error: whether
            # something was raised cannot tell the end.)
            assert isinstance(raised, ExceptionGroup), (target, raised)
            break
        # The interrupt propagates, whatever it cut short.
        assert isinstance(raised, KeyboardInterrupt), (target, raised)
        if not entered:
            continue
        assert group._state == "closed", target
        members = set(group.futures)
        # (A task whose submission the interrupt cut short, between the
        # executor's submit returning and the group adopting its future, is
        # not a member: a known gap, see the guarantees page.)
        assert not group._live, target
        assert not group._submitting, target
        # The member failure is raised or named on the interrupt, never lost.
        if any(f.exception(0) is not None for f in members if not f.cancelled()):
            text = "".join(getattr(raised, "__notes__", []))
            assert "ZeroDivisionError" in text, (target, raised)
    print(f"{target - 1} points")
    assert target > 30, target  # the block makes about 40 calls


class _DeepInterrupter:
    """Raises KeyboardInterrupt at the target-th call made inside the block's wait.

    Counts the Python functions entered below `FutureGroup._wait_members`
    through frames of `_fanout` and `threading` (a `Condition`'s inner
    steps), but not its direct calls, which the scenario above covers.  Not
    inside a stock future's methods: a Ctrl-C at the entry of the
    `Condition.__exit__` they run leaves the future's own lock held, a gap
    of `concurrent.futures` itself.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.fired = False
        self._seen = 0
        self._files = {fanout_module.__file__, threading.__file__}

    def __call__(self, frame: types.FrameType, event: str, arg: object) -> None:
        del arg
        if event != "call":
            return
        depth = 0
        outer = frame.f_back
        while outer is not None and outer.f_code.co_name != "_wait_members":
            if outer.f_code.co_filename not in self._files:
                return
            outer = outer.f_back
            depth += 1
        if outer is not None and depth > 0:
            self._seen += 1
            if self._seen == self.target:
                self.fired = True
                raise KeyboardInterrupt


def test_ctrl_c_deep_inside_the_blocks_wait_propagates_and_frees_the_lock() -> None:
    """Ctrl-C at any call inside the block's wait: the lock is sound, Ctrl-C raised.

    A Ctrl-C landing in `threading.Condition.wait` as it takes its lock back
    leaves the lock released under the `with` that holds it: the block then
    raised `RuntimeError` ("release unlocked lock") in place of the Ctrl-C
    (and could release the lock under a worker's feet).
    """
    target = 0
    while True:
        target += 1
        gate = threading.Event()
        with cf.ThreadPoolExecutor(1) as pool:
            group = FutureGroup(pool, timeout=TIMEOUT)
            interrupter = _DeepInterrupter(target)
            raised: BaseException | None = None
            try:
                with group:
                    group.submit(gate.wait, TIMEOUT)
                    threading.Timer(0.1, gate.set).start()
                    sys.settrace(interrupter)
            except BaseException as exc:
                raised = exc
            finally:
                sys.settrace(None)
                gate.set()
        assert not group._lock.locked(), target
        assert group._state == "closed", target
        assert not group._live, target
        if not interrupter.fired:
            assert raised is None, (target, raised)
            break
        assert isinstance(raised, KeyboardInterrupt), (target, raised)
        assert target < _MAX_CALL_POINTS, "no end"
    assert target > 1, "no call inside the wait was interrupted"


class _SubmitInterrupter:
    """Raises KeyboardInterrupt at the target-th call inside `BoundedExecutor.submit`.

    A profile function, so that C calls count too: it raises as a call made
    by `submit` (or below it, through frames of `_fanout` and `threading`)
    returns, where a real Ctrl-C is delivered, and as a Python function
    below it starts.  Not inside the wrapped executor's or a stock future's
    methods (gaps of `concurrent.futures` itself).
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.fired = False
        self._seen = 0
        self._files = {fanout_module.__file__, threading.__file__}
        self._submit = BoundedExecutor.submit.__code__

    def _inside(self, frame: types.FrameType | None) -> bool:
        while frame is not None and frame.f_code is not self._submit:
            if frame.f_code.co_filename not in self._files:
                return False
            frame = frame.f_back
        return frame is not None

    def __call__(self, frame: types.FrameType, event: str, arg: object) -> None:
        del arg
        if event == "c_return":
            inside = self._inside(frame)  # the frame that made the C call
        elif event in {"call", "return"}:
            inside = frame.f_code is not self._submit and self._inside(frame)
        else:
            return
        if inside:
            self._seen += 1
            if self._seen == self.target:
                self.fired = True
                raise KeyboardInterrupt


def test_ctrl_c_inside_a_blocked_bounded_submit_propagates_and_frees_the_lock() -> None:
    """Ctrl-C at any call inside a submit waiting for room: raised, counts right.

    The submitter waited on a `threading.Condition` over the wrapper's lock;
    a Ctrl-C landing in `Condition.wait` as it released or took back that
    lock left it released under the `with` holding it, which released it
    again: `RuntimeError` ("release unlocked lock") in place of the Ctrl-C,
    or another thread's hold of the lock released.  A Ctrl-C between taking
    the slot and handing it to the task's future kept the slot taken.
    """
    target = 0
    while True:
        target += 1
        gate = threading.Event()
        with cf.ThreadPoolExecutor(1) as pool:
            bounded = BoundedExecutor(pool, max_pending=1)
            first = bounded.submit(gate.wait, TIMEOUT)
            interrupter = _SubmitInterrupter(target)
            raised: BaseException | None = None
            later: list[cf.Future[int]] = []
            threading.Timer(0.1, gate.set).start()
            sys.setprofile(interrupter)
            try:
                later.append(bounded.submit(abs, -1))
            except BaseException as exc:
                raised = exc
            finally:
                sys.setprofile(None)
                gate.set()
            assert first.result(TIMEOUT) is True
            # The slot the interrupted submit waited for is free again.
            deadline = time.monotonic() + 5
            while bounded.pending and time.monotonic() < deadline:
                time.sleep(0.001)
            assert bounded.pending == 0, (target, raised)
            assert not bounded._lock.locked(), target
            bounded._check()
            assert bounded.submit(abs, -2).result(TIMEOUT) == 2, target
        assert bounded.pending == 0, target
        if not interrupter.fired:
            assert raised is None, (target, raised)
            assert later[0].result(0) == 1
            break
        assert isinstance(raised, KeyboardInterrupt), (target, raised)
        assert target < _MAX_CALL_POINTS, "no end"
    assert target > 1, "no call inside the wait was interrupted"


def test_blocked_submitters_get_room_in_order_and_shutdown_wakes_them() -> None:
    """Room goes to the submitter blocked longest; shutdown raises in the rest."""
    gates = [threading.Event() for _ in range(3)]  # the last for the submitted tasks
    got: dict[str, object] = {}
    with cf.ThreadPoolExecutor(3) as pool:
        bounded = BoundedExecutor(pool, max_pending=2)
        held = [bounded.submit(gate.wait, TIMEOUT) for gate in gates[:2]]

        def submit(name: str) -> None:
            try:
                got[name] = bounded.submit(gates[2].wait, TIMEOUT)
            except RuntimeError as exc:
                got[name] = exc

        threads = [threading.Thread(target=submit, args=(n,)) for n in ("1st", "2nd")]
        try:
            for thread in threads:
                parked = len(bounded._parked) + 1
                thread.start()
                _wait_until(lambda: len(bounded._parked) == parked)  # noqa: B023 - called at once
            gates[0].set()
            threads[0].join(TIMEOUT)
            assert list(got) == ["1st"]
            assert len(bounded._parked) == 1  # the second still waits
            started = time.monotonic()
            bounded.shutdown(wait=False)
            threads[1].join(TIMEOUT)
            # Woken at once, not at its next poll.
            assert time.monotonic() - started < fanout_module._POLL * 5
        finally:
            for gate in gates:
                gate.set()
            for thread in threads:
                thread.join(TIMEOUT)
        assert isinstance(got["2nd"], RuntimeError), got
        assert "after shutdown" in str(got["2nd"])
        first = got["1st"]
        assert isinstance(first, cf.Future)
        assert [f.result(TIMEOUT) for f in [*held, first]] == [True, True, True]
    assert bounded.pending == 0
    assert not bounded._parked
    bounded._check()


class _NotesRefusedError(Exception):
    """An exception whose `__notes__` is not a list: `add_note()` raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.__notes__ = "not a list"  # type: ignore[assignment]


def _fail_refusing_notes() -> None:
    raise _NotesRefusedError("member")


def test_member_failure_refusing_notes_is_raised_in_the_group() -> None:
    """A member exception that refuses notes is raised in the group, not a TypeError."""
    with (
        cf.ThreadPoolExecutor(1) as pool,
        pytest.raises(ExceptionGroup) as caught,
        FutureGroup(pool, timeout=TIMEOUT) as group,
    ):
        group.submit(_fail_refusing_notes)
    [error] = caught.value.exceptions
    assert isinstance(error, _NotesRefusedError)


def test_late_failure_refusing_notes_is_still_reported(reported: list[Any]) -> None:
    """A member failing after the deadline reaches excepthook even without a note."""
    late: cf.Future[int] = cf.Future()
    late.set_running_or_notify_cancel()  # running: the deadline cannot cancel it
    with pytest.raises(TimeoutError), FutureGroup(timeout=0.1) as group:
        group.add(late)
    late.set_exception(_NotesRefusedError("late"))
    [report] = reported
    assert isinstance(report.exc_value, _NotesRefusedError)
