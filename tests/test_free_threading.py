"""The free-threaded build really runs without the GIL.

`make test-ft` runs the suite with `PYTHON_GIL=0`, which keeps the GIL off
even when an extension module that does not declare free-threading support is
imported. This test imports the library and every test tool in a child
interpreter *without* that variable, where such an import would turn the GIL
back on, so that the suite cannot pass on free-threaded CPython while
measuring a build that has quietly become a GIL build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

# Imports every safethreads module and every pytest plugin installed (the
# "pytest11" entry points: pytest-timeout, pytest-repeat, pytest-run-parallel,
# pytest-markdown-docs, Hypothesis's plugin), then reports the GIL's state.
CHILD = textwrap.dedent(
    """
    import importlib, importlib.metadata, pkgutil, sys
    import safethreads
    for module in pkgutil.walk_packages(safethreads.__path__, "safethreads."):
        importlib.import_module(module.name)
    import hypothesis, pytest
    for plugin in importlib.metadata.entry_points(group="pytest11"):
        plugin.load()
    print(sys._is_gil_enabled())
    """
)


@pytest.mark.subprocess
@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded CPython build")
def test_importing_the_library_and_test_tools_leaves_the_gil_disabled() -> None:
    """No module the suite imports turns the GIL back on."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", CHILD],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", done.stdout + done.stderr


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded CPython build")
def test_the_suite_runs_with_the_gil_disabled() -> None:
    """The tests themselves ran without the GIL, not only the child above."""
    assert sys._is_gil_enabled() is False  # type: ignore[attr-defined]
