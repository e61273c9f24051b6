"""How a group's `with` block ends: rules `ThreadGroup` and `FutureGroup` share.

Both groups end their `with` block the same way; what differs is only how
they wait for their members (threads, futures) and how they name them.

Waiting (`wait_counting_presses`): the end of the block waits for the
members; the first Ctrl-C (which may have stopped the body) cancels the
group and keeps waiting, the second stops waiting and abandons the members
still unfinished.  Another `BaseException` raised while waiting (a
`SystemExit` from the progress callback) cancels too and keeps waiting; it
propagates afterwards, like a `SystemExit` from the body.

Raising (`raise_outcome`), once the wait is over and the block is closed:

1. An interrupt (a Ctrl-C, or what stopped the wait as above) or the body's
   `SystemExit` propagates as it is, with notes naming the member failures
   it hides and the members left unfinished (`note_unraised`).
2. Otherwise the errors are, in this order: the body's exception (unless it
   was the group's own cancellation stopping the body), the progress
   callback's, the member failures in spawn or submission order, and the
   timeout error if the deadline passed.
3. A timeout error alone is raised alone; any other non-empty list is
   raised as one `BaseExceptionGroup` (an `ExceptionGroup` when all are
   `Exception`s), `from None`: the body's exception is inside it, not its
   context.

Ctrl-C can land at the entry of any Python function and after any call
returns.  The caller handles one landing at the entry of
`wait_counting_presses`; inside, nothing runs before the loop that counts
presses but assignments of constants, and the handler calls nothing before
it has counted the press.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "PRESSES_TO_ABANDON",
    "add_note",
    "note_unraised",
    "raise_outcome",
    "wait_counting_presses",
]

T = TypeVar("T")

# The Ctrl-C that makes the end of the block stop waiting for members.
PRESSES_TO_ABANDON: Final = 2


def add_note(exc: BaseException, note: str) -> None:
    """Add `note` to `exc` if it takes notes; a note is never worth losing it."""
    # An exception whose __notes__ is not a list refuses add_note().
    with contextlib.suppress(Exception):
        exc.add_note(note)


def note_unraised(
    exc: BaseException,
    group: str,
    failures: list[BaseException],
    unfinished: str | None,
) -> None:
    """Tell, on a propagating exception, what the group could not raise.

    Args:
        exc: The exception propagating in place of the group's outcome.
        group: The group's name.
        failures: The failures `exc` hides, in the group's order.
        unfinished: How the members left unfinished are described (the
            group words it); `None` if there are none.
    """
    if failures:
        listed = "; ".join(f"{type(e).__name__}: {e}" for e in failures)
        add_note(
            exc,
            f"group {group!r} also had {len(failures)} member "
            f"failure(s), not raised: {listed}",
        )
    if unfinished is not None:
        add_note(exc, f"group {group!r} stopped waiting; {unfinished}")


def wait_counting_presses(
    exc: BaseException | None,
    wait: Callable[[bool, BaseException | None], T],
    give_up: Callable[[], T],
) -> tuple[BaseException | None, T]:
    """Wait for the members at the end of a block, counting Ctrl-C presses.

    `wait(cancel, stopped)` waits for the members and returns those left
    unfinished at the deadline.  It is called again after each interruption
    and must then pick up where it was: `cancel` is whether the group must
    be cancelled first (a Ctrl-C came, or the wait raised), and `stopped`
    what the wait raised besides `KeyboardInterrupt`, if anything.

    Args:
        exc: What the body raised; a `KeyboardInterrupt` is the first press.
        wait: Waits for the members; returns those unfinished.
        give_up: Returns the members unfinished, on the press that abandons
            them.

    Returns:
        The exception to propagate instead of the group's outcome (the
        first `KeyboardInterrupt`, or what stopped the wait), if any, and
        what `wait` or `give_up` returned.
    """
    # Constants only before the loop: a Ctrl-C can land here only at entry.
    propagating: BaseException | None = None
    stopped: BaseException | None = None
    presses = 0
    body_pressed: bool | None = None
    while True:
        try:
            if body_pressed is None:
                # A press landing as this returns is counted before the
                # body's, and found again by the next round's test.
                body_pressed = isinstance(exc, KeyboardInterrupt)
                if body_pressed:
                    propagating = exc  # the first press
                    presses += 1
                    if presses >= PRESSES_TO_ABANDON:
                        return propagating, give_up()
            return propagating, wait(presses > 0 or stopped is not None, stopped)
        except KeyboardInterrupt as ki:
            presses += 1
            if propagating is None:
                propagating = ki
            if presses >= PRESSES_TO_ABANDON:
                return propagating, give_up()
        except BaseException as stop:  # it propagates after the wait
            stopped = stop
            if propagating is None:
                propagating = stop


def raise_outcome(
    kind: str,
    group: str,
    exc: BaseException | None,
    *,
    body_cancelled: bool,
    propagating: BaseException | None,
    failures: list[BaseException],
    progress_error: BaseException | None,
    timeout_error: TimeoutError | None,
    unfinished: str | None,
) -> None:
    """Raise what went wrong in a closed block, by the rules above.

    Returns (and the `with` statement re-raises the body's exception, its
    traceback intact) when that exception is what propagates, or when
    nothing went wrong.

    Args:
        kind: What the group is, in the group's message: `"thread group"`.
        group: The group's name.
        exc: What the body raised, if anything.
        body_cancelled: Whether `exc` is the group's own cancellation
            stopping the body, which is not an error.
        propagating: An interrupt, or what stopped the wait, to propagate
            instead of the group's outcome.
        failures: The member failures, in the group's order.
        progress_error: What the progress callback raised, if anything.
        timeout_error: The error for a passed deadline, if it passed.
        unfinished: How the members left unfinished are described, if
            there are any (for the notes on a propagating exception).

    Raises:
        BaseExceptionGroup: holding the errors, in the order above.
        TimeoutError: `timeout_error`, when it is the only error.
        BaseException: `propagating`, with notes on what it hides.
    """
    if propagating is None and isinstance(exc, SystemExit):
        propagating = exc
    if propagating is not None:
        note_unraised(propagating, group, failures, unfinished)
        if propagating is exc:
            return  # re-raised by the with statement, traceback intact
        raise propagating
    errors = failures if exc is None or body_cancelled else [exc, *failures]
    if progress_error is not None:
        errors.insert(0 if exc is None or body_cancelled else 1, progress_error)
    if timeout_error is not None:
        if not errors:
            raise timeout_error
        errors.append(timeout_error)
    if errors:
        msg = f"unhandled errors in {kind} {group!r}"
        raise BaseExceptionGroup(msg, errors) from None
