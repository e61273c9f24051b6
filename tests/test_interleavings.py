"""Races that matter, explored with the deterministic scheduler.

Each scenario runs two or three threads under `scheduler.Scheduler`, which
switches threads at lines of library code following a seeded schedule, and
checks a property afterwards.  A failing exploration prints the seed and the
schedule; `Scheduler(schedule=...)` replays it (see `scheduler.py`).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from safethreads import CancelToken, LockedDict, WorkerPool
from safethreads._future import PoolFuture
from scheduler import Scheduler, explore

if TYPE_CHECKING:
    from collections.abc import Callable

TIMEOUT = 5.0


def _wait_until(condition: Callable[[], bool], seconds: float = TIMEOUT) -> bool:
    """Poll `condition`, sleeping in C between polls (a blocked thread)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def _shutdown(pool: WorkerPool) -> None:
    done = threading.Event()

    def stop() -> None:
        pool.shutdown(wait=True, cancel_futures=True)
        done.set()

    helper = threading.Thread(target=stop, daemon=True)
    helper.start()
    helper.join(TIMEOUT)
    assert done.is_set(), "shutdown() hung"


def handoff_vs_finishing_worker(s: Scheduler) -> str | None:
    """max_pending=0: a task promised to an idle worker, a busy one finishing.

    Afterwards, with both workers idle, the pool must accept two tasks at once.
    """
    pool = WorkerPool(max_workers=2, max_pending=0, on_full="block")
    gate = threading.Event()

    def driver() -> None:
        busy = pool.submit(gate.wait, TIMEOUT)  # worker A
        pool.submit(int, "1").result(TIMEOUT)  # worker B, which then goes idle
        gate.set()  # A finishes and looks for work...
        handed = pool.submit(int, "2")  # ...while this is promised to idle B
        handed.result(TIMEOUT)
        busy.result(TIMEOUT)

    try:
        run = s.run(driver)
        if run.errors:
            return f"the driver failed: {run.errors[0]!r}"
        _wait_until(lambda: pool.stats().idle == 2)
        hold = threading.Event()
        accepted = [pool.try_submit(hold.wait, TIMEOUT) for _ in range(2)]
        hold.set()
        taken = sum(f is not None for f in accepted)
        if taken != 2:
            return (
                f"a 2-worker hand-off pool with both workers idle accepted "
                f"{taken} of 2 tasks (stats {pool.stats()})"
            )
        return None
    finally:
        gate.set()
        _shutdown(pool)


def shutdown_vs_starting_worker(s: Scheduler) -> str | None:
    """`shutdown(wait=True)` racing a `submit` that starts the first worker.

    If the submit is accepted, its task must have run before shutdown returns.
    """
    pool = WorkerPool(max_workers=1)
    log: list[str] = []

    def submitter() -> None:
        try:
            pool.submit(log.append, "task ran")
        except RuntimeError:
            log.append("refused")

    def stopper() -> None:
        pool.shutdown(wait=True)
        log.append("shutdown returned")

    try:
        run = s.run(submitter, stopper)
        if run.errors:
            return f"a thread failed: {run.errors[0]!r}"
    finally:
        _shutdown(pool)
    if "refused" in log:
        return None
    if log.index("task ran") > log.index("shutdown returned"):
        return f"shutdown(wait=True) returned before the accepted task ran: {log}"
    return None


def set_result_cancel_wait(s: Scheduler) -> str | None:
    """`set_running_or_notify_cancel`+`set_result`, `cancel` and `wait` race."""
    future: PoolFuture[int] = PoolFuture(None, None, None, None, None)
    outcome: dict[str, Any] = {}

    def runner() -> None:
        outcome["ran"] = future.set_running_or_notify_cancel()
        if outcome["ran"]:
            future.set_result(1)

    def canceller() -> None:
        outcome["cancelled"] = future.cancel()

    def waiter() -> None:
        done, _ = cf.wait([future], timeout=TIMEOUT)
        outcome["woken"] = future in done

    run = s.run(runner, canceller, waiter)
    if run.errors:
        return f"a thread failed: {run.errors[0]!r}"
    if outcome["ran"] == outcome["cancelled"]:
        return f"set_running and cancel both won or both lost: {outcome}"
    if not outcome["woken"]:
        return "wait() did not see the future finish"
    if outcome["ran"] and future.result(timeout=0) != 1:
        return "the result was lost"
    if outcome["cancelled"] and not future.cancelled():
        return "cancel() returned True but the future is not cancelled"
    return None


def transaction_vs_readers(s: Scheduler) -> str | None:
    """A `locked()` block writing two keys vs `snapshot()` and `items()`."""
    d: LockedDict[str, int] = LockedDict({"a": 0, "b": 0})
    seen: list[dict[str, int]] = []

    def writer() -> None:
        with d.locked() as m:
            m["a"] = 1
            m["b"] = 1

    def snapshotter() -> None:
        seen.append(d.snapshot())

    def iterator() -> None:
        seen.append(dict(d.items()))

    run = s.run(writer, snapshotter, iterator)
    if run.errors:
        return f"a thread failed: {run.errors[0]!r}"
    torn = [v for v in seen if v["a"] != v["b"]]
    if torn:
        return f"a reader saw half a transaction: {torn}"
    if d.snapshot() != {"a": 1, "b": 1}:
        return f"the transaction was lost: {d.snapshot()}"
    return None


def cancel_vs_add_callback_vs_child(s: Scheduler) -> str | None:
    """`cancel()`, `add_callback()` and `child()` of one token race."""
    token = CancelToken()
    calls: list[str] = []
    children: list[CancelToken] = []

    run = s.run(
        token.cancel,
        lambda: token.add_callback(lambda: calls.append("callback")),
        lambda: children.append(token.child()),
    )
    if run.errors:
        return f"a thread failed: {run.errors[0]!r}"
    if calls != ["callback"]:
        return f"the callback ran {len(calls)} times"
    if not children[0].cancelled:
        return "the child of a cancelled token is not cancelled"
    token._check()
    return None


SCENARIOS: dict[str, Callable[[Scheduler], str | None]] = {
    f.__name__: f
    for f in (
        handoff_vs_finishing_worker,
        shutdown_vs_starting_worker,
        set_result_cancel_wait,
        transaction_vs_readers,
        cancel_vs_add_callback_vs_child,
    )
}

# Scenario -> the open defect that makes it fail.  Empty: issue 9 items 1
# and 2, which these scenarios found, are fixed (docs/testing.md says how to
# re-find them on the code before the fix).
KNOWN: dict[str, str] = {}

SEEDS = 60  # the default run; the stress run explores more
STRESS_SEEDS = 150


def _cases() -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN[name]))
        if name in KNOWN
        else name
        for name in SCENARIOS
    ]


def _explore(name: str, seeds: range, strategy: str = "priority") -> None:
    failure = explore(SCENARIOS[name], seeds=seeds, strategy=strategy)
    if failure is not None:
        run, problem = failure
        print(f"{name}: {problem}\n  replay: {run.replay_hint()}")
        pytest.fail(f"{name}: {problem}; replay with {run.replay_hint()}")


@pytest.mark.parametrize("name", _cases())
def test_explored_interleavings_keep_the_contract(name: str) -> None:
    """No explored schedule of the race breaks its property."""
    _explore(name, range(SEEDS))


def _stress_cases() -> list[Any]:
    # Uniform choice almost never finds the known races: the known ones are
    # explored with priorities only, so that their strict xfail holds.
    cases = []
    for name in SCENARIOS:
        if name in KNOWN:
            mark = pytest.mark.xfail(strict=True, reason=KNOWN[name])
            cases.append(pytest.param(name, "priority", marks=mark))
        else:
            cases += [pytest.param(name, "priority"), pytest.param(name, "random")]
    return cases


@pytest.mark.stress
@pytest.mark.exhaustive
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("name", "strategy"), _stress_cases())
def test_many_explored_interleavings_keep_the_contract(
    name: str, strategy: str
) -> None:
    """Many more schedules, with both strategies."""
    _explore(name, range(SEEDS, SEEDS + STRESS_SEEDS), strategy)


def test_a_failing_schedule_replays() -> None:
    """The schedule printed for a failing run makes it fail again."""
    scenario = shutdown_vs_starting_worker
    failure = explore(scenario, seeds=range(SEEDS))
    if failure is None:
        pytest.skip("no failing schedule to replay (the race is fixed)")
    run, problem = failure
    schedule = "".join(map(str, run.schedule))
    replays = [scenario(Scheduler(schedule=schedule)) for _ in range(3)]
    assert replays == [problem] * 3, f"replaying {run.replay_hint()}: {replays}"
