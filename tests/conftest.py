"""Shared fixtures: Hypothesis profiles, leak checks and interleaving control."""

from __future__ import annotations

import gc
import inspect
import os
import random
import signal
import sys
import threading
import time
import unittest
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

# A runner that starts the suite in the background (`nohup`, `&` in a script
# without job control) hands it SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler: every Ctrl-C test would fail, and the children
# they start would inherit the ignored signal. Restore Python's own handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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


# --- pytest-run-parallel ------------------------------------------------------
# `make test-parallel` runs every test body in several threads at once, with
# the same fixtures, to find state in the library that concurrent callers
# share by mistake. The tests below cannot run that way because of what they
# do themselves, so they run once, in one thread. The plugin itself already
# finds tests that use monkeypatch (so `reported`), capsys, warnings filters,
# unittest.mock or gc.collect(). Marking here, by what a test uses, keeps the
# rules in one place as tests are added.
SERIAL_MARKERS = {
    "subprocess": "drives a child interpreter; its state is not shared",
    "packaging": "builds and installs the distributions",
}
SERIAL_FIXTURES = {
    "caplog": "reads the shared log capture",
    "fast_switching": "changes the process-wide switch interval",
    # One Event for all the copies: the first copy to set it releases the
    # tasks the other copies hold, and their checks of "still blocked" fail.
    "gate": "shares one Event among the copies",
    "release": "shares one Event among the copies",
}
# Calls whose effect reaches every thread of the process.
SERIAL_CALLS = {
    "interrupt_main": "interrupts the main thread, which the copies share",
    "pthread_kill": "signals the main thread, which the copies share",
    "signal.signal": "installs a process-wide signal handler",
    "threading.active_count": "counts the threads of the whole process",
    "threading.enumerate": "compares the threads of the whole process",
    "setswitchinterval": "changes the process-wide switch interval",
    "gc.set_threshold": "changes the process-wide collection thresholds",
    "sys.settrace": "traces the whole process",
    "explore(": "an explorer traces every thread of the process",
    # pytest ends the whole run on a KeyboardInterrupt or SystemExit that
    # escapes in any thread; the copies' threads are not the test's own.
    "KeyboardInterrupt": "raises an interrupt on purpose",
    "SystemExit": "raises an interrupt on purpose",
    "threading.excepthook": "replaces the process-wide excepthook",
}


def _interrupt_parameter(item: pytest.Item) -> bool:
    """Whether a parameter of `item` is KeyboardInterrupt, SystemExit or kin."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return any(
        isinstance(value, type)
        and issubclass(value, BaseException)
        and not issubclass(value, Exception)
        for value in params
    )


def serial_reason(item: pytest.Item) -> str | None:
    """Why `item` cannot run in several threads at once, or None."""
    for name, reason in SERIAL_MARKERS.items():
        if item.get_closest_marker(name) is not None:
            return reason
    cls = getattr(item, "cls", None)
    if (
        sys.version_info < (3, 13)
        and cls is not None
        and issubclass(cls, unittest.TestCase)
    ):
        # Hypothesis state machines compile code while they run, and two
        # threads doing that made CPython 3.11's ast module raise "SystemError:
        # AST constructor recursion depth mismatch" (cf. gh-106905); not seen
        # on 3.13.
        return "a Hypothesis state machine: ast is not thread-safe here"
    if _interrupt_parameter(item):
        return "raises an interrupt on purpose"
    fixtures = set(getattr(item, "fixturenames", ()))
    for name, reason in SERIAL_FIXTURES.items():
        if name in fixtures:
            return reason
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        source = ""
    for call, reason in SERIAL_CALLS.items():
        if call in source:
            return reason
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    """Run the tests that are not thread-safe themselves in a single thread."""
    if not config.pluginmanager.has_plugin("run-parallel"):
        return
    for item in items:
        if getattr(item, "obj", None) is None:
            # Markdown examples are not functions the plugin can run in threads;
            # they run once, as without the plugin (and without its warning).
            item._parallel_custom_item = True
            continue
        reason = serial_reason(item)
        if reason is not None:
            item.add_marker(pytest.mark.thread_unsafe(reason=reason))


# --- hangs that hold the GIL ----------------------------------------------------
# pytest-timeout fails an overrunning test from a signal handler, and a signal
# handler needs the GIL: a deadlock inside the interpreter that holds it (such
# as CPython gh-106883 on 3.11) would stop the whole run with no output. Past
# the test's own timeout and a margin (half of it, at most this), dump every
# thread's stack from C and end the process with status 1 instead.
HANG_MARGIN_SECONDS = 30.0


def _timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    option = item.config.getoption("timeout", None)
    if option is not None:
        return float(option)
    return float(item.config.getini("timeout") or 0)


# The stacks go to a copy of the run's stderr taken before output capture,
# which points file descriptor 2 at a file that dies with the process.
_hang_stream: Any = None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Keep a copy of stderr for the hard deadline's dump."""
    global _hang_stream  # noqa: PLW0603
    if sys.__stderr__ is not None and _hang_stream is None:
        _hang_stream = os.fdopen(os.dup(sys.__stderr__.fileno()), "w")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Arm the hard deadline for one test, disarm it after."""
    import faulthandler

    timeout = _timeout_of(item)
    stream = _hang_stream
    if timeout <= 0 or stream is None:
        return (yield)
    margin = min(HANG_MARGIN_SECONDS, timeout / 2)
    faulthandler.dump_traceback_later(timeout + margin, exit=True, file=stream)
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()


# --- exit ---------------------------------------------------------------------
# A test can leave behind something that blocks interpreter exit (a
# non-daemon thread, an exit hook waiting for work): pytest-timeout covers the
# tests only, and such a run would hang after its summary. Give the exit a
# deadline: past it, dump every thread's stack and end the process with
# status 1, so the run fails with the culprit's stack instead of hanging.
EXIT_DEADLINE_SECONDS = 120


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Arm the exit deadline once pytest itself is done."""
    import faulthandler

    stream = sys.__stderr__
    if stream is not None:
        faulthandler.dump_traceback_later(EXIT_DEADLINE_SECONDS, exit=True, file=stream)
