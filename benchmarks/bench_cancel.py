"""Cancellation latency: from `cancel()` to the blocked waiter raising.

Each trial parks one waiter in a library wait under a token, cancels the
token and measures, on `time.perf_counter()`, the time from just before the
`cancel()` call to the waiter's `except Cancelled` (or, for the plain
`token.wait()` reference, to its return).  The percentiles are over all
trials; the goal is a p99 under 50 ms on a loaded machine.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from typing import TYPE_CHECKING

from safethreads import Cancelled, CancelToken, ResultThread, WorkerPool
from safethreads._cancel import bind_token

from ._harness import format_time, progress, table

if TYPE_CHECKING:
    from collections.abc import Callable

TRIALS = 300
GOAL_P99 = 0.050


def _latencies(wait: Callable[[CancelToken], object], trials: int) -> list[float]:
    """Run `wait(token)` in a thread per trial; time cancel() -> its end."""
    out: list[float] = []
    for _ in range(trials):
        token = CancelToken()
        ended: list[float] = []

        def waiter(token: CancelToken = token, ended: list[float] = ended) -> None:
            with contextlib.suppress(Cancelled):
                wait(token)
            ended.append(time.perf_counter())

        thread = threading.Thread(target=waiter)
        thread.start()
        # Parked once its wake-up is registered on the token; give it a
        # moment to block.
        while not token._callbacks and thread.is_alive():
            time.sleep(0.0005)
        time.sleep(0.001)
        start = time.perf_counter()
        token.cancel()
        thread.join(10)
        if not ended:
            msg = "a waiter did not wake up within 10 s"
            raise RuntimeError(msg)
        out.append(ended[0] - start)
    return out


def run(rounds: int) -> None:
    """Print p50/p99/max of the cancellation latency per kind of wait."""
    del rounds  # one pass of TRIALS trials per case
    release = threading.Event()
    blocked = ResultThread(target=release.wait, args=(600,), daemon=True)
    blocked.start()
    other = CancelToken()

    def result_bound(token: CancelToken) -> object:
        with bind_token(token):
            return blocked.result()

    def result_explicit(token: CancelToken) -> object:
        return blocked.result(cancel=token)

    def token_wait(token: CancelToken) -> object:
        return other.wait(cancel=token)

    def own_token_wait(token: CancelToken) -> object:
        # The reference: a token's own wait(), which wakes on its Event.
        token.add_callback(lambda: None)  # marks the waiter as parked
        return token.wait()

    with WorkerPool(max_workers=1) as pool:
        future = pool.submit(release.wait, 600)

        def pool_future(token: CancelToken) -> object:
            with bind_token(token):
                return future.result()

        cases = [
            ("token.wait() (reference)", own_token_wait),
            ("ResultThread.result(), bound token", result_bound),
            ("ResultThread.result(cancel=token)", result_explicit),
            ("CancelToken.wait(cancel=token)", token_wait),
            ("WorkerPool future.result(), bound token", pool_future),
        ]
        rows = []
        for label, wait in cases:
            samples = sorted(_latencies(wait, TRIALS))
            progress(".")
            p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
            rows.append(
                [
                    label,
                    format_time(statistics.median(samples)),
                    format_time(p99),
                    format_time(samples[-1]),
                    "yes" if p99 < GOAL_P99 else "NO",
                ]
            )
        release.set()
    progress("\n")
    title = "Cancellation latency, cancel() to the waiter raising"
    print(f"\n### {title} ({TRIALS} trials)\n")
    print(table(["wait", "p50", "p99", "max", "p99 < 50 ms"], rows))
