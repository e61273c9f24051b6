"""Waiting in tests: for a condition no event announces, under a deadline."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

TIMEOUT = 10.0  # every wait in the tests is bounded


def wait_until(
    predicate: Callable[[], bool], what: str, *, poll: float = 0.001
) -> None:
    """Poll `predicate` until it holds; fail the test after TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(poll)


def idle_until_interrupted(seconds: float = TIMEOUT) -> None:
    """Idle in short sleeps until `_thread.interrupt_main()` lands.

    That call does not cut a sleep short (no real signal is sent): the
    interrupt is raised between two sleeps, at most a few ms after it.
    Without a GIL the main thread may already be asleep when it comes.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.005)
