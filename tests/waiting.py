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
