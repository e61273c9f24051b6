"""Shared fixtures: Hypothesis profiles, leak checks and interleaving control."""

from __future__ import annotations

import gc
import os
import random
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from collections.abc import Iterator

# "ci" keeps the suite within its time budget; "dev" digs deeper locally.
settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# How long a test's own threads get to finish after the test before they count
# as leaked.
LEAK_GRACE_SECONDS = 5.0


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves behind threads it started."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    leaked = [t for t in threading.enumerate() if t not in before]
    for t in leaked:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in leaked if t.is_alive()]
    assert not alive, f"threads still running after the test: {alive}"
    # Unobserved failures are reported when their owner is collected: collect
    # now, so that a report surfaces in the test that caused it.
    gc.collect()


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Collect what reaches `threading.excepthook` during the test.

    Unobserved failures are reported when their thread or future is collected,
    so the fixture collects garbage before handing the list back to pytest.
    """
    seen: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", seen.append)
    yield seen
    gc.collect()


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Force frequent thread switches so that races show up."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.fixture
def stress_rng() -> random.Random:
    """A seeded random generator; set STRESS_SEED to replay a failure."""
    seed = int(os.environ.get("STRESS_SEED", str(random.randrange(2**32))))
    print(f"stress seed: STRESS_SEED={seed}")
    return random.Random(seed)
