"""Ctrl-C at every point: a harness that interrupts library code wherever a
real Ctrl-C could.

CPython delivers a `KeyboardInterrupt` from Ctrl-C only where it checks for
pending signals: after a call returns, on a backward jump, when a function
starts or a generator resumes (see `signal_points`).  This harness makes
Ctrl-C at each of those places systematic:

1. It runs a *scenario* once with a `sys.settrace` hook that traces the
   instructions of `safethreads` code run by the main thread and records
   every signal point reached.  A point is "the 3rd time the instruction at
   offset 36 of the function on line 405 of `_worker_pool.py` ran".
2. It runs the scenario again once per recorded point, and this time the
   hook raises `KeyboardInterrupt` just before that instruction.  (An
   exception raised by a trace function propagates into the traced frame,
   and CPython removes the hook, so exactly one interrupt arrives.)
3. After each run the scenario checks its invariants (see the helpers
   below), and the harness checks the global ones: no thread left behind,
   no module-level lock of the library left held.

A scenario is a function taking an `Injector`.  It builds its objects, runs
the action to interrupt inside `with inject:` (which swallows the injected
interrupt only), then checks that the objects are still usable or cleanly
broken, and cleans up with bounded waits::

    def submit_to_idle_pool(inject: Injector) -> None:
        pool = WorkerPool(max_workers=1)
        try:
            with inject:
                pool.submit(len, "ab")
            check_pool(pool)
        finally:
            shutdown_within(pool)

`explore(scenario)` returns one `Finding` per point whose run failed; the
finding names the point, so `run_at(scenario, point)` replays it.

Limits: the interrupt lands in the main thread, in library code only (a
real Ctrl-C may also land inside stdlib code the library calls, such as
`Thread.join`), and after a call to a Python function even where that
function would have returned before the interpreter checked again.  Points
reached a different number of times in a rerun (waiting loops whose
iterations depend on timing) may not be reached; such points are skipped.
Finalizers (`__del__` and what it calls) are not interrupted: CPython drops
an exception raised there after printing it, a Ctrl-C included; for the
same reason automatic garbage collection (weakref callbacks) is paused
inside the interrupted block.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dis
import gc
import itertools
import linecache
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safethreads
from safethreads import _future, _thread_group, _worker_pool

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import CodeType, FrameType, TracebackType
    from typing import Self

    from safethreads import WorkerPool

__all__ = [
    "Finding",
    "Injector",
    "Point",
    "check_pool",
    "explore",
    "held_locks",
    "record",
    "run_at",
    "shutdown_within",
    "signal_points",
    "wait_for_threads",
    "with_exits",
]

LIBRARY_DIR = str(Path(safethreads.__file__).parent) + os.sep

# Generous bounds for a loaded machine; a failing point costs at most these.
TASK_SECONDS = 5.0
THREADS_SECONDS = 5.0
HANG_SECONDS = float(os.environ.get("INTERRUPTS_HANG_SECONDS", "20"))

TraceFunction = "Callable[[FrameType, str, Any], Any]"


@dataclass(frozen=True, order=True)
class Point:
    """An instruction where a real Ctrl-C can land, and which run of it."""

    filename: str
    lineno: int
    offset: int
    occurrence: int

    def __str__(self) -> str:
        """Show `_worker_pool.py:412@36#3`, with the source line."""
        source = linecache.getline(self.filename, self.lineno).strip()
        name = Path(self.filename).name
        return f"{name}:{self.lineno}@{self.offset}#{self.occurrence}  {source}"


class InjectedInterrupt(KeyboardInterrupt):
    """The `KeyboardInterrupt` the harness raises (a subclass, to tell it apart)."""


def with_exits(code: CodeType) -> frozenset[int]:
    """The offsets where a `with` block's normal exit calls `__exit__`.

    The same for the exit on an exception (`PUSH_EXC_INFO` then
    `WITH_EXCEPT_START`).  The tracer reports a line event there (the `with`
    line again), but it
    lies outside the region that guarantees `__exit__`: a trace function
    raising there would skip `__exit__`, which a real Ctrl-C cannot do (the
    interpreter checks for signals at no instruction of that sequence).
    Such events are not points.
    """
    exits = _WITH_EXITS.get(code)
    if exits is None:
        ops = list(dis.get_instructions(code))
        found = set()
        for i in range(len(ops) - 3):
            window = ops[i : i + 4]
            if all(
                op.opname == "LOAD_CONST" and op.argval is None for op in window[:3]
            ) and window[3].opname in {"CALL", "PRECALL"}:
                found.add(window[0].offset)  # the normal exit
                # A `return` inside the block keeps its value under the
                # exit's arguments: the line event is on that `SWAP`.
                if i and ops[i - 1].opname == "SWAP":
                    found.add(ops[i - 1].offset)
            if (
                window[0].opname == "PUSH_EXC_INFO"
                and window[1].opname == "WITH_EXCEPT_START"
            ):
                found.add(window[0].offset)  # the exit on an exception
        exits = _WITH_EXITS[code] = frozenset(found)
    return exits


_WITH_EXITS: dict[CodeType, frozenset[int]] = {}


# Where CPython checks for a pending signal ("the eval breaker"): after a
# call returns, after a backward jump (each loop iteration), and when a
# function starts or a generator resumes.  A real Ctrl-C raises its
# KeyboardInterrupt there and nowhere else.
_CHECKING_OPS = frozenset(
    {"CALL", "CALL_FUNCTION_EX", "CALL_KW", "JUMP_BACKWARD", "RESUME"}
)


def signal_points(code: CodeType) -> frozenset[int]:
    """The offsets of `code` where a real Ctrl-C may raise.

    That is, the instructions that follow one where the interpreter checks
    for signals; the trace hook raises just before such an instruction,
    which puts the interrupt in the same exception-handling region the real
    one would be in.  An offset inside a `with` exit sequence (see
    `with_exits`) is left out: no real signal is delivered between the
    block's end and its `__exit__` call.  So is one in another region than
    the instruction before it (`return call()` inside `try`/`finally` or
    `try`/`except`: the `finally` body follows the call, outside the
    `try`): the interpreter raises the real interrupt as part of that
    instruction, in its region, where the hook cannot raise it.
    """
    points = _SIGNAL_POINTS.get(code)
    if points is None:
        ops = list(dis.get_instructions(code))
        exits = with_exits(code)
        handler = _handler_of(code)
        points = frozenset(
            after.offset
            for before, after in itertools.pairwise(ops)
            if before.opname in _CHECKING_OPS
            and after.offset not in exits
            and handler(before.offset) == handler(after.offset)
        )
        _SIGNAL_POINTS[code] = points
    return points


_SIGNAL_POINTS: dict[CodeType, frozenset[int]] = {}


def _handler_of(code: CodeType) -> Callable[[int], tuple[int, int, bool] | None]:
    """Map an offset of `code` to the handler an exception there goes to."""
    # Not in typeshed's stubs; there on every CPython since 3.11.
    entries = dis.Bytecode(code).exception_entries  # type: ignore[attr-defined]

    def handler(offset: int) -> tuple[int, int, bool] | None:
        for entry in entries:
            if entry.start <= offset < entry.end:
                return entry.target, entry.depth, entry.lasti
        return None

    return handler


def _in_finalizer(frame: FrameType | None) -> bool:
    """Whether `frame` runs inside a `__del__` (the garbage collector's call).

    CPython prints an exception raised in a finalizer ("Exception ignored
    in") and drops it, so a Ctrl-C landing there is lost whatever the code
    does; the harness does not interrupt finalizers.
    """
    # A library finalizer and what it calls are library frames, so the walk
    # stops at the first frame outside the library: it runs at every call.
    while frame is not None and frame.f_code.co_filename.startswith(LIBRARY_DIR):
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


class _Tracer:
    """Records library signal points run by this thread; raises at one of them."""

    def __init__(self, target: Point | None) -> None:
        self.target = target
        self.points: list[Point] = []
        self.fired = False
        self._counts: collections.Counter[tuple[str, int, int]] = collections.Counter()

    def global_trace(self, frame: FrameType, event: str, _arg: object) -> Any:
        if (
            event == "call"
            and frame.f_code.co_filename.startswith(LIBRARY_DIR)
            and not _in_finalizer(frame)
        ):
            frame.f_trace_lines = False
            frame.f_trace_opcodes = True
            return self.local_trace
        return None

    def local_trace(self, frame: FrameType, event: str, _arg: object) -> Any:
        if event == "opcode" and frame.f_lasti in signal_points(frame.f_code):
            code = frame.f_code
            key = (code.co_filename, code.co_firstlineno, frame.f_lasti)
            self._counts[key] += 1
            point = Point(
                code.co_filename, frame.f_lineno or 0, frame.f_lasti, self._counts[key]
            )
            if self.target is None:
                self.points.append(point)
            elif point == self.target and not self.fired:
                self.fired = True
                msg = f"injected at {point}"
                raise InjectedInterrupt(msg)
        return self.local_trace


class Injector:
    """The `with` block around the action that an interrupt may hit.

    Recording mode (`target=None`) only records points.  Armed mode raises
    `InjectedInterrupt` at the target point; leaving the block swallows that
    interrupt (and only it), so the scenario goes on to its checks.
    """

    def __init__(self, target: Point | None = None) -> None:
        """Prepare to record (no target) or to interrupt at `target`."""
        self._tracer = _Tracer(target)
        self.interrupted = False
        self._old: Any = None
        self._gc_enabled = True

    @property
    def points(self) -> list[Point]:
        """The points recorded so far (recording mode)."""
        return self._tracer.points

    @property
    def reached(self) -> bool:
        """Whether the armed run reached its target point."""
        return self._tracer.fired

    def __enter__(self) -> Self:
        """Install the trace hook for the calling thread; pause automatic GC.

        A collection inside the block would run weakref callbacks in the
        middle of library code, where the hook could raise in them: CPython
        drops such an exception, as it does in a finalizer, and the hook's
        own allocations could start a collection while a library lock is
        held.  Scenarios collect explicitly where they check what it reports.
        """
        self._old = sys.gettrace()
        self._gc_enabled = gc.isenabled()
        gc.disable()
        sys.settrace(self._tracer.global_trace)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Remove the hook; swallow the injected interrupt, nothing else."""
        sys.settrace(self._old)
        if self._gc_enabled:
            gc.enable()
        if isinstance(exc, InjectedInterrupt):
            self.interrupted = True
            return True
        return False


Scenario = "Callable[[Injector], None]"


@dataclass
class Finding:
    """A point whose interrupted run broke an invariant."""

    scenario: str
    point: Point
    error: str

    def __str__(self) -> str:
        """One paragraph: where the interrupt landed and what broke."""
        return f"{self.scenario}: Ctrl-C at {self.point}\n    -> {self.error}"


@dataclass
class Exploration:
    """What `explore` did: the points tried and the findings."""

    scenario: str
    points: int = 0
    reached: int = 0
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> str:
        """A report to print: counts, then one paragraph per finding."""
        head = (
            f"{self.scenario}: {self.points} points, {self.reached} reached, "
            f"{len(self.findings)} failing"
        )
        lines = [head]
        lines.extend(str(f) for f in self.findings)
        return "\n".join(lines)


class ScenarioHung(Exception):  # noqa: N818 - it names what happened
    """Raised in the main thread by the watchdog when a scenario hangs."""


@contextlib.contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    """Interrupt a main thread stuck (e.g. on a lock left held) with `ScenarioHung`.

    A real SIGINT is sent to the main thread, so a blocking lock acquire
    returns (Python retries it after running the handler, which raises).
    """
    main = threading.main_thread()
    if threading.current_thread() is not main:
        yield
        return
    armed = True

    def on_sigint(_signum: int, _frame: object) -> None:
        if armed:
            msg = f"the scenario hung for {seconds} s (a lock left held?)"
            raise ScenarioHung(msg)

    old = signal.signal(signal.SIGINT, on_sigint)
    timer = threading.Timer(seconds, signal.pthread_kill, (main.ident, signal.SIGINT))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        armed = False
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, old)


def record(scenario: Callable[[Injector], None]) -> list[Point]:
    """Run `scenario` uninterrupted; return the library lines it ran."""
    inject = Injector()
    scenario(inject)
    return list(inject.points)


def run_at(scenario: Callable[[Injector], None], point: Point) -> tuple[bool, str]:
    """Run `scenario` with Ctrl-C at `point`; return (reached, error or "")."""
    baseline = set(threading.enumerate())
    inject = Injector(point)
    error = ""
    try:
        with _watchdog(HANG_SECONDS):
            # In a context of its own: an interrupt at the entry of a group's
            # __exit__ leaves the group's token current (no code can undo
            # it), and later runs would make their groups its children.
            contextvars.Context().run(scenario, inject)
    except BaseException as exc:
        if isinstance(exc, InjectedInterrupt):
            error = "the injected interrupt escaped the with block"
        else:
            frames = traceback.extract_tb(exc.__traceback__)
            ours = [f for f in frames if not f.filename.endswith("interrupts.py")]
            where = (ours or frames)[-1]
            error = (
                f"{type(exc).__name__}: {exc} "
                f"({Path(where.filename).name}:{where.lineno}: {where.line})"
            )
    leftover = wait_for_threads(baseline)
    if leftover and not error:
        error = f"threads still running after the scenario: {leftover}"
    locks = held_locks(*_MODULE_LOCK_OWNERS)
    if locks and not error:
        error = f"module-level locks left held: {locks}"
    return inject.reached, error


def explore(
    scenario: Callable[[Injector], None],
    *,
    name: str | None = None,
    max_findings: int = 3,
) -> Exploration:
    """Interrupt `scenario` at every point it runs; collect the failures.

    Stops after `max_findings` failing points: one defect often fails many
    neighbouring points, and each failing point may cost a timeout.
    """
    result = Exploration(name or scenario.__name__)
    # Every run collects garbage (the scenarios check what a collection
    # reports); frozen, the objects of the test session are not scanned
    # again each time, which in a full run would cost most of the time.
    gc.collect()
    gc.freeze()
    try:
        points = record(scenario)
        result.points = len(points)
        for point in points:
            reached, error = run_at(scenario, point)
            result.reached += reached
            if reached and error:
                result.findings.append(Finding(result.scenario, point, error))
                if len(result.findings) >= max_findings:
                    break
    finally:
        gc.unfreeze()
    return result


# --- invariants -------------------------------------------------------------------


class _Modules:
    """Holds the library's module-level locks as attributes, for `held_locks`."""

    def __init__(self) -> None:
        self.pools_lock = _worker_pool._pools_lock
        self.lazy_lock = _future._LAZY_LOCK
        self.numbers_lock = _thread_group._numbers_lock


_MODULE_LOCK_OWNERS = (_Modules(),)

_LOCK_TYPE = type(threading.Lock())
_RLOCK_TYPE = type(threading.RLock())


def _attributes(obj: object) -> Iterable[tuple[str, object]]:
    names: list[str] = []
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    names.extend(getattr(obj, "__dict__", {}))
    for name in names:
        try:
            yield name, object.__getattribute__(obj, name)
        except AttributeError:
            continue


def _is_held(lock: object) -> bool:
    if isinstance(lock, _LOCK_TYPE):
        return lock.locked()
    if isinstance(lock, _RLOCK_TYPE):
        if lock._is_owned():  # type: ignore[attr-defined]
            return True
        if lock.acquire(blocking=False):
            lock.release()
            return False
        return True
    if isinstance(lock, threading.Condition):
        return _is_held(lock._lock)  # type: ignore[attr-defined]
    return False


def held_locks(*objects: object, grace: float = 2.0) -> list[str]:
    """Name every lock attribute of `objects` still held after `grace` seconds.

    A lock left held by a defect stays held; one that another thread (a
    worker finishing its bookkeeping) holds for a moment is released well
    within `grace`, so only the first kind is reported.
    """
    deadline = time.monotonic() + grace
    while True:
        held = [
            f"{type(obj).__name__}.{name}"
            for obj in objects
            for name, value in _attributes(obj)
            if _is_held(value)
        ]
        if not held or time.monotonic() >= deadline:
            return held
        time.sleep(0.01)  # polling a condition until the deadline


def wait_for_threads(
    baseline: set[threading.Thread], seconds: float = THREADS_SECONDS
) -> list[str]:
    """Wait until only `baseline` threads are alive; name the others left."""
    deadline = time.monotonic() + seconds
    while True:
        extra = [t for t in threading.enumerate() if t not in baseline]
        if not extra:
            return []
        if time.monotonic() >= deadline:
            return [t.name for t in extra]
        extra[0].join(0.05)


def run_within(fn: Callable[[], object], seconds: float, what: str) -> None:
    """Run `fn` in a helper thread; fail if it does not return in time."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    helper = threading.Thread(target=target, name=f"harness: {what}", daemon=True)
    helper.start()
    helper.join(seconds)
    if helper.is_alive():
        msg = f"{what} did not return within {seconds} s"
        raise AssertionError(msg)
    if errors:
        raise errors[0]


def shutdown_within(pool: WorkerPool, seconds: float = TASK_SECONDS) -> None:
    """Shut `pool` down, cancelling queued work; fail if that hangs.

    A pool lock left held by a defect is released first (and reported), so
    that the workers can exit and the next test starts clean.
    """
    lock = pool._lock
    leaked = not lock.acquire(timeout=1.0)  # held for a second: left held
    lock.release()  # ours, or the one left held (a raw lock has no owner)
    run_within(
        lambda: pool.shutdown(wait=True, cancel_futures=True), seconds, "shutdown()"
    )
    assert not leaked, "the pool's lock was left held"


def check_pool(pool: WorkerPool, *, expect_usable: bool = True) -> None:
    """The pool's invariants hold, no lock is held, and it runs a new task.

    A pool that refuses the task with `RuntimeError` (shut down) or
    `BrokenWorkerPool` is cleanly broken, and passes; so does one that is
    full and says so with `PoolFull`.
    """
    held = held_locks(pool)
    assert not held, f"pool locks left held: {held}"
    pool._check()
    unstarted = [
        w.thread.name if w.thread else "?"
        for w in pool._workers
        if w.thread is None or w.thread.ident is None
    ]
    assert not unstarted, f"phantom workers: counted, never started: {unstarted}"
    dead = [
        w.thread.name
        for w in pool._workers
        if w.thread is not None and w.thread.ident is not None
        if not w.thread.is_alive()
    ]
    assert not dead, f"phantom workers: counted, thread dead: {dead}"
    if not expect_usable:
        return
    try:
        probe = pool.submit(int, "7")
    except (RuntimeError, safethreads.PoolFull):
        return
    try:
        value = probe.result(timeout=TASK_SECONDS)
    except TimeoutError:
        stats = pool.stats()
        msg = f"a task submitted afterwards never ran ({stats})"
        raise AssertionError(msg) from None
    assert value == 7


# --- a lighter entry point ------------------------------------------------------
# For tests that loop over k themselves and check their own invariants after
# each strike (the ResultThread and CancelToken tests), without a scenario.


def interrupt_at_line(k: int, action: Callable[[], object]) -> bool:
    """Run `action()`, raising `KeyboardInterrupt` at its k-th library line.

    Only lines of the library run by the calling thread count.  A line that
    opens a `with` block is skipped: the tracer reports it again when the
    block is left, at a point where no real signal is ever raised.

    Returns:
        Whether the interrupt was raised (`False`: `action` has fewer lines,
        so a loop over k is done).
    """
    count = 0
    struck = False

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count, struck
        del arg
        if event == "line" and not struck:
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
            if not line.lstrip().startswith("with "):
                count += 1
                if count == k:
                    struck = True
                    raise KeyboardInterrupt
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if not frame.f_code.co_filename.startswith(LIBRARY_DIR):
            return None
        return local(frame, event, arg) if event == "line" else local

    sys.settrace(tracer)
    try:
        action()
    except KeyboardInterrupt:
        if not struck:
            raise
    finally:
        sys.settrace(None)
    return struck
