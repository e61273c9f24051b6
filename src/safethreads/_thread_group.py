"""ThreadGroup: a `with` block that owns the threads started inside it.

The scope rule: a thread spawned in a group's block does not outlive the
block.  Leaving the block waits for every non-daemon member, gathers every
member failure into one `ExceptionGroup`, and, if anything went wrong (a
member failed with `fail_fast`, the body raised, Ctrl-C), cancels the group's
`CancelToken` first so that cooperative members stop early.

How the group learns what its members do:

- Members made by `spawn()` are `ResultThread`s running `_run_member`, which
  calls the user's function.  Each gets a done-hook, called in the member
  thread right after its outcome is stored, before the thread ends.  The
  hook records a failure under the group lock (and marks it observed, so the
  thread's unobserved-failure report stays silent: the group raises it
  instead), with `fail_fast` cancels the token, and then (whatever happened
  before) marks the member ended and wakes whoever waits.  Nothing that
  publishes an outcome depends on a step that can fail: notes are added
  after the failure is recorded, and a note that cannot be added is left out.
- A plain `threading.Thread` given to `add()` before it started gets its
  `run` wrapped the same way.  One that is already running can only be
  waited for: its exception goes to `threading.excepthook` as usual.
- Failures arriving after the block has ended (daemon members) are not the
  group's any more; they fall back to the thread's own reporting.

Bounded groups (`max_concurrency`): a member spawned while the limit is
reached is registered but not started; it waits in `_pending`, without a
thread of its own, and is started by the member whose end frees a slot.
Once the token is cancelled, every waiting member is started at once and
ends with `Cancelled` without calling its function.

Registration and start happen under the group lock, and a failure (or a
Ctrl-C) in between is undone: a member is either registered and started (or
pending), or not registered at all.  `Thread.start()` can raise
`KeyboardInterrupt` after the thread started (it waits for the thread to
signal that it runs); such a member is kept, so it is waited for.

Waiting: `join_all()`, `as_completed()` and the block exit park on a private
raw lock per wait (`_parked`), released by `_wake()` when a member ends or a
member starts waiting itself.  The waiter never blocks on a lock it shares:
a `KeyboardInterrupt` can land anywhere in the main thread, and one landing
in `threading.Condition.wait` while it re-acquires its lock leaves the
condition's lock in a wrong state (the free-threaded failures of issue 10).
The waits are timed slices besides, so a missed wake-up costs one slice, and
members the group cannot hook are noticed when they end.  The main thread
never blocks inside `Thread.join`: on CPython 3.11 and 3.12, a
`KeyboardInterrupt` that interrupts `join` marks a live thread as finished
(gh-90882); a member already known to be done is waited out by yielding.

A member that calls `join_all()` (or iterates `as_completed()`) is in
`_joining` while it waits, and such waiters skip each other: two members
waiting for the whole group would otherwise wait for each other forever.

Interpreter exit: the group, not the interpreter, waits for its non-daemon
members.  They are started as daemon threads (the flag is set back at once,
so `daemon` reads `False`) and kept in `_HELD` while they run; a
`threading` exit hook waits for the held ones, so the interpreter still
waits for a non-daemon member nobody else waits for.  When the group stops
waiting for a member (a second Ctrl-C, or `exit_timeout`), the member is
abandoned: dropped from `_HELD`, it no longer holds up the interpreter's
exit, like a daemon thread.  Python offers no other way to release a
running non-daemon thread on 3.13 and later.
"""

from __future__ import annotations

import _thread
import collections
import contextlib
import contextvars
import enum
import itertools
import operator
import os
import re
import signal
import threading
import time
import traceback
import weakref
from functools import partial
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Self, TypeVar, final

from . import _result_thread as _result_thread_module
from ._cancel import CancelToken
from ._errors import Cancelled
from ._observe import GroupProgress, current_frames, group_running, group_snapshot
from ._result_thread import ResultThread
from ._scope import add_note, note_unraised, raise_outcome, wait_counting_presses
from ._waiting import (
    _binding,
    check_callable,
    check_timeout,
    raise_if_any_cancelled,
    release_parked,
    tokens_in_force,
    wait_thread_end,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from types import FrameType, TracebackType

    from ._observe import RunningTask
    from ._stats import ThreadGroupStats


__all__ = ["ThreadGroup"]

R = TypeVar("R")
P = ParamSpec("P")
ThreadT = TypeVar("ThreadT", bound=threading.Thread)

# Longest single wait of a waiter, so that Ctrl-C is serviced and members
# the group cannot hook (threads already running when adopted) are noticed
# when they end.
_POLL: Final = 0.05


# Seconds a thread found in threading's `_limbo` gets to show it started
# (only after start() raised, on 3.11 and 3.12; see _has_started).
_START_GRACE: Final = 1.0

# The token of the group whose block (or member thread) the code runs in; a
# group created there makes its token a child of this one.
_CURRENT_TOKEN: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar(
    "safethreads_current_group_token", default=None
)

# Names that threading.Thread makes up; add() renames such threads.
_DEFAULT_THREAD_NAME: Final = re.compile(r"Thread-\d+( \(.*\))?")

_numbers_lock = threading.Lock()  # guards _numbers
_numbers = itertools.count(1)


# Frames of thread start-up plumbing, left out of stuck-thread reports.
_PLUMBING_FILES: Final = frozenset(
    {threading.__file__, _result_thread_module.__file__, __file__}
)

# Non-daemon members running as daemon threads, that the interpreter's exit
# waits for (see the module notes).  A set is safe to add to and discard
# from in several threads at once, with or without a GIL; it is only ever
# copied whole.
_HELD: set[threading.Thread] = set()

# Whether non-daemon members can be started as daemon threads here (a
# subinterpreter may refuse daemon threads).
_daemon_threads_allowed: Callable[[], bool] = getattr(
    threading, "_daemon_threads_allowed", lambda: True
)


def _wait_for_held_members() -> None:
    """At interpreter exit, wait for the non-daemon members still held."""
    while _HELD:
        for t in _HELD.copy():
            if _has_started(t):
                t.join()
            _HELD.discard(t)


# Groups whose block is open, so that a fork child can let go of the
# parent's members (see ThreadGroup._after_fork).  Guarded by _open_lock.
_open_lock = threading.Lock()
_OPEN: weakref.WeakSet[ThreadGroup] = weakref.WeakSet()


def _forget_held_members() -> None:
    """In a fork child: the parent's threads do not exist here."""
    global _open_lock  # noqa: PLW0603 - a parent thread may have held it
    _HELD.clear()
    _open_lock = threading.Lock()
    for group in list(_OPEN):
        group._after_fork()


with contextlib.suppress(AttributeError, RuntimeError):  # shutting down already
    threading._register_atexit(_wait_for_held_members)  # type: ignore[attr-defined]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_held_members)


def _abandon(threads: list[threading.Thread]) -> None:
    """Let `threads` go: the interpreter's exit no longer waits for them."""
    for t in threads:
        _HELD.discard(t)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """In the main thread, hold a Ctrl-C back until the block is done.

    The group's bookkeeping (registering and starting a member, ending the
    block) must not be cut in the middle, and `Thread.start()` must not be
    interrupted while it waits on a `threading.Condition` (module notes).
    Only Python's own SIGINT handler is replaced, for the duration; a
    program with a handler of its own keeps it.
    """
    if (
        _thread.get_ident() != threading.main_thread().ident
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    pressed: list[int] = []

    def hold(signum: int, _: object) -> None:
        pressed.append(signum)

    try:
        signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main interpreter: signals are not ours
        yield
        return
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is hold:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if pressed:
            raise KeyboardInterrupt


def _has_started(t: threading.Thread) -> bool:
    """Whether `t.start()` got as far as starting the thread.

    Asked when `start()` raised, which a Ctrl-C can make it do after it
    started the thread (it then waits for the thread to set `_started`), or
    before.  From 3.13 the thread's handle knows; before, `start()` puts the
    thread in `_limbo` just before starting it, and a thread that started
    sets `_started` at once, so a thread in `_limbo` is given a moment.
    """
    if t._started.is_set():  # type: ignore[attr-defined]
        return True
    handle = getattr(t, "_handle", None)
    if handle is not None:
        return bool(handle.ident)
    if t not in threading._limbo:  # type: ignore[attr-defined]
        return False
    deadline = time.monotonic() + _START_GRACE
    while time.monotonic() < deadline:
        if t._started.is_set():  # type: ignore[attr-defined]
            return True
        time.sleep(0.001)
    return False


def _forget_unstarted(t: threading.Thread) -> None:
    """Take a thread whose start() was interrupted out of threading's books."""
    with threading._active_limbo_lock:  # type: ignore[attr-defined]
        threading._limbo.pop(t, None)  # type: ignore[attr-defined]


def _member_stack(frame: FrameType) -> str:
    """The stack of a member from its own code on, without start-up frames."""
    frames = traceback.extract_stack(frame)
    for i in range(len(frames) - 1, -1, -1):
        if frames[i].filename == __file__ and frames[i].name == "_run_member":
            own = frames[i + 1 :]
            if own:
                return "".join(traceback.StackSummary.from_list(own).format())
            # The member's function has no Python frame: it is C code.
            fn = frame.f_locals.get("fn")
            return f"  in {fn!r} (C code, no Python frame)\n"
    start = 0
    while start < len(frames) - 1 and frames[start].filename in _PLUMBING_FILES:
        start += 1
    return "".join(traceback.StackSummary.from_list(frames[start:]).format())


def _still_running_note(running: list[threading.Thread]) -> str | None:
    """The members left running, for a note on a propagating exception."""
    if not running:
        return None
    return "still running: " + ", ".join(repr(t.name) for t in running)


def _next_group_name() -> str:
    with _numbers_lock:
        return f"ThreadGroup-{next(_numbers)}"


def _in_order(
    indexed: list[tuple[int, BaseException]], callback_errors: list[BaseException]
) -> list[BaseException]:
    """The failures in the group's order: members by spawn index, then callbacks."""
    members = sorted(indexed, key=operator.itemgetter(0))
    return [e for _, e in members] + callback_errors


class _State(enum.Enum):
    NEW = "new"  # created, block not entered: nothing may be spawned yet
    OPEN = "open"  # inside the block
    CLOSING = "closing"  # the owner waits at the block's end; members may spawn
    CLOSED = "closed"  # the block has ended; spawning is refused


@final
class ThreadGroup:
    """A scope for threads: leaving the block waits for them and raises their errors.

    ```python
    from safethreads import ThreadGroup


    def square(x: int) -> int:
        return x * x


    with ThreadGroup("squares") as g:
        threads = [g.spawn(square, i) for i in range(4)]
    # Every member has finished here.
    assert [t.result(timeout=0) for t in threads] == [0, 1, 4, 9]
    assert g.results() == [0, 1, 4, 9]
    assert threads[0].name == "squares-0"
    ```

    Rules:

    - Scope: leaving the block waits for every non-daemon member, including
      members spawned by members while the owner waits.  Daemon members are
      not waited for (unless `wait_for_daemons=True`); the failures of those
      that have already finished are raised with the others.
    - Errors: member failures are gathered, in spawn order, into an
      `ExceptionGroup` (a `BaseExceptionGroup` if one is not an
      `Exception`), each carrying a note naming its thread.  If the body
      raised, the group cancels its token, waits, and raises a group holding
      the body's exception first, then the members' (as `asyncio.TaskGroup`
      does).  `KeyboardInterrupt` and `SystemExit` from the body propagate
      as they are, after the wait, with a note listing member failures.
    - Cancellation: `token` is the group's `CancelToken`; pass it to members
      that should stop early.  `cancel()` cancels it; with `fail_fast` (the
      default) so does the first member failure.  A member that ends with
      `Cancelled` once the token is cancelled has not failed, and a body
      that raises `Cancelled` for the group's own cancellation leaves the
      block quietly.
    - Bounded concurrency: with `max_concurrency=N`, at most N members made
      by `spawn()` run at once; the others wait, without a thread, and start
      in spawn order as running members end.  Once the token is cancelled,
      waiting members end with `Cancelled` without calling their function.
    - Ctrl-C in the body or during the final wait cancels the token and
      keeps waiting; a second Ctrl-C stops waiting and abandons the members
      still running.  `KeyboardInterrupt` propagates either way.
    - `exit_timeout` bounds the final wait: when it expires, the token is
      cancelled, the members still running are abandoned and `TimeoutError`
      is raised naming each with its current stack.
    - Abandoned members are not stopped (Python cannot stop a thread), but
      they no longer hold up the interpreter's exit, as if they were daemon
      threads: if one is still running when the program ends, it is stopped
      where it is, without running its `finally` blocks.
    - Progress: `progress(done, total)` is called by the thread leaving the
      block, while it waits, each time members have finished since the
      last call (once more at the end): `done` counts members finished in
      any way, `total` the members so far.  Never in a member or with a
      lock held, so calls never overlap and `done` never goes down.
      Members that finish while the body runs are counted in the first
      call.  If it raises, the group is cancelled as for an error in the
      body and the exception is raised in the group, after the body's.
    - Who may spawn: the thread that entered the block, and the group's own
      members, while the block runs or the owner waits at its end.
    - Nesting: a group created inside another group's block, or inside one
      of its members, gets a child of that group's token, so cancelling the
      outer group reaches the inner one.  Pass `token=` to choose the parent
      yourself (`token=CancelToken()` detaches the group).

    Thread safety: `spawn()`, `add()`, `cancel()`, `join_all()`,
    `as_completed()` and the properties may be called from several threads
    at once; `members` is a snapshot.

    Args:
        name: The group's name; members are named `"{name}-{index}"`.  By
            default `"ThreadGroup-N"`.
        daemon: Whether members made by `spawn()` are daemon threads.
        fail_fast: Whether the first member failure cancels `token`.
        exit_timeout: Seconds the block's end waits for members at most;
            `None` waits as long as it takes.
        token: The parent of the group's token; by default the token of the
            enclosing group, if any.
        max_concurrency: How many members made by `spawn()` may run at once;
            `None` for no limit.  Members given to `add()` do not count.
        wait_for_daemons: Whether the block's end waits for daemon members
            too, under the same `exit_timeout` as the others.
        progress: Called with `(done, total)` as members finish while the
            block's end waits, or `None`.

    Raises:
        ValueError: if `exit_timeout` is negative or NaN, or if
            `max_concurrency` is less than 1.
        TypeError: if `exit_timeout` is not `None` or a number, if
            `max_concurrency` is not `None` or an `int`, or if `progress`
            is not callable.
    """

    __slots__ = (
        "__weakref__",
        "_callback_errors",
        "_completed",
        "_context_reset",
        "_daemon",
        "_daemons",
        "_ended",
        "_exit_timeout",
        "_fail_fast",
        "_failed_count",
        "_failures",
        "_hook",
        "_index",
        "_joining",
        "_limit",
        "_lock",
        "_members",
        "_name",
        "_owner",
        "_parent",
        "_parked",
        "_pending",
        "_progress",
        "_result_members",
        "_running",
        "_skipped",
        "_spawned",
        "_state",
        "_token",
        "_wait_for_daemons",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        daemon: bool = False,
        fail_fast: bool = True,
        exit_timeout: float | None = None,
        token: CancelToken | None = None,
        max_concurrency: int | None = None,
        wait_for_daemons: bool = False,
        progress: Callable[[int, int | None], object] | None = None,
    ) -> None:
        """Create a group; enter it with `with` to spawn members."""
        check_timeout(exit_timeout, "exit_timeout")
        if progress is not None:
            check_callable(progress, "progress")
        if exit_timeout is not None and exit_timeout < 0:
            msg = f"exit_timeout must be None or at least 0, not {exit_timeout!r}"
            raise ValueError(msg)
        if max_concurrency is not None:
            if isinstance(max_concurrency, bool) or not isinstance(
                max_concurrency, int
            ):
                msg = (
                    "max_concurrency must be None or an int, "
                    f"not {type(max_concurrency).__name__}"
                )
                raise TypeError(msg)
            if max_concurrency < 1:
                msg = (
                    f"max_concurrency must be None or at least 1, not {max_concurrency}"
                )
                raise ValueError(msg)
        self._name = _next_group_name() if name is None else name
        self._daemon = daemon
        self._fail_fast = fail_fast
        self._exit_timeout = exit_timeout
        self._limit = max_concurrency
        self._wait_for_daemons = wait_for_daemons
        parent = _CURRENT_TOKEN.get() if token is None else token
        self._parent = parent
        self._token = CancelToken() if parent is None else parent.child()
        # Guards _state, _owner, _members, _index, _daemons, _failures,
        # _callback_errors, _parked, _joining, _pending, _running, _spawned,
        # _result_members and _skipped.
        self._lock = threading.Lock()
        self._state = _State.NEW
        self._owner: threading.Thread | None = None
        self._members: list[threading.Thread] = []
        self._index: dict[threading.Thread, int] = {}
        # Members created daemon; read instead of Thread.daemon, which a
        # non-daemon member reads as True while it starts (module notes).
        self._daemons: set[threading.Thread] = set()
        # Members whose outcome is stored, as a set and in completion order.
        # Added to without the lock (a set or list is safe to add to from
        # several threads, with or without a GIL), so that a member's success
        # costs the group no lock round-trip.
        self._ended: set[threading.Thread] = set()
        self._completed: list[threading.Thread] = []
        self._parked: list[_thread.LockType] = []  # one raw lock per waiter
        self._joining: set[threading.Thread] = set()  # members in join_all()
        # Bounded groups: members made by spawn() (which count against the
        # limit), how many of them have started and not ended, those waiting
        # for a slot, and those started after cancellation, which must not
        # call their function.
        self._spawned: set[threading.Thread] = set()
        self._result_members = 0  # members that are ResultThreads
        self._running = 0
        self._pending: collections.deque[ResultThread[Any]] = collections.deque()
        self._skipped: set[threading.Thread] = set()
        self._failures: list[tuple[int, BaseException]] = []
        self._failed_count = 0  # failures taken, for stats(); kept after close
        self._callback_errors: list[BaseException] = []
        self._context_reset: contextvars.Token[CancelToken | None] | None = None
        self._hook = self._result_thread_done  # made once, installed per member
        self._progress = None if progress is None else GroupProgress(progress)

    # --- properties -----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The group's name, the prefix of its members' names."""
        return self._name

    @property
    def token(self) -> CancelToken:
        """The group's `CancelToken`; pass it to members that should stop early."""
        return self._token

    @property
    def members(self) -> tuple[threading.Thread, ...]:
        """The members in spawn order (a snapshot), waiting ones included."""
        with self._lock:
            return tuple(self._members)

    def stats(self) -> ThreadGroupStats:
        """Return a snapshot of the members: pending, running, finished, failed.

        Taken under the group's lock, so the counts add up:
        `members == pending + running + finished`.  A snapshot: it may be
        stale by the time it returns.

        Returns:
            A frozen `ThreadGroupStats`.
        """
        from ._stats import ThreadGroupStats  # noqa: PLC0415 - slow to import

        members, pending, finished, failed, running = group_snapshot(self)
        return ThreadGroupStats(
            members=members,
            pending=pending,
            running=len(running),
            finished=finished,
            failed=failed,
        )

    def running(self) -> list[RunningTask]:
        """Return the members running now, each with its current stack.

        Each `RunningTask` names the member's function and thread and holds
        its stack (from `sys._current_frames()`, from the member's own code
        on).  `started_at` and `elapsed` are `None`: a group does not time
        its members.  A snapshot: a member may have finished meanwhile.

        Returns:
            The running members, in spawn order.
        """
        return group_running(self)

    def __repr__(self) -> str:
        """Show the name, the state and the number of members."""
        with self._lock:
            n = len(self._members)
            state = self._state.value
        return f"<ThreadGroup {self._name!r} {state} members={n}>"

    # --- the block ------------------------------------------------------------------

    def __enter__(self) -> Self:
        """Open the block; the calling thread becomes the group's owner.

        Raises:
            RuntimeError: if the group was entered before.
        """
        owner = threading.current_thread()  # a call: a Ctrl-C may land here
        with self._lock:
            if self._state is not _State.NEW:
                msg = (
                    f"group {self._name!r} was already entered; "
                    "create a new ThreadGroup for each with block"
                )
                raise RuntimeError(msg)
            self._owner, self._state = owner, _State.OPEN
        if self._limit is not None:
            # Waiting members end at once, with Cancelled, on cancellation.
            self._token.add_callback(self._start_pending)
        with _open_lock:
            _OPEN.add(self)
        self._context_reset = _CURRENT_TOKEN.set(self._token)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Wait for the members, then raise what went wrong.

        Returns:
            `True` (the exception is swallowed) only when the body raised
            `Cancelled` for the group's own cancellation and nothing else
            went wrong.  A `Cancelled` caused by a parent token propagates
            as it is.

        Raises:
            BaseExceptionGroup: holding the body's exception (if any) then
                the member failures, in spawn order.  An `ExceptionGroup`
                when all of them are `Exception`s.
            TimeoutError: if `exit_timeout` expired with members still
                running (inside the group above if there were also errors).
            KeyboardInterrupt: on Ctrl-C, after the wait (or at once on a
                second Ctrl-C).
        """
        # What closing the block takes from the group (member failures by
        # spawn index, cancel callbacks' errors), seen by the last handler
        # below wherever a Ctrl-C cuts the closing.  No call: a Ctrl-C can
        # land here only at entry, as anywhere in the method.
        indexed: list[tuple[int, BaseException]] = []
        callback_errors: list[BaseException] = []
        # A Ctrl-C landing as the wait starts or returns is outside its count
        # of presses.  Inline, not a helper: a signal at a helper's entry
        # would escape this handler.
        try:
            interrupt, stuck, body_cancelled = self._wait_at_exit(exc)
        except KeyboardInterrupt as ki:
            if isinstance(exc, KeyboardInterrupt):  # the body's was the first
                self._restore_context()  # the wait may not have done it
                interrupt, stuck, body_cancelled = exc, self._still_running(), False
            else:  # a first press
                interrupt, stuck, body_cancelled = self._wait_at_exit(exc, ki)
        try:
            if self._progress is not None and interrupt is None:
                self._progress.report(self)  # the last call, once every member is done
            _abandon(stuck)
            timeout_error = None
            if stuck and interrupt is None:
                # Before deferring Ctrl-C: the token's callbacks are user code.
                self._cancel_quietly(f"group {self._name!r} exceeded its exit_timeout")
                timeout_error = self._stuck_error(stuck)
            with _interrupts_deferred():
                return self._finish(
                    exc,
                    body_cancelled,
                    interrupt=interrupt,
                    stuck=stuck,
                    timeout_error=timeout_error,
                    taken=(indexed, callback_errors),
                )
        except KeyboardInterrupt as ki:
            if ki is not interrupt:
                # A Ctrl-C after the wait (a program's own SIGINT handler is
                # not held back): close the block, again if the press cut the
                # closing short, and tell what it could not raise.
                self._close(indexed, callback_errors)
                failures = _in_order(indexed, callback_errors)
                if exc is not None and not body_cancelled and exc is not interrupt:
                    failures.insert(0, exc)
                note_unraised(ki, self._name, failures, _still_running_note(stuck))
            raise

    def _finish(
        self,
        exc: BaseException | None,
        body_cancelled: bool,
        *,
        interrupt: BaseException | None,
        stuck: list[threading.Thread],
        timeout_error: TimeoutError | None,
        taken: tuple[list[tuple[int, BaseException]], list[BaseException]],
    ) -> bool:
        """End the block after the wait: close it and raise what went wrong.

        `taken` receives the failures as the block closes (see `_close`).
        """
        self._close(*taken)
        raise_outcome(
            "thread group",
            self._name,
            exc,
            body_cancelled=body_cancelled,
            propagating=interrupt,
            progress_error=None if self._progress is None else self._progress.error,
            timeout_error=timeout_error,
            unfinished=_still_running_note(stuck),
            failures=_in_order(*taken),
        )
        # Swallow the group's own cancellation; let a parent's propagate, so
        # that the enclosing group sees Cancelled and not a failure.
        return body_cancelled and self._own_cancellation()

    def _restore_context(self) -> None:
        """Undo what __enter__ did to the current context."""
        reset = self._context_reset
        if reset is not None:
            # Exited in another context (a generator, say): nothing to
            # restore.  Reset before forgetting, so that a Ctrl-C in between
            # leaves it to the next try (RuntimeError: already reset).
            with contextlib.suppress(ValueError, RuntimeError):
                _CURRENT_TOKEN.reset(reset)
            self._context_reset = None

    def _close(
        self,
        indexed: list[tuple[int, BaseException]],
        callback_errors: list[BaseException],
    ) -> None:
        """End the block; move the failures gathered into the lists given.

        `indexed` receives the member failures with their spawn index,
        `callback_errors` the errors of cancel callbacks.  Safe to call again
        when a Ctrl-C cut it short: each failure is then either in the lists
        or still on the group, never in both.
        """
        with self._lock:
            self._state = _State.CLOSED
            # No call between extending a list and emptying the group's: a
            # Ctrl-C lands before both or after both.
            indexed += self._failures
            self._failures = []
            callback_errors += self._callback_errors
            self._callback_errors = []
            everyone_done = not self._pending and not any(
                t.is_alive() for t in self._members
            )
        with _open_lock:
            _OPEN.discard(self)
        if everyone_done:
            self._token.close()  # nothing left to cancel: unlink from the parent

    def _after_fork(self) -> None:
        """In a fork child: the members are the parent's, except the caller.

        The child does not wait for them: those that ran are gone, and those
        waiting for a slot are started by the parent, not here (the child
        would run them a second time).  The lock may have been held by a
        parent thread: it is replaced.
        """
        self._lock = threading.Lock()
        self._parked = []
        me = threading.current_thread()
        self._pending.clear()
        self._running = int(me in self._spawned and me not in self._ended)
        for t in self._members:
            if t is not me and t not in self._ended:
                self._ended.add(t)
                self._completed.append(t)

    def _own_cancellation(self) -> bool:
        """Whether the token was cancelled here, not by its parent."""
        parent = self._parent
        return self._token.cancelled and (parent is None or not parent.cancelled)

    def _wait_at_exit(
        self, exc: BaseException | None, pressed: KeyboardInterrupt | None = None
    ) -> tuple[BaseException | None, list[threading.Thread], bool]:
        """Close the body, cancel if it failed, wait for the members.

        Everything from closing the body on is inside the shared loop that
        counts Ctrl-C presses: a Ctrl-C landing before the wait has started
        is a first press, and the members are still waited for.

        Args:
            exc: What the body raised, if anything.
            pressed: A first Ctrl-C that came after the body, if any.

        Returns:
            The exception to propagate (a `KeyboardInterrupt`, or what
            stopped the wait), the members still running, and whether the
            body was stopped by the token's cancellation (not a failure).
        """
        # Nothing before the shared loop calls anything: constants, a closure.
        prepared = False
        body_cancelled = False
        reason: str | None = None
        deadline: float | None = None

        def wait(cancel: bool, stopped: BaseException | None) -> list[threading.Thread]:
            nonlocal prepared, body_cancelled, reason, deadline
            if not prepared:
                body_cancelled, reason, deadline = self._begin_exit(exc)
                prepared = True
            if stopped is not None:
                if self._progress is not None:
                    self._progress.callback = None  # it may have raised it
                reason = (
                    f"the end of the block of group {self._name!r} was stopped "
                    f"by {type(stopped).__name__}"
                )
            # Cancelling inside the loop: a Ctrl-C while the token's
            # callbacks run counts as a press too.
            pending, reason = reason, None
            self._cancel_at_exit(pending, interrupted=cancel)
            return self._wait_members(
                deadline, include_daemon=self._wait_for_daemons, report=self._progress
            )

        interrupt, running = wait_counting_presses(
            exc if pressed is None else pressed, wait, self._still_running
        )
        return interrupt, running, body_cancelled

    def _cancel_at_exit(self, reason: str | None, *, interrupted: bool) -> None:
        """Cancel the token for a failed body or a Ctrl-C; start waiting members."""
        if reason is not None:
            self._cancel_quietly(reason)
        if interrupted:
            self._cancel_quietly(f"group {self._name!r} was interrupted")
        if self._token.cancelled:
            # Again here: a Ctrl-C may have cut the token's callback short.
            self._start_pending()

    def _still_running(self) -> list[threading.Thread]:
        """The members the end of the block would wait for that still run."""
        with self._lock:
            self._state = _State.CLOSING
            members = list(self._members)
            daemons = set(self._daemons)
        everyone = self._wait_for_daemons
        return [t for t in members if t.is_alive() and (everyone or t not in daemons)]

    def _begin_exit(
        self, exc: BaseException | None
    ) -> tuple[bool, str | None, float | None]:
        """Close the body: restore the context, stop admitting the owner's spawns.

        Returns:
            Whether the body was stopped by the token's cancellation, the
            reason to cancel with if the body failed, and the deadline of
            the wait.
        """
        self._restore_context()
        # A body stopped by the token's cancellation has not failed.
        body_cancelled = isinstance(exc, Cancelled) and self._token.cancelled
        reason = None
        if exc is not None and not body_cancelled:
            reason = f"the body of group {self._name!r} raised {type(exc).__name__}"
        with self._lock:
            self._state = _State.CLOSING
        timeout = self._exit_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        return body_cancelled, reason, deadline

    def _stuck_error(self, stuck: list[threading.Thread]) -> TimeoutError:
        """Build the error naming each stuck member and where it is."""
        frames = current_frames()
        parts = [
            (
                f"group {self._name!r} did not finish within exit_timeout="
                f"{self._exit_timeout} s: {len(stuck)} member(s) still running, "
                "cancelled through the group token; make them check the token "
                "or raise exit_timeout"
            )
        ]
        for t in stuck:
            frame = frames.get(t.ident) if t.ident is not None else None
            if frame is None:
                where = "  (it ended while the report was being made)\n"
            else:
                where = _member_stack(frame)
            parts.append(f"thread {t.name!r} is stuck at:\n{where.rstrip()}")
        del frames
        return TimeoutError("\n".join(parts))

    # --- spawning -------------------------------------------------------------------

    def spawn(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> ResultThread[R]:
        """Start a member thread running `fn(*args, **kwargs)`.

        The member is a `ResultThread` named `"{group name}-{index}"`, a
        daemon if the group was created with `daemon=True`, running in a
        copy of the caller's `contextvars` context.  Every keyword goes to
        `fn`; use `spawn_named()` to choose the member's name.

        In a group with `max_concurrency` that has reached its limit, the
        member is returned before it starts: it waits for a slot.  Until it
        starts, its `result()` raises `RuntimeError`; wait for it with
        `join_all()` or `as_completed()`, or after the block.

        Args:
            fn: The callable the member runs.
            *args: Positional arguments for `fn`.
            **kwargs: Keyword arguments for `fn`.

        Returns:
            The member, started unless it waits for a slot.

        Raises:
            RuntimeError: if the group's block has not been entered or has
                ended, or if the calling thread is neither the group's owner
                nor one of its members.
            TypeError: if `fn` is not callable.
        """
        check_callable(fn, "fn")
        return self._spawn(None, fn, args, kwargs)

    def spawn_named(
        self, name: str, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> ResultThread[R]:
        """Like `spawn()`, naming the member `name`.

        The name is the thread's name, used in the notes on its failures and
        in reports of stuck members.  It is positional-only, so `fn` may take
        a `name` keyword of its own:

        ```python
        from safethreads import ThreadGroup


        def greet(name: str) -> str:
            return f"hello {name}"


        with ThreadGroup() as g:
            t = g.spawn_named("greeter", greet, name="Ada")
        assert (t.name, t.result(timeout=0)) == ("greeter", "hello Ada")
        ```

        Args:
            name: The member's thread name.
            fn: The callable the member runs.
            *args: Positional arguments for `fn`.
            **kwargs: Keyword arguments for `fn`.

        Returns:
            The member, started unless it waits for a slot.

        Raises:
            RuntimeError: as for `spawn()`.
            TypeError: if `name` is not a `str` or `fn` is not callable.
        """
        given: object = name  # checked at run time whatever the annotation says
        if not isinstance(given, str):
            msg = f"name must be a str, not {type(given).__name__}"
            raise TypeError(msg)
        check_callable(fn, "fn")
        return self._spawn(name, fn, args, kwargs)

    def _spawn(
        self,
        name: str | None,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> ResultThread[R]:
        # No _interrupts_deferred() here: it costs two system calls, and the
        # steps below are undone if a Ctrl-C cuts them short.
        with self._lock:
            index = self._admit("spawn")
            limit = self._limit
            full = limit is not None and self._running >= limit
            wait = full and not self._token.cancelled
            # A waiting member runs in the context of its spawner, not of the
            # member whose end starts it.
            context = contextvars.copy_context() if wait else None
            thread: ResultThread[R] = ResultThread(
                target=self._run_member,
                args=(fn, args, kwargs, context),
                name=f"{self._name}-{index}" if name is None else name,
                daemon=self._daemon,
            )
            # Not started yet, so no lock is needed to install the hook.
            thread._done_hook = self._hook
            thread._bound_token = self._token  # its waits are cancellable
            counted = False
            try:
                self._register(thread, index)
                if limit is not None:
                    self._spawned.add(thread)
                if wait:
                    self._pending.append(thread)
                else:
                    if limit is not None:
                        self._running += 1
                        counted = True
                    if full:  # and cancelled: it would wait for nothing
                        self._skipped.add(thread)
                    self._start_member(thread)
            except BaseException:
                self._undo_spawn(thread, index, counted=counted)
                raise
        return thread

    def _undo_spawn(
        self, thread: threading.Thread, index: int, *, counted: bool = False
    ) -> None:
        """Forget a member whose spawn failed before it started (lock held).

        A member that started (`start()` raised after starting it, as a
        Ctrl-C can make it do) or waits for a slot is kept.
        """
        if (self._pending and self._pending[-1] is thread) or _has_started(thread):
            return
        _forget_unstarted(thread)
        if len(self._members) > index and self._members[index] is thread:
            del self._members[index]
            self._index.pop(thread, None)
            if isinstance(thread, ResultThread):
                self._result_members -= 1
        self._daemons.discard(thread)
        self._spawned.discard(thread)
        self._skipped.discard(thread)
        if counted:
            self._running -= 1

    def _register(self, thread: threading.Thread, index: int) -> None:
        """Record `thread` as member number `index` (lock held)."""
        self._members.append(thread)
        if isinstance(thread, ResultThread):
            self._result_members += 1
        self._index[thread] = index
        if thread.daemon:
            self._daemons.add(thread)

    def _start_member(self, thread: threading.Thread) -> None:
        """Start a registered member (lock held); see the module notes on exit."""
        held = thread not in self._daemons and _daemon_threads_allowed()
        if held:
            _HELD.add(thread)
            thread._daemonic = True  # type: ignore[attr-defined]
        try:
            thread.start()
        except RuntimeError as error:
            if held and not _has_started(thread):
                _HELD.discard(thread)
            interrupt = error.__context__
            if isinstance(interrupt, KeyboardInterrupt) and _has_started(thread):
                # Ctrl-C hit threading.Condition.wait inside start() as it took
                # its lock back, and the wait then released a lock it did not
                # hold: the Ctrl-C is what happened.
                raise interrupt from None
            raise
        except BaseException:
            if held and not _has_started(thread):
                _HELD.discard(thread)
            raise
        finally:
            if held:
                thread._daemonic = False  # type: ignore[attr-defined]

    def _run_member(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        context: contextvars.Context | None,
    ) -> R:
        """The target of every member made by `spawn()`: run `fn` in the member."""
        me = threading.current_thread()
        if me in self._skipped:
            # It waited for a slot and the group was cancelled meanwhile.
            raise Cancelled(self._token.reason)
        if context is None:
            return fn(*args, **kwargs)
        return context.run(fn, *args, **kwargs)

    def _start_pending(self) -> None:
        """Start waiting members while slots are free; all of them once cancelled."""
        limit = self._limit
        if limit is None:
            return
        failed: list[tuple[ResultThread[Any], Exception]] = []
        with _interrupts_deferred(), self._lock:
            while self._pending:
                cancelled = self._token.cancelled
                if not cancelled and self._running >= limit:
                    break
                self._start_next_pending(cancelled=cancelled, failed=failed)
        for thread, error in failed:  # e.g. "can't start new thread"
            try:
                if self._member_failed(thread, error):
                    thread._observe()
            finally:
                self._member_ended(thread)

    def _start_next_pending(
        self,
        *,
        cancelled: bool,
        failed: list[tuple[ResultThread[Any], Exception]],
    ) -> None:
        """Start the first waiting member (lock held); collect a failed start."""
        thread = self._pending.popleft()
        self._running += 1
        if cancelled:
            self._skipped.add(thread)
        try:
            self._start_member(thread)
        except Exception as error:
            if _has_started(thread):
                raise
            _forget_unstarted(thread)
            failed.append((thread, error))  # it becomes the member's failure
        except BaseException:
            if not _has_started(thread):  # a Ctrl-C: keep it waiting
                _forget_unstarted(thread)
                self._pending.appendleft(thread)
                self._running -= 1
                self._skipped.discard(thread)
            raise

    def add(self, thread: ThreadT) -> ThreadT:
        """Adopt `thread` as a member, starting it if it has not started.

        A thread that has not started and still has the name
        `threading.Thread` made up for it is renamed `"{group name}-{index}"`.
        Its own daemon flag is kept.  The group learns of failures of a
        `ResultThread` in every case, and of a plain `threading.Thread` only
        if it has not started yet (its `run` is then wrapped); an exception
        in a plain thread that was already running goes to
        `threading.excepthook` as usual, and the group only waits for it.
        Adopted threads start at once: `max_concurrency` does not apply.

        Args:
            thread: The thread to adopt.

        Returns:
            `thread` itself.

        Raises:
            RuntimeError: if spawning is not allowed now (see `spawn()`), if
                `thread` is already a member, belongs to another group, or is
                the calling thread.
        """
        hooked = True
        with _interrupts_deferred(), self._lock:
            index = self._admit("add")
            self._check_adoptable(thread)
            started = thread.ident is not None
            if not started and _DEFAULT_THREAD_NAME.fullmatch(thread.name):
                thread.name = f"{self._name}-{index}"
            try:
                if isinstance(thread, ResultThread):
                    hooked = thread._set_done_hook(self._hook)
                    if not started:
                        thread._bound_token = self._token
                elif not started:
                    self._wrap_run(thread)
                self._register(thread, index)
                if not started:
                    self._start_member(thread)
            except BaseException:
                self._undo_spawn(thread, index)
                if isinstance(thread, ResultThread) and not _has_started(thread):
                    thread._set_done_hook(None)  # type: ignore[arg-type]
                raise
        if not hooked:  # it finished before we could hook it
            self._result_thread_done(thread)  # type: ignore[arg-type]
        return thread

    def _check_adoptable(self, thread: threading.Thread) -> None:
        """Refuse a thread that add() cannot adopt (lock held)."""
        if thread in self._index:
            msg = f"thread {thread.name!r} is already a member of {self._name!r}"
            raise RuntimeError(msg)
        if thread is threading.current_thread():
            msg = (
                f"thread {thread.name!r} cannot add itself to group "
                f"{self._name!r}; the group would wait for its own waiter"
            )
            raise RuntimeError(msg)
        if isinstance(thread, ResultThread) and thread._done_hook is not None:
            msg = (
                f"thread {thread.name!r} already belongs to a thread group; "
                "a thread can be a member of one group only"
            )
            raise RuntimeError(msg)

    def _admit(self, action: str) -> int:
        """Check that a member may be added now; return its index (lock held)."""
        state = self._state
        if state is _State.NEW:
            msg = (
                f"group {self._name!r} has not been entered; call {action}() "
                "inside `with ThreadGroup() as g:`"
            )
            raise RuntimeError(msg)
        if state is _State.CLOSED:
            msg = (
                f"group {self._name!r} has ended; call {action}() before its "
                "with block exits, or open a new group"
            )
            raise RuntimeError(msg)
        current = threading.current_thread()
        if current is not self._owner and current not in self._index:
            msg = (
                f"{action}() called from thread {current.name!r}, which is neither "
                f"the owner of group {self._name!r} nor one of its members; "
                "spawn from the thread that entered the block or from a member"
            )
            raise RuntimeError(msg)
        return len(self._members)

    def _wrap_run(self, thread: threading.Thread) -> None:
        """Make an unstarted plain thread report its outcome to the group."""
        original = thread.run

        def run() -> None:
            me = threading.current_thread()
            _binding.token = self._token  # the member's waits are cancellable
            try:
                original()
            except BaseException as exc:  # the group gathers every failure
                # Published first: the note is decoration and may fail.
                taken = self._member_failed(me, exc)
                add_note(exc, f"raised in thread {me.name!r}")
                if not taken:
                    raise  # the group has ended: threading.excepthook reports it
            finally:
                # Break the thread -> run -> original -> thread cycle.
                vars(me).pop("run", None)
                _binding.token = None
                self._member_ended(me)

        thread.run = run  # type: ignore[method-assign]

    # --- outcomes -------------------------------------------------------------------

    def _result_thread_done(self, thread: ResultThread[Any]) -> None:
        """Done-hook of a ResultThread member, called in the member thread."""
        try:
            exc = thread._exception
            if exc is not None:
                _trim_run_member(thread, exc)
                if self._member_failed(thread, exc):
                    thread._observe()  # the group raises it: no unobserved report
        finally:
            self._member_ended(thread)

    def _member_ended(self, thread: threading.Thread) -> None:
        """Note that a member's outcome is stored; free its slot; wake waiters.

        A waiter parks its lock in `_parked` before it looks at `_ended`, and
        this adds to `_ended` before it looks at `_parked`: either the waiter
        sees the member ended, or this sees the waiter and wakes it.  Waits
        are timed besides, so even a missed wake-up would only delay the
        waiter by one slice.
        """
        self._ended.add(thread)
        self._completed.append(thread)
        _HELD.discard(thread)
        if self._limit is not None and thread in self._spawned:
            with self._lock:
                self._running -= 1
            self._start_pending()
        if self._parked:
            self._wake()

    def _wake(self) -> None:
        """Wake every parked waiter."""
        with self._lock:
            parked, self._parked = self._parked, []
        release_parked(parked)

    def _member_failed(self, thread: threading.Thread, exc: BaseException) -> bool:
        """Record a member's failure; return whether the group took it."""
        expected = isinstance(exc, Cancelled) and self._token.cancelled
        with self._lock:
            if self._state is _State.CLOSED:
                return False
            index = self._index.get(thread)
            if index is None:  # a member whose spawn was undone: not ours
                return False
            if not expected:
                self._failures.append((index, exc))
                self._failed_count += 1
        if not expected and self._fail_fast:
            self._cancel_quietly(
                f"member {thread.name!r} of group {self._name!r} raised "
                f"{type(exc).__name__}"
            )
        return True

    def _cancel_quietly(self, reason: str) -> None:
        """Cancel the token; keep callback errors to raise at the block's end."""
        try:
            self._token.cancel(reason)
        except BaseExceptionGroup as group:
            # Kept before any call: a Ctrl-C landing after one finds them kept.
            with self._lock:
                kept = self._state is not _State.CLOSED
                if kept:
                    self._callback_errors += group.exceptions
            for e in group.exceptions:
                add_note(e, f"raised by a cancel callback of group {self._name!r}")
            if not kept:
                raise  # the block has ended: whoever cancelled gets the errors

    # --- waiting --------------------------------------------------------------------

    def join_all(
        self,
        timeout: float | None = None,
        *,
        include_daemon: bool = True,
        cancel: CancelToken | None = None,
    ) -> bool:
        """Wait for the members under one deadline for all of them.

        `timeout` bounds the whole call, not each member: with 100 members
        that never finish, `join_all(0.5)` returns after about 0.5 s.
        Members spawned while it waits are waited for too.  It does not
        cancel anything.

        Called from a member, it waits for every other member except those
        that are themselves waiting in `join_all()` or `as_completed()`:
        they wait for this one, and waiting for them back would never end.
        Two members calling `join_all()` both return once the rest is done.

        Like every blocking wait of the library, it raises `Cancelled` when
        `cancel` or the token bound to the calling thread (a member's group
        token) is cancelled before the members have finished.

        Args:
            timeout: Seconds to wait at most; `None` waits as long as it takes.
            include_daemon: Whether daemon members are waited for too; pass
                `False` to wait as the end of the block does.
            cancel: A token whose cancellation ends the wait with `Cancelled`.

        Returns:
            `True` if every member waited for has finished, `False` if the
            timeout expired first.

        Raises:
            Cancelled: if `cancel` or the calling thread's bound token was
                cancelled while members waited for were still running.
            TypeError: if `timeout` is not `None` or a number.
            ValueError: if `timeout` is NaN.
        """
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        tokens = tokens_in_force(cancel)
        with self._joined() as member:
            running = self._wait_members(
                deadline,
                include_daemon=include_daemon,
                skip_joiners=member,
                tokens=tokens,
            )
        return not running

    @contextlib.contextmanager
    def _joined(self) -> Iterator[bool]:
        """Count the calling member in `_joining`; yield whether it is a member."""
        me = threading.current_thread()
        with self._lock:
            added = me in self._index and me not in self._joining
            if added:
                self._joining.add(me)
        if added:
            self._wake()  # members waiting for this one skip it now
        try:
            yield me in self._index
        finally:
            if added:
                with self._lock:
                    self._joining.discard(me)

    def as_completed(self, timeout: float | None = None) -> Iterator[ResultThread[Any]]:
        """Yield the `ResultThread` members as they finish, first finished first.

        Use it inside the block to handle outcomes as they arrive, or after
        it.  Members spawned while it runs are yielded too; it stops once
        every member has been yielded.  Each yielded member has its outcome:
        `result(timeout=0)` returns or raises at once.  Plain threads given to
        `add()` have no outcome and are not yielded, but are waited for.
        Called from a member, it skips that member and, as `join_all()`
        does, members that are themselves waiting for the group.

        ```python
        from safethreads import ThreadGroup

        with ThreadGroup(max_concurrency=2) as g:
            for n in (3, 1, 2):
                g.spawn(pow, n, 2)
            squares = sorted(t.result(timeout=0) for t in g.as_completed(5))
        assert squares == [1, 4, 9]
        ```

        Args:
            timeout: Seconds the whole iteration may take at most; `None`
                waits as long as it takes.

        Returns:
            An iterator over the members in the order they finished.

        Raises:
            TypeError: if `timeout` is not `None` or a number.
            ValueError: if `timeout` is NaN.
            TimeoutError: from the iterator, if `timeout` expires before every
                member finished.
        """
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._iter_completed(timeout, deadline)

    def _iter_completed(
        self, timeout: float | None, deadline: float | None
    ) -> Iterator[ResultThread[Any]]:
        me = threading.current_thread()
        seen = 0
        yielded: set[threading.Thread] = set()
        with self._joined() as member:
            while True:
                completed = self._completed
                while seen < len(completed):
                    t = completed[seen]
                    seen += 1
                    if t is not me and isinstance(t, ResultThread):
                        yielded.add(t)
                        yield t
                left = self._left_to_complete(yielded, skip_joiners=member)
                if not left:
                    return
                ready = self._completion_after(seen, member)
                if not self._wait_for(ready, deadline, tokens_in_force(None)):
                    msg = (
                        f"{left} member(s) of group {self._name!r} did not "
                        f"finish within {timeout} seconds; they are still running"
                    )
                    raise TimeoutError(msg)

    def _left_to_complete(
        self, yielded: set[threading.Thread], *, skip_joiners: bool
    ) -> int:
        """How many ResultThread members `as_completed()` has still to yield."""
        with self._lock:
            if not skip_joiners:
                return self._result_members - len(yielded)
            me = threading.current_thread()
            return sum(
                1
                for t in self._members
                if t is not me
                and isinstance(t, ResultThread)
                and t not in yielded
                and t not in self._joining
            )

    def _completion_after(self, seen: int, skip_joiners: bool) -> Callable[[], bool]:
        """A test of whether a member completed after the first `seen`."""
        joining = self._joining
        completed = self._completed
        if not skip_joiners:
            return lambda: len(completed) > seen
        known = set(joining)
        # A member that starts waiting for the group is not waited for.
        return lambda: len(completed) > seen or not joining <= known

    def _wait_members(
        self,
        deadline: float | None,
        *,
        include_daemon: bool,
        skip_joiners: bool = False,
        tokens: tuple[CancelToken, ...] = (),
        report: GroupProgress | None = None,
    ) -> list[threading.Thread]:
        """Wait for members until `deadline`; return those still running.

        With `report`, progress is reported each time the wait wakes up.
        """
        current = threading.current_thread()
        seen = 0
        running: list[threading.Thread] = []
        while True:
            with self._lock:
                batch = self._members[seen:]
                seen = len(self._members)
                daemons = set(self._daemons) if batch and not include_daemon else ()
            if not batch:
                return running
            for t in batch:
                if t is current or t in daemons:
                    continue
                if skip_joiners:
                    ready = self._ended_or_joining(t)
                else:
                    ready = self._ended_check(t)
                if report is not None:
                    ready = report.wrap(self, ready)
                if not self._wait_for(ready, deadline, tokens):
                    running.append(t)
                elif t in self._ended and t.is_alive():
                    wait_thread_end(t, deadline)

    def _ended_check(self, t: threading.Thread) -> Callable[[], bool]:
        """A test of whether member `t` has finished."""
        ended = self._ended

        def ready() -> bool:
            # A thread that died without its hook: adopted while running, or
            # a thread of the parent process in a fork child.
            return t in ended or (t.ident is not None and not t.is_alive())

        return ready

    def _ended_or_joining(self, t: threading.Thread) -> Callable[[], bool]:
        """A test of whether member `t` finished or waits for the group."""
        ended = self._ended_check(t)
        return lambda: ended() or t in self._joining

    def _wait_for(
        self,
        ready: Callable[[], bool],
        deadline: float | None,
        tokens: tuple[CancelToken, ...] = (),
    ) -> bool:
        """Wait until `ready()` or `deadline`; return whether `ready()` held.

        The waiter parks a raw lock of its own that `_wake()` releases, and
        waits on nothing else (see the module notes on Ctrl-C).  The
        cancellation of one of `tokens` releases it too, and the wait then
        raises `Cancelled`.
        """
        if ready():
            return True
        wake = _thread.allocate_lock()
        wake.acquire()
        if not tokens:
            return self._wait_parked(wake, ready, deadline)
        removers: list[Callable[[], bool]] = []
        try:
            for token in tokens:
                # One by one, so that those made before a failure are undone.
                removers.append(token.add_callback(partial(release_parked, (wake,))))  # noqa: PERF401
            return self._wait_parked(wake, ready, deadline, tokens)
        finally:
            for remove in removers:
                remove()

    def _wait_parked(
        self,
        wake: _thread.LockType,
        ready: Callable[[], bool],
        deadline: float | None,
        tokens: tuple[CancelToken, ...] = (),
    ) -> bool:
        """The loop of `_wait_for()`: park `wake` until ready or the deadline."""
        while True:
            raise_if_any_cancelled(tokens)
            if deadline is None:
                chunk = _POLL
            else:
                chunk = min(deadline - time.monotonic(), _POLL)
                if chunk <= 0:
                    return ready()
            with self._lock:
                self._parked.append(wake)
            try:
                if ready():
                    return True
                wake.acquire(timeout=chunk)
            finally:
                with self._lock, contextlib.suppress(ValueError):
                    self._parked.remove(wake)
            if ready():
                return True
            wake.acquire(blocking=False)  # locked again, for the next round

    def cancel(self, reason: object = None) -> bool:
        """Cancel the group's token, asking cooperative members to stop.

        In a group with `max_concurrency`, members still waiting for a slot
        end with `Cancelled` without calling their function.

        Args:
            reason: Passed to `CancelToken.cancel()`.

        Returns:
            `True` if this call cancelled the token, `False` if it already was.

        Raises:
            BaseExceptionGroup: if callbacks on the token raised.
        """
        return self._token.cancel(reason)

    # --- after the block ------------------------------------------------------------

    def results(self, *, return_exceptions: bool = False) -> list[Any]:
        """Return the members' return values, in spawn order, after the block.

        A plain `threading.Thread` member contributes `None`.  For typed
        values, keep the `ResultThread`s that `spawn()` returns and call
        their `result()`.

        ```python
        from safethreads import ThreadGroup

        g = ThreadGroup(fail_fast=False)
        try:
            with g:
                g.spawn(int, "1")
                g.spawn(int, "x")
        except ExceptionGroup:
            pass
        one, bad = g.results(return_exceptions=True)
        assert one == 1 and isinstance(bad, ValueError)
        ```

        Args:
            return_exceptions: Put a failed member's exception in the list
                in place of its value, instead of raising.

        Returns:
            One value (or exception) per member, in the order they were
            spawned or added.

        Raises:
            RuntimeError: if the block has not ended yet, if a member is a
                daemon still running, or, without `return_exceptions`, if a
                member has no value: it failed or was cancelled (the
                exception is the `__cause__`).
        """
        with self._lock:
            if self._state is not _State.CLOSED:
                msg = (
                    f"results() of group {self._name!r} are available once its "
                    "with block has ended"
                )
                raise RuntimeError(msg)
            members = list(self._members)
        values: list[Any] = []
        for t in members:
            if isinstance(t, ResultThread):
                done = t in self._ended or t.done()
            else:
                done = t.ident is not None and not t.is_alive()
            if not done:
                msg = (
                    f"member {t.name!r} of group {self._name!r} is still running; "
                    "wait for it with join_all() before calling results()"
                )
                raise RuntimeError(msg)
            if not isinstance(t, ResultThread):
                values.append(None)
                continue
            exc = t.exception(timeout=0)
            if exc is None:
                values.append(t.result(timeout=0))
            elif return_exceptions:
                values.append(exc)
            else:
                msg = (
                    f"member {t.name!r} of group {self._name!r} raised "
                    f"{type(exc).__name__} and has no result; handle the "
                    "group's errors, ask the thread itself or pass "
                    "return_exceptions=True"
                )
                raise RuntimeError(msg) from exc
        return values

    def _check(self) -> None:
        """Assert the invariants of the group's bookkeeping."""
        with self._lock:
            assert len(self._members) == len(self._index)
            assert all(self._index[t] == i for i, t in enumerate(self._members))
            assert self._ended <= set(self._members)
            assert len(self._completed) == len(self._ended)
            assert self._daemons <= set(self._members)
            assert self._spawned <= set(self._members)
            assert set(self._pending) <= self._spawned
            assert not (set(self._pending) & self._ended)
            assert all(0 <= i < len(self._members) for i, _ in self._failures)
            if self._limit is None:
                assert not self._pending
                assert not self._spawned
            else:
                started = self._spawned - set(self._pending)
                running = len(started - self._ended)
                assert self._running == running, (self._running, running)
                assert self._running <= self._limit or self._token.cancelled
            if self._state is _State.NEW:
                assert not self._members
                assert self._owner is None
            else:
                assert self._owner is not None
            if self._state is _State.CLOSED:
                assert not self._failures, "failures are handed over at the end"
                assert not self._callback_errors, "so are the callbacks' errors"


_RUN_MEMBER_CODE: Final = ThreadGroup._run_member.__code__


def _trim_run_member(thread: ResultThread[Any], exc: BaseException) -> None:
    """Drop the `_run_member` frame from a member's traceback: it is plumbing."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_code is _RUN_MEMBER_CODE:
        rest = tb.tb_next
        exc.__traceback__ = rest
        if getattr(thread, "_traceback", None) is tb:
            thread._traceback = rest
