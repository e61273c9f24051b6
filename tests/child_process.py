"""Helpers for tests that run a child interpreter and send it signals."""

# Put in front of a child's code.  The child installs Python's own SIGINT
# handler: a parent that ignores SIGINT (as a shell does for background jobs)
# would otherwise pass that on.  `_wait_for_signal` is how the child's main
# thread idles until the parent's signal: a process-directed SIGINT may be
# handed by the kernel to any thread, and the main thread notices it only
# between two blocking calls, so it waits in short slices.
SIGINT_PRELUDE = """\
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)


def _wait_for_signal(seconds):
    import time
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)
"""
