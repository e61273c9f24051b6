"""A small Wing-Gong linearizability checker for recorded concurrent histories.

A history is a list of completed operations, each with the time it was invoked,
the time its response arrived, and the result it returned.  It is linearizable
when the operations can be put in one sequential order that (1) respects real
time: an operation that responded before another was invoked comes first, and
(2) replays on a sequential model with every operation returning its recorded
result.

The search follows Wing and Gong (1993): repeatedly pick, among the pending
operations, one that no other pending operation precedes in real time, apply
it to the model, and backtrack on a mismatch.  States already shown to be dead
ends (the set of linearized operations plus the model state) are remembered,
as Lowe (2017) suggests, which keeps the search fast for short histories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Sequence

Op = TypeVar("Op")
State = TypeVar("State", bound="Hashable")


@dataclass(frozen=True)
class Call(Generic[Op]):
    """One completed operation of a concurrent history."""

    thread: int
    op: Op
    invoked: int  # time.perf_counter_ns() just before the call
    responded: int  # time.perf_counter_ns() just after it returned
    result: object


def linearize(
    history: Sequence[Call[Op]],
    initial: State,
    apply: Callable[[State, Op], tuple[object, State]],
) -> list[Call[Op]] | None:
    """Return a sequential order explaining `history`, or None if none exists.

    Args:
        history: The completed calls, in any order.
        initial: The model state before the first call.
        apply: The sequential model: `(state, op) -> (result, new_state)`;
            it must not mutate `state`.
    """
    calls = list(history)
    everything = (1 << len(calls)) - 1
    dead_ends: set[tuple[int, State]] = set()
    order: list[Call[Op]] = []

    def search(done: int, state: State) -> bool:
        if done == everything:
            return True
        if (done, state) in dead_ends:
            return False
        pending = [i for i in range(len(calls)) if not done & (1 << i)]
        first_response = min(calls[i].responded for i in pending)
        for i in pending:
            call = calls[i]
            if call.invoked > first_response:
                continue  # some pending call finished before this one began
            result, after = apply(state, call.op)
            if result != call.result:
                continue
            order.append(call)
            if search(done | (1 << i), after):
                return True
            order.pop()
        dead_ends.add((done, state))
        return False

    return order if search(0, initial) else None
