"""A deterministic scheduler that explores thread interleavings in tests.

Races in the library depend on which thread runs between two of its lines.
This scheduler takes that choice away from the operating system: threads
run one at a time, and at every line of `safethreads` code (a *scheduling
point*) the thread parks and a controller picks who runs next, from a seeded
random generator or from a given schedule.  The decisions are recorded, so
a failing run prints its seed and schedule, and `Scheduler(schedule=...)`
replays it.

Which threads are controlled: the scenario's own threads (given to `run`),
and every thread started while the run is going on (pool workers, group
members), through `threading.settrace`.  Code outside the library runs
freely between two points.

Threads blocked in C.  A thread given the turn may block in C code (a
`lock.acquire()`, `queue.get()`, `Event.wait()`) and never reach its next
point.  The controller waits `block_seconds` for it; then it counts the
thread as blocked and gives the turn to another parked thread.  The blocked
thread rejoins when it reaches a point again.  If no thread is parked and
none arrives for `stall_seconds`, the run stops being controlled (a
deadlock, or everyone waits on a timeout) and the stall is reported.

Limits: a slow thread (a loaded machine, a garbage collection) can be taken
for a blocked one, which changes the run; replay is exact only when the
same threads block at the same points, which is the common case but not
guaranteed.  Between the time a blocked thread wakes in C and its next
point, it runs alongside the thread that has the turn.  Points are lines,
not bytecodes.  When `run` returns, the threads still alive (idle workers)
run freely again.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safethreads
from interrupts import with_exits

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

__all__ = ["Run", "Scheduler", "explore"]

LIBRARY_DIR = str(Path(safethreads.__file__).parent)


@dataclass
class Run:
    """What one controlled run did."""

    seed: int | None
    schedule: list[int] = field(default_factory=list)
    stalled: bool = False
    errors: list[BaseException] = field(default_factory=list)

    def replay_hint(self) -> str:
        """The call that replays this run."""
        text = "".join(map(str, self.schedule)) if self.schedule else ""
        return f"seed={self.seed} schedule={text!r}"


class Scheduler:
    """Runs threads one at a time, switching at library lines.

    Two strategies choose the next thread.  `"random"` picks any parked
    thread uniformly.  `"priority"` (the default, after PCT, Burckhardt et
    al. 2010) gives each thread a random priority, runs the highest parked
    one, and at a few random steps drops the running thread to the lowest
    priority: that starves a thread for a long stretch, which is what most
    races need (a thread preempted between two related lines while others
    run whole operations), and uniform choice almost never does.

    Args:
        seed: Seeds the random choices.
        strategy: `"priority"` or `"random"`.
        schedule: Replays recorded decisions instead (indices of the parked
            threads in the order they were registered); past its end the
            lowest index is chosen.
        block_seconds: How long a thread given the turn may take to reach
            its next point before it counts as blocked.
        stall_seconds: How long without any parked thread before the run
            is abandoned as stalled.
        max_steps: Decisions after which the rest of the run is free.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        strategy: str = "priority",
        schedule: str | None = None,
        block_seconds: float = 0.02,
        stall_seconds: float = 3.0,
        max_steps: int = 5000,
    ) -> None:
        """Prepare a run; see the class docstring for the arguments."""
        self._rng = random.Random(seed)
        self._strategy = strategy
        # Thread -> priority ("priority" strategy); a drop is the minimum - 1.
        self._priority: dict[threading.Thread, float] = {}
        self._drop_chance = 0.02
        # Threads that just left a `with` block (released a lock): races sit
        # between two critical sections, so they are preempted more often.
        self._release_drop_chance = 0.9
        # Written by each thread for itself only.
        self._leaving: set[threading.Thread] = set()  # at a `with` exit
        self._left: set[threading.Thread] = set()  # parked just after one
        self._replay = [int(c) for c in schedule] if schedule is not None else None
        self._block = block_seconds
        self._stall = stall_seconds
        self._max_steps = max_steps
        self.run_info = Run(seed)
        # Guards everything below; every thread parks on it.
        self._cond = threading.Condition(threading.Lock())
        self._order: list[threading.Thread] = []  # registration order
        self._parked: set[threading.Thread] = set()
        self._turn: threading.Thread | None = None
        self._free = False

    # --- the threads' side ---------------------------------------------------

    def _global_trace(self, frame: FrameType, event: str, _arg: object) -> Any:
        if self._free:
            sys.settrace(None)
            return None
        if event == "call" and frame.f_code.co_filename.startswith(LIBRARY_DIR):
            return self._local_trace
        return None

    def _local_trace(self, frame: FrameType, event: str, _arg: object) -> Any:
        if self._free:
            return None
        if event == "line":
            me = threading.current_thread()
            left = me in self._leaving  # the previous line left a `with`
            if left:
                self._leaving.discard(me)
            if frame.f_lasti in with_exits(frame.f_code):
                self._leaving.add(me)
            self._point(left=left)
        return self._local_trace

    def _point(self, *, left: bool = False) -> None:
        """Park until the controller gives this thread the turn."""
        me = threading.current_thread()
        with self._cond:
            if self._free:
                return
            if me not in self._order:
                self._order.append(me)
            if left:
                self._left.add(me)
            self._parked.add(me)
            if self._turn is me:
                self._turn = None
            self._cond.notify_all()
            while self._turn is not me and not self._free:
                self._cond.wait()
            self._parked.discard(me)

    # --- the controller's side -------------------------------------------------

    def _choose(self, parked: list[threading.Thread]) -> threading.Thread:
        indices = sorted(self._order.index(t) for t in parked)
        step = len(self.run_info.schedule)
        if self._replay is not None:
            wanted = self._replay[step] if step < len(self._replay) else indices[0]
            index = wanted if wanted in indices else indices[0]
        elif self._strategy == "random":
            index = self._rng.choice(indices)
        else:
            for i in indices:
                t = self._order[i]
                if t not in self._priority:
                    self._priority[t] = self._rng.random()
                if t in self._left:
                    self._left.discard(t)
                    if self._rng.random() < self._release_drop_chance:
                        self._priority[t] = min(self._priority.values()) - 1.0
            index = max(indices, key=lambda i: self._priority[self._order[i]])
            if self._rng.random() < self._drop_chance:
                chosen = self._order[index]
                self._priority[chosen] = min(self._priority.values()) - 1.0
        self.run_info.schedule.append(index)
        return self._order[index]

    def run(self, *fns: Callable[[], object]) -> Run:
        """Run `fns` in threads of their own, under control; return the run.

        Exceptions raised by `fns` are collected in `Run.errors`.
        """
        done = threading.Event()
        remaining = [len(fns)]
        count_lock = threading.Lock()
        info = self.run_info

        def body(fn: Callable[[], object]) -> None:
            try:
                self._point()  # wait for the first turn
                fn()
            except BaseException as exc:
                info.errors.append(exc)
            finally:
                sys.settrace(None)
                with count_lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()
                with self._cond:
                    if self._turn is threading.current_thread():
                        self._turn = None
                    self._cond.notify_all()

        threading.settrace(self._global_trace)
        threads = [
            threading.Thread(target=body, args=(fn,), name=f"sched-{i}", daemon=True)
            for i, fn in enumerate(fns)
        ]
        for t in threads:
            with self._cond:
                self._order.append(t)
            t.start()
        try:
            self._control(done)
        finally:
            threading.settrace(None)
            with self._cond:
                self._free = True
                self._cond.notify_all()
        for t in threads:
            t.join(self._stall)
        return info

    def _control(self, done: threading.Event) -> None:
        last_progress = time.monotonic()
        while not done.is_set():
            with self._cond:
                turn = self._turn
                if turn is not None:
                    # Wait for the thread with the turn to park again.
                    self._cond.wait_for(lambda: self._turn is None, self._block)
                    if self._turn is not None:
                        self._turn = None  # blocked in C: let another run
                parked = [t for t in self._order if t in self._parked]
                if parked and len(self.run_info.schedule) < self._max_steps:
                    self._turn = self._choose(parked)
                    self._cond.notify_all()
                    last_progress = time.monotonic()
                    continue
                if parked:  # out of steps: let everything run freely
                    return
                self._cond.wait(self._block)
            if time.monotonic() - last_progress > self._stall:
                self.run_info.stalled = True
                return


def explore(
    scenario: Callable[[Scheduler], str | None],
    *,
    seeds: range,
    **options: Any,
) -> tuple[Run, str] | None:
    """Run `scenario` once per seed; return the first failing run and why.

    `scenario(scheduler)` builds its objects, calls `scheduler.run(...)`,
    checks the outcome and returns `None` if it holds, else a description.
    """
    for seed in seeds:
        scheduler = Scheduler(seed=seed, **options)
        problem = scenario(scheduler)
        if problem is not None:
            return scheduler.run_info, problem
    return None
