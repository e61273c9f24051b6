"""ResultThread and spawn: the outcome of a thread comes back to its waiters."""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import contextlib
import contextvars
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from typing import Any, NoReturn

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interrupts import interrupt_at_line
from safethreads import ResultThread, ThreadGroup, _waiting, spawn

TIMEOUT = 10.0  # every wait in these tests is bounded


def fail_with(exc: BaseException) -> NoReturn:
    raise exc


def add(a: int, b: int = 0) -> int:
    return a + b


class TestResult:
    def test_function_target_returns_value(self) -> None:
        """result() returns what the target returned, with args and kwargs."""
        t = ResultThread(target=add, args=(2,), kwargs={"b": 3})
        t.start()
        assert t.result(timeout=TIMEOUT) == 5

    def test_spawn_starts_and_returns_value(self) -> None:
        """spawn() starts the thread; result() returns the target's value."""
        t = spawn(add, 40, b=2)
        assert t.ident is not None
        assert t.result(timeout=TIMEOUT) == 42

    def test_class_based_compute(self) -> None:
        """A subclass's compute() return value is the result."""

        class Square(ResultThread[int]):
            def __init__(self, x: int) -> None:
                super().__init__()
                self.x = x

            def compute(self) -> int:
                return self.x * self.x

        t = Square(9)
        t.start()
        assert t.result(timeout=TIMEOUT) == 81

    def test_no_target_returns_none(self) -> None:
        """A thread with no target and no override returns None, like Thread."""
        t: ResultThread[None] = ResultThread()
        t.start()
        assert t.result(timeout=TIMEOUT) is None

    def test_result_is_repeatable(self) -> None:
        """result() may be called again and returns the same object."""
        value = object()
        t = spawn(lambda: value)
        assert t.result(timeout=TIMEOUT) is value
        assert t.result(timeout=TIMEOUT) is value
        assert t.exception(timeout=TIMEOUT) is None

    def test_done_reflects_outcome(self) -> None:
        """done() is False while the target runs and True after it returned."""
        release = threading.Event()
        t = spawn(release.wait, TIMEOUT)
        assert not t.done()
        release.set()
        assert t.result(timeout=TIMEOUT) is True
        assert t.done()

    def test_thread_arguments_pass_through(self) -> None:
        """name and daemon reach threading.Thread."""
        t = ResultThread(target=threading.current_thread, name="worker-7", daemon=True)
        assert t.daemon
        t.start()
        assert t.result(timeout=TIMEOUT) is t
        assert t.name == "worker-7"

    def test_default_name_mentions_target(self) -> None:
        """The default name is made as threading.Thread makes it."""
        t = ResultThread(target=add, args=(1,))
        assert "(add)" in t.name

    def test_references_released_after_run(self) -> None:
        """A finished thread no longer holds the target or its arguments."""
        payload = [1, 2, 3]
        t = spawn(len, payload)
        assert t.result(timeout=TIMEOUT) == 3
        assert t._call is None
        assert t._call_args == ()


class TestExceptions:
    def test_reraises_same_object_with_note(self) -> None:
        """result() re-raises the target's own exception, noting the thread."""
        error = ValueError("boom")
        t = ResultThread(target=fail_with, args=(error,), name="failing")
        t.start()
        with pytest.raises(ValueError, match="boom") as info:
            t.result(timeout=TIMEOUT)
        assert info.value is error
        assert info.value.__notes__ == ["raised in thread 'failing'"]

    def test_traceback_reaches_target(self) -> None:
        """The re-raised traceback still shows where the target raised."""
        t = spawn(int, "not a number")
        with pytest.raises(ValueError) as info:
            t.result(timeout=TIMEOUT)
        frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
        assert "result" in frames
        assert "run" not in frames  # the plumbing frame is dropped

        def where() -> NoReturn:
            raise KeyError("deep")

        t2 = spawn(where)
        with pytest.raises(KeyError) as info2:
            t2.result(timeout=TIMEOUT)
        names = [f.name for f in traceback.extract_tb(info2.value.__traceback__)]
        assert names[-1] == "where"

    def test_repeated_result_does_not_grow_traceback(self) -> None:
        """Raising the stored exception again does not stack tracebacks."""
        t = spawn(fail_with, RuntimeError("x"))
        depths = []
        for _ in range(3):
            with pytest.raises(RuntimeError) as info:
                t.result(timeout=TIMEOUT)
            depths.append(len(traceback.extract_tb(info.value.__traceback__)))
        assert depths[0] == depths[1] == depths[2]

    def test_exception_returns_exception(self) -> None:
        """exception() returns the raised exception without raising it."""
        error = LookupError("missing")
        t = spawn(fail_with, error)
        assert t.exception(timeout=TIMEOUT) is error
        assert t.done()

    @pytest.mark.parametrize(
        "error", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()], ids=repr
    )
    def test_base_exceptions_are_delivered(self, error: BaseException) -> None:
        """SystemExit, KeyboardInterrupt and other BaseExceptions are not lost."""
        t = spawn(fail_with, error)
        with pytest.raises(type(error)) as info:
            t.result(timeout=TIMEOUT)
        assert info.value is error


class TestTimeouts:
    def test_timeout_raises_and_thread_continues(self) -> None:
        """TimeoutError names the thread; a later result() still succeeds."""
        release = threading.Event()
        t = ResultThread(target=release.wait, args=(TIMEOUT,), name="slow")
        t.start()
        with pytest.raises(TimeoutError, match=r"thread 'slow' did not finish within"):
            t.result(timeout=0.01)
        with pytest.raises(TimeoutError, match=r"within 0\.01 seconds"):
            t.exception(timeout=0.01)
        assert t.is_alive()
        release.set()
        assert t.result(timeout=TIMEOUT) is True

    def test_negative_timeout_does_not_wait(self) -> None:
        """A negative timeout checks once, as Thread.join does."""
        release = threading.Event()
        t = spawn(release.wait, TIMEOUT)
        with pytest.raises(TimeoutError):
            t.result(timeout=-1)
        release.set()
        assert t.result(timeout=TIMEOUT)


class TestInterruption:
    def test_ctrl_c_while_waiting_leaves_thread_waitable(self) -> None:
        """Ctrl-C in a waiting main thread does not corrupt the thread (gh-90882)."""
        main = threading.main_thread()
        if threading.current_thread() is not main or main.ident is None:
            pytest.skip("signals are delivered to the main thread only")
        release = threading.Event()
        t = spawn(release.wait, TIMEOUT)
        sender = threading.Timer(0.05, signal.pthread_kill, (main.ident, signal.SIGINT))
        # The timer starts inside the block so that the signal, wherever it
        # lands, is raised there.
        with pytest.raises(KeyboardInterrupt):  # noqa: PT012
            sender.start()
            t.result(timeout=TIMEOUT)
        sender.join(TIMEOUT)
        assert t.is_alive()
        assert not t.done()
        release.set()
        assert t.result(timeout=TIMEOUT) is True

    def test_ctrl_c_noticed_without_a_wakeup(self) -> None:
        """A Ctrl-C that does not wake the waiting main thread is seen in a slice."""
        main = threading.main_thread()
        if threading.current_thread() is not main:
            pytest.skip("signals are handled in the main thread only")
        release = threading.Event()
        t = spawn(release.wait, TIMEOUT)
        # interrupt_main() flags Ctrl-C without interrupting the blocked wait,
        # as when the kernel hands SIGINT to another thread.
        sender = threading.Timer(0.05, _thread.interrupt_main)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt) as info:  # noqa: PT012
            sender.start()
            t.result(timeout=TIMEOUT)
        assert time.monotonic() - start < TIMEOUT / 2  # slices are 0.25 s
        # Trimmed of the library's waiting plumbing (issue 10): the caller's
        # frame, then result() itself.
        frames = traceback.extract_tb(info.value.__traceback__)
        assert [f.name for f in frames][-1:] == ["result"]
        assert all(f.filename != _waiting.__file__ for f in frames)
        sender.join(TIMEOUT)
        release.set()
        assert t.result(timeout=TIMEOUT) is True


class TestMisuse:
    def test_result_before_start(self) -> None:
        """result() on a thread never started says to call start()."""
        t = ResultThread(target=add, args=(1,), name="idle")
        with pytest.raises(RuntimeError, match=r"'idle' has not been started"):
            t.result()
        with pytest.raises(RuntimeError, match=r"call start\(\) before exception"):
            t.exception()

    def test_result_from_inside_itself(self) -> None:
        """result() inside the thread itself raises instead of waiting forever."""

        class SelfWaiter(ResultThread[str]):
            def compute(self) -> str:
                try:
                    self.result(timeout=TIMEOUT)
                except RuntimeError as exc:
                    return str(exc)
                return "no error"

        t = SelfWaiter(name="me")
        t.start()
        message = t.result(timeout=TIMEOUT)
        assert "inside thread 'me' would wait for itself forever" in message

    def test_start_twice(self) -> None:
        """A second start() raises RuntimeError saying to make a new thread."""
        t = spawn(add, 1)
        t.result(timeout=TIMEOUT)
        with pytest.raises(RuntimeError, match="already started; a thread runs once"):
            t.start()

    def test_racing_starts_run_target_once(self) -> None:
        """Of many threads calling start() at once, exactly one succeeds."""
        calls: list[int] = []
        t = ResultThread(target=calls.append, args=(1,))
        barrier = threading.Barrier(8)

        def try_start() -> bool:
            barrier.wait(TIMEOUT)
            try:
                t.start()
            except RuntimeError:
                return False
            return True

        starters = [spawn(try_start) for _ in range(8)]
        wins = [s.result(timeout=TIMEOUT) for s in starters]
        t.result(timeout=TIMEOUT)
        assert wins.count(True) == 1
        assert calls == [1]

    def test_target_passed_positionally(self) -> None:
        """ResultThread(fn) says to pass the target by keyword (issue 10)."""
        with pytest.raises(TypeError, match=r"pass the target by keyword"):
            ResultThread(add)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"group must be None, not str"):
            ResultThread("group")  # type: ignore[arg-type]

    def test_spawn_names_its_parameter(self) -> None:
        """spawn() of a non-callable names its parameter, fn (issue 10)."""
        with pytest.raises(TypeError, match=r"^fn must be callable, not int$"):
            spawn(3)  # type: ignore[arg-type]

    def test_init_docstring_is_ours(self) -> None:
        """help(ResultThread.__init__) documents our parameters (issue 10)."""
        doc = ResultThread.__init__.__doc__ or ""
        assert "pass `target` by keyword" in doc
        assert "copy_context" in doc


class TestSubclassRun:
    """A subclass overriding run(), as taught for threading.Thread (issue 10)."""

    def test_run_return_value_is_the_result(self) -> None:
        """What an overriding run() returns is the result."""

        class Answer(ResultThread[int]):
            def run(self) -> int:  # type: ignore[override]
                return 42

        t = Answer()
        t.start()
        assert t.result(timeout=TIMEOUT) == 42
        assert t.done()

    def test_run_exception_is_the_exception(self) -> None:
        """What an overriding run() raises is the exception, with the note."""

        class Broken(ResultThread[int]):
            def run(self) -> int:  # type: ignore[override]
                raise KeyError("k")

        t = Broken(name="broken")
        t.start()
        exc = t.exception(timeout=TIMEOUT)
        assert isinstance(exc, KeyError)
        assert exc.__notes__ == ["raised in thread 'broken'"]
        frames = traceback.extract_tb(exc.__traceback__)
        assert [f.name for f in frames] == ["run"]

    def test_super_run_runs_the_target(self) -> None:
        """super().run() inside an override runs the target, without recursion."""

        class Doubled(ResultThread[int]):
            def run(self) -> int:  # type: ignore[override]
                return 2 * super().run()

        t = Doubled(target=add, args=(20, 1))
        t.start()
        assert t.result(timeout=TIMEOUT) == 42

    def test_run_returning_nothing_gives_none(self) -> None:
        """An override typed -> None (the threading idiom) gives None."""
        seen: list[str] = []

        class Plain(ResultThread[None]):
            def run(self) -> None:
                seen.append(self.name)

        t = Plain(name="plain")
        t.start()
        assert t.result(timeout=TIMEOUT) is None
        assert seen == ["plain"]

    def test_subclass_of_subclass(self) -> None:
        """Overrides chain through super().run() at every level."""

        class Base(ResultThread[list[str]]):
            def run(self) -> list[str]:  # type: ignore[override]
                return ["base"]

        class Derived(Base):
            def run(self) -> list[str]:  # type: ignore[override]
                return [*super().run(), "derived"]

        t = Derived()
        t.start()
        assert t.result(timeout=TIMEOUT) == ["base", "derived"]
        assert "run" not in vars(t)  # the bootstrap's instance attribute is gone

    def test_run_override_wins_over_compute(self) -> None:
        """With both overridden, run() is the body; super().run() reaches compute()."""

        class Both(ResultThread[str]):
            def compute(self) -> str:
                return "compute"

            def run(self) -> str:  # type: ignore[override]
                return "run+" + super().run()

        t = Both()
        t.start()
        assert t.result(timeout=TIMEOUT) == "run+compute"

    def test_run_called_directly_runs_synchronously(self) -> None:
        """Calling run() without start() runs the target in the caller."""
        t = ResultThread(target=threading.current_thread)
        assert t.run() is threading.current_thread()


class TestConcurrentWaiters:
    def test_many_waiters_see_same_outcome(self) -> None:
        """Many threads waiting at once all receive the same value."""
        release = threading.Event()
        value = object()

        def produce() -> object:
            release.wait(TIMEOUT)
            return value

        t = spawn(produce)
        waiters = [spawn(t.result, TIMEOUT) for _ in range(16)]
        release.set()
        assert all(w.result(timeout=TIMEOUT) is value for w in waiters)

    def test_many_waiters_see_same_exception(self) -> None:
        """Many threads waiting at once all receive the same exception object."""
        release = threading.Event()
        error = OSError("disk")

        def produce() -> NoReturn:
            release.wait(TIMEOUT)
            raise error

        t = spawn(produce)
        waiters = [spawn(t.exception, TIMEOUT) for _ in range(16)]
        release.set()
        assert all(w.result(timeout=TIMEOUT) is error for w in waiters)


class TestUnobservedFailure:
    def test_unretrieved_failure_reported_once(self, reported: list[Any]) -> None:
        """A failure nobody retrieved reaches threading.excepthook once."""
        error = ValueError("lost?")
        t = ResultThread(target=fail_with, args=(error,), name="forgotten")
        t.start()
        t.join(TIMEOUT)
        assert not reported
        # The exception's frames refer to the thread; drop every reference.
        del t, error
        gc.collect()
        assert len(reported) == 1
        args = reported[0]
        assert str(args.exc_value) == "lost?"
        assert args.exc_type is ValueError
        assert args.thread.name == "forgotten"

    @pytest.mark.parametrize("method", ["result", "exception"])
    def test_retrieved_failure_not_reported(
        self, reported: list[Any], method: str
    ) -> None:
        """Retrieving the failure with result() or exception() silences it."""
        t = spawn(fail_with, ValueError("seen"))
        with contextlib.suppress(ValueError):
            getattr(t, method)(timeout=TIMEOUT)
        del t
        gc.collect()
        assert reported == []

    def test_success_not_reported(self, reported: list[Any]) -> None:
        """A successful thread that nobody asked is not reported."""
        t = spawn(add, 1)
        t.join(TIMEOUT)
        del t
        gc.collect()
        assert reported == []


var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


class TestContext:
    def test_target_sees_starters_context(self) -> None:
        """The target runs in a copy of the context of the starting thread."""
        token = var.set("from caller")
        try:
            t = spawn(var.get)
        finally:
            var.reset(token)
        assert t.result(timeout=TIMEOUT) == "from caller"

    def test_context_captured_at_start_not_init(self) -> None:
        """The context is the one current when start() is called."""
        t = ResultThread(target=var.get)
        token = var.set("at start")
        try:
            t.start()
        finally:
            var.reset(token)
        assert t.result(timeout=TIMEOUT) == "at start"

    def test_target_changes_do_not_leak_back(self) -> None:
        """Changes the target makes stay in its copy."""
        t = spawn(var.set, "inside")
        t.result(timeout=TIMEOUT)
        assert var.get() == "unset"

    def test_copy_context_false(self) -> None:
        """copy_context=False runs the target without the caller's values."""
        token = var.set("from caller")
        try:
            t = ResultThread(target=var.get, copy_context=False)
            t.start()
        finally:
            var.reset(token)
        # Free-threaded 3.14 builds inherit the context by default; on every
        # other build a plain thread starts with an empty one.
        inherits = getattr(sys.flags, "thread_inherit_context", 0)
        expected = "from caller" if inherits else "unset"
        assert t.result(timeout=TIMEOUT) == expected


class TestAsFuture:
    def test_future_before_and_after_completion(self) -> None:
        """as_future() returns one future that completes with the value."""
        release = threading.Event()
        t = spawn(release.wait, TIMEOUT)
        early = t.as_future()
        assert not early.done()
        assert early.running()
        release.set()
        assert early.result(timeout=TIMEOUT) is True
        assert t.as_future() is early
        late_thread = spawn(add, 2, 2)
        late_thread.join(TIMEOUT)
        assert late_thread.as_future().result(timeout=0) == 4

    def test_future_with_wait_and_as_completed(self) -> None:
        """Thread futures work with concurrent.futures.wait and as_completed."""
        threads = [spawn(add, i) for i in range(8)]
        futures = [t.as_future() for t in threads]
        done, not_done = concurrent.futures.wait(futures, timeout=TIMEOUT)
        assert not not_done
        assert sorted(f.result() for f in done) == list(range(8))
        results = [
            f.result() for f in concurrent.futures.as_completed(futures, TIMEOUT)
        ]
        assert sorted(results) == list(range(8))

    def test_future_with_asyncio(self) -> None:
        """asyncio.wrap_future awaits a thread's outcome."""
        t = spawn(add, 20, 22)

        async def main() -> int:
            return await asyncio.wrap_future(t.as_future())

        assert asyncio.run(main()) == 42

    def test_future_carries_exception(self, reported: list[Any]) -> None:
        """The future holds the failure; retrieving it there silences the report."""
        error = ZeroDivisionError("div")
        t = spawn(fail_with, error)
        fut = t.as_future()
        assert fut.exception(timeout=TIMEOUT) is error
        del t, fut
        gc.collect()
        assert reported == []

    def test_done_callback_may_call_result(self) -> None:
        """A done-callback running in the thread itself may read its result."""
        seen: list[int] = []
        release = threading.Event()

        def produce() -> int:
            release.wait(TIMEOUT)
            return 5

        t = spawn(produce)
        t.as_future().add_done_callback(lambda _f: seen.append(t.result()))
        release.set()
        t.join(TIMEOUT)
        assert seen == [5]

    def test_done_callback_raising_base_exception(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A done-callback raising SystemExit loses nothing: waiters, group, hook."""
        hooked: list[type[BaseException]] = []
        monkeypatch.setattr(
            threading, "excepthook", lambda args: hooked.append(args.exc_type)
        )
        release = threading.Event()

        def bad(_f: concurrent.futures.Future[bool]) -> None:
            raise SystemExit(1)

        with ThreadGroup() as g:
            t = g.spawn(release.wait, TIMEOUT)
            t.as_future().add_done_callback(bad)
            release.set()
        assert t.result(timeout=0) is True
        assert t.as_future().result(timeout=0) is True
        assert hooked == [SystemExit]  # reported where threading reports it


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.lists(st.integers()),
    st.dictionaries(st.text(), st.integers()),
)
_exception_types = st.sampled_from(
    [
        ValueError,
        KeyError,
        RuntimeError,
        OSError,
        ArithmeticError,
        SystemExit,
        KeyboardInterrupt,
        Exception,
        BaseException,
    ]
)


class TestProperties:
    @given(value=_values)
    def test_values_round_trip(self, value: object) -> None:
        """result() returns exactly the object the target returned."""
        assert spawn(lambda: value).result(timeout=TIMEOUT) is value

    @given(exc_type=_exception_types, message=st.text())
    def test_exceptions_round_trip(
        self, exc_type: type[BaseException], message: str
    ) -> None:
        """result() raises exactly the exception object the target raised."""
        error = exc_type(message)
        t = spawn(fail_with, error)
        with pytest.raises(exc_type) as info:
            t.result(timeout=TIMEOUT)
        assert info.value is error
        assert t.exception(timeout=TIMEOUT) is error

    @given(
        outcome=st.one_of(_values, _exception_types.map(lambda e: e("x"))),
        waiters=st.integers(min_value=1, max_value=8),
    )
    def test_concurrent_waiters_agree(self, outcome: object, waiters: int) -> None:
        """Every concurrent waiter observes the one outcome of the thread."""
        release = threading.Event()

        def produce() -> object:
            release.wait(TIMEOUT)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        t = spawn(produce)

        def observe() -> tuple[str, object]:
            exc = t.exception(timeout=TIMEOUT)
            if exc is not None:
                return ("raised", exc)
            return ("returned", t.result(timeout=TIMEOUT))

        observers = [spawn(observe) for _ in range(waiters)]
        release.set()
        seen = [o.result(timeout=TIMEOUT) for o in observers]
        kind = "raised" if isinstance(outcome, BaseException) else "returned"
        assert all(s[0] == kind and s[1] is outcome for s in seen)


@pytest.mark.stress
@pytest.mark.usefixtures("fast_switching")
class TestStress:
    def test_thousand_threads_sum(self) -> None:
        """1,000 threads each return i; nothing is lost, nothing leaks."""
        n = 1000
        before = threading.active_count()
        threads = [spawn(int, i) for i in range(n)]
        total = sum(t.result(timeout=TIMEOUT) for t in threads)
        assert total == n * (n - 1) // 2
        for t in threads:
            t.join(TIMEOUT)
        assert threading.active_count() == before

    def test_concurrent_waiters_under_switching(self) -> None:
        """Many waiters on many threads, with frequent switches, all agree."""
        producers = [spawn(int, i) for i in range(200)]
        checkers = [spawn(p.result, TIMEOUT) for p in producers]
        assert [c.result(timeout=TIMEOUT) for c in checkers] == list(range(200))


def run_child(code: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter; a hang fails the test, not the run."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class TestIssue10:
    """Regressions from issue 10, each failing on the code before the fix."""

    @pytest.mark.subprocess
    def test_as_future_from_its_own_done_callback(self) -> None:
        """A done-callback may call as_future() on its thread (issue 10, #1)."""
        proc = run_child(
            """
            import threading
            from safethreads import ResultThread

            release = threading.Event()
            t = ResultThread(target=release.wait, args=(10,), daemon=True)
            t.start()
            future = t.as_future()
            seen = []
            future.add_done_callback(lambda f: seen.append(t.as_future() is f))
            release.set()
            t.join(10)
            print("alive" if t.is_alive() else "ended", seen)
            """
        )
        assert proc.stdout.strip() == "ended [True]", proc.stderr

    def test_failing_add_note_still_delivers_the_exception(self) -> None:
        """An exception refusing notes is still the result (issue 10, #2)."""

        class NoNotesError(Exception):
            pass

        error = NoNotesError("boom")
        error.__notes__ = "not a list"  # type: ignore[assignment]
        t = spawn(fail_with, error)
        with pytest.raises(NoNotesError) as info:
            t.result(timeout=TIMEOUT)
        assert info.value is error
        assert t.done()

    def test_done_implies_result_without_waiting(self) -> None:
        """Once done() is True, result(timeout=0) returns (issue 10, #3)."""
        releasing = threading.Event()
        go = threading.Event()

        class Latch:
            """The real latch, pausing inside release() to open the window."""

            def __init__(self, lock: Any) -> None:
                self.lock = lock

            def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
                return bool(self.lock.acquire(blocking, timeout))

            def release(self) -> None:
                releasing.set()
                go.wait(TIMEOUT)
                self.lock.release()

            def locked(self) -> bool:
                return bool(self.lock.locked())

        t = ResultThread(target=add, args=(2, 3))
        t._finished = Latch(t._finished)  # type: ignore[assignment]
        t.start()
        try:
            assert releasing.wait(TIMEOUT)
            if t.done():
                assert t.result(timeout=0) == 5
        finally:
            go.set()
        assert t.result(timeout=TIMEOUT) == 5
        assert t.done()

    @pytest.mark.subprocess
    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_result_in_forked_child_does_not_hang(self) -> None:
        """result() in a fork child, for a thread running at fork, raises."""
        proc = run_child(
            """
            import os, threading, warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            from safethreads import ResultThread

            release = threading.Event()
            t = ResultThread(target=release.wait, args=(20,), daemon=True)
            t.start()
            pid = os.fork()
            if pid == 0:
                try:
                    t.result()
                except RuntimeError as exc:
                    print("child:", exc, flush=True)
                    os._exit(0)
                os._exit(1)
            _, status = os.waitpid(pid, 0)
            release.set()
            print("parent:", t.result(timeout=10), os.waitstatus_to_exitcode(status))
            """,
            timeout=15,
        )
        lines = proc.stdout.splitlines()
        assert len(lines) == 2, proc.stderr
        assert "was running when the process forked" in lines[0]
        assert lines[1] == "parent: True 0"

    def test_failed_start_can_be_retried(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A start() that could not create the thread allows a retry."""
        original = threading.Thread.start
        calls: list[int] = []

        def fail_once(self: threading.Thread) -> None:
            calls.append(1)
            if len(calls) == 1:
                msg = "can't start new thread"
                raise RuntimeError(msg)
            original(self)

        monkeypatch.setattr(threading.Thread, "start", fail_once)
        t = ResultThread(target=add, args=(1, 1))
        with pytest.raises(RuntimeError, match="can't start new thread"):
            t.start()
        retry = spawn(t.start)
        retry.result(timeout=TIMEOUT)
        assert t.result(timeout=TIMEOUT) == 2

    def test_failing_add_note_in_a_group_member_is_raised(self) -> None:
        """A member's exception refusing notes still reaches the group (#2)."""

        class NoNotesError(Exception):
            pass

        error = NoNotesError("boom")
        error.__notes__ = "not a list"  # type: ignore[assignment]
        with (
            pytest.raises(ExceptionGroup) as info,
            ThreadGroup(exit_timeout=TIMEOUT) as g,
        ):
            g.spawn(fail_with, error)
        assert info.value.exceptions == (error,)


class TestDoneStress:
    @pytest.mark.stress
    def test_done_then_zero_timeout_result_under_waiters(
        self, fast_switching: None
    ) -> None:
        """Whenever done() is True, result(timeout=0) returns, even mid-hand-off."""
        del fast_switching
        n = 300
        total = 0
        for i in range(n):
            t = spawn(int, str(i))
            waiters = [spawn(t.result, TIMEOUT) for _ in range(2)]
            while not t.done():
                pass
            total += t.result(timeout=0)
            for w in waiters:
                assert w.result(timeout=TIMEOUT) == i
        assert total == n * (n - 1) // 2


class TestCtrlCAtEveryLine:
    """Ctrl-C striking at any line of start() leaves a usable thread."""

    def test_ctrl_c_inside_start_leaves_thread_startable_or_running(self) -> None:
        """After an interrupted start(), the thread runs or can be started again."""
        for k in range(1, 200):
            release = threading.Event()
            t = ResultThread(target=lambda release=release: release.wait(TIMEOUT))
            struck = interrupt_at_line(k, t.start)
            with contextlib.suppress(RuntimeError):  # it did start
                t.start()
            release.set()
            assert t.result(timeout=TIMEOUT) is True, k
            assert not t._future_lock.locked()
            if not struck:
                break


class TestForkAndBadTokens:
    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
    def test_unobserved_failure_not_reported_by_a_fork_child(self) -> None:
        """A failure from before a fork() is reported by the parent only."""
        code = textwrap.dedent(
            """
            import gc, os, threading
            from safethreads import spawn

            reports = []
            threading.excepthook = reports.append
            t = spawn(lambda: 1 / 0)
            t.join(10)
            pid = os.fork()
            if pid == 0:
                del t
                gc.collect()
                os._exit(len(reports))
            _, status = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(status))
            del t
            gc.collect()
            print("parent", len(reports))
            """
        )
        proc = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.stdout.splitlines() == ["child 0", "parent 1"], proc.stderr

    @pytest.mark.parametrize("method", ["result", "exception"])
    def test_cancel_must_be_a_token(self, method: str) -> None:
        """A cancel= that is not a CancelToken is refused at the call."""
        t = spawn(add, 1)
        t.join(TIMEOUT)
        with pytest.raises(TypeError, match="cancel must be a CancelToken or None"):
            getattr(t, method)(timeout=TIMEOUT, cancel=3)
