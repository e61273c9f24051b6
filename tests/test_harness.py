"""The harness: a hang that no signal handler can break still ends the run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HANGING_TEST = """
import signal
import time


def test_hangs_where_pytest_timeout_cannot_reach() -> None:
    # pytest-timeout interrupts from a SIGALRM handler; with the signal blocked
    # this stands for a deadlock that holds the GIL.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(60)
"""


@pytest.mark.subprocess
def test_a_hang_past_the_timeout_dumps_the_stacks_and_ends_the_run(
    tmp_path: Path,
) -> None:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_hang.py").write_text(HANGING_TEST)
    start = time.monotonic()
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--timeout=2",
            "test_hang.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    elapsed = time.monotonic() - start
    assert child.returncode == 1, child.stdout + child.stderr
    assert "Timeout (0:00:03)!" in child.stderr
    assert "test_hangs_where_pytest_timeout_cannot_reach" in child.stderr
    assert elapsed < 30, f"the child ran for {elapsed:.1f} s"
