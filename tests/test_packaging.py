"""The package as users get it: built, checked, installed from the wheel."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.packaging
@pytest.mark.timeout(300)
def test_wheel_installs_and_runs_the_tour(tmp_path: Path) -> None:
    """The built wheel passes twine's checks, installs alone and runs the tour."""
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT)
    wheel = next(dist.glob("*.whl"))
    sdist = next(dist.glob("*.tar.gz"))
    run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)

    wheel_names = zipfile.ZipFile(wheel).namelist()
    assert "safethreads/py.typed" in wheel_names
    assert not [n for n in wheel_names if n.startswith("tests/")]
    with tarfile.open(sdist) as archive:
        sdist_names = archive.getnames()
    top = sdist_names[0].split("/")[0]
    for needed in ("tests/conftest.py", "docs/index.md", "LICENSE", "CHANGELOG.md"):
        assert f"{top}/{needed}" in sdist_names, needed

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", wheel)
    # Run from an empty folder so that nothing can come from the source tree.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    location = run(python, "-c", "import safethreads; print(safethreads.__file__)")
    assert str(venv) in location
    tour = run(python, "-m", "safethreads", cwd=workdir)
    assert "ResultThread" in tour
    assert run(python, "-m", "safethreads", "--help", cwd=workdir).startswith("usage:")
