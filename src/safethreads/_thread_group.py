"""ThreadGroup: a `with` block that owns the threads started inside it.

The scope rule: a thread spawned in a group's block does not outlive the
block.  Leaving the block waits for every non-daemon member, gathers every
member failure into one `ExceptionGroup`, and, if anything went wrong (a
member failed with `fail_fast`, the body raised, Ctrl-C), cancels the group's
`CancelToken` first so that cooperative members stop early.

How the group learns what its members do:

- Members made by `spawn()` are `ResultThread`s.  Each gets a done-hook,
  called in the member thread right after its outcome is stored, before the
  thread ends.  The hook records a failure under the group lock (and marks
  it observed, so the thread's unobserved-failure report stays silent: the
  group raises it instead), and with `fail_fast` cancels the token.  A
  successful member only adds itself to a set: no group lock is taken.
- A plain `threading.Thread` given to `add()` before it started gets its
  `run` wrapped the same way.  One that is already running can only be
  waited for: its exception goes to `threading.excepthook` as usual.
- Failures arriving after the block has ended (daemon members) are not the
  group's any more; they fall back to the thread's own reporting.

Waiting: `join_all()` and the block exit use one monotonic deadline for all
members.  Off the main thread they use `Thread.join(remaining)`.  In the
main thread they never block inside `Thread.join`: on CPython 3.11 and 3.12,
a `KeyboardInterrupt` that interrupts `join` releases the thread's state lock
while the thread still holds it (`Thread._wait_for_tstate_lock`), marking a
live thread as finished.  The main thread instead waits, in short slices, on
the group's condition variable, which a member's hook notifies when someone
waits, so Ctrl-C is serviced promptly and harmlessly; a member already known
to be done is then waited out by yielding (`time.sleep(0)`) while its thread
runs its last instructions.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import itertools
import re
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Self, TypeVar, final

from . import _result_thread as _result_thread_module
from ._cancel import CancelToken
from ._errors import Cancelled
from ._result_thread import ResultThread
from ._waiting import (
    _binding,
    check_callable,
    check_timeout,
    raise_if_any_cancelled,
    tokens_in_force,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType, TracebackType


__all__ = ["ThreadGroup"]

R = TypeVar("R")
P = ParamSpec("P")
ThreadT = TypeVar("ThreadT", bound=threading.Thread)

# Longest single wait of the main thread, so that Ctrl-C is serviced and
# members the group cannot hook (threads already running when adopted) are
# noticed when they end.
_POLL: Final = 0.05

_MAIN: Final = threading.main_thread()

# The Ctrl-C that makes the end of the block stop waiting for members.
_PRESSES_TO_ABANDON: Final = 2

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
_PLUMBING_FILES: Final = frozenset({threading.__file__, _result_thread_module.__file__})


def _member_stack(frame: FrameType) -> traceback.StackSummary:
    """The stack of a member from its own code on, without start-up frames."""
    frames = traceback.extract_stack(frame)
    start = 0
    while start < len(frames) - 1 and frames[start].filename in _PLUMBING_FILES:
        start += 1
    return traceback.StackSummary.from_list(frames[start:])


def _next_group_name() -> str:
    with _numbers_lock:
        return f"ThreadGroup-{next(_numbers)}"


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
      not waited for; the failures of those that have already finished are
      raised with the others.
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
    - Ctrl-C in the body or during the final wait cancels the token and
      keeps waiting; a second Ctrl-C stops waiting.  `KeyboardInterrupt`
      propagates either way.
    - `exit_timeout` bounds the final wait: when it expires, the token is
      cancelled and `TimeoutError` is raised naming every member still
      running with its current stack.
    - Who may spawn: the thread that entered the block, and the group's own
      members, while the block runs or the owner waits at its end.
    - Nesting: a group created inside another group's block, or inside one
      of its members, gets a child of that group's token, so cancelling the
      outer group reaches the inner one.  Pass `token=` to choose the parent
      yourself (`token=CancelToken()` detaches the group).

    Thread safety: `spawn()`, `add()`, `cancel()`, `join_all()` and the
    properties may be called from several threads at once; `members` is a
    snapshot.

    Args:
        name: The group's name; members are named `"{name}-{index}"`.  By
            default `"ThreadGroup-N"`.
        daemon: Whether members made by `spawn()` are daemon threads.
        fail_fast: Whether the first member failure cancels `token`.
        exit_timeout: Seconds the block's end waits for members at most;
            `None` waits as long as it takes.
        token: The parent of the group's token; by default the token of the
            enclosing group, if any.

    Raises:
        ValueError: if `exit_timeout` is negative or NaN.
        TypeError: if `exit_timeout` is not `None` or a number.
    """

    __slots__ = (
        "_callback_errors",
        "_cond",
        "_context_reset",
        "_daemon",
        "_ended",
        "_exit_timeout",
        "_fail_fast",
        "_failures",
        "_hook",
        "_index",
        "_lock",
        "_members",
        "_name",
        "_owner",
        "_parent",
        "_state",
        "_token",
        "_waiters",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        daemon: bool = False,
        fail_fast: bool = True,
        exit_timeout: float | None = None,
        token: CancelToken | None = None,
    ) -> None:
        """Create a group; enter it with `with` to spawn members."""
        check_timeout(exit_timeout, "exit_timeout")
        if exit_timeout is not None and exit_timeout < 0:
            msg = f"exit_timeout must be None or at least 0, not {exit_timeout!r}"
            raise ValueError(msg)
        self._name = _next_group_name() if name is None else name
        self._daemon = daemon
        self._fail_fast = fail_fast
        self._exit_timeout = exit_timeout
        parent = _CURRENT_TOKEN.get() if token is None else token
        self._parent = parent
        self._token = CancelToken() if parent is None else parent.child()
        # Guards _state, _owner, _members, _index, _failures, _callback_errors
        # and _waiters; _cond (on the same lock) is notified when a member's
        # outcome is stored while someone waits.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._state = _State.NEW
        self._owner: threading.Thread | None = None
        self._members: list[threading.Thread] = []
        self._index: dict[threading.Thread, int] = {}
        # Members whose outcome is stored.  Added to without the lock (a set
        # is safe to mutate from several threads, with or without a GIL), so
        # that a member's success costs the group no lock round-trip.
        self._ended: set[threading.Thread] = set()
        self._waiters = 0  # threads in _wait_member's condition wait
        self._failures: list[tuple[int, BaseException]] = []
        self._callback_errors: list[BaseException] = []
        self._context_reset: contextvars.Token[CancelToken | None] | None = None
        self._hook = self._result_thread_done  # made once, installed per member

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
        """The members in spawn order (a snapshot)."""
        with self._lock:
            return tuple(self._members)

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
        with self._lock:
            if self._state is not _State.NEW:
                msg = (
                    f"group {self._name!r} was already entered; "
                    "create a new ThreadGroup for each with block"
                )
                raise RuntimeError(msg)
            self._state = _State.OPEN
            self._owner = threading.current_thread()
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
        self._restore_context()
        # A body stopped by the token's cancellation has not failed.
        body_cancelled = isinstance(exc, Cancelled) and self._token.cancelled
        body_error = None if body_cancelled else exc
        reason = None
        if body_error is not None:
            reason = f"the body of group {self._name!r} raised {type(exc).__name__}"
        with self._lock:
            self._state = _State.CLOSING
        interrupt, stuck = self._wait_at_exit(exc, reason)
        timeout_error = None
        if stuck and interrupt is None:
            self._cancel_quietly(f"group {self._name!r} exceeded its exit_timeout")
            timeout_error = self._stuck_error(stuck)
        failures = self._close()
        if interrupt is not None or isinstance(exc, SystemExit):
            propagating = interrupt if interrupt is not None else exc
            assert propagating is not None
            self._note_unraised(propagating, failures, stuck)
            if propagating is exc:
                return False  # re-raised by the with statement, traceback intact
            raise propagating
        errors = failures if body_error is None else [body_error, *failures]
        if timeout_error is not None:
            if not errors:
                raise timeout_error
            errors.append(timeout_error)
        if errors:
            msg = f"unhandled errors in thread group {self._name!r}"
            raise BaseExceptionGroup(msg, errors) from None
        # Swallow the group's own cancellation; let a parent's propagate, so
        # that the enclosing group sees Cancelled and not a failure.
        return body_cancelled and self._own_cancellation()

    def _restore_context(self) -> None:
        """Undo what __enter__ did to the current context."""
        reset, self._context_reset = self._context_reset, None
        if reset is not None:
            # Exited in another context (a generator, say): nothing to restore.
            with contextlib.suppress(ValueError):
                _CURRENT_TOKEN.reset(reset)

    def _close(self) -> list[BaseException]:
        """End the block; return the failures gathered, in spawn order."""
        with self._lock:
            self._state = _State.CLOSED
            failures = [e for _, e in sorted(self._failures, key=lambda f: f[0])]
            failures += self._callback_errors
            self._failures = []
            self._callback_errors = []
            everyone_done = not any(t.is_alive() for t in self._members)
        if everyone_done:
            self._token.close()  # nothing left to cancel: unlink from the parent
        return failures

    def _own_cancellation(self) -> bool:
        """Whether the token was cancelled here, not by its parent."""
        parent = self._parent
        return self._token.cancelled and (parent is None or not parent.cancelled)

    def _wait_at_exit(
        self, exc: BaseException | None, reason: str | None
    ) -> tuple[BaseException | None, list[threading.Thread]]:
        """Cancel with `reason` if given, wait for the non-daemon members.

        Returns:
            The `KeyboardInterrupt` to propagate (if any) and the members
            still running.
        """
        interrupt = exc if isinstance(exc, KeyboardInterrupt) else None
        presses = 0 if interrupt is None else 1
        timeout = self._exit_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                # Cancelling inside the try: a Ctrl-C while the token's
                # callbacks run counts as a press too.
                if reason is not None:
                    pending, reason = reason, None
                    self._cancel_quietly(pending)
                if presses:
                    self._cancel_quietly(f"group {self._name!r} was interrupted")
                return interrupt, self._wait_members(deadline, include_daemon=False)
            except KeyboardInterrupt as ki:
                presses += 1
                if interrupt is None:
                    interrupt = ki
                if presses >= _PRESSES_TO_ABANDON:
                    with self._lock:
                        members = list(self._members)
                    running = [t for t in members if t.is_alive() and not t.daemon]
                    return interrupt, running

    def _note_unraised(
        self,
        exc: BaseException,
        failures: list[BaseException],
        running: list[threading.Thread],
    ) -> None:
        """Tell, on a propagating exception, what the group could not raise."""
        if failures:
            listed = "; ".join(f"{type(e).__name__}: {e}" for e in failures)
            exc.add_note(
                f"group {self._name!r} also had {len(failures)} member "
                f"failure(s), not raised: {listed}"
            )
        if running:
            names = ", ".join(repr(t.name) for t in running)
            exc.add_note(
                f"group {self._name!r} stopped waiting; still running: {names}"
            )

    def _stuck_error(self, stuck: list[threading.Thread]) -> TimeoutError:
        """Build the error naming each stuck member and where it is."""
        frames = sys._current_frames()
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
                where = "".join(_member_stack(frame).format())
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
        copy of the caller's `contextvars` context.

        Args:
            fn: The callable the member runs.
            *args: Positional arguments for `fn`.
            **kwargs: Keyword arguments for `fn`.

        Returns:
            The started member.

        Raises:
            RuntimeError: if the group's block has not been entered or has
                ended, or if the calling thread is neither the group's owner
                nor one of its members.
            TypeError: if `fn` is not callable.
        """
        check_callable(fn, "fn")
        with self._lock:
            index = self._admit("spawn")
            thread: ResultThread[R] = ResultThread(
                target=fn,
                args=args,
                kwargs=kwargs,
                name=f"{self._name}-{index}",
                daemon=self._daemon,
            )
            # Not started yet, so no lock is needed to install the hook.
            thread._done_hook = self._hook
            thread._bound_token = self._token  # its waits are cancellable
            thread.start()
            self._members.append(thread)
            self._index[thread] = index
        return thread

    def add(self, thread: ThreadT) -> ThreadT:
        """Adopt `thread` as a member, starting it if it has not started.

        A thread that has not started and still has the name
        `threading.Thread` made up for it is renamed `"{group name}-{index}"`.
        Its own daemon flag is kept.  The group learns of failures of a
        `ResultThread` in every case, and of a plain `threading.Thread` only
        if it has not started yet (its `run` is then wrapped); an exception
        in a plain thread that was already running goes to
        `threading.excepthook` as usual, and the group only waits for it.

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
        with self._lock:
            index = self._admit("add")
            if thread in self._index:
                msg = f"thread {thread.name!r} is already a member of {self._name!r}"
                raise RuntimeError(msg)
            if thread is threading.current_thread():
                msg = (
                    f"thread {thread.name!r} cannot add itself to group "
                    f"{self._name!r}; the group would wait for its own waiter"
                )
                raise RuntimeError(msg)
            started = thread.ident is not None
            if isinstance(thread, ResultThread) and thread._done_hook is not None:
                msg = (
                    f"thread {thread.name!r} already belongs to a thread group; "
                    "a thread can be a member of one group only"
                )
                raise RuntimeError(msg)
            if not started and _DEFAULT_THREAD_NAME.fullmatch(thread.name):
                thread.name = f"{self._name}-{index}"
            if isinstance(thread, ResultThread):
                hooked = thread._set_done_hook(self._hook)
                if not started:
                    thread._bound_token = self._token
            elif not started:
                self._wrap_run(thread)
            if not started:
                thread.start()
            self._members.append(thread)
            self._index[thread] = index
        if not hooked:  # it finished before we could hook it
            self._result_thread_done(thread)  # type: ignore[arg-type]
        return thread

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
                exc.add_note(f"raised in thread {me.name!r}")
                if not self._member_failed(me, exc):
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
        exc = thread._exception
        if exc is not None and self._member_failed(thread, exc):
            thread._observe()  # the group raises it: no unobserved report
        self._member_ended(thread)

    def _member_ended(self, thread: threading.Thread) -> None:
        """Note that a member's outcome is stored; wake waiters if any.

        A waiter counts itself in `_waiters` before it looks at `_ended`, and
        this adds to `_ended` before it reads `_waiters`: either the waiter
        sees the member ended, or this sees the waiter and notifies it (under
        the lock, so after the waiter is waiting).  Waits are timed besides,
        so even a missed wake-up would only delay the waiter by one slice.
        """
        self._ended.add(thread)
        if self._waiters:
            with self._cond:
                self._cond.notify_all()

    def _member_failed(self, thread: threading.Thread, exc: BaseException) -> bool:
        """Record a member's failure; return whether the group took it."""
        expected = isinstance(exc, Cancelled) and self._token.cancelled
        with self._lock:
            if self._state is _State.CLOSED:
                return False
            if not expected:
                self._failures.append((self._index[thread], exc))
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
            errors = list(group.exceptions)
            for e in errors:
                e.add_note(f"raised by a cancel callback of group {self._name!r}")
            with self._lock:
                if self._state is not _State.CLOSED:
                    self._callback_errors.extend(errors)
                    return
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
        Members spawned while it waits are waited for too.  The calling
        thread is skipped if it is a member.  It does not cancel anything.

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
        if not tokens:
            return not self._wait_members(deadline, include_daemon=include_daemon)
        removers: list[Callable[[], bool]] = []
        try:
            for token in tokens:
                # Appended one by one: those made before a failure are undone.
                removers.append(token.add_callback(self._wake_waiters))  # noqa: PERF401
            return not self._wait_members(
                deadline, include_daemon=include_daemon, tokens=tokens
            )
        finally:
            for remove in removers:
                remove()

    def _wake_waiters(self) -> None:
        """Token callback of a cancellable join_all(): wake it up."""
        with self._cond:
            self._cond.notify_all()

    def _wait_members(
        self,
        deadline: float | None,
        *,
        include_daemon: bool,
        tokens: tuple[CancelToken, ...] = (),
    ) -> list[threading.Thread]:
        """Wait for members until `deadline`; return those still running."""
        current = threading.current_thread()
        seen = 0
        running: list[threading.Thread] = []
        while True:
            with self._lock:
                batch = self._members[seen:]
                seen = len(self._members)
            if not batch:
                return running
            for t in batch:
                if t is current or (t.daemon and not include_daemon):
                    continue
                if not self._wait_member(t, deadline, tokens):
                    running.append(t)

    def _wait_member(
        self,
        t: threading.Thread,
        deadline: float | None,
        tokens: tuple[CancelToken, ...] = (),
    ) -> bool:
        """Wait for one member until `deadline`; return whether it finished.

        With `tokens`, the wait is on the condition, which their cancel
        callback (`_wake_waiters`) notifies; raises `Cancelled`.
        """
        if not tokens and threading.current_thread() is not _MAIN:
            # Signals are handled in the main thread only: join is safe here.
            if deadline is None:
                t.join()
                return True
            while t.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                t.join(remaining)
            return True
        while t.is_alive():
            raise_if_any_cancelled(tokens)
            if deadline is None:
                chunk = _POLL
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                chunk = min(remaining, _POLL)
            with self._cond:
                self._waiters += 1
                try:
                    ended = t in self._ended
                    # The raw flag: `cancelled` may run callbacks, which
                    # take this lock.  A cancel after this check notifies.
                    if not ended and not any(k._cancelled for k in tokens):
                        self._cond.wait(chunk)
                finally:
                    self._waiters -= 1
            if ended:
                # Only the last instructions of the thread's life are left:
                # yield to it rather than block in join (see the module notes).
                time.sleep(0)
        return True

    def cancel(self, reason: object = None) -> bool:
        """Cancel the group's token, asking cooperative members to stop.

        Args:
            reason: Passed to `CancelToken.cancel()`.

        Returns:
            `True` if this call cancelled the token, `False` if it already was.

        Raises:
            BaseExceptionGroup: if callbacks on the token raised.
        """
        return self._token.cancel(reason)

    # --- after the block ------------------------------------------------------------

    def results(self) -> list[Any]:
        """Return the members' return values, in spawn order, after the block.

        A plain `threading.Thread` member contributes `None`.  For typed
        values, keep the `ResultThread`s that `spawn()` returns and call
        their `result()`.

        Returns:
            One value per member, in the order they were spawned or added.

        Raises:
            RuntimeError: if the block has not ended yet, or if a member has
                no value: it failed or was cancelled (the exception is the
                `__cause__`), or it is a daemon still running.
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
            done = t.done() if isinstance(t, ResultThread) else not t.is_alive()
            if not done:
                msg = (
                    f"member {t.name!r} of group {self._name!r} is still running; "
                    "wait for it with join_all() before calling results()"
                )
                raise RuntimeError(msg)
            if isinstance(t, ResultThread):
                exc = t.exception(timeout=0)
                if exc is not None:
                    msg = (
                        f"member {t.name!r} of group {self._name!r} raised "
                        f"{type(exc).__name__} and has no result; "
                        "handle the group's errors or ask the thread itself"
                    )
                    raise RuntimeError(msg) from exc
                values.append(t.result(timeout=0))
            else:
                values.append(None)
        return values

    def _check(self) -> None:
        """Assert the invariants of the group's bookkeeping."""
        with self._lock:
            assert len(self._members) == len(self._index)
            assert all(self._index[t] == i for i, t in enumerate(self._members))
            assert self._ended <= set(self._members)
            assert all(0 <= i < len(self._members) for i, _ in self._failures)
            if self._state is _State.NEW:
                assert not self._members
                assert self._owner is None
            else:
                assert self._owner is not None
            if self._state is _State.CLOSED:
                assert not self._failures, "failures are handed over at the end"
