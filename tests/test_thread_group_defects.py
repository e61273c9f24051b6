"""ThreadGroup regressions from issue 10: each test failed on the code before its fix.

Hangs are reproduced in a child interpreter with a timeout, so that a
regression fails the test instead of stopping the suite.
"""

from __future__ import annotations

import _thread
import itertools
import linecache
import os
import signal
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from child_process import SIGINT_PRELUDE
from safethreads import ThreadGroup
from safethreads import _thread_group as tg_module
from safethreads._thread_group import _CURRENT_TOKEN

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

TIMEOUT = 10.0  # every wait in these tests is bounded


class BadNotesError(Exception):
    """An exception whose `__notes__` is not a list: `add_note` raises on it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.__notes__ = "not a list"  # type: ignore[assignment]


def raise_bad_notes(message: str) -> NoReturn:
    raise BadNotesError(message)


def fail_with(exc: BaseException) -> NoReturn:
    raise exc


def run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a child interpreter; a hang fails with TimeoutExpired."""
    return subprocess.run(
        [sys.executable, "-c", SIGINT_PRELUDE + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )


class TestUnnotableFailures:
    """Issue 10, defect 2: publishing a failure does not depend on add_note."""

    def test_plain_thread_failure_without_notes_is_raised(self) -> None:
        """A plain member's exception that refuses notes still reaches the group."""
        with (
            pytest.raises(ExceptionGroup) as info,
            ThreadGroup("n") as g,
        ):
            g.add(threading.Thread(target=raise_bad_notes, args=("plain",)))
        assert [str(e) for e in info.value.exceptions] == ["plain"]

    def test_cancel_callback_error_without_notes_is_raised(self) -> None:
        """A cancel callback's exception that refuses notes is raised at the end."""
        with (  # noqa: PT012
            pytest.raises(ExceptionGroup) as info,
            ThreadGroup("c") as g,
        ):
            g.token.add_callback(lambda: raise_bad_notes("callback"))
            g.spawn(fail_with, ValueError("member"))
        assert [str(e) for e in info.value.exceptions] == ["member", "callback"]


class TestJoinAllFromMembers:
    """Issue 10, defect 5: members waiting in join_all do not wait for each other."""

    def test_two_members_in_join_all_both_return(self) -> None:
        """Two members each calling join_all() return once the others are done."""
        child = run_child(
            """
            import threading
            from safethreads import ThreadGroup

            go = threading.Event()

            def joiner(g):
                return g.join_all()

            with ThreadGroup("j") as g:
                a = g.spawn(joiner, g)
                b = g.spawn(joiner, g)
                g.spawn(go.wait, 5)
                go.set()
            print(a.result(timeout=0), b.result(timeout=0))
            """
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.split() == ["True", "True"]

    def test_join_all_from_member_still_waits_for_the_others(self) -> None:
        """A member's join_all() returns only after the non-waiting members end."""
        go = threading.Event()
        with ThreadGroup() as g:
            slow = g.spawn(go.wait, TIMEOUT)
            joiner = g.spawn(lambda: (g.join_all(TIMEOUT), slow.done()))
            other = g.spawn(lambda: g.join_all(TIMEOUT))
            go.set()
        assert joiner.result(timeout=0) == (True, True)
        assert other.result(timeout=0) is True


STUBBORN_SCRIPT = """
import sys, threading
from safethreads import ThreadGroup
from safethreads._thread_group import _State

never = threading.Event()
g = ThreadGroup("cc")

def ignores_token():
    g.token.add_callback(lambda: print("cancelled", flush=True))
    never.wait(60)

def announce_when_waiting():
    while g._state is not _State.CLOSING:
        never.wait(0.001)
    print("ready", flush=True)

with g:
    g.spawn(ignores_token)
    g.spawn(announce_when_waiting)
"""


@pytest.mark.subprocess
class TestSecondCtrlC:
    """Issue 10, defect 6: a second Ctrl-C lets the program go."""

    def test_second_ctrl_c_exits_despite_a_stubborn_member(self) -> None:
        """After the second Ctrl-C the interpreter does not wait for the member."""
        proc = subprocess.Popen(
            [sys.executable, "-c", SIGINT_PRELUDE + STUBBORN_SCRIPT],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            proc.send_signal(signal.SIGINT)
            assert proc.stdout.readline().strip() == "cancelled"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(TIMEOUT)
        assert "KeyboardInterrupt" in err
        assert "group 'cc' stopped waiting; still running: 'cc-0'" in err
        assert "Exception ignored" not in err


class TestCtrlCInSpawn:
    """Issue 10, suspicion: Ctrl-C inside spawn after the thread started."""

    @pytest.fixture
    def start_then_interrupt(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the next Thread.start() raise KeyboardInterrupt once it started."""
        original = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            monkeypatch.setattr(threading.Thread, "start", original)
            original(thread)
            raise KeyboardInterrupt

        monkeypatch.setattr(threading.Thread, "start", start)

    @pytest.mark.usefixtures("start_then_interrupt")
    def test_member_started_before_the_interrupt_is_waited_for(
        self, reported: list[Any]
    ) -> None:
        """The member is registered, waited for and its failure noted."""
        go = threading.Event()

        def fails_late() -> NoReturn:
            go.wait(TIMEOUT)
            raise ValueError("late")

        g = ThreadGroup("k")
        with pytest.raises(KeyboardInterrupt) as info, g:  # noqa: PT012
            try:
                g.spawn(fails_late)
            finally:
                go.set()
        (member,) = g.members
        assert not member.is_alive()
        assert info.value.__notes__ == [
            "group 'k' also had 1 member failure(s), not raised: ValueError: late"
        ]
        assert reported == []


class TestStuckReport:
    """Issue 10, small thing: a member blocked in C is named in the report."""

    def test_member_blocked_in_c_names_the_function(self) -> None:
        """The exit_timeout report names the C function a member is blocked in."""
        lock = _thread.allocate_lock()
        lock.acquire()
        try:
            with (
                pytest.raises(TimeoutError) as info,
                ThreadGroup("c", exit_timeout=0.05) as g,
            ):
                g.spawn(lock.acquire, True, TIMEOUT)
        finally:
            lock.release()
        g.join_all(TIMEOUT)
        message = str(info.value)
        assert "thread 'c-0' is stuck at:" in message
        assert "built-in method acquire" in message
        assert "in compute" not in message


# Ctrl-C (simulated with _thread.interrupt_main) at a random point of each
# round: in the body, in spawn(), join_all(), as_completed(), or while the
# block's end waits.  After each
# round every member must have finished and the group's bookkeeping must hold.
ATTACK_SCRIPT = """
import _thread, random, sys, threading, time
from safethreads import ThreadGroup

rounds, seed = int(sys.argv[1]), int(sys.argv[2])
limit = None if sys.argv[3] == "none" else int(sys.argv[3])
rng = random.Random(seed)
problems = []
def excepthook(args):
    problems.append(f"{args.exc_type.__name__}: {args.exc_value} in {args.thread}")
threading.excepthook = excepthook

for r in range(rounds):
    fired = threading.Event()
    delay = rng.random() * 0.004
    where = rng.choice(["body", "exit", "spawn", "join_all", "as_completed"])
    g = None
    try:
        try:
            g = ThreadGroup(f"r{r}", max_concurrency=limit)
            with g:
                def interrupter(d=delay):
                    time.sleep(d)
                    _thread.interrupt_main()
                    fired.set()
                g.spawn(interrupter)
                for _ in range(rng.randrange(1, 5)):
                    g.spawn(time.sleep, rng.random() * 0.003)
                if where == "body":
                    time.sleep(0.01)
                elif where == "spawn":
                    for _ in range(40):
                        g.spawn(int)
                elif where == "join_all":
                    g.join_all(5)
                elif where == "as_completed":
                    for _ in g.as_completed(5):
                        pass
        except KeyboardInterrupt:
            pass
        fired.wait(5)
        time.sleep(0.001)
    except KeyboardInterrupt:
        pass
    # absorb an interrupt still pending
    try:
        for _ in range(3):
            time.sleep(0.001)
    except KeyboardInterrupt:
        pass
    if g is not None:
        if not g.join_all(5):
            alive = [t.name for t in g.members if t.is_alive()]
            problems.append(f"round {r}: members never finished: {alive}")
            break
        try:
            if g._state.value != "new":
                g._check()
        except AssertionError as e:
            problems.append(f"round {r}: invariant {e!r}")
print("problems:", problems[:5], len(problems))
sys.exit(1 if problems else 0)
"""


@pytest.mark.subprocess
@pytest.mark.stress
@pytest.mark.parametrize("limit", ["none", "2"])
def test_ctrl_c_anywhere_leaves_the_group_consistent(
    limit: str, stress_rng: random.Random
) -> None:
    """Ctrl-C at any point of spawn, body or exit: members end, invariants hold."""
    child = run_child(ATTACK_SCRIPT, "120", str(stress_rng.randrange(2**32)), limit)
    assert child.returncode == 0, child.stdout + child.stderr[-2000:]
    assert "problems: [] 0" in child.stdout


@pytest.mark.subprocess
class TestExitAndFork:
    """What holding non-daemon members for the interpreter must not change."""

    def test_interpreter_waits_for_a_member_of_an_open_group(self) -> None:
        """A non-daemon member nobody abandoned still holds up interpreter exit."""
        child = run_child(
            """
            import threading
            from safethreads import ThreadGroup

            g = ThreadGroup("open")
            g.__enter__()  # never left: the interpreter's exit must wait
            g.spawn(lambda: threading.Event().wait(0.3) or print("finished"))
            print("main returns")
            """
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.split() == ["main", "returns", "finished"]

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_fork_child_leaves_the_block(self) -> None:
        """In a fork child, the parent's members do not exist: the block ends."""
        child = run_child(
            """
            import os, threading
            from safethreads import ThreadGroup

            go = threading.Event()
            with ThreadGroup("f") as g:
                g.spawn(go.wait, 10)
                pid = os.fork()
                if pid:
                    go.set()
            if pid == 0:
                os.write(1, b"child done\\n")
                os._exit(0)
            print("parent", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            """
        )
        assert child.returncode == 0, child.stderr
        assert sorted(child.stdout.splitlines()) == ["child done", "parent 0"]

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_fork_child_leaves_a_bounded_block_with_waiting_members(self) -> None:
        """A member waiting for a slot is the parent's: the child does not wait."""
        child = run_child(
            """
            import os, threading
            from safethreads import ThreadGroup

            go = threading.Event()
            with ThreadGroup("f", max_concurrency=1) as g:
                g.spawn(go.wait, 10)
                # One write(2) each: both processes share the pipe.
                waiting = g.spawn(os.write, 1, b"waiting member ran\\n")
                pid = os.fork()
                if pid:
                    go.set()
            if pid == 0:
                os.write(1, b"child done\\n")
                os._exit(0)
            print("parent", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            """
        )
        assert child.returncode == 0, child.stderr
        assert sorted(child.stdout.splitlines()) == [
            "child done",
            "parent 0",
            "waiting member ran",
        ]


def signal_then_fail(failed: threading.Event) -> NoReturn:
    failed.set()
    raise ValueError("member")


_WAIT_AT_EXIT = ThreadGroup._wait_at_exit.__code__


def _in_loop(frame: Any) -> bool:
    """Whether `frame` of `_wait_at_exit` has reached its Ctrl-C counting loop."""
    import linecache

    code = frame.f_code
    line = code.co_firstlineno
    while not linecache.getline(code.co_filename, line).strip().startswith("while"):
        line += 1
    return bool(frame.f_lineno > line)


def _interrupt_at_line(
    n: int, codes: set[Any], stop: Any, on_stop: Callable[[], object]
) -> tuple[Any, list[int]]:
    """A trace raising KeyboardInterrupt at the `n`th line run in `codes`.

    Lines of `with`, `try:` and `while True:` statements, and the constant
    assignments that open `_wait_at_exit`, are skipped: an exception raised
    by a trace function there is an artefact of tracing (no signal handler
    can run at those instructions).  Counting stops once `stop` runs.
    """
    import linecache

    seen: list[int] = []  # [lines counted, 1 once stop was reached]

    def local(frame: Any, event: str, _: object) -> Any:
        if event != "line" or len(seen) > 1:
            return local
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
        if line.startswith(("with ", "try:", "while True:")) or frame.f_lasti < 0:
            return local
        if frame.f_code is _WAIT_AT_EXIT and not _in_loop(frame):
            return local
        seen[0] += 1
        if seen[0] == n:
            raise KeyboardInterrupt
        return local

    def tracer(frame: Any, event: str, _: object) -> Any:
        if frame.f_code is stop and len(seen) == 1:
            seen.append(1)
            on_stop()  # the wait started without an interrupt: let it end
        if event == "call" and frame.f_code in codes:
            return local
        return None

    seen.append(0)
    return tracer, seen


class TestCtrlCBeforeTheExitWait:
    """A Ctrl-C landing in `__exit__` before the wait is the first press."""

    def test_members_are_waited_for_and_failures_reported(self) -> None:
        """At each line before the wait: members end, the failure is noted once."""
        codes = {
            getattr(ThreadGroup, name).__code__
            for name in ("_wait_at_exit", "_begin_exit", "_restore_context")
            if hasattr(ThreadGroup, name)
        }
        stop = ThreadGroup._wait_members.__code__
        # What the context held before (an earlier test may have left a
        # group token in this thread's context): the block must restore it.
        before = _CURRENT_TOKEN.get()
        for n in itertools.count(1):
            g = ThreadGroup(f"pre-exit-{n}", fail_fast=False)
            tracer, seen = _interrupt_at_line(n, codes, stop, g.cancel)
            failed = threading.Event()
            outcome: BaseException | None = None
            waiter = None
            try:
                with g:
                    waiter = g.spawn(g.token.wait, TIMEOUT)
                    g.spawn(signal_then_fail, failed)
                    assert failed.wait(TIMEOUT)
                    sys.settrace(tracer)
            except BaseException as exc:
                outcome = exc
            finally:
                sys.settrace(None)
            assert waiter is not None
            assert not waiter.is_alive(), f"line {n}: member outlived the block"
            assert _CURRENT_TOKEN.get() is before, f"line {n}: context not restored"
            g.results(return_exceptions=True)  # the block has ended
            if seen[0] < n:  # the wait started before line n: done
                assert isinstance(outcome, ExceptionGroup), outcome
                assert n > 1
                return
            assert isinstance(outcome, KeyboardInterrupt), (n, outcome)
            notes = "\n".join(getattr(outcome, "__notes__", []))
            assert notes.count("ValueError: member") == 1, (n, notes)


def _interrupt_after_wait(
    n: int, codes: set[Any], held_from: int
) -> tuple[Any, list[int]]:
    """A trace raising KeyboardInterrupt at the `n`th line after the exit wait.

    Counts lines run in `codes` once `_wait_at_exit` has returned, skipping
    `with`/`try:` lines (tracing artefacts, see `_interrupt_at_line`), and
    stops at line `held_from` of `_interrupts_deferred`, where Ctrl-C is
    held back.
    """
    deferred = _interrupts_deferred_code()
    count = [0, 0, 0]  # [lines counted, 1 once the wait returned, 1 if fired]

    def local(frame: Any, event: str, _: object) -> Any:
        if event != "line" or not count[1] or count[0] > n:
            return local
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
        if line.strip().startswith(("with ", "try:", "while True:")):
            return local
        if frame.f_code is deferred and frame.f_lineno > held_from:
            count[0] = n + 1  # Ctrl-C is held from here on: done
            return local
        count[0] += 1
        if count[0] == n:
            count[2] = 1
            raise KeyboardInterrupt
        return local

    def wait_returns(frame: Any, event: str, _: object) -> None:
        if event == "return":
            count[1] = 1

    def tracer(frame: Any, event: str, _: object) -> Any:
        if frame.f_code is _WAIT_AT_EXIT:
            return wait_returns
        return local if frame.f_code in codes else None

    return tracer, count


def _interrupts_deferred_code() -> Any:
    return tg_module._interrupts_deferred.__wrapped__.__code__  # type: ignore[attr-defined]


class TestCtrlCAfterTheExitWait:
    """A Ctrl-C between the end of the wait and the closing of the block."""

    def test_failures_are_not_lost(self) -> None:
        """At each line there: the block closes, the failure is noted once."""
        deferred = _interrupts_deferred_code()
        held_from = next(
            line
            for line in range(deferred.co_firstlineno, deferred.co_firstlineno + 60)
            if "signal.signal(signal.SIGINT, hold)"
            in linecache.getline(deferred.co_filename, line)
        )
        codes = {ThreadGroup.__exit__.__code__, tg_module._abandon.__code__, deferred}
        for n in itertools.count(1):
            g = ThreadGroup(f"post-exit-{n}", fail_fast=False)
            tracer, count = _interrupt_after_wait(n, codes, held_from)
            outcome: BaseException | None = None
            try:
                with g:
                    g.spawn(fail_with, ValueError("member"))
                    assert g.join_all(TIMEOUT)
                    sys.settrace(tracer)
            except BaseException as exc:
                outcome = exc
            finally:
                sys.settrace(None)
            g.results(return_exceptions=True)  # the block has ended
            if not count[2]:  # no line left to interrupt: done
                assert isinstance(outcome, ExceptionGroup), outcome
                assert n > 1
                return
            if isinstance(outcome, KeyboardInterrupt):
                notes = "\n".join(getattr(outcome, "__notes__", []))
                assert notes.count("ValueError: member") == 1, (n, notes)
            else:  # the failure was raised in a group: reported once too
                assert isinstance(outcome, ExceptionGroup), (n, outcome)


class TestCtrlCInEnter:
    """A Ctrl-C in `__enter__` leaves the group consistent."""

    def test_open_group_always_has_an_owner(self) -> None:
        """At each line of `__enter__`: a group marked open has its owner set."""
        codes = {ThreadGroup.__enter__.__code__}
        for n in itertools.count(1):
            g = ThreadGroup(f"enter-{n}", max_concurrency=1)
            tracer, _ = _interrupt_at_line(n, codes, None, g.cancel)
            outcome: BaseException | None = None
            sys.settrace(tracer)
            try:
                with g:
                    pass
            except KeyboardInterrupt as exc:
                outcome = exc
            finally:
                sys.settrace(None)
                # After the last line (a tracing artefact: no signal handler
                # runs between setting the context and returning).
                if _CURRENT_TOKEN.get() is g.token:
                    _CURRENT_TOKEN.set(None)
            g._check()
            if outcome is None:
                assert n > 1
                return
